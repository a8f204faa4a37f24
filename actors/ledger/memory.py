"""The journal of a stage without a ledger: the same rules as the SQL stores, kept in memory.

It keeps a replica idempotent and its compensations single for as long as the process lives, and
holds a workshop (stock, certificate register, counters) that only this process sees. Unit tests
use it; runs without a ledger give the replicas that share a workshop a scratch SQLite store
instead (see `FanoutSettings.ledger_spec`), because memory is one replica's, not the pool's.

It passes the same contract tests as SQLite and PostgreSQL (tests/unit/test_ledger.py), so a rule
it kept more loosely would fail a test rather than hide a bug: a batch commits whole or not at all,
a certificate has one holder even within one batch, and an older incarnation of a replica is
fenced off once a newer one has claimed it. `MemoryStore` is what a store holds; each
`MemoryJournal` opened on it is one connection, as each replica opens its own on a SQL store.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from actors.errors import ClaimRefused, DuplicateEffect, Superseded
from actors.ledger.claims import Claim
from actors.ledger.journal import RecordedEffect
from actors.ledger.sql import DEFAULT_NAMESPACE
from actors.models import StageName, StageResult, StageStatus


class MemoryStore:
    """The data of one in-memory store, shared by every journal opened on it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # replicas of a test may write from several threads
        self.effects: dict[tuple[StageName, str], RecordedEffect] = {}
        self.owners: dict[tuple[StageName, str], str] = {}  # the namespace whose replica made each effect
        # Per (namespace, replica), as the SQL stores key them: several systems may share a store.
        self.checkpoints: dict[tuple[str, str], str] = {}  # its state, as JSON (as the SQL stores keep it)
        self.generations: dict[tuple[str, str], int] = {}  # its newest incarnation
        self.stock: dict[str, int] = {}
        self.changes: dict[str, int] = {}
        self.seeded: set[str] = set()  # lots given their initial stock (once per store, as SQL's change ids)
        self.holds: dict[str, str] = {}
        self.counters: dict[str, itertools.count[int]] = {}
        self.voided: set[tuple[str, int]] = set()


