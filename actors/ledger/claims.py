"""What an effect takes from the one shared workshop, and how the stores settle it.

Replicas of a stage are workers in one workshop, not partitions of it: stock, the certificate
register and the number counters live in the store, and an effect's claim on them commits in the
same transaction as the effect. A replica decides from what the store says now (`WorkshopView`);
the commit is the arbiter. If another replica took the last piece meanwhile, the commit refuses
(`ClaimRefused`), nothing of the batch is committed, and the replica decides again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Claim:
    """One order's claim on shared state: quantities taken per lot (integer units), certificates held,
    and the numbers issued to it as (sequence, number), which a compensation records as voided."""

    takes: Mapping[str, int] = field(default_factory=dict)
    holds: tuple[str, ...] = ()
    numbers: tuple[tuple[str, int], ...] = ()


class WorkshopView(Protocol):
    """The shared workshop as a replica reads it while it decides."""

    def available(self, lots: Collection[str]) -> dict[str, int]:
        """Quantity of each lot left in the whole workshop (0 for a lot never stocked), read at once."""

    def holder(self, certificate: str) -> str | None:
        """The live order holding a certificate, anywhere in the workshop."""

    def next_number(self, sequence: str) -> int:
        """A number of the sequence that no replica, restart or machine has issued or will issue."""


class WorkshopStore(WorkshopView, Protocol):
    """What a store keeps of the workshop beyond a view: stock set-up, restocking, the audit."""

    def seed_stock(self, stock: Mapping[str, int]) -> None:
        """Put lots never stocked before into the workshop (stock is set up once per ledger)."""

    def restock(self, lot: str, quantity: int, reason: str) -> int:
        """Add to a lot (recorded as a stock change); returns what the lot then holds."""

    def inventory(self) -> dict[str, int]:
        """Every lot and what it holds now."""

    def stock_changes(self) -> dict[str, int]:
        """Per lot, the sum of every recorded change: initial stock plus restocks."""


class PendingClaims:
    """A view that counts what earlier orders of the same, not yet committed, batch claimed, so that
    a batch never promises one piece twice."""

    def __init__(self, store: WorkshopView) -> None:
        self._store = store
        self._taken: dict[str, int] = {}
        self._held: dict[str, str] = {}

    def add(self, order_id: str, claim: Claim) -> None:
        for lot, quantity in claim.takes.items():
            self._taken[lot] = self._taken.get(lot, 0) + quantity
        for certificate in claim.holds:
            self._held[certificate] = order_id

    def clear(self) -> None:
        self._taken.clear()
        self._held.clear()

    def available(self, lots: Collection[str]) -> dict[str, int]:
        return {lot: left - self._taken.get(lot, 0) for lot, left in self._store.available(lots).items()}

    def holder(self, certificate: str) -> str | None:
        return self._held.get(certificate) or self._store.holder(certificate)

    def next_number(self, sequence: str) -> int:
        return self._store.next_number(sequence)
