"""A replica's exactly-once record of its effects: each effect is committed with the replica's state
after it and its claims on the shared workshop, in one transaction, before its result is returned.

Memory never holds an effect the store does not: when a write fails, or a call fails part-way, the
replica's state goes back to its last commit (now, or before its next call if the store cannot be
read now). A new incarnation of the replica fences off any older one still running and comes back
from the same last commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loguru import logger

from actors.ledger import Claim, PendingClaims, RecordedEffect, StageJournal
from actors.models import StageName, StageResult

# The replica's whole state as the store keeps it, and how it is taken back.
Save = Callable[[], dict[str, Any]]
Load = Callable[[dict[str, Any]], None]


class EffectLog:
    def __init__(self, journal: StageJournal, replica: str, stage: StageName, save: Save, load: Load) -> None:
        self.journal = journal
        self._replica, self._stage = replica, stage
        self._save, self._load = save, load
        self.log = logger.bind(stage=stage.value, replica=replica)
        # What the stage's logic reads the shared workshop through: the store's truth, less what
        # earlier orders of the batch being decided have claimed.
        self.pending = PendingClaims(journal)
        self._initial: dict[str, Any] | None = None
        # Set while memory may be ahead of the last commit (a write failed, or a call failed part-way
        # through a batch) and has not been put back yet, e.g. because the store was unreachable: it is
        # put back before the next order, compensation or snapshot.
        self.unsynced = False

    def take_over(self, stock: dict[str, int]) -> dict[str, Any] | None:
        """Become the replica's live incarnation: the state it starts from is kept (a replica that
        never committed goes back to it), the workshop's lots are seeded once per ledger, and the
        last committed state is returned, if any."""
        self._initial = self._save()
        if stock:
            self.journal.seed_stock(stock)  # lots already stocked keep what they hold
        return self.journal.take_over(self._replica, self._stage)

    def resync(self) -> None:
        """Back to the last commit, if a failed write left memory ahead of it (under the state lock)."""
        if self.unsynced:
            self._load(self.journal.checkpoint_of(self._replica) or self._initial or {})
            self.unsynced = False

    def commit(self, write: Callable[[], None]) -> None:
        """Run a journal write; if it fails, memory goes back to the last commit, so that this replica
        never holds an effect the ledger does not. The caller then sees the error."""
        try:
            write()
        except BaseException:
            self.unsynced = True
            try:
                self.resync()
            except Exception as error:  # noqa: BLE001 - the write's error is the one to report
                self.log.warning(
                    "memory not yet back at the last commit ({}: {}); it will be before the next call",
                    type(error).__name__,
                    error,
                )
            raise

    def known(self, order_ids: Sequence[str]) -> dict[str, RecordedEffect]:
        """The effects recorded for these orders, by any replica, in one read."""
        return self.journal.effects(self._stage, order_ids)

    def recorded(self, order_id: str) -> RecordedEffect | None:
        return self.journal.effect(self._stage, order_id)

    def record(self, results: list[StageResult], claims: Mapping[str, Claim]) -> None:
        """Commit results with their claims and the state after them (raises `ClaimRefused` or
        `DuplicateEffect` with nothing committed)."""
        self.commit(lambda: self.journal.record_effects(self._replica, self._stage, results, self._save(), claims))

    def record_compensation(self, order_id: str, replica: str, note: str | None, release: Claim | None) -> None:
        self.commit(
            lambda: self.journal.record_compensation(self._stage, order_id, replica, note, self._save(), release)
        )
