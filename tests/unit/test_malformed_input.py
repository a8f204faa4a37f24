"""No malformed record crashes the source, and none is lost: each line is an order or a reject."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from actors.intake.sources import SourceSpec, read_records
from actors.models import JewelryOrder, RejectedRecord
from tests.malformed import order_file_lines


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(order_file_lines(count=250))
def test_every_line_becomes_exactly_one_order_or_one_named_reject(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "orders.jsonl"
        path.write_text("\n".join(line.replace("\n", " ") for line in lines) + "\n", encoding="utf-8")
        records = list(read_records(SourceSpec(path=path)))  # must not raise, whatever the lines hold

    numbered = {n for n, line in enumerate(lines, start=1) if line.replace("\n", " ").strip()}
    order_lines = {int(r.order_id[5:]) + 1 for r in records if isinstance(r, JewelryOrder)}
    rejects = [r for r in records if isinstance(r, RejectedRecord)]
    assert len(records) == len(numbered)
    assert order_lines | {r.line for r in rejects} == numbered  # every line accounted for, once
    assert not order_lines & {r.line for r in rejects}
    assert all(index % 6 != 0 or index + 1 in order_lines for index in range(len(lines)))  # valid ones pass
    for reject in rejects:
        assert reject.errors and all(e.field and e.reason for e in reject.errors)
        assert f"line {reject.line}" in reject.message
        json.dumps(reject.model_dump(mode="json"))  # the reject file can always hold it
