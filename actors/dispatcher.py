"""The Dispatcher: fans each order out to the six stages at once and gathers the results.

It is an async actor, so many orders are in flight together (bounded by `max_in_flight`): the
six `.remote()` calls for an order are sent, then awaited with `asyncio.gather`, never with a
blocking `ray.get` that would stall every other order on the event loop. A stage that times
out, errors or dies fails its order with the reason; the other five results are kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import ray
from loguru import logger
from pydantic import BaseModel, ConfigDict

from actors.logs import configure_logging
from actors.models import STAGES, JewelryOrder, OrderOutcome, OrderStatus, StageName, StageResult, StageStatus
from actors.pool import ReplicaLoad, ReplicaPool


class DispatcherStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    in_flight: int
    waiting: int
    orders_done: int
    by_status: dict[str, int]
    stages: dict[StageName, list[ReplicaLoad]]


class Dispatcher:
    def __init__(
        self,
        pools: Mapping[StageName, Mapping[str, Any]],
        stage_timeouts_s: Mapping[StageName, float],
        max_in_flight: int = 100,
        log_level: str | None = None,
    ) -> None:
        if log_level:
            configure_logging(log_level)
        missing = set(STAGES) - set(pools)
        if missing:
            raise ValueError(f"the dispatcher needs a pool for every stage; missing {sorted(missing)}")
        self._pools = {stage: ReplicaPool(stage, dict(pools[stage])) for stage in STAGES}
        self._timeouts = dict(stage_timeouts_s)
        self._admission = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[str] = set()
        self._waiting = 0
        self._by_status = {status.value: 0 for status in OrderStatus}
        self.log = logger.bind(stage="dispatcher")
        self.log.info("ready: {}", ", ".join(f"{s}×{len(p)}" for s, p in self._pools.items()))

    async def process(self, order: JewelryOrder) -> OrderOutcome:
        """The one terminal outcome of an order: all six stages called concurrently, then fan-in."""
        if order.order_id in self._in_flight:
            return self._count(self._rejected(order, "the same order id is already in flight"))
        self._in_flight.add(order.order_id)
        try:
            self._waiting += 1
            async with self._admission:
                self._waiting -= 1
                started_at = datetime.now(UTC)
                results = await asyncio.gather(*(self._call_stage(stage, order) for stage in STAGES))
                outcome = OrderOutcome.from_results(order, list(results), started_at, datetime.now(UTC))
        finally:
            self._in_flight.discard(order.order_id)
        if outcome.status is OrderStatus.FAILED:
            self.log.bind(order_id=order.order_id).warning("failed: {}", outcome.reason)
        return self._count(outcome)

    async def stats(self) -> DispatcherStats:
        return DispatcherStats(
            in_flight=len(self._in_flight) - self._waiting,
            waiting=self._waiting,
            orders_done=sum(self._by_status.values()),
            by_status=dict(self._by_status),
            stages={stage: pool.loads() for stage, pool in self._pools.items()},
        )

    async def _call_stage(self, stage: StageName, order: JewelryOrder) -> StageResult:
        pool = self._pools[stage]
        replica = pool.acquire()
        timeout = self._timeouts.get(stage)
        started_at, clock = datetime.now(UTC), time.perf_counter()
        ref = None
        try:
            ref = replica.handle.process.remote(order)
            result: StageResult = await asyncio.wait_for(ref, timeout)
        except TimeoutError:
            if isinstance(ref, ray.ObjectRef):
                ray.cancel(ref)  # drops the call if still queued; a running call finishes on its own
            result = self._error(stage, order, replica.name, replica.node_id, started_at, f"timed out after {timeout:g} s")
        except Exception as error:  # noqa: BLE001 - a dead replica or a lost call is an error result
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
            result = self._error(stage, order, replica.name, replica.node_id, started_at, reason)
        pool.release(
            replica, time.perf_counter() - clock, error=result.status is StageStatus.ERROR, node_id=_node_of(result)
        )
        return result

    @staticmethod
    def _error(
        stage: StageName, order: JewelryOrder, replica: str, node_id: str | None, started_at: datetime, reason: str
    ) -> StageResult:
        return StageResult(
            order_id=order.order_id,
            stage=stage,
            status=StageStatus.ERROR,
            reason=reason,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            replica=replica,
            node_id=node_id or "unknown",
        )

    @staticmethod
    def _rejected(order: JewelryOrder, reason: str) -> OrderOutcome:
        now = datetime.now(UTC)
        return OrderOutcome(
            order_id=order.order_id, order=order, status=OrderStatus.REJECTED, reason=reason,
            started_at=now, finished_at=now, latency_ms=0.0,
        )

    def _count(self, outcome: OrderOutcome) -> OrderOutcome:
        self._by_status[outcome.status.value] += 1
        return outcome


def _node_of(result: StageResult) -> str | None:
    return result.node_id if result.node_id != "unknown" else None
