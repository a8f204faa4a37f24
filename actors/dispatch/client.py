"""`StageClient`: one stage's router inside a Dispatcher shard, the role Ray Serve's router plays.

The Dispatcher asks it for a stage's result for an order and gets one: which replica, batching
with the other orders waiting for that replica, the timeout, retries with backoff and jitter, dead
replicas, and the call metrics are all decided here, in layers of their own:
- `pool`: which replica (the least loaded live one), and who the members are (pushed by the supervisor);
- `batching`: the orders waiting for one replica, sent together when it frees up;
- `attempt`: one attempt's answer, its timeout and a dead replica made into error results;
- `retry`: how many attempts, and the delay between them;
- `breaker`: whether calls go at all: a stage that fails most calls gets none for a while, and the
  orders waiting on it are answered with the refusal at once instead of spending their retries.

The unit is the Dispatcher's batch: `send` spreads a batch's orders over the replicas, one attempt
per replica, and `answers` gives each order's answer; only an order whose answer is an error goes
on alone (`finish`), retried with backoff. Sending is apart from awaiting, so that the Dispatcher
sends all six stages' first attempts before it awaits any of them, in one coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from ray.exceptions import RayActorError

from actors.dispatch.admission import same_priority_runs
from actors.dispatch.attempt import Answer, Attempt, answers_of
from actors.dispatch.batching import BatchPolicy, Outcome, ReplicaBatcher
from actors.dispatch.breaker import BreakerPolicy, CircuitBreaker, CircuitOpen
from actors.dispatch.pool import Replica, ReplicaPool
from actors.dispatch.retry import RetryPolicy
from actors.errors import MembershipError, describe_error, ledger_outage
from actors.ledger import PROBE_EVERY_S
from actors.models import JewelryOrder, StageName, StageResult, StageStatus
from actors.models.breakers import BreakerState
from actors.models.messages import PoolMembers, ReplicaLoad
from actors.models.wire import ModelArray, dumped
from actors.telemetry import DispatchMetrics

# The replica of an attempt that found no member to go to: its answers are error results, retried.
NOBODY = Replica("no replica", None, -1)
# Errors that say nothing of the stage's own health (a refused call, a replica gone, no member yet).
NOT_THE_STAGES = (CircuitOpen, RayActorError, MembershipError)
# An order's JSON as it travels to a replica, made once for its six stage calls (`wire.dumped`).
Wire = Callable[[JewelryOrder], bytes]


class StageClient:
    def __init__(
        self,
        stage: StageName,
        replicas: dict[str, Any],
        timeout_s: float | None,
        retry: RetryPolicy,
        batching: BatchPolicy,
        metrics: DispatchMetrics,
        wire: Wire = dumped,
        rng: random.Random | None = None,
        breaker: BreakerPolicy | None = None,
    ) -> None:
        self.stage = stage
        self.pool = ReplicaPool(stage, replicas)
        self._timeout_s = timeout_s
        self._retry = retry
        self._batching = batching
        self._metrics = metrics
        self._wire = wire
        self._rng = rng or random.Random()
        self._batchers: dict[str, ReplicaBatcher] = {}
        self.log = logger.bind(stage=stage.value)
        self.breaker = CircuitBreaker(stage.value, breaker or BreakerPolicy(), on_change=self._breaker_moved)
        self._waiting: set[asyncio.Future[list[Outcome]]] = set()  # attempts not answered yet
        self._opened = asyncio.Event()  # set while the breaker is open: retry back-offs end at once

    def send(self, orders: list[JewelryOrder], replica: Replica | None = None) -> list[Attempt]:
        """One attempt for each of `orders` (sorted rush first), spread over the least-loaded live
        replicas, or all to `replica`: an attempt per replica and priority, queued for its replica
        (it may leave at once, alone or with other orders waiting for the same replica). Orders the
        breaker refuses get an attempt already answered with the refusal."""
        epoch, allowed = self.breaker.epoch, self.breaker.permit(len(orders))
        if allowed == len(orders):
            return self._sent(orders, replica, epoch)
        refused = self._refused(list(range(allowed, len(orders))), self.breaker.refusal())
        return [*self._sent(orders[:allowed], replica, epoch), refused] if allowed else [refused]

    def _sent(self, orders: list[JewelryOrder], replica: Replica | None, epoch: int) -> list[Attempt]:
        try:
            shares = self.pool.spread(len(orders)) if replica is None else [(replica, len(orders))]
        except MembershipError as error:  # a restarted shard before its first member list: error results
            return [self._refused(list(range(len(orders))), error)]
        if replica is not None and replica is not NOBODY:
            self.pool.hold(replica, len(orders))
        attempts, start, started_at, clock = [], 0, datetime.now(UTC), time.perf_counter()
        for to, count in shares:
            for indices in same_priority_runs(orders, start, start + count):
                if to is NOBODY:
                    attempts.append(self._refused(indices, MembershipError(f"{self.stage} has no live replica")))
                    continue
                future = self._batcher(to).submit([orders[i] for i in indices], self._timeout_s)
                self._waiting.add(future)
                future.add_done_callback(functools.partial(self._answered, to, clock, len(indices), epoch))
                attempts.append(Attempt(self.stage, to, indices, future, started_at, clock))
            start += count
        return attempts

    def answers(self, orders: list[JewelryOrder], attempt: Attempt) -> Awaitable[list[Answer]]:
        """The answers to an attempt, for its orders (`orders` is the batch it was sent from)."""
        return answers_of([orders[i] for i in attempt.indices], attempt, self._timeout_s)

    def _answered(
        self, replica: Replica, clock: float, orders: int, epoch: int, future: asyncio.Future[list[Outcome]]
    ) -> None:
        """Count an attempt's orders off its replica the moment they are answered (or given up), and
        tell the breaker how the stage did."""
        self._waiting.discard(future)
        error = None if future.cancelled() else future.exception()
        outcomes: list[Outcome] = [] if future.cancelled() or error else future.result()
        results = [o for o in outcomes if isinstance(o, StageResult)]
        errors = orders - sum(r.status is not StageStatus.ERROR for r in results)
        node = next((r.node_id for r in results if r.node_id != "unknown"), None)
        self.pool.release(replica, (time.perf_counter() - clock) * orders, orders=orders, errors=errors, node_id=node)
        if not future.cancelled():
            self.breaker.record(epoch, *stage_health(orders, outcomes, error))

    def counted(self, results: list[StageResult]) -> None:
        """Tally the final results of orders that concluded (once per batch, not per order)."""
        for status, count in Counter(r.status for r in results).items():
            self._metrics.stage_results.inc(count, stage=self.stage.value, status=status.value)

    async def finish(self, order: JewelryOrder, first: Answer) -> StageResult:
        """The stage's result for the order, from the answer to its first attempt: errors are retried
        on the same replica (which is idempotent per order id), moving to another only when that one
        is dead. An answer that needs no retry returns without suspending."""
        tries, answer, replica = 1, first, first.replica
        while True:
            result = answer.result
            if answer.replica_dead and replica.alive:
                self.pool.mark_dead(replica)
                self.log.warning("{} is dead; {} of {} replica(s) left", replica.name, self.pool.alive, len(self.pool))
            if result.status is not StageStatus.ERROR or tries >= self._retry.attempts:
                break
            delay_s = self._retry.delay_s(tries, self._rng)
            if ledger_outage(result.reason) is not None:
                delay_s = max(delay_s, PROBE_EVERY_S)  # the replica's store answers at once until its next try
            if not self._opened.is_set():
                with contextlib.suppress(TimeoutError):  # the breaker opening ends the wait
                    await asyncio.wait_for(self._opened.wait(), delay_s)
            if self.breaker.state is BreakerState.OPEN:  # no retry: its last error is its answer
                if not (result.reason or "").startswith(CircuitOpen.__name__):
                    why = f"{result.reason}; not retried: {self.breaker.refusal()}"
                    result = result.model_copy(update={"reason": why})
                break
            self._metrics.retries.inc(tags={"stage": self.stage.value})
            self.log.bind(order_id=order.order_id).info("attempt {} failed ({}); retrying", tries, result.reason)
            if answer.replica_dead or replica is NOBODY:
                replica = self._pick(avoid=replica)
            [attempt] = self.send([order], replica)
            [answer] = await self.answers([order], attempt)
            tries += 1
        return result.model_copy(update={"attempts": tries}) if tries > 1 else result

    async def call(self, order: JewelryOrder) -> StageResult:
        """One order's result, retries included."""
        [attempt] = self.send([order])
        [first] = await self.answers([order], attempt)
        result = await self.finish(order, first)
        self.counted([result])
        return result

    async def compensate(self, order_id: str, replica_name: str) -> str | None:
        """Ask the replica that did the order's work to undo it; what it undid, or None if nothing."""
        replica = self.pool.named(replica_name)
        if replica is None:
            # Only a dead letter replayed after its replica was scaled away gets here (a drain waits
            # for the orders in flight): say so rather than skip it.
            return self._failed_compensation(order_id, f"{replica_name} is no longer in the pool")
        try:
            undone: str | None = await replica.handle.compensate.options(name=f"{self.stage.value}:compensate").remote(
                order_id
            )
        except Exception as error:  # noqa: BLE001 - reported in the outcome, not raised
            return self._failed_compensation(order_id, describe_error(error))
        if undone:
            self._metrics.compensations.inc(tags={"stage": self.stage.value})
        return undone

    def _breaker_moved(self, state: BreakerState) -> None:
        """Open: the orders still waiting on the stage are answered with the refusal now, and the ones
        between retries stop waiting; they are dead-lettered for `replay` instead of spending their
        retries and timeouts on a stage that fails every call."""
        self._metrics.breaker_transitions.inc(tags={"stage": self.stage.value, "state": state.value})
        if state is BreakerState.OPEN:
            self._opened.set()
            refusal = self.breaker.refusal()
            self.log.warning("circuit opened: {}; {} call(s) waiting are answered with it", refusal, len(self._waiting))
            for future in list(self._waiting):
                if not future.done():
                    future.set_exception(refusal)
        else:
            self._opened.clear()
            self.log.warning("circuit {}", state.value)

    def _failed_compensation(self, order_id: str, why: str) -> str:
        self.log.bind(order_id=order_id).error("compensation failed: {}", why)
        return f"compensation failed: {why}"

    def apply(self, members: PoolMembers) -> bool:
        applied = self.pool.apply(members)
        if applied:
            names = {member.name for member in members.members}
            for gone in set(self._batchers) - names:
                del self._batchers[gone]
        return applied

    async def drained(self, name: str) -> None:
        """Return once the replica has no call of this shard outstanding (it is listed as draining,
        so nothing new goes to it)."""
        while (replica := self.pool.named(name)) is not None and replica.ongoing > 0:
            await asyncio.sleep(0.01)

    @property
    def per_order_s(self) -> float:
        """The slowest replica's measured time per order (0 before any is measured)."""
        return max((b.per_order_s or 0.0 for b in self._batchers.values()), default=0.0)

    def loads(self) -> list[ReplicaLoad]:
        return [self._with_queue(load) for load in self.pool.loads()]

    def _pick(self, avoid: Replica | None = None) -> Replica:
        try:
            return self.pool.pick(avoid=avoid)
        except MembershipError:
            return NOBODY

    def _refused(self, indices: list[int], error: Exception) -> Attempt:
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        future.set_exception(error)
        return Attempt(self.stage, NOBODY, indices, future, datetime.now(UTC), time.perf_counter())

    def _with_queue(self, load: ReplicaLoad) -> ReplicaLoad:
        batcher = self._batchers.get(load.replica)
        if batcher is None:
            return load
        per_order = batcher.per_order_s
        return load.model_copy(
            update={
                "queued": batcher.waiting,
                "calls_in_flight": batcher.outstanding,
                "per_order_ms": round(1000 * per_order, 3) if per_order is not None else None,
                "batch_calls": batcher.batch_calls,
                "orders_sent": batcher.orders_sent,
            }
        )

    def _batcher(self, replica: Replica) -> ReplicaBatcher:
        batcher = self._batchers.get(replica.name)
        if batcher is None:
            tags = {"stage": self.stage.value, "replica": replica.name}

            def send(orders: list[JewelryOrder]) -> Awaitable[list[StageResult]]:
                clock = time.perf_counter()
                call = replica.handle.process_encoded.options(name=task_name(self.stage, len(orders))).remote(
                    ModelArray.joined(JewelryOrder, (self._wire(order) for order in orders))
                )
                return self._timed(call, clock, tags)

            batcher = self._batchers[replica.name] = ReplicaBatcher(send, self._batching)
        return batcher

    async def _timed(self, call: Awaitable[list[StageResult]], clock: float, tags: dict[str, str]) -> list[StageResult]:
        """A batch call's answer, its latency observed once per call rather than per order: a
        histogram record per order and stage is a visible share of a shard's event loop at zero wait."""
        try:
            return await call
        finally:
            self._metrics.stage_latency.observe((time.perf_counter() - clock) * 1000, tags=tags)


