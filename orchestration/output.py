"""A run's files: one `OrderOutcome` per line, one rejected record per line, and the summary.

Lines are written as they arrive and flushed per batch, so a run that is stopped half-way still
leaves every outcome it collected on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from actors.models import EncodedOutcome, OrderOutcome, RejectedRecord
from orchestration.report import RunSummary

OUTCOMES_FILE = "outcomes.jsonl"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class RunFiles:
    directory: Path
    _outcomes: IO[str]
    _rejects: IO[str]

    @classmethod
    def open(cls, directory: Path) -> RunFiles:
        directory = directory.expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        return cls(
            directory,
            (directory / OUTCOMES_FILE).open("w", encoding="utf-8"),
            (directory / REJECTS_FILE).open("w", encoding="utf-8"),
        )

    @property
    def outcomes_path(self) -> Path:
        return self.directory / OUTCOMES_FILE

    @property
    def rejects_path(self) -> Path:
        return self.directory / REJECTS_FILE

    def write(self, outcomes: Iterable[EncodedOutcome], rejects: Iterable[RejectedRecord]) -> None:
        for outcome in outcomes:
            self._outcomes.write(outcome.json + "\n")
        for reject in rejects:
            line = reject.model_dump(mode="json")
            line["message"] = reject.message
            self._rejects.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._outcomes.flush()
        self._rejects.flush()

    def replace_outcomes(self, lines: Iterable[str]) -> None:
        """Swap in the complete outcome list (from the ledger), atomically."""
        partial = self.outcomes_path.with_suffix(".jsonl.partial")
        with partial.open("w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
        os.replace(partial, self.outcomes_path)

    def write_summary(self, summary: RunSummary) -> None:
        (self.directory / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2), encoding="utf-8")

    def close(self) -> None:
        self._outcomes.close()
        self._rejects.close()


def read_outcomes(path: Path) -> list[OrderOutcome]:
    with path.open(encoding="utf-8") as fh:
        return [OrderOutcome.model_validate_json(line) for line in fh if line.strip()]
