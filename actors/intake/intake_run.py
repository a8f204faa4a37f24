"""One run's intake inside the Producer: read its source, accept or reject each record, send the
accepted orders to their shards, and keep what the driver has not polled yet.

Its parts each do one thing: a source yields records (`sources`; in serve mode, then the queue that
`submit` and orders over HTTP feed, `submissions`, the latter idempotent and bounded through
`http_intake`), one rule accepts or rejects each of them (`accept`), the sender
takes accepted orders to their shards in bounded windows (`sender`), and the outbox holds what the
driver has not polled yet, bounded so that a slow reader slows the source instead of growing a
queue (`outbox`).

With a ledger, an order that already has an outcome there (an earlier run, or this run before the
Producer restarted) is answered from the ledger instead of being sent again: that is how a run
resumes. An order scheduled for later (`not_before`) is kept in the ledger and held by the run's
`schedule` until it is due; a run reading a file ends once its last one is; a serving run that
stops leaves the rest in the ledger, where the next serving run takes them up.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from loguru import logger
from pydantic import BaseModel, ConfigDict

from actors.errors import LedgerUnavailable, NotServing, describe_error
from actors.intake.accept import Acceptance, Accepted
from actors.intake.http_intake import HttpIntake, HttpLimits
from actors.intake.outbox import Outbox
from actors.intake.rate_limit import RateLimiter
from actors.intake.schedule import Schedule
from actors.intake.sender import ShardedSender
from actors.intake.sources import Row, SourceSpec, count_records, read_numbered_records, record_from_row
from actors.intake.submissions import SubmissionQueue
from actors.ledger import SqlLedger
from actors.ledger.schedule import Cancelled, Scheduled
from actors.models import EncodedOutcome, JewelryOrder, OrderOutcome, OrderStatus, RejectedRecord
from actors.models.breakers import BreakerSnapshot
from actors.models.messages import LostOrder, ProducerProgress, SubmitReceipt
from actors.models.submissions import Submission, SubmissionAnswer, Verdict
from actors.telemetry import SourceMetrics

T = TypeVar("T")
LOOK_AHEAD = 64  # records read ahead of acceptance, so that the ledger is asked about them in one query


class RunPlan(BaseModel):
    """What a run is to do, as the driver tells the Producer: on every poll, so that a restarted
    Producer takes the run up again from the top of its source."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    source: SourceSpec
    serve: bool = False


