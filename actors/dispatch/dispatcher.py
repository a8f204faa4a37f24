"""The Dispatcher: admits orders, fans each out to the six stages at once, gathers, and concludes.

An async actor: many orders are in flight together (`max_in_flight`, rush first), and an order's
six first attempts are all sent before any is awaited. How a stage is called (replica, batch,
timeout, retries, dead replicas) is its `StageClient`'s business; what the results mean is decided
here. A failed order keeps its other results, and the stages that did their part undo it on the
replica that did it (compensation). With a ledger a shard is the one writer of its orders'
outcomes, each committed before it is returned, so a restarted shard or a resumed run answers a
repeat from the ledger; an order whose stage kept erroring is parked as a dead letter for `replay`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from actors.dispatch.batching import BatchPolicy
from actors.dispatch.client import StageClient
from actors.dispatch.gauges import publish_gauges
from actors.dispatch.in_flight import OrdersInFlight, answered
from actors.dispatch.retry import RetryPolicy
from actors.dispatch.verdict import stages_to_replay, verdict
from actors.errors import ConfigurationError, LedgerUnavailable, ReplayRefused
from actors.ledger import PROBE_EVERY_S, LedgerSpec, OutcomeGroupCommit, SqlLedger, open_ledger
from actors.models import STAGES, JewelryOrder, OrderOutcome, OrderStatus, StageName, StageResult, StageStatus
from actors.models.messages import DispatcherStats, PoolMembers
from actors.models.wire import Prepickled
from actors.naming import resolve_present
from actors.runtime import prepare_process
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
    ) -> None:
        prepare_process(log_level)
        if missing := set(STAGES) - set(pools):
            raise ConfigurationError(f"the dispatcher needs a pool for every stage; missing {sorted(missing)}")
        self.shard = shard
        self.log = logger.bind(stage=f"dispatcher-{shard}")
        self._metrics = DispatchMetrics()
        self._wired: dict[str, Prepickled] = {}  # each order in flight, dumped once for its six stage calls
        self._clients = {
            stage: StageClient(
                stage,
                resolve_present(pools[stage], self.log),
                stage_timeouts_s.get(stage),
                (retry_policies or {}).get(stage, RetryPolicy()),
                batching or BatchPolicy(),
                self._metrics,
                lambda order: self._wired.get(order.order_id, order),
            )
            for stage in STAGES
        }
        self._orders = OrdersInFlight(max_in_flight)
        self._ledger: SqlLedger | None = open_ledger(ledger) if ledger is not None else None
        self._outcome_writer = OutcomeGroupCommit(self._ledger) if self._ledger else None
        self._gauges: asyncio.Task[None] | None = None
        self._call_order, self._by_status = list(STAGES), {status.value: 0 for status in OrderStatus}
        self.log.info("ready: {}", ", ".join(f"{s}×{len(c.pool)}" for s, c in self._clients.items()))

    async def process(self, order: JewelryOrder) -> OrderOutcome:
        """The one terminal outcome of an order. The same order sent again while in flight (a
        restarted Producer re-sends what it cannot know finished) waits for the same outcome."""
        recorded = self._ledger.outcome(order.order_id) if self._ledger is not None else None
        return await self._answer(order, recorded)

    async def process_batch(self, orders: list[JewelryOrder]) -> list[OrderOutcome | BaseException]:
        """`process` for several orders, each admitted and fanned out on its own; for each, its
        outcome or the error its `process` raised. Receiving a call costs about 0.8 ms of CPU
        whatever it carries, so under load the Producer sends orders together. A batch Ray re-sends
        to a restarted shard is answered from the ledger, or by joining the orders still in flight."""
        try:
            recorded = await self._recorded_outcomes(orders)
        except LedgerUnavailable as error:
            return [error] * len(orders)  # none of them started: each is reported unfinished
        answers = [self._answer(order, recorded.get(order.order_id)) for order in orders]
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

    def _answer(
        self, order: JewelryOrder, recorded: OrderOutcome | None, rejoin: bool = True
    ) -> Awaitable[OrderOutcome]:
        """Join the order's run in flight, answer from the ledger (`recorded`), or start a run,
        registered before anything else on the event loop can look for it."""
        if (running := self._orders.joined(order.order_id)) is not None:
            return self._joined(order, running) if rejoin else running
        if recorded is not None:
            return answered(recorded)
        self._orders.register(order.order_id)
        return self._run(order)

    async def _joined(self, order: JewelryOrder, running: Awaitable[OrderOutcome]) -> OrderOutcome:
        """The outcome of the run joined; but a run that ended for want of the store recorded nothing,
        and may have started long before the store came back (a run that was cut short re-sends its
        orders as soon as it is started again): the repeat then runs the order once more itself."""
        try:
            return await running
        except LedgerUnavailable:
            recorded = self._ledger.outcome(order.order_id) if self._ledger is not None else None
            return await self._answer(order, recorded, rejoin=False)

    async def _run(self, order: JewelryOrder) -> OrderOutcome:
        if self._gauges is None:
            self._gauges = asyncio.get_running_loop().create_task(
                publish_gauges(
                    self.shard, self._clients, self._metrics, lambda: self._orders.admitted, self._refresh_call_order
                )
            )
        answer: OrderOutcome | BaseException = RuntimeError("not run")
        try:
            async with self._orders.admission(order):
                started_at = datetime.now(UTC)
                self._wired[order.order_id] = Prepickled(order)
                answer = await self._conclude(order, await self._call_stages(order, self._call_order), started_at)
            return answer
        except BaseException as error:
            answer = error
            raise
        finally:
            self._wired.pop(order.order_id, None)
            if self._orders.settle(order.order_id, answer):
                self._metrics.flush()  # idle: a run that just ended gets counted in full

    async def _call_stages(self, order: JewelryOrder, stages: list[StageName]) -> list[StageResult]:
        """Every first attempt is sent before any is awaited, and all are awaited in this one
        coroutine: only an order with an error to retry gets a task per stage, so that its retries
        run side by side."""
        clients = [self._clients[stage] for stage in stages]
        attempts = [client.send(order) for client in clients]
        try:
            firsts = [await client.answer(order, attempt) for client, attempt in zip(clients, attempts, strict=True)]
        except BaseException:
            for attempt in attempts:
                attempt.future.cancel()  # still waiting: it leaves its queue
            raise
        calls = [client.finish(order, a, first) for client, a, first in zip(clients, attempts, firsts, strict=True)]
        if any(first.result.status is StageStatus.ERROR for first in firsts):
            return list(await asyncio.gather(*calls))
        return [await call for call in calls]

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
            results.update({r.stage: r for r in await self._call_stages(order, dead)})
        outcome = await self._conclude(order, list(results.values()), started_at, give_up=abandon)
        self._metrics.flush()
        return outcome

    async def _conclude(
        self, order: JewelryOrder, results: list[StageResult], started_at: datetime, give_up: bool = False
    ) -> OrderOutcome:
        """Fan-in, then what a failure calls for (dead letter or compensation), then the ledger."""
        outcome, letters = verdict(
            OrderOutcome.from_results(order, results, started_at, datetime.now(UTC)),
            ledgered=self._ledger is not None,
            give_up=give_up,
        )
        log = self.log.bind(order_id=order.order_id)
        if letters:
            log.warning("dead-lettered: {}; `jewelry-fanout replay {}` completes it", outcome.reason, order.order_id)
        if outcome.status is OrderStatus.FAILED:
            outcome = outcome.model_copy(update={"compensations": await self._compensate(outcome)})
            log.warning("failed: {}", outcome.reason)
        self._metrics.order_latency.observe(outcome.latency_ms)
        if self._outcome_writer is not None:
            await self._outcome_writer.record(outcome, letters)  # committed before anyone is told
        self._by_status[outcome.status.value] += 1
        self._metrics.orders.inc(status=outcome.status.value, shard=str(self.shard))
        return outcome

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
        """Release the shard's ledger connection."""
        if self._ledger is not None:
            self._ledger.close()

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
        )

    def _refresh_call_order(self) -> None:
        """The slowest stage first, by the replicas' measured time per order: each `.remote()` costs
        a fraction of a millisecond, so the last stage called starts ~1.5 ms after the first."""
        self._call_order = sorted(STAGES, key=lambda stage: self._clients[stage].per_order_s, reverse=True)
