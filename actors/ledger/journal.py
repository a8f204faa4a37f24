"""What a stage replica needs from durable storage, whichever store provides it.

A stage's side effect is keyed by (stage, order id), not by replica: a call retried on another
replica after a crash finds the effect the first replica recorded and returns it, instead of
reserving the stock or issuing the serial a second time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actors.ledger.claims import Claim, WorkshopStore
from actors.models import StageName, StageResult

# A compensation that reached a replica before the stage ever ran for the order. It is recorded
# as a tombstone so that a call still queued behind it cannot do the work afterwards.
CANCELLED_BEFORE_RUN = "cancelled before this stage ran"


@dataclass(frozen=True)
class RecordedEffect:
    stage: StageName
    order_id: str
    replica: str
    result: StageResult | None  # None for a tombstone (compensated before it ran)
    compensated: bool
    compensation: str | None


class StageJournal(WorkshopStore, Protocol):
    def take_over(self, replica: str, stage: StageName) -> dict[str, Any] | None:
        """Become the live incarnation of the replica (fencing off any older one still running)
        and get its last committed state, or None for a replica that never committed."""

    def checkpoint_of(self, replica: str) -> dict[str, Any] | None:
        """The replica's last committed state, or None for a replica that never committed."""

    def effect(self, stage: StageName, order_id: str) -> RecordedEffect | None:
        """The recorded effect of this stage on this order, whichever replica made it."""

    def effects(self, stage: StageName, order_ids: Sequence[str]) -> dict[str, RecordedEffect]:
        """`effect` for several orders in one read, by order id (the orders with none are absent)."""

    def record_effects(
        self,
        replica: str,
        stage: StageName,
        results: list[StageResult],
        checkpoint: dict[str, Any],
        claims: Mapping[str, Claim] | None = None,
    ) -> None:
        """Commit results (none, for state alone), their claims on the shared workshop, and the
        replica's state after them, all together; commit nothing and raise `DuplicateEffect` if any
        of them was recorded already, or `ClaimRefused` if a claim cannot be granted."""

    def record_compensation(
        self,
        stage: StageName,
        order_id: str,
        replica: str,
        done: str | None,
        checkpoint: dict[str, Any],
        release: Claim | None = None,
    ) -> None:
        """Commit that the effect was undone (or a tombstone when there was none), with the state after
        it, giving back what its claim took; a compensation already committed changes nothing."""

    def live_effects(self, replica: str) -> Iterator[StageResult]:
        """Results of this replica that stand: ok and not compensated (to rebuild per-order memos)."""

    def close(self) -> None: ...
