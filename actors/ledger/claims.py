"""What an effect takes from the one shared workshop, and how the stores settle it.

Replicas of a stage are workers in one workshop, not partitions of it: stock, the certificate
register and the number counters live in the store, and an effect's claim on them commits in the
same transaction as the effect. A replica decides from what the store says (`WorkshopView`);
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

    def shortages(self, needs: Mapping[str, int]) -> dict[str, int]:
        """The lots of `needs` that the whole workshop cannot cover now, each with what it holds (0 for
        a lot never stocked); empty when every need can be met."""

    def holder(self, certificate: str) -> str | None:
        """The live order holding a certificate, anywhere in the workshop."""

    def next_number(self, sequence: str) -> int:
        """A number of the sequence that no replica, restart or machine has issued or will issue."""


class WorkshopStore(Protocol):
    """The workshop as a store keeps it: what a view reads, stock set-up, restocking, the audit."""

    def available(self, lots: Collection[str]) -> dict[str, int]:
        """Quantity of each lot left in the whole workshop (0 for a lot never stocked), read at once."""

    def holder(self, certificate: str) -> str | None:
        """The live order holding a certificate, anywhere in the workshop."""

    def holders(self, certificates: Collection[str]) -> dict[str, str]:
        """`holder` for several certificates in one read: the held ones, with their orders."""

    def next_number(self, sequence: str) -> int:
        """A number of the sequence that no replica, restart or machine has issued or will issue."""

    def seed_stock(self, stock: Mapping[str, int]) -> None:
        """Put lots never stocked before into the workshop (stock is set up once per ledger)."""

    def restock(self, lot: str, quantity: int, reason: str) -> int:
        """Add to a lot (recorded as a stock change); returns what the lot then holds."""

    def inventory(self) -> dict[str, int]:
        """Every lot and what it holds now."""

    def stock_changes(self) -> dict[str, int]:
        """Per lot, the sum of every recorded change: initial stock plus restocks."""


class PendingClaims:
    """The view a replica decides a batch through: it counts what earlier orders of the same, not yet
    committed, batch claimed, so that a batch never promises one piece twice.

    Stock is read once per batch (the whole inventory, one query), not once per order: at zero wait
    that read was a round trip per order on PostgreSQL. A snapshot can only be stale in two ways. It
    may show stock another replica has taken since: the commit refuses that claim, and the replica
    decides again. Or it may miss stock given back or added since, so a shortage is never declared
    from it: the lots short in the snapshot are read again, and only what is short now is reported.
    """

    def __init__(self, store: WorkshopStore) -> None:
        self._store = store
        self._stock: dict[str, int] | None = None  # the batch's snapshot, read on first use
        self._taken: dict[str, int] = {}
        self._held: dict[str, str] = {}
        self._free: set[str] = set()  # certificates no order held when the batch began

    def look_up(self, certificates: Collection[str]) -> None:
        """Read whether the batch's certificates are held, in one read, not one per order. A
        certificate free then is taken to be free (the commit arbitrates, as for stock); one held
        then is asked about again when an order needs it, so an order is never declined from it."""
        wanted = set(certificates)
        self._free = wanted - set(self._store.holders(wanted)) if wanted else set()

    def add(self, order_id: str, claim: Claim) -> None:
        for lot, quantity in claim.takes.items():
            self._taken[lot] = self._taken.get(lot, 0) + quantity
        for certificate in claim.holds:
            self._held[certificate] = order_id

    def clear(self) -> None:
        """Forget the batch: its claims and its snapshot (the next batch reads the store again)."""
        self._stock = None
        self._taken.clear()
        self._held.clear()
        self._free.clear()

    def shortages(self, needs: Mapping[str, int]) -> dict[str, int]:
        if self._stock is None:
            self._stock = self._store.inventory()
        short = self._short(needs, self._stock)
        if short:
            self._stock.update(self._store.available(short))
            short = self._short(needs, self._stock)
        return short

    def _short(self, needs: Mapping[str, int], stock: Mapping[str, int]) -> dict[str, int]:
        left = {lot: stock.get(lot, 0) - self._taken.get(lot, 0) for lot in needs}
        return {lot: left[lot] for lot, quantity in needs.items() if left[lot] < quantity}

    def holder(self, certificate: str) -> str | None:
        if (held := self._held.get(certificate)) is not None:
            return held
        return None if certificate in self._free else self._store.holder(certificate)

    def next_number(self, sequence: str) -> int:
        return self._store.next_number(sequence)
