"""What the ledger keeps of scheduled orders (`not_before`): each one whole, when it is due, and the
one moment it was admitted or cancelled.

The ledger, not an actor's memory, is the schedule: a Producer that starts (after its own restart,
or the whole system's) reads what is due from here, and its timer is only a cache of it. Admission
and cancellation are each one conditional update of the same row, so whichever comes first wins
and the other is told: an order is never started early (`admit` refuses before `not_before`),
never started twice (a second `admit` returns the first one's time), and never started once
cancelled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from actors.ledger.store_access import StoreAccess


class Scheduled(NamedTuple):
    order_id: str
    not_before: float  # epoch seconds
    order_json: str
    admitted_at: float | None
    cancelled_at: float | None

    def view(self) -> dict[str, Any]:
        """A waiting order as `GET /v1/orders?status=scheduled` and `jewelry-fanout scheduled` show it."""
        return {
            "order_id": self.order_id,
            "status": "scheduled",
            "not_before": datetime.fromtimestamp(self.not_before, UTC).isoformat(),
            "order": json.loads(self.order_json),
        }


class Cancelled(StrEnum):
    CANCELLED = "cancelled"  # it was waiting: it never starts
    ALREADY = "already"  # cancelled before: the same answer again
    STARTED = "started"  # it was admitted already, or is an order that was never scheduled: too late
    UNKNOWN = "unknown"  # the ledger has no such order


class ScheduleLedger(StoreAccess):
    """The mixin `SqlLedger` takes this from."""

    def schedule(self, run_id: str, orders: Sequence[tuple[str, float, str]], db: Any = None) -> None:
        """Keep these (order id, not_before, order JSON) until they are due; one already kept stays
        as it is. Inside the caller's transaction when `db` is given."""
        if not orders:
            return
        rows = [(order_id, self.namespace, run_id, due, text, time.time()) for order_id, due, text in orders]

        def body(db: Any) -> None:
            db.executemany(
                "INSERT INTO scheduled_orders (order_id, namespace, run_id, not_before, order_json, scheduled_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                rows,
            )

        if db is not None:
            body(db)
        else:
            self._write(body)

    def scheduled_states(self, order_ids: Sequence[str]) -> dict[str, Scheduled]:
        if not order_ids:
            return {}
        rows = self._read(
            "SELECT order_id, not_before, order_json, admitted_at, cancelled_at FROM scheduled_orders "
            f"WHERE order_id IN ({','.join('?' * len(order_ids))})",
            tuple(order_ids),
        )
        return {row[0]: Scheduled(*row) for row in rows}

    def admit_scheduled(self, order_id: str, now: float | None = None) -> Scheduled | None:
        """Admit the order if it is due and was neither admitted nor cancelled. Its row after that:
        `admitted_at` is when it was admitted (now, or by an earlier Producer); none with
        `cancelled_at` set means cancelled, none with neither means not due yet. None: no such order."""
        at = time.time() if now is None else now

        def body(db: Any) -> Scheduled | None:
            db.execute(
                "UPDATE scheduled_orders SET admitted_at = ? WHERE order_id = ? AND admitted_at IS NULL "
                "AND cancelled_at IS NULL AND not_before <= ?",
                (at, order_id, at),
            )
            row = db.execute(
                "SELECT order_id, not_before, order_json, admitted_at, cancelled_at FROM scheduled_orders "
                "WHERE order_id = ?",
                (order_id,),
            ).fetchone()
            return Scheduled(*row) if row is not None else None

        return self._write(body)

    def cancel_scheduled(self, order_id: str, outcome: Callable[[Scheduled], tuple[str, str]]) -> Cancelled:
        """Cancel the order if it has not been admitted, recording its outcome (`outcome` gives its
        status and JSON line) in the same transaction."""
        now = time.time()

        def body(db: Any) -> Cancelled:
            row = db.execute(
                "SELECT order_id, not_before, order_json, admitted_at, cancelled_at FROM scheduled_orders "
                "WHERE order_id = ? AND namespace = ?",
                (order_id, self.namespace),
            ).fetchone()
            if row is None:  # not scheduled: an order the system has is under way or done, too late
                known = db.execute(
                    "SELECT 1 FROM outcomes WHERE order_id = ? UNION SELECT 1 FROM run_orders WHERE order_id = ?",
                    (order_id, order_id),
                ).fetchone()
                return Cancelled.STARTED if known else Cancelled.UNKNOWN
            found = Scheduled(*row)
            if found.cancelled_at is not None:
                return Cancelled.ALREADY
            if found.admitted_at is not None:
                return Cancelled.STARTED
            db.execute("UPDATE scheduled_orders SET cancelled_at = ? WHERE order_id = ?", (now, order_id))
            status, line = outcome(found._replace(cancelled_at=now))
            db.execute(
                "INSERT INTO outcomes (order_id, status, outcome, recorded_at) VALUES (?,?,?,?) "
                "ON CONFLICT (order_id) DO NOTHING",
                (order_id, status, line, now),
            )
            return Cancelled.CANCELLED

        return self._write(body)

    def scheduled_to_resume(self) -> list[str]:
        """The JSON of every scheduled order of this system that is not cancelled and has no outcome
        (waiting, or admitted by a Producer that stopped before it concluded), soonest first: what a
        serving run takes up when it starts."""
        rows = self._read(
            "SELECT s.order_json FROM scheduled_orders s LEFT JOIN outcomes o ON o.order_id = s.order_id "
            "WHERE s.namespace = ? AND s.cancelled_at IS NULL AND o.order_id IS NULL ORDER BY s.not_before",
            (self.namespace,),
        )
        return [row[0] for row in rows]

    def waiting_scheduled(self, limit: int = 100, after: tuple[float, str] | None = None) -> list[Scheduled]:
        """Scheduled orders neither admitted nor cancelled, soonest first, after the cursor (its
        not_before and order id) when one is given."""
        since, last = after if after is not None else (float("-inf"), "")
        return [
            Scheduled(*row)
            for row in self._read(
                "SELECT order_id, not_before, order_json, admitted_at, cancelled_at FROM scheduled_orders "
                "WHERE namespace = ? AND admitted_at IS NULL AND cancelled_at IS NULL "
                "AND (not_before > ? OR (not_before = ? AND order_id > ?)) ORDER BY not_before, order_id LIMIT ?",
                (self.namespace, since, since, last, limit),
            )
        ]
