"""The journal of a stage without a ledger: the same rules, kept in one process's memory.

It keeps a replica idempotent and its compensations single for as long as the process lives, and
holds a workshop (stock, certificate register, counters) that only this process sees. Unit tests
use it; runs without a ledger give the replicas that share a workshop a scratch SQLite store
instead (see `FanoutSettings.ledger_spec`), because memory is one replica's, not the pool's.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from actors.errors import ClaimRefused, DuplicateEffect
from actors.ledger.claims import Claim
from actors.ledger.journal import RecordedEffect
from actors.models import StageName, StageResult, StageStatus


class MemoryJournal:
    def __init__(self) -> None:
        self._effects: dict[tuple[StageName, str], RecordedEffect] = {}
        self._checkpoints: dict[str, dict[str, Any]] = {}
        self._stock: dict[str, int] = {}
        self._changes: dict[str, int] = {}
        self._holds: dict[str, str] = {}
        self._counters: dict[str, itertools.count[int]] = {}
        self._voided: set[tuple[str, int]] = set()

    def claim(self, replica: str, stage: StageName) -> dict[str, Any] | None:
        return self._checkpoints.get(replica)

    def checkpoint_of(self, replica: str) -> dict[str, Any] | None:
        return self._checkpoints.get(replica)

    def effect(self, stage: StageName, order_id: str) -> RecordedEffect | None:
        return self._effects.get((stage, order_id))

    def effects(self, stage: StageName, order_ids: Sequence[str]) -> dict[str, RecordedEffect]:
        return {order_id: found for order_id in order_ids if (found := self._effects.get((stage, order_id)))}

    def record_effects(
        self,
        replica: str,
        stage: StageName,
        results: list[StageResult],
        checkpoint: dict[str, Any],
        claims: Mapping[str, Claim] | None = None,
    ) -> None:
        for result in results:
            if (result.stage, result.order_id) in self._effects:
                raise DuplicateEffect(f"{result.stage} already recorded an effect for order {result.order_id}")
        self._grant(claims or {})
        for result in results:
            self._effects[(result.stage, result.order_id)] = RecordedEffect(
                result.stage, result.order_id, result.replica, result, False, None
            )
        self._checkpoints[replica] = checkpoint

    def record_compensation(
        self,
        stage: StageName,
        order_id: str,
        replica: str,
        done: str | None,
        checkpoint: dict[str, Any],
        release: Claim | None = None,
    ) -> None:
        recorded = self._effects.get((stage, order_id))
        if recorded is None or not recorded.compensated:
            if recorded is not None and release is not None:
                for lot, quantity in release.takes.items():
                    self._stock[lot] = self._stock.get(lot, 0) + quantity
                for certificate in release.holds:
                    if self._holds.get(certificate) == order_id:
                        del self._holds[certificate]
                self._voided.update(release.numbers)
            result = recorded.result if recorded else None
            self._effects[(stage, order_id)] = RecordedEffect(stage, order_id, replica, result, True, done)
        self._checkpoints[replica] = checkpoint

    def live_effects(self, replica: str) -> Iterator[StageResult]:
        for recorded in self._effects.values():
            result = recorded.result
            if recorded.replica == replica and not recorded.compensated and result and result.status is StageStatus.OK:
                yield result

    # -- the workshop ----------------------------------------------------------------------------

    def available(self, lots: Collection[str]) -> dict[str, int]:
        return {lot: self._stock.get(lot, 0) for lot in lots}

    def holder(self, certificate: str) -> str | None:
        return self._holds.get(certificate)

    def holders(self, certificates: Collection[str]) -> dict[str, str]:
        return {c: self._holds[c] for c in certificates if c in self._holds}

    def next_number(self, sequence: str) -> int:
        return next(self._counters.setdefault(sequence, itertools.count(1)))

    def seed_stock(self, stock: Mapping[str, int]) -> None:
        for lot, quantity in stock.items():
            if lot not in self._changes:
                self._stock[lot] = quantity
                self._changes[lot] = quantity

    def restock(self, lot: str, quantity: int, reason: str) -> int:
        self._stock[lot] = self._stock.get(lot, 0) + quantity
        self._changes[lot] = self._changes.get(lot, 0) + quantity
        return self._stock[lot]

    def inventory(self) -> dict[str, int]:
        return dict(sorted(self._stock.items()))

    def stock_changes(self) -> dict[str, int]:
        return dict(sorted(self._changes.items()))

    def certificates_held(self) -> dict[str, str]:
        return dict(self._holds)

    def voided_numbers(self, sequence: str) -> set[int]:
        return {number for name, number in self._voided if name == sequence}

    def _grant(self, claims: Mapping[str, Claim]) -> None:
        """All of a batch's claims or none of them."""
        needed: dict[str, int] = {}
        for order_id, claim in claims.items():
            for lot, quantity in claim.takes.items():
                needed[lot] = needed.get(lot, 0) + quantity
                if self._stock.get(lot, 0) < needed[lot]:
                    raise ClaimRefused(order_id, f"{lot} has less than {quantity} left")
            for certificate in claim.holds:
                if self._holds.get(certificate, order_id) != order_id:
                    raise ClaimRefused(order_id, f"certificate {certificate} is held by another order")
        for order_id, claim in claims.items():
            for lot, quantity in claim.takes.items():
                self._stock[lot] -= quantity
            for certificate in claim.holds:
                self._holds[certificate] = order_id

    def close(self) -> None:
        pass
