"""The Producer: reads or generates orders, rejects bad records, and feeds the Dispatcher.

It never has more than `WINDOW_PER_ADMITTED × max_in_flight` orders at the Dispatcher (which
admits `max_in_flight` of them to the stages at once, rush first), and never holds more than
`outbox_limit` finished outcomes that the driver has not collected yet: a slow reader of
results slows the source down instead of growing a queue. In serve mode it stays up after its
source is read and takes further records from operators (`submit`) until `stop`.

With a ledger, an order that already has an outcome there (an earlier run, or this run before the
Producer restarted) is answered from the ledger instead of being sent again: that is how a run
resumes. A restarted Producer reads its source again from the top on the first `poll`.

Orders go to the Dispatcher in at most `DISPATCH_CALLS` calls at a time: when it is idle an order
goes alone and at once, and under load the orders that arrived meanwhile (rush first) go together
in the next free call. The window still counts orders, not calls.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
from collections import deque
from typing import Any

from loguru import logger

from actors.errors import LedgerUnavailable, NotServing, describe_error
from actors.intake.sources import (
    Row,
    SourceSpec,
    count_records,
    read_numbered_records,
    record_from_row,
)
from actors.ledger import LedgerSpec, SqlLedger, open_ledger
from actors.models import FieldError, JewelryOrder, OrderOutcome, RejectedRecord
from actors.models.messages import LostOrder, ProducerProgress, SubmitReceipt
from actors.naming import resolve
from actors.runtime import prepare_process
from actors.telemetry import SourceMetrics

# Calls to the Dispatcher under way at once. An order waits here only while all of them are out,
# so at low load each goes alone and at once; under load the orders that arrived meanwhile go
# together in the next call. Each call costs the Dispatcher ~0.8 ms of CPU however many orders it
# carries, and answers when the last of them is done, so a few calls keep it busy while one waits
# for a slow order.
DISPATCH_CALLS = 4
# Orders the Producer may have at the Dispatcher, per order the Dispatcher admits at once. A call
# answers when its last order is done, so its finished orders hold their places in the window
# until then: with a window of `max_in_flight`, only 43 of 100 orders were admitted on average at
# zero wait. The extra places wait at the Dispatcher's admission gate, ready to go in (rush first)
# as soon as an order finishes; with them zero-wait throughput rose 8% (paired runs, 721 -> 777/s).
WINDOW_PER_ADMITTED = 2


class Producer:
    def __init__(
        self,
        source: SourceSpec,
        dispatcher: Any,
        max_in_flight: int = 100,
        outbox_limit: int = 10_000,
        log_level: str | None = None,
        serve: bool = False,
        ledger: LedgerSpec | None = None,
    ) -> None:
        prepare_process(log_level)
        self._source = source
        self._dispatcher = resolve(dispatcher)
        window = WINDOW_PER_ADMITTED * max_in_flight
        self._window = asyncio.Semaphore(window)
        # Accepted orders not yet sent (rush first), the Dispatcher calls under way, and how many
        # orders one call carries at most: enough that the calls together can fill the window.
        self._unsent: list[tuple[int, int, JewelryOrder]] = []
        self._calls = 0
        self._batch_size = -(-window // DISPATCH_CALLS)
        self._outbox_space = asyncio.Semaphore(outbox_limit)
        self._outcomes: deque[OrderOutcome] = deque()
        self._rejects: deque[RejectedRecord] = deque()
        self._lost: deque[LostOrder] = deque()
        self._news = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._feeder: asyncio.Task | None = None
        self._expected = 0
        self._read = 0
        self._accepted = 0
        self._in_flight = 0
        self._reading_done = False
        self._source_error: str | None = None
        self._serve = serve
        self._stop_requested = False
        self._not_started: int | None = None
        # Submitted in serve mode, not yet sent: rush first, then in arrival order; with its ledger outcome.
        self._submitted: list[tuple[int, int, JewelryOrder, OrderOutcome | None]] = []
        self._sequence = itertools.count()
        self._more = asyncio.Event()
        self._seen_ids: set[str] = set()
        self._metrics = SourceMetrics()
        self._ledger: SqlLedger | None = open_ledger(ledger) if ledger is not None else None
        self._from_ledger = 0
        self.log = logger.bind(stage="producer")

    async def start(self) -> int:
        """Begin feeding in the background; returns how many records the source holds."""
        if self._feeder is None:
            self._expected = count_records(self._source)
            self._feeder = asyncio.get_running_loop().create_task(self._feed())
            self.log.info("feeding {} record(s) from {}", self._expected, self._source.label)
        return self._expected

    async def poll(self, max_items: int = 1000, wait_s: float = 0.5) -> ProducerProgress:
        """Collect finished outcomes and rejects; waits up to `wait_s` when there is nothing new."""
        if self._feeder is None:  # a restarted Producer: Ray re-sent the driver's poll to a fresh instance
            await self.start()
        if not (self._outcomes or self._rejects or self._lost) and not self._finished:
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), wait_s)
            except TimeoutError:
                pass
        outcomes = [self._outcomes.popleft() for _ in range(min(max_items, len(self._outcomes)))]
        for _ in outcomes:
            self._outbox_space.release()
        rejects = [self._rejects.popleft() for _ in range(len(self._rejects))]
        lost = [self._lost.popleft() for _ in range(len(self._lost))]
        return ProducerProgress(
            outcomes=outcomes,
            rejects=rejects,
            lost=lost,
            expected_records=self._expected,
            read=self._read,
            accepted=self._accepted,
            in_flight=self._in_flight,
            finished=self._finished and not self._outcomes,
            serving=self._serve and not self._stop_requested,
            source_error=self._source_error,
            not_started=self._not_started,
        )

    async def describe(self) -> dict[str, object]:
        """Where the source stands, for `status`; unlike `poll` it collects nothing."""
        return {"source": self._source.label, "expected_records": self._expected, "read": self._read,
                "accepted": self._accepted, "in_flight": self._in_flight,
                "outcomes_waiting_for_driver": len(self._outcomes), "serving": self._serve and not self._stop_requested}

    async def submit(self, rows: list[Row], source: str) -> SubmitReceipt:
        """Serve mode: validate further records and queue the good ones behind what is in flight."""
        if not self._serve or self._stop_requested:
            raise NotServing("this producer is not taking submissions (not in serve mode, or stopping)")
        rejected: list[RejectedRecord] = []
        accepted = 0
        for row in rows:
            record, known = record_from_row(row, source), None
            if isinstance(record, JewelryOrder) and record.order_id in self._seen_ids:
                record = RejectedRecord(source=source, line=row[0], order_id=record.order_id, raw=row[1],
                                        errors=(FieldError(field="order_id", reason="already submitted to this run"),))
            elif isinstance(record, JewelryOrder):
                record, known = self._against_ledger(record, source, row[0])
            if isinstance(record, RejectedRecord):
                self._reject(record)
                rejected.append(record)
                continue
            self._seen_ids.add(record.order_id)
            heapq.heappush(self._submitted, (record.priority.rank, next(self._sequence), record, known))
            accepted += 1
        self._expected += len(rows)
        self._read += len(rows)
        self._more.set()
        self.log.info("submitted from {}: {} accepted, {} rejected", source, accepted, len(rejected))
        return SubmitReceipt(accepted=accepted, rejected=rejected)

    async def stop(self) -> None:
        """Admit no more orders: a serving run stops taking submissions, a run still reading its
        source stops reading it. The run finishes once what is already accepted has its outcomes."""
        self._stop_requested = True
        self._more.set()
        self._news.set()

    @property
    def _finished(self) -> bool:
        return self._reading_done and self._in_flight == 0

    async def _feed(self) -> None:
        try:
            for line, record in read_numbered_records(self._source):
                if self._stop_requested:  # interrupted: admit nothing more; what was admitted concludes
                    self._not_started = self._expected - self._read
                    self.log.info("stopped reading at record {}: {} record(s) not started", self._read,
                                  self._not_started)
                    break
                self._read += 1
                known = None
                if isinstance(record, JewelryOrder):
                    try:
                        record, known = self._against_ledger(record, self._source.label, line)
                    except LedgerUnavailable as error:  # the store's retries are spent
                        self._source_error = (f"the ledger is unreachable ({error}); reading "
                                              f"stopped at record {self._read}: run the same command again to "
                                              f"finish the rest")
                        self.log.opt(exception=error).error("{}", self._source_error)
                        return
                if isinstance(record, RejectedRecord):
                    self._reject(record)
                    await asyncio.sleep(0)  # let polls through while a long stretch of bad lines is read
                    continue
                self._seen_ids.add(record.order_id)
                await self._send(record, known)
            self.log.info("source read: {} record(s), {} accepted", self._read, self._accepted)
            while self._serve and not self._stop_requested:
                if not self._submitted:
                    self._more.clear()
                    await self._more.wait()
                    continue
                await self._send(*heapq.heappop(self._submitted)[2:])
            while self._submitted:  # accepted before the stop: they still get their outcomes
                await self._send(*heapq.heappop(self._submitted)[2:])
        except Exception as error:  # noqa: BLE001 - the run must end with the reason, not hang
            self._source_error = f"{type(error).__name__}: {error}"
            self.log.opt(exception=error).error("source stopped: {}", self._source_error)
        finally:
            self._reading_done = True
            self._news.set()

    def _against_ledger(
        self, order: JewelryOrder, source: str, line: int
    ) -> tuple[JewelryOrder | RejectedRecord, OrderOutcome | None]:
        """The order with its outcome in the ledger, if it has one already. An order id the ledger
        knows with other details is another order under a used id: rejected, rather than answered
        with the outcome of the order that id first named."""
        recorded = self._ledger.outcome(order.order_id) if self._ledger is not None else None
        if recorded is None or recorded.order is None or recorded.order == order:
            return order, recorded
        reason = (f"the ledger already has order {order.order_id} with other details ({recorded.status}); "
                  f"use a new order id, or a new ledger (--out/--ledger)")
        return RejectedRecord(source=source, line=line, order_id=order.order_id,
                              errors=(FieldError(field="order_id", reason=reason),),
                              raw=order.model_dump(mode="json")), None

    def _reject(self, record: RejectedRecord) -> None:
        self.log.warning("rejected {}", record.message)
        self._rejects.append(record)
        field = re.sub(r"\.\d+", "[]", record.errors[0].field)  # bounded tag: no list indices
        self._metrics.rejects.inc(tags={"field": field})
        self._news.set()

    async def _send(self, order: JewelryOrder, recorded: OrderOutcome | None) -> None:
        """Dispatch the order, or answer it with the outcome the ledger already has for it."""
        await self._outbox_space.acquire()
        self._accepted += 1
        if recorded is not None:
            self._from_ledger += 1
            self._outcomes.append(recorded.model_copy(update={"from_ledger": True}))
            self._news.set()
            if self._from_ledger % 1000 == 0:
                await asyncio.sleep(0)  # let polls through during a long stretch of finished orders
            return
        await self._window.acquire()
        self._in_flight += 1
        heapq.heappush(self._unsent, (order.priority.rank, next(self._sequence), order))
        self._launch()

    def _launch(self) -> None:
        """Send what waits, rush first, in as few calls as the Dispatcher's free calls allow: alone
        when it is idle, together under load (see `DISPATCH_CALLS`)."""
        while self._unsent and self._calls < DISPATCH_CALLS:
            batch = [heapq.heappop(self._unsent)[2] for _ in range(min(self._batch_size, len(self._unsent)))]
            self._calls += 1
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, orders: list[JewelryOrder]) -> None:
        try:
            answers: list[OrderOutcome | BaseException] = await self._dispatcher.process_batch.remote(orders)
        except Exception as error:  # noqa: BLE001 - every order of the call is lost, below
            answers = [error] * len(orders)
        finally:
            self._calls -= 1
        for order, answer in zip(orders, answers, strict=True):
            if isinstance(answer, BaseException):  # reported as lost; the run ends non-zero
                self._outbox_space.release()
                reason = describe_error(answer)
                self.log.bind(order_id=order.order_id).error("dispatcher call failed: {}", reason)
                self._lost.append(LostOrder(order_id=order.order_id, reason=reason, resumable=self._ledger is not None))
            else:
                self._outcomes.append(answer)
            self._in_flight -= 1
            self._window.release()
        self._news.set()
        self._launch()
