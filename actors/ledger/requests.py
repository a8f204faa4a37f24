"""What the ledger keeps of orders accepted over HTTP: each client's idempotency keys with the answer
given, and each accepted order whole, until it has its outcome.

Both are written in the transaction that accepts the orders, together with the run's admission: an
answer is never given for an order the ledger does not hold, and an order the ledger holds is never
lost to a restart (a Producer that starts serving takes up every accepted order that has no outcome
yet). The front door reads an order's progress from here alone, so any of its replicas can answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from actors.errors import FanoutError
from actors.ledger.store_access import StoreAccess
from actors.models.submissions import OrderProgress, StageEffect, StoredRequest


class KeyTaken(FanoutError):
    """Another request holds one of the keys: the caller reads the key's answer again."""


class AcceptedRequest(NamedTuple):
    idempotency_key: str
    body_hash: str
    order_id: str
    order_json: str
    status: str
    not_before: float | None = None  # a scheduled order: kept until it is due, in the same transaction


class RequestLedger(StoreAccess):
    """The mixin `SqlLedger` takes this from."""

    def stored_requests(self, client: str, keys: Sequence[str]) -> dict[str, StoredRequest]:
        """The keys' first accepted requests, by key."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._read(
            "SELECT idempotency_key, body_hash, answer FROM http_requests "
            f"WHERE client = ? AND idempotency_key IN ({marks})",
            (client, *keys),
        )
        return {key: StoredRequest(body_hash=body_hash, **json.loads(answer)) for key, body_hash, answer in rows}

    def accept_requests(self, run_id: str, client: str, accepted: Sequence[AcceptedRequest]) -> None:
        """Record the keys with their answers, the orders whole, and the run's admission of them, in
        one transaction. Raises `KeyTaken` (nothing recorded) if another order holds one of the keys.
        Harmless when the store runs the body again: what this call wrote is recognised by order id."""
        if not accepted:
            return
        now = time.time()
        keys = [request.idempotency_key for request in accepted]
        marks = ",".join("?" * len(keys))

        def body(db: Any) -> None:
            for request in accepted:
                answer = json.dumps({"order_id": request.order_id, "status": request.status})
                db.execute(
                    "INSERT INTO http_requests (client, idempotency_key, body_hash, order_id, answer, created_at) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (client, request.idempotency_key, request.body_hash, request.order_id, answer, now),
                )
            holders = dict(
                db.execute(
                    "SELECT idempotency_key, order_id FROM http_requests "
                    f"WHERE client = ? AND idempotency_key IN ({marks})",
                    (client, *keys),
                ).fetchall()
            )
            taken = [r.idempotency_key for r in accepted if holders.get(r.idempotency_key) != r.order_id]
            if taken:
                raise KeyTaken(f"idempotency key(s) held by other orders: {', '.join(taken)}")
            db.executemany(
                "INSERT INTO accepted_orders (order_id, namespace, run_id, order_json, accepted_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                [(r.order_id, self.namespace, run_id, r.order_json, now) for r in accepted],
            )
            db.executemany(
                "INSERT INTO run_orders (run_id, order_id, admitted_at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                [(run_id, r.order_id, now) for r in accepted],
            )
            if scheduled := [r for r in accepted if r.not_before is not None]:
                db.executemany(
                    "INSERT INTO scheduled_orders (order_id, namespace, run_id, not_before, order_json, scheduled_at) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    [(r.order_id, self.namespace, run_id, r.not_before, r.order_json, now) for r in scheduled],
                )

        self._write(body)

    def unfinished_accepted(self) -> list[str]:
        """The JSON of every order this system accepted over HTTP that has no outcome yet, oldest first."""
        return self.accepted_to_resume(None)

    def accepted_to_resume(self, run_id: str | None) -> list[str]:
        """What a serving run takes up when its Producer starts: every order this system accepted over
        HTTP that has no outcome yet (whichever run accepted it), and every one `run_id` accepted (a
        restarted Producer answers those already done from the ledger, so its driver counts each
        once), as JSON, oldest first."""
        rows = self._read(
            "SELECT a.order_json FROM accepted_orders a LEFT JOIN outcomes o ON o.order_id = a.order_id "
            "WHERE a.namespace = ? AND (o.order_id IS NULL OR a.run_id = ?) ORDER BY a.accepted_at",
            (self.namespace, run_id or ""),
        )
        return [row[0] for row in rows]

    def expire_requests(self, older_than_s: float) -> int:
        """Forget idempotency keys first used more than `older_than_s` ago; how many."""
        cutoff = time.time() - older_than_s
        return int(
            self._write(lambda db: db.execute("DELETE FROM http_requests WHERE created_at < ?", (cutoff,)).rowcount)
        )

    def order_progress(self, order_id: str) -> OrderProgress | None:
        """Where the order stands: its acceptance, each stage's recorded result, its outcome. None when
        the ledger knows nothing of it."""
        accepted = self._read("SELECT accepted_at FROM accepted_orders WHERE order_id = ?", (order_id,))
        scheduled = self._read("SELECT not_before, admitted_at FROM scheduled_orders WHERE order_id = ?", (order_id,))
        effects = self._read(
            "SELECT stage, status, result, recorded_at FROM effects WHERE order_id = ? ORDER BY recorded_at",
            (order_id,),
        )
        outcome = self._read("SELECT status, outcome FROM outcomes WHERE order_id = ?", (order_id,))
        if not (accepted or effects or outcome or scheduled):
            return None
        return OrderProgress(
            order_id=order_id,
            accepted_at=float(accepted[0][0]) if accepted else None,
            effects=tuple(
                StageEffect(stage=stage, status=status, result=result, recorded_at=float(at))
                for stage, status, result, at in effects
            ),
            outcome_status=outcome[0][0] if outcome else None,
            outcome=outcome[0][1] if outcome else None,
            not_before=float(scheduled[0][0]) if scheduled else None,
            admitted_at=float(scheduled[0][1]) if scheduled and scheduled[0][1] is not None else None,
        )
