"""The Dispatcher: fans each order out to the six stages at once and gathers the results.

It is an async actor, so many orders are in flight together (bounded by `max_in_flight`): the
six `.remote()` calls for an order are sent, then awaited with `asyncio.gather`, never with a
blocking `ray.get` that would stall every other order on the event loop. A stage that times
out, errors or dies fails its order with the reason; the other five results are kept, and the
stages that did their part are asked to undo it (compensation), on the replica that did it.

With a ledger, the Dispatcher is the single writer of outcomes: each is committed before it is
returned, so a restarted Dispatcher (or a resumed run) answers a repeated order from the ledger.
An order whose stage kept erroring after its retries is not compensated at once but parked as a
dead letter, its other stages' work held, so that `replay` can complete it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from actors.dispatch.admission import PriorityGate
from actors.dispatch.batching import BatchPolicy, ReplicaBatcher
from actors.dispatch.pool import Replica, ReplicaPool
from actors.dispatch.retry import RetryPolicy
from actors.errors import LedgerUnavailable, ReplayRefused
from actors.ledger import LedgerSpec, OutcomeGroupCommit, SqlLedger, open_ledger
from actors.models import (
    STAGES,
    DeadLetter,
    JewelryOrder,
    OrderOutcome,
    OrderStatus,
    StageName,
    StageResult,
    StageStatus,
)
from actors.models.messages import DispatcherStats, ReplicaLoad
from actors.models.wire import Prepickled
from actors.naming import resolve
from actors.runtime import prepare_process, trim_free_memory
from actors.telemetry import DispatchMetrics

# Errors that mean the replica itself is gone for good: a retry must go to another replica.
# (ActorUnavailableError is not here: it means "restarting", and the same replica comes back.)
DEAD_REPLICA_ERRORS = ("ActorDiedError", "RayActorError")
GAUGE_EVERY_S = 1.0
# Every this many gauge ticks the Dispatcher hands freed heap pages back to the OS: the per-order
# garbage of 100,000 orders otherwise stays in glibc's arenas as RSS (benchmarks/suite.py, memory).
TRIM_EVERY_TICKS = 10


class Dispatcher:
    def __init__(
        self,
        pools: Mapping[StageName, Mapping[str, Any]],
        stage_timeouts_s: Mapping[StageName, float],
        max_in_flight: int = 100,
        log_level: str | None = None,
        retry_policies: Mapping[StageName, RetryPolicy] | None = None,
        ledger: LedgerSpec | None = None,
        batching: BatchPolicy | None = None,
    ) -> None:
        prepare_process(log_level)
        missing = set(STAGES) - set(pools)
        if missing:
            raise ValueError(f"the dispatcher needs a pool for every stage; missing {sorted(missing)}")
        self._pools = {
            stage: ReplicaPool(stage, {name: resolve(actor) for name, actor in pools[stage].items()}) for stage in STAGES
        }
        self._timeouts = dict(stage_timeouts_s)
        self._retries = {stage: (retry_policies or {}).get(stage, RetryPolicy()) for stage in STAGES}
        self._rng = random.Random()
        self._batching = batching or BatchPolicy()
        self._batchers: dict[str, ReplicaBatcher] = {}
        self._metrics = DispatchMetrics()
        self._admission = PriorityGate(max_in_flight)  # rush orders are let in first
        self._ledger: SqlLedger | None = open_ledger(ledger) if ledger is not None else None
        self._outcome_writer = OutcomeGroupCommit(self._ledger) if self._ledger is not None else None
        self._in_flight: dict[str, asyncio.Future[OrderOutcome]] = {}
        self._wired: dict[str, Prepickled] = {}  # each order in flight, dumped once for its six stage calls
        self._waiting = 0
        self._gauges: asyncio.Task | None = None
        self._call_order = list(STAGES)  # the slowest stage first (see `_longest_first`)
        self._by_status = {status.value: 0 for status in OrderStatus}
        self.log = logger.bind(stage="dispatcher")
        self.log.info("ready: {}", ", ".join(f"{s}×{len(p)}" for s, p in self._pools.items()))

    async def process(self, order: JewelryOrder) -> OrderOutcome:
        """The one terminal outcome of an order: all six stages called concurrently, then fan-in.

        The same order sent again while in flight (a restarted Producer re-sends what it cannot
        know finished) waits for the same outcome instead of running twice.
        """
        recorded = self._ledger.outcome(order.order_id) if self._ledger is not None else None
        return await self._answer(order, recorded)

    def _answer(self, order: JewelryOrder, recorded: OrderOutcome | None) -> Awaitable[OrderOutcome]:
        """How the order gets its outcome: by joining its run in flight, from the ledger (`recorded`),
        or by a run registered here, before anything else on the event loop can look for it."""
        running = self._in_flight.get(order.order_id)
        if running is not None:
            return asyncio.shield(running)
        future: asyncio.Future[OrderOutcome] = asyncio.get_running_loop().create_future()
        if recorded is not None:
            future.set_result(recorded)
            return future
        self._in_flight[order.order_id] = future
        self._waiting += 1  # until admitted: `stats` counts in flight only the admitted
        return self._run(order, future)

    async def _run(self, order: JewelryOrder, future: asyncio.Future[OrderOutcome]) -> OrderOutcome:
        if self._gauges is None:
            self._gauges = asyncio.get_running_loop().create_task(self._publish_gauges())
        admitted = False
        try:
            async with self._admission.admit(order.priority):
                self._waiting -= 1
                admitted = True
                started_at = datetime.now(UTC)
                self._wired[order.order_id] = Prepickled(order)
                results = await self._call_stages(order, self._call_order)
                outcome = await self._conclude(order, results, started_at)
            future.set_result(outcome)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: only joiners, if any, need it
            raise
        finally:
            if not admitted:
                self._waiting -= 1
            del self._in_flight[order.order_id]
            self._wired.pop(order.order_id, None)
            if not self._in_flight:
                self._metrics.flush()  # idle: a run that just ended gets counted in full
        return outcome

    async def process_batch(self, orders: list[JewelryOrder]) -> list[OrderOutcome | BaseException]:
        """`process` for several orders at once, each admitted and fanned out on its own; the answer
        for each, in order: its outcome, or the error its `process` raised.

        This is how the Producer sends under load: receiving a call costs the Dispatcher about
        0.8 ms of CPU whatever it carries, about what the rest of an order's work costs. A repeated
        batch (Ray re-sends it to a restarted Dispatcher) is answered order by order like a
        repeated `process`: from the ledger, or by joining the order still in flight.
        """
        ids = [order.order_id for order in orders]
        try:
            recorded = self._ledger.outcomes(ids) if self._ledger is not None and ids else {}
        except LedgerUnavailable as error:
            return [error] * len(orders)  # none of them started: each is reported unfinished
        answers = [self._answer(order, recorded.get(order.order_id)) for order in orders]
        return list(await asyncio.gather(*answers, return_exceptions=True))

    async def replay(self, order_id: str, stage: StageName | None = None, abandon: bool = False) -> OrderOutcome:
        """Re-run the dead-lettered stage(s) of a parked order and fan in again with the results its
        other stages recorded; or, with `abandon`, give the order up and compensate it."""
        if self._ledger is None:
            raise ReplayRefused("replay needs the ledger the order was dead-lettered in")
        parked = self._ledger.outcome(order_id)
        if parked is None:
            raise ReplayRefused(f"order {order_id} is not in the ledger")
        if parked.status is not OrderStatus.DEAD_LETTERED or parked.order is None:
            raise ReplayRefused(f"order {order_id} is {parked.status}, not dead-lettered: there is nothing to replay")
        dead = [s for s in parked.failed_stages if parked.results[s].status is StageStatus.ERROR]
        if stage is not None:
            if stage not in dead:
                raise ReplayRefused(f"order {order_id} has no dead letter for {stage}; dead-lettered: {', '.join(dead)}")
            dead = [stage]
        order, results = parked.order, dict(parked.results)
        started_at = datetime.now(UTC)
        log = self.log.bind(order_id=order_id)
        if abandon:
            log.warning("abandoned by the operator; compensating")
            outcome = await self._conclude(order, list(results.values()), started_at, give_up=True)
        else:
            log.info("replaying {}", ", ".join(dead))
            fresh = await self._call_stages(order, dead)
            results.update({result.stage: result for result in fresh})
            outcome = await self._conclude(order, list(results.values()), started_at)
        self._metrics.flush()
        return outcome

    async def replace_replica(self, stage: StageName, name: str, handle: Any) -> None:
        """A new actor took the place of a replica that died for good (same name, same ledger state)."""
        self._pools[stage].replace(name, handle)
        self.log.info("{} replaced; {} of {} {} replica(s) alive", name, self._pools[stage].alive,
                      len(self._pools[stage]), stage)

    async def add_replica(self, stage: StageName, name: str, actor: Any) -> None:
        """The pool scaled up: the new replica (an actor, or its `NamedActor`) takes orders from now on."""
        self._pools[stage].add(name, resolve(actor))
        self.log.info("{} added; {} now has {} replica(s)", name, stage, len(self._pools[stage]))

    async def drain_replica(self, stage: StageName, name: str) -> None:
        """The pool scales down: the replica takes no new orders, finishes those it has, and is let go
        once every order in flight now has concluded (one of them may still need it to compensate).
        Its state stays in the ledger, where a replica scaled up into the same slot finds it."""
        pool = self._pools[stage]
        replica = pool.drain(name)
        await asyncio.gather(*(asyncio.shield(future) for future in self._in_flight.values()), return_exceptions=True)
        while replica.ongoing > 0:  # orders admitted after the drain began never reach it, but retries can
            await asyncio.sleep(0.01)
        pool.remove(name)
        self._batchers.pop(name, None)
        self.log.info("{} drained and removed; {} now has {} replica(s)", name, stage, len(pool))

    async def _conclude(
        self, order: JewelryOrder, results: list[StageResult], started_at: datetime, give_up: bool = False
    ) -> OrderOutcome:
        """Fan-in, then what a failure calls for (dead letter or compensation), then the ledger."""
        outcome = OrderOutcome.from_results(order, results, started_at, datetime.now(UTC))
        letters: list[DeadLetter] = []
        failures = [outcome.results[s] for s in outcome.failed_stages]
        if give_up:
            reason = f"abandoned after dead letter: {outcome.reason}"
            outcome = outcome.model_copy(update={"status": OrderStatus.FAILED, "reason": reason})
        elif self._ledger is not None and failures and all(r.status is StageStatus.ERROR for r in failures):
            outcome = outcome.model_copy(update={"status": OrderStatus.DEAD_LETTERED})
            letters = [DeadLetter(order_id=order.order_id, stage=r.stage, error=r.reason or "", attempts=r.attempts,
                                  order=order, recorded_at=r.finished_at) for r in failures]
            self.log.bind(order_id=order.order_id).warning(
                "dead-lettered: {}; `jewelry-fanout replay {}` completes it", outcome.reason, order.order_id)
        if outcome.status is OrderStatus.FAILED:
            outcome = outcome.model_copy(update={"compensations": await self._compensate(outcome)})
            self.log.bind(order_id=order.order_id).warning("failed: {}", outcome.reason)
        self._metrics.order_latency.observe(outcome.latency_ms)
        if self._outcome_writer is not None:
            await self._outcome_writer.record(outcome, letters)  # committed before anyone is told
        return self._count(outcome)

    def _longest_first(self) -> list[StageName]:
        """The stages in the order to call them: the slowest first, since it decides when the order
        is done; each `.remote()` costs a fraction of a millisecond, so at low load the last stage
        called starts about a millisecond and a half after the first."""
        estimates = dict.fromkeys(STAGES, 0.0)
        for stage, pool in self._pools.items():
            for load in pool.loads():
                batcher = self._batchers.get(load.replica)
                if batcher is not None and batcher.per_order_s is not None:
                    estimates[stage] = max(estimates[stage], batcher.per_order_s)
        return sorted(STAGES, key=estimates.__getitem__, reverse=True)

    async def _publish_gauges(self) -> None:
        """Gauges are sampled once a second rather than set on every call: on the per-order path
        their cost showed at zero wait, and the metrics agent exports them every few seconds anyway.
        The order stages are called in is refreshed here too, for the same reason."""
        for tick in itertools.count(1):
            if tick % TRIM_EVERY_TICKS == 0:
                trim_free_memory()
            self._call_order = self._longest_first()
            self._metrics.in_flight.set(len(self._in_flight) - self._waiting)
            self._metrics.flush()
            for stage, pool in self._pools.items():
                for load in pool.loads():
                    self._metrics.stage_ongoing.set(load.ongoing, tags={"stage": stage.value, "replica": load.replica})
            await asyncio.sleep(GAUGE_EVERY_S)

    async def stats(self) -> DispatcherStats:
        return DispatcherStats(
            in_flight=len(self._in_flight) - self._waiting,
            waiting=self._waiting,
            orders_done=sum(self._by_status.values()),
            by_status=dict(self._by_status),
            stages={stage: [self._with_queue(load) for load in pool.loads()] for stage, pool in self._pools.items()},
        )

    async def _call_stages(self, order: JewelryOrder, stages: list[StageName]) -> list[StageResult]:
        """The stages' results for the order: every first call is sent before any is awaited, and
        their futures are awaited here, in this one coroutine. Only an order with an error to retry
        gets a task per stage, so that its retries run side by side."""
        calls = [self._send(stage, order, self._pools[stage].acquire()) for stage in stages]
        try:
            firsts = [await self._result_of(order, call) for call in calls]
        except BaseException:
            for call in calls:
                call.future.cancel()  # still waiting: it leaves its queue
            raise
        if any(result.status is StageStatus.ERROR for result, _, _ in firsts):
            return list(await asyncio.gather(*(self._call_stage(order, c, first) for c, first in zip(calls, firsts))))
        return [await self._call_stage(order, call, first) for call, first in zip(calls, firsts)]

    async def _call_stage(
        self, order: JewelryOrder, call: _StageCall, first: tuple[StageResult, bool, float]
    ) -> StageResult:
        """One stage's result for the order, from the answer to its first call: errors are retried on
        the same replica (which is idempotent per order id), moving to another only when that one is
        dead. An answer that needs no retry returns without suspending."""
        stage, replica = call.stage, call.replica
        pool, policy = self._pools[stage], self._retries[stage]
        attempt, spent_s, answer = 0, 0.0, first
        while True:
            attempt += 1
            result, replica_dead, latency_s = answer if answer is not None else await self._result_of(order, call)
            answer = None
            spent_s += latency_s
            if replica_dead and replica.alive:
                pool.mark_dead(replica)
                self.log.warning("{} is dead; {} of {} {} replica(s) left", replica.name, pool.alive, len(pool), stage)
            if result.status is not StageStatus.ERROR or attempt >= policy.attempts:
                break
            self._metrics.retries.inc(tags={"stage": stage.value})
            self.log.bind(order_id=order.order_id).info("{} attempt {} failed ({}); retrying", stage, attempt, result.reason)
            await asyncio.sleep(policy.delay_s(attempt, self._rng))
            if replica_dead:
                pool.release(replica, spent_s, error=True)
                replica, spent_s = pool.acquire(avoid=replica), 0.0
            call = self._send(stage, order, replica)
        pool.release(replica, spent_s, error=result.status is StageStatus.ERROR, node_id=_node_of(result))
        self._metrics.stage_results.inc(stage=stage.value, status=result.status.value)
        return result.model_copy(update={"attempts": attempt}) if attempt > 1 else result

    def _send(self, stage: StageName, order: JewelryOrder, replica: Replica) -> _StageCall:
        """One attempt, queued for the replica (it may leave at once, alone or in a batch)."""
        future = self._batcher(stage, replica).submit(order, self._timeouts.get(stage))
        return _StageCall(stage, replica, future, datetime.now(UTC), time.perf_counter())

    async def _result_of(self, order: JewelryOrder, call: _StageCall) -> tuple[StageResult, bool, float]:
        """One attempt's result (errors included), whether its replica is dead, and its latency."""
        replica, dead = call.replica, False
        try:
            result: StageResult = await call.future
        except TimeoutError:
            # Still waiting here: it left the queue. Already sent: the replica finishes it, records it,
            # and the retry gets that record back.
            timeout = self._timeouts.get(call.stage)
            result = self._error(call.stage, order, replica.name, replica.node_id, call.started_at,
                                 f"timed out after {timeout:g} s")
        except Exception as error:  # noqa: BLE001 - a dead replica or a lost call is an error result
            dead = type(error).__name__ in DEAD_REPLICA_ERRORS and _about_current(error, replica)
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
            result = self._error(call.stage, order, replica.name, replica.node_id, call.started_at, reason)
        return result, dead, time.perf_counter() - call.clock

    async def _compensate(self, outcome: OrderOutcome) -> dict[StageName, str]:
        """Ask every stage that did not decline to undo its work. Errored stages are asked too: a
        call that timed out may still have run, and only the replica knows."""
        asked = {
            stage: self._pools[stage].named(result.replica)
            for stage, result in outcome.results.items()
            if result.status is not StageStatus.BUSINESS_FAILURE
        }
        calls = {stage: replica.handle.compensate.options(name=f"{stage.value}:compensate").remote(outcome.order_id)
                 for stage, replica in asked.items() if replica is not None}
        answers = await asyncio.gather(*calls.values(), return_exceptions=True)
        done: dict[StageName, str] = {}
        for stage in (stage for stage, replica in asked.items() if replica is None):
            # Only a dead letter replayed after its replica was scaled away gets here (a drain waits
            # for the orders in flight): say so rather than skip it.
            done[stage] = f"compensation failed: {outcome.results[stage].replica} is no longer in the pool"
            self.log.bind(order_id=outcome.order_id).error("{} {}", stage, done[stage])
        for stage, answer in zip(calls, answers, strict=True):
            if isinstance(answer, BaseException):
                done[stage] = f"compensation failed: {type(answer).__name__}: {str(answer).splitlines()[0]}"
                self.log.bind(order_id=outcome.order_id).error("{} {}", stage, done[stage])
            elif answer:
                done[stage] = answer
                self._metrics.compensations.inc(tags={"stage": stage.value})
        return done

    def _with_queue(self, load: ReplicaLoad) -> ReplicaLoad:
        batcher = self._batchers.get(load.replica)
        if batcher is None:
            return load
        return load.model_copy(update={"queued": batcher.waiting, "calls_in_flight": batcher.outstanding})

    def _batcher(self, stage: StageName, replica: Replica) -> ReplicaBatcher:
        batcher = self._batchers.get(replica.name)
        if batcher is None:
            tags = {"stage": stage.value, "replica": replica.name}

            def send(orders: list[JewelryOrder]) -> Awaitable[list[StageResult]]:
                # The task name says which stage and how many orders, never which: Ray keeps a metric
                # series per task name in the caller for good (see `task_name`).
                wired = [self._wired.get(order.order_id, order) for order in orders]
                clock = time.perf_counter()
                call = replica.handle.process_batch.options(name=task_name(stage, len(orders))).remote(wired)
                return self._timed(call, clock, tags)

            batcher = self._batchers[replica.name] = ReplicaBatcher(send, self._batching)
        return batcher

    async def _timed(self, call: Awaitable[list[StageResult]], clock: float, tags: dict[str, str]) -> list[StageResult]:
        """A batch call's answer, its latency observed once per call rather than per order: seven
        histogram records per order were 8% of the Dispatcher's event loop at zero wait (py-spy)."""
        try:
            return await call
        finally:
            self._metrics.stage_latency.observe((time.perf_counter() - clock) * 1000, tags=tags)

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

    def _count(self, outcome: OrderOutcome) -> OrderOutcome:
        self._by_status[outcome.status.value] += 1
        self._metrics.orders.inc(status=outcome.status.value)
        return outcome


