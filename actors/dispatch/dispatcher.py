"""The Dispatcher: admits orders, fans them out to the six stages at once, gathers, and concludes.

An async actor whose unit is the batch: the orders of a call that find places free (`max_in_flight`,
rush first) go in together, one batch per priority; each stage gets the batch in one call per
replica, all six sent before any is awaited; the answers are joined by the order's place in the
batch, and the batch concludes together (one commit), while an order with an error goes on alone,
retried. Every fixed cost (a call, a future, a timer, a commit) is paid per batch, not per order.
How a stage is called (replicas, timeouts, retries, dead replicas) is its `StageClient`'s business;
what the results mean is decided here. A failed order keeps its other results, and the stages
that did their part undo it on the replica that did it (compensation). With a ledger a shard is
the one writer of its orders' outcomes, each committed before it is returned, so a restarted shard
or a resumed run answers a repeat from the ledger; an order whose stage kept erroring is parked as
a dead letter for `replay`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from loguru import logger

from actors.dispatch.admission import same_priority_runs
from actors.dispatch.attempt import Answer
from actors.dispatch.batching import BatchPolicy
from actors.dispatch.breaker import BreakerPolicy
from actors.dispatch.breaker_room import wait_for_room
from actors.dispatch.client import StageClient
from actors.dispatch.gauges import publish_gauges
from actors.dispatch.in_flight import OrdersInFlight, answered
from actors.dispatch.retry import RetryPolicy
from actors.dispatch.verdict import stages_to_replay, verdict
from actors.errors import ConfigurationError, LedgerUnavailable, ReplayRefused
from actors.ledger import PROBE_EVERY_S, LedgerSpec, OutcomeGroupCommit, SqlLedger, open_ledger
from actors.models import (
    STAGES,
    DeadLetter,
    EncodedOutcome,
    JewelryOrder,
    OrderOutcome,
    OrderStatus,
    StageName,
    StageResult,
    StageStatus,
)
from actors.models.breakers import BreakerSnapshot
from actors.models.messages import DispatcherStats, PoolMembers
from actors.models.wire import dumped
from actors.naming import resolve_present
from actors.runtime import cancel_soon, prepare_process
from actors.telemetry import DispatchMetrics


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
        shard: int = 0,
        breaker_policies: Mapping[StageName, BreakerPolicy] | None = None,
    ) -> None:
        prepare_process(log_level)
        if missing := set(STAGES) - set(pools):
            raise ConfigurationError(f"the dispatcher needs a pool for every stage; missing {sorted(missing)}")
        self.shard = shard
        self.log = logger.bind(stage=f"dispatcher-{shard}")
        self._metrics = DispatchMetrics()
        self._wired: dict[str, bytes] = {}  # each order in flight, dumped once for its six stage calls
        self._clients = {
            stage: StageClient(
                stage,
                resolve_present(pools[stage], self.log),
                stage_timeouts_s.get(stage),
                (retry_policies or {}).get(stage, RetryPolicy()),
                batching or BatchPolicy(),
                self._metrics,
                lambda order: self._wired.get(order.order_id) or dumped(order),
                breaker=(breaker_policies or {}).get(stage),
            )
            for stage in STAGES
        }
        self._orders = OrdersInFlight(max_in_flight)
        self._breakers = [client.breaker for client in self._clients.values()]
        self._ledger: SqlLedger | None = open_ledger(ledger) if ledger is not None else None
        self._outcome_writer = OutcomeGroupCommit(self._ledger) if self._ledger else None
        self._gauges: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # batches and lone orders under way
        self._call_order, self._by_status = list(STAGES), {status.value: 0 for status in OrderStatus}
        self.log.info("ready: {}", ", ".join(f"{s}×{len(c.pool)}" for s, c in self._clients.items()))

    async def process(self, order: JewelryOrder) -> OrderOutcome:
        """The one terminal outcome of an order. The same order sent again while in flight (a
        restarted Producer re-sends what it cannot know finished) waits for the same outcome."""
        [answer] = await self.process_batch([order])
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def process_batch(self, orders: list[JewelryOrder]) -> list[OrderOutcome | BaseException]:
        """`process` for several orders: for each, its outcome or the error that kept it from one.
        The orders new to the shard run as one batch; one already running (Ray re-sends a batch to
        a restarted shard, a restarted Producer re-sends) joins its run, and one the ledger has is
        answered from it."""
        return [a if isinstance(a, BaseException) else a.decoded() for a in await self._answers(orders)]

    async def process_encoded(self, orders: list[JewelryOrder]) -> list[EncodedOutcome | BaseException]:
        """`process_batch` as the Producer calls it: each outcome crosses as its JSON (the line the
        ledger committed), which the Producer passes on to the driver without decoding it."""
        return await self._answers(orders)

    async def _answers(self, orders: list[JewelryOrder], rejoin: bool = True) -> list[EncodedOutcome | BaseException]:
        """Each order's answer: from its run in flight (joined), from the ledger, or from a new run.
        `rejoin=False` is a repeat of a run that ended for want of the store: it waits for a run
        under way as it is, rather than joining it again."""
        try:
            recorded = await self._recorded_outcomes(orders)
        except LedgerUnavailable as error:
            return [error] * len(orders)  # none of them started: each is reported unfinished
        answers: list[Awaitable[EncodedOutcome]] = []
        fresh: list[JewelryOrder] = []
        for order in orders:
            if (running := self._orders.joined(order.order_id)) is not None:
                answers.append(self._joined(order, running) if rejoin else running)
            elif (outcome := recorded.get(order.order_id)) is not None:
                answers.append(answered(EncodedOutcome.of(outcome)))
            else:
                answers.append(self._orders.register(order.order_id))
                fresh.append(order)
        if fresh:
            self._spawn(self._admit(sorted(fresh, key=lambda order: order.priority.rank)))
        return list(await asyncio.gather(*answers, return_exceptions=True))

    async def _recorded_outcomes(self, orders: list[JewelryOrder]) -> dict[str, OrderOutcome]:
        """The batch's outcomes the ledger holds. A store found down answers at once until its next
        probe, even when it is back (a run started again right after an outage): the batch waits
        for that probe once before its orders are given up."""
        if self._ledger is None or not orders:
            return {}
        ids = [o.order_id for o in orders]
        try:
            return self._ledger.outcomes(ids)
        except LedgerUnavailable:
            await asyncio.sleep(PROBE_EVERY_S)
            return self._ledger.outcomes(ids)

    async def _joined(self, order: JewelryOrder, running: Awaitable[EncodedOutcome]) -> EncodedOutcome:
        """The outcome of the run joined; but a run that ended for want of the store recorded nothing,
        and may have started long before the store came back (a run that was cut short re-sends its
        orders as soon as it is started again): the repeat then runs the order once more itself."""
        try:
            return await running
        except LedgerUnavailable:
            [answer] = await self._answers([order], rejoin=False)
            if isinstance(answer, BaseException):
                raise answer from None
            return answer

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._gauges is None:
            self._gauges = asyncio.get_running_loop().create_task(
                publish_gauges(
                    self.shard, self._clients, self._metrics, lambda: self._orders.admitted, self._refresh_call_order
                )
            )
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished_task)

    def _finished_task(self, task: asyncio.Task[None]) -> None:
        """A batch's task is over. Its orders were answered (with the error too, if it failed); an
        error is logged here rather than left to asyncio's "never retrieved" warning."""
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.log.opt(exception=error).error("a batch ended with an error; its orders were told: {}", error)

    async def _admit(self, orders: list[JewelryOrder]) -> None:
        """Let registered orders in (rush first) and start them: as many as there are free places at
        once, in one batch; the rest, as places free up. A stage's breaker that is not closed holds
        them first (`breaker_room`)."""
        while orders:
            try:
                allowed = await wait_for_room(self._breakers, len(orders), lambda: self._orders.admitted)
                taken = self._orders.admit_now(allowed)
                if not taken:
                    await self._orders.admit(orders[0].priority)
                    taken = 1 + self._orders.admit_now(allowed - 1)
            except BaseException as error:
                for order in orders:
                    self._settle(order, error, admitted=False)
                raise
            batch, orders = orders[:taken], orders[taken:]
            for run in same_priority_runs(batch, 0, len(batch)):  # rush orders never wait to conclude with normal ones
                self._spawn(self._run([batch[i] for i in run]))

    async def _run(self, batch: list[JewelryOrder]) -> None:
        """Fan the batch out (one call per replica and stage), join the answers by order, and conclude
        together the orders that need no retry; each of the others goes on alone, retried."""
        started_at, stages, unsettled = datetime.now(UTC), self._call_order, set(range(len(batch)))
        for order in batch:
            self._wired[order.order_id] = dumped(order)
        try:
            firsts = await self._first_answers(batch, stages)
            clean = []
            for i, row in enumerate(firsts):
                if any(answer.result.status is StageStatus.ERROR for answer in row):
                    unsettled.discard(i)
                    self._spawn(self._run_alone(batch[i], stages, row, started_at))
                else:
                    clean.append(i)
            rows = [[answer.result for answer in firsts[i]] for i in clean]
            for column, stage in enumerate(stages):
                self._clients[stage].counted([row[column] for row in rows])
            answers = await self._conclude([batch[i] for i in clean], rows, started_at)
            for i, answer in zip(clean, answers, strict=True):
                unsettled.discard(i)
                self._settle(batch[i], answer)
        except BaseException as error:
            for i in sorted(unsettled):
                self._settle(batch[i], error)
            raise

    async def _run_alone(
        self, order: JewelryOrder, stages: list[StageName], firsts: list[Answer], started_at: datetime
    ) -> None:
        """An order with a stage error, out of its batch: its errors retried side by side, then concluded."""
        answer: EncodedOutcome | BaseException
        try:
            results = await self._retried(order, stages, firsts)
            [answer] = await self._conclude([order], [results], started_at)
        except BaseException as error:
            self._settle(order, error)
            raise
        self._settle(order, answer)

    async def _retried(self, order: JewelryOrder, stages: list[StageName], firsts: list[Answer]) -> list[StageResult]:
        """Each stage's result for the order from its first answer, errors retried side by side."""
        results = list(
            await asyncio.gather(*(self._clients[s].finish(order, a) for s, a in zip(stages, firsts, strict=True)))
        )
        for stage, result in zip(stages, results, strict=True):
            self._clients[stage].counted([result])
        return results

    def _settle(self, order: JewelryOrder, answer: EncodedOutcome | BaseException, admitted: bool = True) -> None:
        self._wired.pop(order.order_id, None)
        if self._orders.settle(order.order_id, answer, admitted):
            self._metrics.flush()  # idle: a run that just ended gets counted in full

    async def _first_answers(self, batch: list[JewelryOrder], stages: list[StageName]) -> list[list[Answer]]:
        """Each order's answer from each stage (in `stages` order), joined by the order's place in the
        batch. Every stage's attempts are sent before any is awaited."""
        sent = [(self._clients[stage], self._clients[stage].send(batch)) for stage in stages]
        rows: list[list[Answer | None]] = [[None] * len(stages) for _ in batch]
        try:
            for column, (client, attempts) in enumerate(sent):
                for attempt in attempts:
                    for i, answer in zip(attempt.indices, await client.answers(batch, attempt), strict=True):
                        rows[i][column] = answer
        except BaseException:
            for _, attempts in sent:
                for attempt in attempts:
                    attempt.future.cancel()  # still waiting: it leaves its queue
            raise
        return rows  # type: ignore[return-value]  # every place is filled: each order is in one attempt per stage

    async def replay(self, order_id: str, stage: StageName | None = None, abandon: bool = False) -> OrderOutcome:
        """Re-run the dead-lettered stage(s) of a parked order and fan in again with the results its
        other stages recorded; or, with `abandon`, give the order up and compensate it."""
        if self._ledger is None:
            raise ReplayRefused("replay needs the ledger the order was dead-lettered in")
        parked = self._ledger.outcome(order_id)
        dead = stages_to_replay(order_id, parked, stage)
        assert parked is not None and parked.order is not None
        order, results, started_at = parked.order, dict(parked.results), datetime.now(UTC)
        self.log.bind(order_id=order_id).info("abandoned" if abandon else "replaying {}", ", ".join(dead))
        if not abandon:
            [firsts] = await self._first_answers([order], dead)
            results.update({r.stage: r for r in await self._retried(order, dead, firsts)})
        [answer] = await self._conclude([order], [list(results.values())], started_at, give_up=abandon)
        self._metrics.flush()
        if isinstance(answer, BaseException):
            raise answer
        return answer.decoded()

    async def _conclude(
        self,
        orders: list[JewelryOrder],
        rows: list[list[StageResult]],
        started_at: datetime,
        give_up: bool = False,
    ) -> list[EncodedOutcome | BaseException]:
        """Fan-in for orders that concluded together, then what a failure calls for (dead letter or
        compensation), then the ledger, in one commit for them all; an order that cannot conclude
        (its stage found the store down) gets its error, and its batch-mates still conclude."""
        finished_at, ledgered = datetime.now(UTC), self._ledger is not None
        answers: list[EncodedOutcome | BaseException | None] = [None] * len(orders)
        concluded: list[tuple[int, OrderOutcome, list[DeadLetter]]] = []  # place in the batch, outcome, letters
        for i, (order, results) in enumerate(zip(orders, rows, strict=True)):
            try:
                outcome, letters = verdict(
                    OrderOutcome.from_results(order, results, started_at, finished_at), ledgered, give_up
                )
            except Exception as error:  # noqa: BLE001 - this order's answer; its batch-mates go on
                answers[i] = error
                if isinstance(error, LedgerUnavailable) and self._ledger is not None:
                    self._ledger.found_down_elsewhere(str(error))  # a stage spent its budget on it
                continue
            if letters:
                self.log.bind(order_id=order.order_id).warning(
                    "dead-lettered: {}; `jewelry-fanout replay {}` completes it", outcome.reason, order.order_id
                )
            concluded.append((i, outcome, letters))
        failed = [k for k, (_, outcome, _) in enumerate(concluded) if outcome.status is OrderStatus.FAILED]
        if failed:
            undone = await asyncio.gather(*(self._compensate(concluded[k][1]) for k in failed))
            for k, compensations in zip(failed, undone, strict=True):
                i, outcome, letters = concluded[k]
                outcome = outcome.model_copy(update={"compensations": compensations})
                self.log.bind(order_id=outcome.order_id).warning("failed: {}", outcome.reason)
                concluded[k] = (i, outcome, letters)
        made = [EncodedOutcome.of(outcome) for _, outcome, _ in concluded]
        told: list[EncodedOutcome | BaseException] = list(made)
        committed = True
        if self._outcome_writer is not None and concluded:
            try:  # committed before anyone is told; its JSON, made once, is also what crosses the wire
                await self._outcome_writer.record([(o, letters) for _, o, letters in concluded], [e.json for e in made])
            except Exception as error:  # noqa: BLE001 - none of them is concluded: each gets the error
                told, committed = [error] * len(made), False
        if committed:
            for _, outcome, _ in concluded:
                self._metrics.order_latency.observe(outcome.latency_ms)
                self._by_status[outcome.status.value] += 1
            for status, count in Counter(outcome.status.value for _, outcome, _ in concluded).items():
                self._metrics.orders.inc(count, status=status, shard=str(self.shard))
        for (i, _, _), answer in zip(concluded, told, strict=True):
            answers[i] = answer
        return cast(list[EncodedOutcome | BaseException], answers)  # every place is filled

    async def _compensate(self, outcome: OrderOutcome) -> dict[StageName, str]:
        """Ask every stage that did not decline to undo its work. Errored stages are asked too: a
        call that timed out may still have run, and only the replica knows."""
        asked = [(s, r.replica) for s, r in outcome.results.items() if r.status is not StageStatus.BUSINESS_FAILURE]
        answers = await asyncio.gather(*(self._clients[s].compensate(outcome.order_id, name) for s, name in asked))
        return {stage: answer for (stage, _), answer in zip(asked, answers, strict=True) if answer}

    async def apply_members(self, lists: list[PoolMembers]) -> int:
        """The supervisor's member lists, one per stage; the version this shard is now at."""
        for members in lists:
            if self._clients[members.stage].apply(members):
                self.log.info(
                    "{} members v{}: {}",
                    members.stage,
                    members.version,
                    ", ".join(m.name + (" (draining)" if m.draining else "") for m in members.members),
                )
        return min(client.pool.version for client in self._clients.values())

    async def drained(self, stage: StageName, name: str) -> None:
        """Return once a replica listed as draining may go: every order in flight now has concluded
        (one of them may still need it to compensate), and it has no call of this shard left."""
        await self._orders.concluded()
        await self._clients[stage].drained(name)

    def close(self) -> None:
        """Stop the gauges and any batch under way, and release the shard's ledger connection."""
        for task in [self._gauges, *self._tasks]:
            if task is not None:
                cancel_soon(task)
        if self._ledger is not None:
            self._ledger.close()

    async def breakers(self) -> list[BreakerSnapshot]:
        """Each stage's circuit breaker in this shard: what the Producer holds admissions on."""
        return [client.breaker.snapshot() for client in self._clients.values()]

    async def stats(self) -> DispatcherStats:
        return DispatcherStats(
            shard=self.shard,
            in_flight=self._orders.admitted,
            waiting=self._orders.waiting,
            orders_done=sum(self._by_status.values()),
            by_status=dict(self._by_status),
            stages={stage: client.loads() for stage, client in self._clients.items()},
            members_version=min(client.pool.version for client in self._clients.values()),
            cpu_s=time.process_time(),
            breakers=[client.breaker.snapshot() for client in self._clients.values()],
        )

    def _refresh_call_order(self) -> None:
        """The slowest stage first, by the replicas' measured time per order: each `.remote()` takes
        its time, so the last stage called starts a little after the first, and that should be the
        quickest one."""
        self._call_order = sorted(STAGES, key=lambda stage: self._clients[stage].per_order_s, reverse=True)
