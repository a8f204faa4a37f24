"""Hypothesis strategies for input lines that are wrong in the ways real order files are."""

from __future__ import annotations

import copy
import json

from hypothesis import strategies as st

from actors.intake.samples import ORIGINAL_ORDERS

REQUIRED = ["order_id", "product_type", "style", "size", "customer", "destination", "declared_value", "created_at"]
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def malformed_line(draw, order_id: str) -> str:
    """One JSONL line: a broken order, broken JSON, or not an object at all."""
    kind = draw(st.sampled_from(["drop", "retype", "carat", "metal", "stones", "extra", "size", "json", "non-object"]))
    record = copy.deepcopy(draw(st.sampled_from(ORIGINAL_ORDERS)))
    record["order_id"] = order_id
    if kind == "drop":
        del record[draw(st.sampled_from(REQUIRED))]
    elif kind == "retype":
        record[draw(st.sampled_from([*REQUIRED, "metal", "priority", "currency"]))] = draw(JUNK)
    elif kind == "carat":
        record["gemstones"] = [
            {"kind": "diamond", "carat": draw(st.one_of(st.floats(max_value=0), JUNK)), "colour": "G", "clarity": "VS1"}
        ]
    elif kind == "metal":
        record["metal"] = draw(st.text(min_size=1, max_size=12).filter(lambda t: t.strip().upper() != "AU750"))
    elif kind == "stones":
        record["gemstones"] = draw(st.one_of(JUNK, st.lists(JUNK, min_size=1, max_size=3)))
    elif kind == "extra":
        record[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in record))] = draw(JUNK)
    elif kind == "size":
        record["size"] = draw(st.one_of(st.floats(max_value=2.9), st.floats(min_value=1000), JUNK))
    text = json.dumps(record, ensure_ascii=False)
    if kind == "json":
        return text[: draw(st.integers(min_value=1, max_value=len(text) - 1))]
    if kind == "non-object":
        return json.dumps(draw(st.one_of(st.lists(JUNK, max_size=3), st.integers(), st.text(max_size=20))))
    return text


@st.composite
def order_file_lines(draw, count: int, valid_every: int = 6) -> list[str]:
    """`count` lines with unique order ids; every `valid_every`-th is a valid order."""
    lines = []
    for index in range(count):
        order_id = f"J2030{index:06d}"
        if index % valid_every == 0:
            record = copy.deepcopy(ORIGINAL_ORDERS[index % 3])
            record["order_id"] = order_id
            for stone in record.get("gemstones", []):
                stone["certificate"]["number"] = f"{3000000000 + index:010d}"
            lines.append(json.dumps(record))
        else:
            lines.append(draw(malformed_line(order_id)))
    return lines
