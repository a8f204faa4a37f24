"""The front door's way into the serving system: the Producer by name for orders, the ledger for
everything read, so that any front door replica answers a GET without a call to an actor.

A handle whose actor died is looked up again on the next call; until the actor is back, a call is
answered 503 with Retry-After, and the client's retry under the same key is safe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict

from actors.errors import FanoutError, describe_error
from actors.ledger import LedgerSpec, SqlLedger, open_ledger
from actors.ledger.schedule import Cancelled, Scheduled
from actors.models.submissions import OrderProgress, Submission, SubmissionAnswer
from orchestration.http.api import Unavailable
from orchestration.trace import UnknownOrder, trace_order
from orchestration.wiring import dispatcher_name

READY_TIMEOUT_S = 2.0


class FrontDoorConfig(BaseModel):
    """What a front door replica needs to find the system, as it travels to the replica."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    ledger: LedgerSpec
    dispatchers: int
    log_level: str | None = None


class RayBackend:
    def __init__(self, config: FrontDoorConfig) -> None:
        self._config = config
        self._producer: Any = None
        self._ledger: SqlLedger | None = None

    async def accept(self, submissions: list[Submission]) -> list[SubmissionAnswer]:
        answers: list[SubmissionAnswer] = await self._producer_call("accept_orders", submissions)
        return answers

    async def cancel(self, order_id: str) -> Cancelled:
        result: Cancelled = await self._producer_call("cancel_order", order_id)
        return result

    async def _producer_call(self, method: str, *args: Any) -> Any:
        """A call to the Producer; its own refusals (NotServing, LedgerUnavailable) are raised as such."""
        producer = self._producer_handle()
        try:
            return await getattr(producer, method).remote(*args)
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, FanoutError):
                raise error.cause from None
            raise
        except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError) as error:
            self._producer = None  # looked up again on the next call
            raise Unavailable(f"the Producer is restarting: {describe_error(error)}") from error

    async def scheduled(self, limit: int, after: tuple[float, str] | None) -> list[Scheduled]:
        return await asyncio.to_thread(self._store().waiting_scheduled, limit, after)

    async def progress(self, order_id: str) -> OrderProgress | None:
        return await asyncio.to_thread(self._store().order_progress, order_id)

    async def trace(self, order_id: str) -> dict[str, Any] | None:
        try:
            trace = await asyncio.to_thread(trace_order, self._store(), order_id)
        except UnknownOrder:
            return None
        return trace.model_dump(mode="json")

    async def readiness(self) -> dict[str, str]:
        names = ["producer", *(dispatcher_name(i) for i in range(self._config.dispatchers))]
        parts = {}
        for name in names:
            try:
                handle: Any = ray.get_actor(name, namespace=self._config.namespace)
                ref = handle.describe.remote() if name == "producer" else handle.stats.remote()
                await asyncio.wait_for(asyncio.wrap_future(ref.future()), READY_TIMEOUT_S)
                parts[name] = "ok"
            except Exception as error:  # noqa: BLE001 - any failure is "not ready", reported by name
                parts[name] = describe_error(error) if str(error) else "no answer"
        return parts

    def _producer_handle(self) -> Any:
        if self._producer is None:
            try:
                self._producer = ray.get_actor("producer", namespace=self._config.namespace)
            except ValueError as error:
                raise Unavailable(f"no Producer in namespace {self._config.namespace}: is the system up?") from error
        return self._producer

    def _store(self) -> SqlLedger:
        if self._ledger is None:
            self._ledger = open_ledger(self._config.ledger)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
