"""Where orders come from: a JSONL or CSV file, or N generated samples; each record is an order
or a `RejectedRecord` that names its line and fields.

A bad record never stops the source: it is turned into a rejection and the next line is read,
so that one typo in a file of ten thousand orders costs one order, reported, not the run.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from actors.errors import SourceError
from actors.intake.samples import generate_orders
from actors.models import FieldError, JewelryOrder, RejectedRecord

Record = JewelryOrder | RejectedRecord
SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".csv")


class SourceSpec(BaseModel):
    """Either a file of orders or a count of generated ones; sent to the Producer as is."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    count: int | None = None
    seed: int = 2025

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        if (self.path is None) == (self.count is None):
            raise ValueError("give either an input file or a number of orders to generate, not both")
        if self.count is not None and self.count < 0:
            raise ValueError("the number of orders cannot be negative")
        return self

    @property
    def label(self) -> str:
        return self.path.name if self.path else f"generated(seed={self.seed})"

    def check_readable(self) -> None:
        """Fail fast, before any actor starts, on a file that cannot be a source."""
        if self.path is None:
            return
        if not self.path.is_file():
            raise SourceError(f"input file {self.path} does not exist or is not a file")
        if self.path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise SourceError(f"input file {self.path}: unsupported type; use one of {', '.join(SUPPORTED_SUFFIXES)}")


def count_records(spec: SourceSpec) -> int:
    """How many records the source will yield (data lines for files), for progress reporting."""
    if spec.count is not None:
        return spec.count
    assert spec.path is not None
    with spec.path.open(encoding="utf-8", errors="replace") as fh:
        lines = sum(1 for line in fh if line.strip())
    return max(0, lines - 1) if spec.path.suffix.lower() == ".csv" else lines


def read_records(spec: SourceSpec) -> Iterator[Record]:
    """Every record of the source in order, with duplicate order ids rejected after the first."""
    for _, record in read_numbered_records(spec):
        yield record


def read_numbered_records(spec: SourceSpec) -> Iterator[tuple[int, Record]]:
    """`read_records` with each record's line (or position, for generated orders)."""
    spec.check_readable()
    first_seen: dict[str, int] = {}
    for line, record in _numbered_records(spec):
        if isinstance(record, JewelryOrder):
            first = first_seen.setdefault(record.order_id, line)
            if first != line:
                yield (
                    line,
                    RejectedRecord(
                        source=spec.label,
                        line=line,
                        order_id=record.order_id,
                        errors=(FieldError(field="order_id", reason=f"duplicate of the order on line {first}"),),
                        raw=record.model_dump(mode="json"),
                    ),
                )
                continue
        yield line, record


def validate_record(raw: Any, source: str, line: int) -> Record:
    """An order, or a rejection naming every field that is wrong and why."""
    order_id = raw.get("order_id") if isinstance(raw, dict) else None
    if not isinstance(raw, dict):
        problem = FieldError(field="<record>", reason=f"expected a JSON object, got {type(raw).__name__}")
        return RejectedRecord(source=source, line=line, order_id=None, errors=(problem,), raw=raw)
    try:
        return JewelryOrder.model_validate(raw)
    except ValidationError as error:
        problems = tuple(
            FieldError(field=".".join(str(p) for p in e["loc"]) or "<record>", reason=e["msg"])
            for e in error.errors(include_url=False)
        )
        return RejectedRecord(
            source=source,
            line=line,
            order_id=order_id if isinstance(order_id, str) else None,
            errors=problems,
            raw=raw,
        )


Row = tuple[int, Any, FieldError | None]


def read_rows(path: Path) -> Iterator[Row]:
    """Raw rows of a file with their line numbers, and the problem of any row that is not a record."""
    return _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)


def record_from_row(row: Row, source: str) -> Record:
    line, raw, problem = row
    if problem is not None:
        return RejectedRecord(source=source, line=line, order_id=None, errors=(problem,), raw=raw)
    return validate_record(raw, source, line)


def _numbered_records(spec: SourceSpec) -> Iterator[tuple[int, Record]]:
    if spec.count is not None:
        yield from enumerate(generate_orders(spec.count, spec.seed), start=1)
        return
    assert spec.path is not None
    for row in read_rows(spec.path):
        yield row[0], record_from_row(row, spec.label)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                yield line, json.loads(text.strip()), None
            except json.JSONDecodeError as error:
                yield (
                    line,
                    text.rstrip("\n"),
                    FieldError(field="<json>", reason=f"malformed JSON: {error.msg} at column {error.colno}"),
                )


def _csv_rows(path: Path) -> Iterator[Row]:
    """CSV rows as nested dicts: `destination.city` columns nest, `gemstones` holds a JSON list."""
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            line = reader.line_num
            if None in row:
                yield (
                    line,
                    row,
                    FieldError(field="<row>", reason=f"{len(row[None])} more value(s) than the header has columns"),
                )
                continue
            raw: dict[str, Any] = {}
            for column, value in row.items():
                if value is None or value.strip() == "":
                    continue  # an empty cell is an absent field: defaults apply, required ones are reported
                target = raw
                *parents, leaf = column.strip().split(".")
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[leaf] = value
            if "gemstones" in raw:
                try:
                    raw["gemstones"] = json.loads(raw["gemstones"])
                except json.JSONDecodeError as error:
                    yield line, row, FieldError(field="gemstones", reason=f"not a JSON list: {error.msg}")
                    continue
            yield line, raw, None