class MemoryJournal:
    def __init__(self, store: MemoryStore | None = None, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._store = store or MemoryStore()
        self.namespace = namespace
        self._generation: dict[str, int] = {}  # replica -> the incarnation this connection writes as

    def take_over(self, replica: str, stage: StageName) -> dict[str, Any] | None:
        with self._store.lock:
            key = (self.namespace, replica)
            generation = self._store.generations.get(key, 0) + 1
            self._store.generations[key] = generation
            self._generation[replica] = generation
            return self.checkpoint_of(replica)

    def checkpoint_of(self, replica: str) -> dict[str, Any] | None:
        saved = self._store.checkpoints.get((self.namespace, replica))
        return json.loads(saved) if saved else None

    def effect(self, stage: StageName, order_id: str) -> RecordedEffect | None:
        return self._store.effects.get((stage, order_id))

    def effects(self, stage: StageName, order_ids: Sequence[str]) -> dict[str, RecordedEffect]:
        found = self._store.effects
        return {order_id: effect for order_id in order_ids if (effect := found.get((stage, order_id)))}

    def effects_of(self, stage: StageName) -> list[RecordedEffect]:
        """Every recorded effect of a stage (audits and tests), as `SqlLedger.effects_of`."""
        return [effect for (of, _), effect in self._store.effects.items() if of is stage]

    def record_effects(
        self,
        replica: str,
        stage: StageName,
        results: list[StageResult],
        checkpoint: dict[str, Any],
        claims: Mapping[str, Claim] | None = None,
    ) -> None:
        """All of it or none of it, checked in the order the SQL stores check: a duplicate effect, then
        the claims, then the fence."""
        store = self._store
        with store.lock:
            keys = [(result.stage, result.order_id) for result in results]
            if len(set(keys)) < len(keys) or any(key in store.effects for key in keys):
                raise DuplicateEffect(f"{stage}: an effect of this batch was recorded already")
            takes, holds = self._grantable(claims or {})
            self._fenced(replica)
            for (_, order_id), result in zip(keys, results, strict=True):
                store.effects[(stage, order_id)] = RecordedEffect(stage, order_id, result.replica, result, False, None)
                store.owners[(stage, order_id)] = self.namespace
            for lot, quantity in takes.items():
                store.stock[lot] -= quantity
            store.holds.update(holds)
            store.checkpoints[(self.namespace, replica)] = json.dumps(checkpoint)

    def record_compensation(
        self,
        stage: StageName,
        order_id: str,
        replica: str,
        done: str | None,
        checkpoint: dict[str, Any],
        release: Claim | None = None,
    ) -> None:
        store = self._store
        with store.lock:
            self._fenced(replica)
            recorded = store.effects.get((stage, order_id))
            if recorded is None:  # a tombstone: the stage never ran for the order
                store.effects[(stage, order_id)] = RecordedEffect(stage, order_id, replica, None, True, done)
                store.owners[(stage, order_id)] = self.namespace
            elif not recorded.compensated:
                if release is not None:
                    for lot, quantity in release.takes.items():
                        store.stock[lot] = store.stock.get(lot, 0) + quantity
                    for certificate in release.holds:
                        if store.holds.get(certificate) == order_id:
                            del store.holds[certificate]
                    store.voided.update(release.numbers)
                store.effects[(stage, order_id)] = RecordedEffect(
                    stage, order_id, recorded.replica, recorded.result, True, done
                )
            store.checkpoints[(self.namespace, replica)] = json.dumps(checkpoint)

    def live_effects(self, replica: str) -> Iterator[StageResult]:
        owners = self._store.owners
        for key, recorded in list(self._store.effects.items()):
            result = recorded.result
            mine = recorded.replica == replica and owners.get(key) == self.namespace
            if mine and not recorded.compensated and result and result.status is StageStatus.OK:
                yield result

    # -- the workshop ----------------------------------------------------------------------------

    def available(self, lots: Collection[str]) -> dict[str, int]:
        return {lot: self._store.stock.get(lot, 0) for lot in lots}

    def holder(self, certificate: str) -> str | None:
        return self._store.holds.get(certificate)

    def holders(self, certificates: Collection[str]) -> dict[str, str]:
        holds = self._store.holds
        return {c: holds[c] for c in certificates if c in holds}

    def next_number(self, sequence: str) -> int:
        with self._store.lock:
            return next(self._store.counters.setdefault(sequence, itertools.count(1)))

    def seed_stock(self, stock: Mapping[str, int]) -> None:
        with self._store.lock:
            for lot, quantity in stock.items():
                if lot not in self._store.seeded:
                    self._store.seeded.add(lot)
                    self._store.stock[lot] = self._store.stock.get(lot, 0) + quantity
                    self._store.changes[lot] = self._store.changes.get(lot, 0) + quantity

    def restock(self, lot: str, quantity: int, reason: str) -> int:
        if quantity <= 0:
            raise ValueError(f"restock {lot}: the quantity must be positive, got {quantity}")
        with self._store.lock:
            self._store.stock[lot] = self._store.stock.get(lot, 0) + quantity
            self._store.changes[lot] = self._store.changes.get(lot, 0) + quantity
            return self._store.stock[lot]

    def inventory(self) -> dict[str, int]:
        return dict(sorted(self._store.stock.items()))

    def stock_changes(self) -> dict[str, int]:
        return dict(sorted(self._store.changes.items()))

    def certificates_held(self) -> dict[str, str]:
        return dict(self._store.holds)

    def voided_numbers(self, sequence: str) -> set[int]:
        return {number for name, number in self._store.voided if name == sequence}

    def _grantable(self, claims: Mapping[str, Claim]) -> tuple[dict[str, int], dict[str, str]]:
        """A batch's takes summed per lot and its certificate holds, or `ClaimRefused` if the workshop
        cannot grant all of them: a lot short, or a certificate held by another order, in the store or
        by another order of the same batch."""
        takes: dict[str, int] = {}
        holds: dict[str, str] = {}
        for order_id, claim in claims.items():
            for lot, quantity in claim.takes.items():
                takes[lot] = takes.get(lot, 0) + quantity
                if self._store.stock.get(lot, 0) < takes[lot]:
                    raise ClaimRefused(order_id, f"{lot} has less than {quantity} left")
            for certificate in claim.holds:
                holder = holds.get(certificate) or self._store.holds.get(certificate)
                if holder not in (None, order_id):
                    raise ClaimRefused(order_id, f"certificate {certificate} is held by order {holder}")
                holds[certificate] = order_id
        return takes, holds

    def _fenced(self, replica: str) -> None:
        """Write the replica's state only as its newest incarnation, as the SQL stores do."""
        generation = self._generation.get(replica)
        if generation is None:
            raise Superseded(f"{replica}: this connection never claimed the replica")
        if generation != self._store.generations.get((self.namespace, replica)):
            raise Superseded(f"{replica}: a newer incarnation has taken over; this one ({generation}) stops writing")

    def close(self) -> None:
        pass