class IntakeRun:
    def __init__(
        self,
        plan: RunPlan,
        shards: list[Any],
        max_in_flight: int,
        outbox_limit: int,
        ledger: SqlLedger | None,
        metrics: SourceMetrics,
        http_limits: HttpLimits | None = None,
        open_stages: Callable[[], list[BreakerSnapshot]] = list,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.plan = plan
        self._source = plan.source
        self._sender = ShardedSender(shards, max_in_flight, self._answered)
        self._outbox = Outbox(outbox_limit)
        self._ledger = ledger
        self._acceptance = Acceptance(ledger)
        self._submissions = SubmissionQueue() if plan.serve else None
        self._http_limits = http_limits or HttpLimits()
        self._http_answers: Counter[str] = Counter()
        self._http = (
            HttpIntake(
                plan.run_id,
                ledger,
                self._take,
                self._acceptance.forget,
                lambda: self._http_limits.max_queued - len(self._submissions or ()),
                self._queue,
                self._http_limits,
                open_stages,
                limiter,
            )
            if plan.serve and ledger is not None
            else None
        )
        self._metrics = metrics
        self._schedule = Schedule(self._release)
        self._feeder: asyncio.Task[None] | None = None
        self._expected = self._read = self._accepted = self._from_ledger = 0
        self._reading_done = False
        self._source_error: str | None = None
        self._stop_requested = False
        self._not_started: int | None = None
        self.log = logger.bind(stage="producer", run=plan.run_id)

    def start(self) -> int:
        """Begin feeding in the background; returns how many records the source holds."""
        if self._feeder is None:
            self._expected = count_records(self._source)
            self._metrics.scheduled.set(0)  # a series from the start, which a dashboard can tell from "no data"
            self._feeder = asyncio.get_running_loop().create_task(self._feed())
            self.log.info("feeding {} record(s) from {}", self._expected, self._source.label)
        return self._expected

    async def poll(self, max_items: int, wait_s: float) -> ProducerProgress:
        """Collect finished outcomes and rejects; waits up to `wait_s` when there is nothing new."""
        if self._outbox.empty and not self.finished:
            await self._outbox.wait(wait_s)
        outcomes, rejects, lost = self._outbox.take(max_items)
        return ProducerProgress(
            outcomes=outcomes,
            rejects=rejects,
            lost=lost,
            expected_records=self._expected,
            read=self._read,
            accepted=self._accepted,
            in_flight=self._sender.in_flight,
            finished=self.finished and not self._outbox.outcomes,
            serving=self._serving,
            source_error=self._source_error,
            not_started=self._not_started,
            scheduled=len(self._schedule),
        )

    def describe(self) -> dict[str, object]:
        return {
            "run_id": self.plan.run_id,
            "source": self._source.label,
            "expected_records": self._expected,
            "read": self._read,
            "accepted": self._accepted,
            "in_flight": self._sender.in_flight,
            "outcomes_waiting_for_driver": len(self._outbox.outcomes),
            "serving": self._serving,
            "scheduled": {"waiting": len(self._schedule), "next_due": _iso(self._schedule.next_due)},
            "http": {
                "queued": len(self._submissions or ()),
                "max_queued": self._http_limits.max_queued,
                "answers": dict(self._http_answers),
            }
            if self._http is not None
            else None,
        }

    def submit(self, rows: list[Row], source: str) -> SubmitReceipt:
        """Serve mode: take further records; the accepted ones queue behind what is in flight."""
        if self._submissions is None or self._stop_requested:
            raise NotServing("this run is not taking submissions (not in serve mode, or stopping)")
        rejected: list[RejectedRecord] = []
        accepted: list[Accepted] = []
        records = [(line, raw, record_from_row((line, raw, problem), source)) for line, raw, problem in rows]
        self._acceptance.look_ahead(record for *_, record in records)
        for line, raw, record in records:
            self._expected += 1
            verdict = self._take(record, source, line, raw)
            if isinstance(verdict, Accepted):
                accepted.append(verdict)
            else:
                rejected.append(verdict)
        self._admit(accepted)
        self._queue(accepted)
        self.log.info("submitted from {}: {} accepted, {} rejected", source, len(rows) - len(rejected), len(rejected))
        return SubmitReceipt(accepted=len(rows) - len(rejected), rejected=rejected)

    async def accept_submissions(self, submissions: list[Submission]) -> list[SubmissionAnswer]:
        """Serve mode, with a ledger: orders sent over HTTP (see `HttpIntake`)."""
        if self._http is None or self._stop_requested:
            raise NotServing("this run is not taking orders over HTTP (not serving with a ledger, or stopping)")
        self._acceptance.look_ahead(submission.order for submission in submissions)
        answers = await self._http.accept(submissions)
        verdicts = Counter(answer.verdict for answer in answers)
        self._expected += verdicts[Verdict.ACCEPTED] + verdicts[Verdict.REJECTED]  # read: not repeats, not busy ones
        for verdict, count in verdicts.items():
            self._http_answers[verdict.value] += count
            self._metrics.http_answers.inc(count, tags={"verdict": verdict.value})
        self._metrics.http_queued.set(len(self._submissions or ()))
        return answers

    def stop(self) -> None:
        """Admit no more orders: a serving run stops taking submissions, a run still reading its
        source stops reading it. The run finishes once what is already accepted has its outcomes."""
        self._stop_requested = True
        if self._submissions is not None:
            self._submissions.close()
        self._schedule.stopping()
        self._outbox.news.set()

    @property
    def finished(self) -> bool:
        return self._reading_done and self._sender.in_flight == 0

    @property
    def _serving(self) -> bool:
        return self._submissions is not None and not self._stop_requested

    def _queue(self, accepted: list[Accepted]) -> None:
        """Serve mode: accepted orders wait for admission behind what the source is sending."""
        assert self._submissions is not None
        for verdict in accepted:
            self._submissions.put(verdict)

    def _restore_accepted(self) -> None:
        """Serve mode: every order accepted over HTTP that has no outcome yet (before a restart of the
        Producer or of the whole system) joins this run again, first; so does every order this run
        accepted before its Producer restarted (those done are answered from the ledger), and every
        scheduled order not cancelled that has no outcome yet (held again until it is due)."""
        if self._submissions is None or self._ledger is None:
            return
        texts = self._ledger.accepted_to_resume(self.plan.run_id) if self._http is not None else []
        orders = [JewelryOrder.model_validate_json(text) for text in texts]
        taken = {order.order_id for order in orders}
        for text in self._ledger.scheduled_to_resume():
            order = JewelryOrder.model_validate_json(text)
            if order.order_id not in taken:
                orders.append(order)
                taken.add(order.order_id)
        if not orders:
            return
        self._expected += len(orders)
        self._acceptance.look_ahead(orders)
        verdicts = [self._take(order, "http (accepted before a restart)", line) for line, order in enumerate(orders, 1)]
        accepted = [verdict for verdict in verdicts if isinstance(verdict, Accepted)]
        self._admit(accepted)
        self._queue(accepted)
        self.log.info("took up {} order(s) accepted over HTTP or scheduled that have no outcome yet", len(accepted))

    async def _feed(self) -> None:
        try:
            self._restore_accepted()
            await self._feed_source(read_numbered_records(self._source))
            if self._submissions is not None:
                async for accepted in self._submissions.orders():  # serve mode: until `stop`, then what is queued
                    await self._send(accepted)
                    if self._http is not None and not self._submissions:  # drained (each call sets it too)
                        self._metrics.http_queued.set(0)
            else:
                await self._schedule.drained()  # a file's scheduled orders are part of its run
            await self._schedule.stop()
            if self._schedule:
                self.log.info(
                    "{} scheduled order(s) not due yet stay in the ledger for a later run", len(self._schedule)
                )
        except LedgerUnavailable as error:  # the store's retries are spent
            self._source_error = (
                f"the ledger is unreachable ({error}); reading stopped at record {self._read}: "
                f"run the same command again to finish the rest"
            )
            self.log.opt(exception=error).error("{}", self._source_error)
        except Exception as error:  # noqa: BLE001 - the run must end with the reason, not hang
            self._source_error = describe_error(error)
            self.log.opt(exception=error).error("source stopped: {}", self._source_error)
        finally:
            self._schedule.abandon()
            self._reading_done = True
            self._outbox.news.set()

    async def _feed_source(self, records: Iterable[tuple[int, JewelryOrder | RejectedRecord]]) -> None:
        for chunk in chunked(records, LOOK_AHEAD):
            if self._stop_requested:  # interrupted: admit nothing more; what was admitted concludes
                self._not_started = self._expected - self._read
                self.log.info("stopped reading at record {}: {} record(s) not started", self._read, self._not_started)
                return
            self._acceptance.look_ahead(record for _, record in chunk)
            verdicts = [self._take(record, self._source.label, line) for line, record in chunk]
            accepted = [verdict for verdict in verdicts if isinstance(verdict, Accepted)]
            self._admit(accepted)
            for verdict in accepted:
                await self._send(verdict)
            await asyncio.sleep(0)  # let polls through while a long stretch of bad or finished records is read
        self.log.info("source read: {} record(s), {} accepted", self._read, self._accepted)

    def _admit(self, accepted: list[Accepted]) -> None:
        """Record in the ledger that the run admitted these orders, before any is sent or answered (one
        statement for them all): the run's files then hold exactly its own orders."""
        if self._ledger is not None and accepted:
            self._ledger.admit(self.plan.run_id, [verdict.order.order_id for verdict in accepted])

    def _take(
        self,
        record: JewelryOrder | RejectedRecord,
        source: str,
        line: int,
        raw: object = None,
    ) -> Accepted | RejectedRecord:
        """One record read, through the one acceptance rule; a reject is reported at once."""
        self._read += 1
        verdict = self._acceptance.accept(record, source, line, raw)
        if isinstance(verdict, RejectedRecord):
            self.log.warning("rejected {}", verdict.message)
            self._metrics.rejects.inc(tags={"field": re.sub(r"\.\d+", "[]", verdict.errors[0].field)})  # bounded tag
            self._outbox.reject(verdict)
        return verdict

    async def _send(self, accepted: Accepted) -> None:
        """Dispatch the order, or answer it with the outcome the ledger already has for it; a
        scheduled order is held until it is due (unless it was admitted before: it goes now)."""
        if accepted.recorded is None and accepted.order.not_before is not None:
            ready = self._scheduled(accepted)
            if ready is None:
                return
            accepted = ready
        await self._dispatch(accepted)

    async def _dispatch(self, accepted: Accepted) -> None:
        await self._outbox.reserve()
        self._accepted += 1
        if accepted.recorded is not None:
            self._from_ledger += 1
            self._outbox.outcome(EncodedOutcome.of(accepted.recorded.model_copy(update={"from_ledger": True})))
            return
        await self._sender.send(accepted.order)

    def _scheduled(self, accepted: Accepted) -> Accepted | None:
        """A scheduled order as the ledger has it: held (kept in the ledger first), or ready to go
        now (admitted by an earlier Producer: stamped with that time), or answered (cancelled)."""
        order = accepted.order
        state = self._ledger.scheduled_states([order.order_id]).get(order.order_id) if self._ledger else None
        if state is not None and state.admitted_at is not None:
            return Accepted(_admitted(order, state.admitted_at), None)
        if state is not None and state.cancelled_at is not None:
            assert self._ledger is not None
            if (cancelled := self._ledger.outcome(order.order_id)) is None:
                return None  # (the cancellation's transaction recorded one: not reached)
            return Accepted(order, cancelled)  # its cancellation is its outcome
        if state is None and self._ledger is not None:
            self._ledger.schedule(self.plan.run_id, [(order.order_id, order.due_ts or 0.0, order.model_dump_json())])
        self._schedule.hold(accepted, due=state.not_before if state is not None else None)  # the ledger's time rules
        self._metrics.scheduled.set(len(self._schedule))
        self.log.bind(order_id=order.order_id).info("scheduled: held until {}", _iso(order.due_ts))
        return None

    async def _release(self, accepted: Accepted) -> None:
        """A held order is due: admit it through the ledger (which refuses one cancelled meanwhile),
        and send it."""
        order, admitted_at = accepted.order, time.time()
        if self._ledger is not None:
            state = await asyncio.to_thread(self._ledger.admit_scheduled, order.order_id, admitted_at)
            if state is not None and state.cancelled_at is not None:
                return  # cancelled: the cancellation answered it
            if state is not None and state.admitted_at is None:
                self._schedule.hold(accepted, due=state.not_before)  # not due by the ledger's time yet: then
                return
            admitted_at = state.admitted_at if state is not None and state.admitted_at is not None else admitted_at
        self._metrics.scheduled.set(len(self._schedule))
        order = _admitted(order, admitted_at)
        self.log.bind(order_id=order.order_id).info(
            "scheduled order admitted: due {}, admitted {}", _iso(order.due_ts), _iso(admitted_at)
        )
        await self._dispatch(Accepted(order, None))

    async def cancel(self, order_id: str) -> Cancelled:
        """Cancel a scheduled order that has not been admitted (see `cancel_scheduled`); this run's
        driver gets its outcome if the order is this run's."""
        result, outcome = await cancel_scheduled(self._ledger, order_id)
        if outcome is not None and self._schedule.drop(order_id):
            self._metrics.scheduled.set(len(self._schedule))
            await self._outbox.reserve()
            self._accepted += 1
            self._outbox.outcome(EncodedOutcome.of(outcome))
        return result

    def _answered(self, order: JewelryOrder, answer: EncodedOutcome | BaseException) -> None:
        if isinstance(answer, EncodedOutcome):
            self._outbox.outcome(answer)
            return
        reason = describe_error(answer)  # reported as lost; the run ends non-zero
        if isinstance(answer, LedgerUnavailable) and self._ledger is not None:
            self._ledger.found_down_elsewhere(str(answer))  # the Dispatcher spent its budget on it
        self.log.bind(order_id=order.order_id).error("dispatcher call failed: {}", reason)
        self._outbox.lose(LostOrder(order_id=order.order_id, reason=reason, resumable=self._ledger is not None))


async def cancel_scheduled(ledger: SqlLedger | None, order_id: str) -> tuple[Cancelled, OrderOutcome | None]:
    """Cancel a scheduled order that has not been admitted: its outcome (cancelled) is recorded in
    the transaction that cancels it, so no Producer admits it afterwards, whichever one holds it."""
    if ledger is None:
        raise NotServing("cancelling a scheduled order needs the ledger it is kept in")
    made: list[OrderOutcome] = []

    def outcome(found: Scheduled) -> tuple[str, str]:
        made.append(_cancelled(found))
        return OrderStatus.CANCELLED.value, made[-1].model_dump_json(exclude={"from_ledger"})

    result = await asyncio.to_thread(ledger.cancel_scheduled, order_id, outcome)
    if result is Cancelled.CANCELLED:
        logger.bind(stage="producer", order_id=order_id).info("scheduled order cancelled before it was due")
        return result, made[-1]
    return result, None


def _admitted(order: JewelryOrder, at: float) -> JewelryOrder:
    return order.model_copy(update={"admitted_at": datetime.fromtimestamp(at, UTC)})


def _cancelled(found: Scheduled) -> OrderOutcome:
    order = JewelryOrder.model_validate_json(found.order_json)
    at = datetime.fromtimestamp(found.cancelled_at or time.time(), UTC)
    return OrderOutcome(
        order_id=order.order_id,
        order=order,
        status=OrderStatus.CANCELLED,
        reason=f"cancelled before it was due ({_iso(found.not_before)})",
        started_at=at,
        finished_at=at,
        latency_ms=0.0,
        due_at=order.not_before,
    )


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts is not None else None


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), read lazily."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
