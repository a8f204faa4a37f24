"""The journal of a run without a ledger (`--no-ledger`): the same rules, kept in memory.

It keeps a replica idempotent and its compensations single for as long as the process lives;
a crash loses it, which is why runs without a ledger do not restart actors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from actors.ledger.journal import DuplicateEffect, RecordedEffect
from actors.models import StageName, StageResult, StageStatus


class MemoryJournal:
    def __init__(self) -> None:
        self._effects: dict[tuple[StageName, str], RecordedEffect] = {}
        self._checkpoints: dict[str, dict[str, Any]] = {}

    def claim(self, replica: str, stage: StageName) -> dict[str, Any] | None:
        return self._checkpoints.get(replica)

    def checkpoint_of(self, replica: str) -> dict[str, Any] | None:
        return self._checkpoints.get(replica)

    def effect(self, stage: StageName, order_id: str) -> RecordedEffect | None:
        return self._effects.get((stage, order_id))

    def record_effects(
        self, replica: str, stage: StageName, results: list[StageResult], checkpoint: dict[str, Any]
    ) -> None:
        for result in results:
            if (result.stage, result.order_id) in self._effects:
                raise DuplicateEffect(f"{result.stage} already recorded an effect for order {result.order_id}")
        for result in results:
            self._effects[(result.stage, result.order_id)] = RecordedEffect(
                result.stage, result.order_id, result.replica, result, False, None)
        self._checkpoints[replica] = checkpoint

    def record_compensation(
        self, stage: StageName, order_id: str, replica: str, done: str | None, checkpoint: dict[str, Any]
    ) -> None:
        recorded = self._effects.get((stage, order_id))
        result = recorded.result if recorded else None
        self._effects[(stage, order_id)] = RecordedEffect(stage, order_id, replica, result, True, done)
        self._checkpoints[replica] = checkpoint

    def live_effects(self, replica: str) -> Iterator[StageResult]:
        for recorded in self._effects.values():
            result = recorded.result
            if recorded.replica == replica and not recorded.compensated and result and result.status is StageStatus.OK:
                yield result

    def close(self) -> None:
        pass
