"""Adaptive micro-batching of stage calls, one `ReplicaBatcher` per replica.

An order for an idle replica goes out at once, alone, so low-load latency is that of a plain call.
Orders that arrive while the replica is busy wait here, rush orders first, and leave together in
one call as soon as a slot frees: the batch grows with the backlog and shrinks with it, with no
linger timer to tune. Every actor call has the same fixed CPU cost however many orders it carries,
so under load this is what lets the Dispatcher go past six calls per order.

Two bounds adapt to the stage's measured time per order (from the results' own timings):
- a batch holds at most `max_batch_s` of estimated work, so a rush order never waits long behind
  the batch in progress (128 orders of a 20 ms stage would be 2.6 s);
- a batch holds one priority: a call answers when its last order is done, so rush orders leave in
  a batch of their own, which answers after their work rather than after a batch of normal ones;
- a replica whose calls take longer than `pipeline_after_s` gets its next batch queued behind the
  running one (up to `max_outstanding` calls), so it never sits idle for a round trip; quick calls
  go one at a time, so that the backlog gathers into bigger batches instead.

It also bounds what waits inside Ray: a replica's queue holds at most `max_outstanding` calls of
at most `max_batch` orders; the rest wait here, where priorities apply and a timed-out order can
simply leave.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actors.models import JewelryOrder, StageResult, StageStatus

# `loop.call_later(delay_s, callback, *args)`, returning something with `cancel()`.
CallLater = Callable[..., Any]


class BatchPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # At zero wait a call's fixed cost is most of a stage's CPU per order, so the cap is high enough
    # never to be what limits a batch (see the README's performance notes); with real durations
    # `max_batch_s` is the bound that acts.
    max_batch: int = Field(default=128, ge=1, description="orders per call at most; 1 turns batching off")
    max_outstanding: int = Field(default=2, ge=1, description="calls in flight per replica at most")
    max_batch_s: float = Field(default=0.2, gt=0, description="estimated work per call at most, in seconds")
    pipeline_after_s: float = Field(
        default=0.005, ge=0, description="calls estimated longer than this may be queued behind a running one"
    )

    def batch_size(self, per_order_s: float | None) -> int:
        """Orders for the next call: `max_batch`, fewer when that much work would take over `max_batch_s`."""
        if not per_order_s:
            return self.max_batch
        return max(1, min(self.max_batch, int(self.max_batch_s / per_order_s)))

    def calls_allowed(self, per_order_s: float | None, batch: int) -> int:
        """Calls a replica may have at once: more than one only when a call is long enough to pipeline."""
        if per_order_s is not None and per_order_s * batch >= self.pipeline_after_s:
            return self.max_outstanding
        return 1


# One order's answer from a replica: its result, or the error its call failed with.
Outcome = StageResult | BaseException


class Part:
    """Orders of one priority sent to one replica for one stage of a Dispatcher batch, answered
    together through one future (and one timer): a shard's cost per stage call does not grow with
    the orders in it. The part may travel in several calls (split to bound a call's work, or merged
    with other parts waiting for the same replica); each order's slot gets its own result or the
    error of the call that carried it."""

    __slots__ = ("future", "missing", "orders", "outcomes", "sent")

    def __init__(self, orders: list[JewelryOrder], future: asyncio.Future[list[Outcome]]) -> None:
        self.orders = orders
        self.future = future
        self.outcomes: list[Outcome | None] = [None] * len(orders)
        self.sent = 0  # orders handed to a call so far
        self.missing = len(orders)  # orders not answered yet

    def answer(self, start: int, outcomes: list[Outcome]) -> None:
        self.outcomes[start : start + len(outcomes)] = outcomes
        self.missing -= len(outcomes)
        if self.missing == 0 and not self.future.done():
            self.future.set_result(self.outcomes)  # type: ignore[arg-type]  # every slot is filled now


# A slice of a part carried by one call: the part, and where its slice starts and ends.
Piece = tuple[Part, int, int]


class ReplicaBatcher:
    """Queues one replica's parts and sends them in batches; `submit` gives the future of a part's results."""

    def __init__(
        self, send: Callable[[list[JewelryOrder]], Any], policy: BatchPolicy, call_later: CallLater | None = None
    ) -> None:
        self._send = send  # sends a batch; an awaitable of its results
        self._policy = policy
        # Where timeout timers come from: the running loop's `call_later`, or a test's fake timers.
        self._call_later = call_later
        self._waiting: list[tuple[int, int, Part]] = []
        self._sequence = itertools.count()
        self._outstanding = 0
        self._per_order_s: float | None = None  # smoothed time per order at the replica
        self.batch_calls = 0  # calls sent, and the orders they carried: `status` shows the mean batch
        self.orders_sent = 0

    @property
    def per_order_s(self) -> float | None:
        return self._per_order_s

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def waiting(self) -> int:
        return sum(len(part.orders) - part.sent for *_, part in self._waiting if not part.future.done())

    def submit(self, orders: list[JewelryOrder], timeout_s: float | None = None) -> asyncio.Future[list[Outcome]]:
        """Queue orders of one priority (they may leave at once) and return the future of their
        outcomes, in order, which fails with `TimeoutError` if they were not all answered within
        `timeout_s`.

        A future rather than a coroutine, and the timeout a timer rather than `asyncio.wait_for`, so
        that a part costs no task of its own. Cancelling the future takes what still waits out of
        the queue; an order already sent is finished and recorded by the replica.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        heapq.heappush(self._waiting, (orders[0].priority.rank, next(self._sequence), Part(orders, future)))
        if timeout_s is not None:
            timer = (self._call_later or loop.call_later)(timeout_s, _expire, future)
            future.add_done_callback(lambda _: timer.cancel())
        self._launch()
        return future

    def _launch(self) -> None:
        while True:
            size = self._policy.batch_size(self._per_order_s)
            if self._outstanding >= self._policy.calls_allowed(self._per_order_s, size):
                return
            pieces = self._take(size)
            if not pieces:
                return
            orders = [order for part, start, end in pieces for order in part.orders[start:end]]
            self._outstanding += 1
            self.batch_calls += 1
            self.orders_sent += len(orders)
            try:
                sent = self._send(orders)  # sent now, not on the next loop turn
            except Exception as error:  # noqa: BLE001 - answered as the call's error, below
                sent = _failed(error)
            asyncio.get_running_loop().create_task(self._settle(pieces, len(orders), sent))

    def _take(self, size: int) -> list[Piece]:
        """Up to `size` orders of one priority, from the parts waiting longest."""
        pieces: list[Piece] = []
        room = size
        while self._waiting and room:
            rank, _, part = self._waiting[0]
            if part.future.done():
                heapq.heappop(self._waiting)
                continue
            if pieces and rank != pieces[0][0].orders[0].priority.rank:
                break  # one priority per call
            start = part.sent
            part.sent = end = min(len(part.orders), start + room)
            pieces.append((part, start, end))
            room -= end - start
            if end == len(part.orders):
                heapq.heappop(self._waiting)
        return pieces

    async def _settle(self, pieces: list[Piece], count: int, sent: Any) -> None:
        try:
            outcomes: list[Outcome] = list(await sent)
        except Exception as error:  # noqa: BLE001 - every order of the call gets the call's error
            outcomes = [error] * count
        finally:
            self._outstanding -= 1
        self._learn(outcomes)
        offset = 0
        for part, start, end in pieces:
            part.answer(start, outcomes[offset : offset + end - start])
            offset += end - start
        self._launch()

    def _learn(self, outcomes: list[Outcome]) -> None:
        """Fold the replica's own timing of fresh results into the estimate (replays took no work)."""
        timed = [
            o.duration_ms / 1000
            for o in outcomes
            if isinstance(o, StageResult) and not o.replayed and o.status is not StageStatus.ERROR
        ]
        if timed:
            mean = sum(timed) / len(timed)
            self._per_order_s = mean if self._per_order_s is None else 0.7 * self._per_order_s + 0.3 * mean


def _expire(future: asyncio.Future[list[Outcome]]) -> None:
    """Still waiting in the queue, its orders leave it; already sent, the replica finishes and records them."""
    if not future.done():
        future.set_exception(TimeoutError())


async def _failed(error: Exception) -> list[StageResult]:
    raise error