def stage_health(orders: int, outcomes: list[Outcome], error: BaseException | None) -> tuple[int, int, str]:
    """What an attempt says about the stage itself, for its breaker: (successes, failures, why).

    A failure is the stage's own: its code raised, or it did not answer in time. A replica that
    died or is restarting is the pool's business (the call goes to another replica), an outage of
    the ledger is the store's (the order is reported unfinished), and a refused call was never
    made: none of them counts, either way."""
    if error is not None:
        if isinstance(error, NOT_THE_STAGES):
            return 0, 0, ""
        return 0, orders, describe_error(error)
    ok = failed = 0
    why = ""
    for outcome in outcomes:
        if not isinstance(outcome, StageResult):
            if not isinstance(outcome, NOT_THE_STAGES):
                failed, why = failed + 1, describe_error(outcome)
        elif outcome.status is not StageStatus.ERROR:
            ok += 1
        elif ledger_outage(outcome.reason) is None:
            failed, why = failed + 1, outcome.reason or ""
    return ok, failed, why


def task_name(stage: StageName, orders: int) -> str:
    """`material[1]` for a material call carrying one order, `material[8-15]` for one carrying 8 to
    15: what the dashboard and `ray list tasks` show.

    Names are kept to a few per stage: the calling worker keeps a metric series for every task name
    it ever used, never released, so a name per order grew the Dispatcher without bound over a long
    run. Powers of two give at most nine names per
    stage up to 256. Which orders a call carried is in the replica's log lines, each bound to its
    order id.
    """
    low = 1 << (orders.bit_length() - 1)
    return f"{stage.value}[{orders}]" if low == 1 else f"{stage.value}[{low}-{2 * low - 1}]"