def _about_current(error: BaseException, replica: Replica) -> bool:
    """Whether a death is that of the actor the replica's name points to now. A call sent to the actor
    that a replacement took over from fails late (seconds, on a busy machine); taking that for the
    replacement's death marked every fresh replacement dead again, and the driver replaced it again."""
    died = getattr(error, "actor_id", None)
    actor_id = getattr(replica.handle, "_actor_id", None)
    return died is None or actor_id is None or died == actor_id.hex()


@dataclass
class _StageCall:
    """One attempt of one stage for one order: sent, and answered through `future`."""

    stage: StageName
    replica: Replica
    future: asyncio.Future[StageResult]
    started_at: datetime
    clock: float  # perf_counter when sent


def task_name(stage: StageName, orders: int) -> str:
    """`material[1]` for a material call carrying one order, `material[8-15]` for one carrying 8 to
    15: what the dashboard and `ray list tasks` show.

    Names are kept to a few per stage: the calling worker keeps a metric series for every task name
    it ever used, about 11 KB each and never released (measured on Ray 2.60), so a name per order
    grew the Dispatcher by gigabytes over 100,000 orders, and a name per batch size grew it by
    14 MB more once batches could carry 128 orders (31 MB against 17). Powers of two give at most
    nine names per stage up to 256. Which orders a call carried is in the replica's log lines, each
    bound to its order id.
    """
    low = 1 << (orders.bit_length() - 1)
    return f"{stage.value}[{orders}]" if low == 1 else f"{stage.value}[{low}-{2 * low - 1}]"


def _node_of(result: StageResult) -> str | None:
    return result.node_id if result.node_id != "unknown" else None
