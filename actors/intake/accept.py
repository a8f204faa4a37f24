"""The one rule by which a record becomes an accepted order, whatever its source (a file, generated
orders, or records submitted to a serving run).

A record is accepted when it is a valid order whose id this run has not accepted already, and
which the ledger does not know with other details. An id the ledger knows with the same details is
accepted together with its recorded outcome: the run answers it from the ledger (that is how a run
resumes) instead of doing it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from actors.ledger import SqlLedger
from actors.models import FieldError, JewelryOrder, OrderOutcome, RejectedRecord


@dataclass(frozen=True)
class Accepted:
    order: JewelryOrder
    recorded: OrderOutcome | None  # its outcome in the ledger, if it has one already


class Acceptance:
    def __init__(self, ledger: SqlLedger | None) -> None:
        self._ledger = ledger
        self._seen: dict[str, str] = {}  # accepted order id -> where it was first accepted
        self._ahead: dict[str, OrderOutcome | None] = {}  # the ledger's answers for records about to come

    def look_ahead(self, records: Iterable[JewelryOrder | RejectedRecord]) -> None:
        """Read what the ledger has for the next records in one query, not one per record (on
        PostgreSQL, a round trip per order was the Producer's largest cost at zero wait). May raise
        `LedgerUnavailable`, like `accept`."""
        if self._ledger is None:
            return
        ids = [r.order_id for r in records if isinstance(r, JewelryOrder) and r.order_id not in self._seen]
        found = self._ledger.outcomes(ids) if ids else {}
        self._ahead = {order_id: found.get(order_id) for order_id in ids}

    def accept(
        self, record: JewelryOrder | RejectedRecord, source: str, line: int, raw: object = None
    ) -> Accepted | RejectedRecord:
        """The accepted order, or the record rejected with the field and the reason. May raise
        `LedgerUnavailable` (the store's retries spent): nothing is decided about the record then."""
        if isinstance(record, RejectedRecord):
            return record
        first = self._seen.get(record.order_id)
        if first is not None:
            return _rejected(record, source, line, raw, f"already accepted in this run ({first})")
        recorded = self._recorded(record.order_id)
        if recorded is not None and recorded.order is not None and recorded.order != record:
            return _rejected(
                record,
                source,
                line,
                raw,
                f"the ledger already has order {record.order_id} with other details ({recorded.status}); "
                f"use a new order id, or a new ledger (--out/--ledger)",
            )
        self._seen[record.order_id] = f"{source} line {line}"
        return Accepted(record, recorded)

    def forget(self, order_id: str) -> None:
        """Undo the acceptance of an order that was not recorded after all (its transaction failed):
        the same order may come again."""
        self._seen.pop(order_id, None)

    def _recorded(self, order_id: str) -> OrderOutcome | None:
        """The ledger's outcome for an order. An answer read ahead stays true until the next look-ahead:
        the ledger only gets an outcome for an id this run accepted, and a second record with an
        accepted id is refused before it is looked up."""
        if self._ledger is None:
            return None
        if order_id in self._ahead:
            return self._ahead[order_id]
        return self._ledger.outcome(order_id)


def _rejected(order: JewelryOrder, source: str, line: int, raw: object, reason: str) -> RejectedRecord:
    """Kept whole: the record as it came (`raw`), or else the order as parsed."""
    return RejectedRecord(
        source=source,
        line=line,
        order_id=order.order_id,
        raw=raw if raw is not None else order.model_dump(mode="json"),
        errors=(FieldError(field="order_id", reason=reason),),
    )
