"""How the Producer's accepted orders reach the Dispatcher shards: each to its shard (a stable hash
of its id), a bounded window of orders per shard, and few calls carrying many orders.

Orders go to a shard in at most `DISPATCH_CALLS` calls at a time: when it is idle an order goes
alone and at once; under load the orders that arrived meanwhile (rush first) go together in the
next free call. Each call costs the shard the same fixed CPU however many orders it carries, and
answers when the last of them is done, so a few calls keep it busy while one waits for a slow order.

A shard has at most `WINDOW_PER_ADMITTED × max_in_flight` of the Producer's orders at once. A call's
finished orders hold their places until the call answers, so a window of just `max_in_flight`
leaves the shard's admission well under full at zero wait. The extra places wait at the shard's
admission gate, ready to go in (rush first) as soon as an order finishes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from actors.dispatch.sharding import shard_of
from actors.models import EncodedOutcome, JewelryOrder
from actors.models.wire import ModelArray

DISPATCH_CALLS = 4
WINDOW_PER_ADMITTED = 2

# Told each order's answer: its outcome, or the error that kept it from one.
OnAnswer = Callable[[JewelryOrder, EncodedOutcome | BaseException], None]


class _Lane:
    """One shard: its window, the orders waiting to be sent to it, and its calls under way."""

    def __init__(self, handle: Any, window: int) -> None:
        self.handle = handle
        self.window = asyncio.Semaphore(window)
        self.batch_size = -(-window // DISPATCH_CALLS)  # enough that the calls together fill the window
        self.unsent: list[tuple[int, int, JewelryOrder]] = []
        self.calls = 0


class ShardedSender:
    def __init__(self, shards: list[Any], max_in_flight: int, on_answer: OnAnswer) -> None:
        self._lanes = [_Lane(handle, WINDOW_PER_ADMITTED * max_in_flight) for handle in shards]
        self._on_answer = on_answer
        self._sequence = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0

    async def send(self, order: JewelryOrder) -> None:
        """Queue the order for its shard, once its window has a place."""
        lane = self._lanes[shard_of(order.order_id, len(self._lanes))]
        await lane.window.acquire()
        self.in_flight += 1
        heapq.heappush(lane.unsent, (order.priority.rank, next(self._sequence), order))
        self._launch(lane)

    def _launch(self, lane: _Lane) -> None:
        while lane.unsent and lane.calls < DISPATCH_CALLS:
            batch = [heapq.heappop(lane.unsent)[2] for _ in range(min(lane.batch_size, len(lane.unsent)))]
            lane.calls += 1
            task = asyncio.get_running_loop().create_task(self._dispatch(lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, lane: _Lane, orders: list[JewelryOrder]) -> None:
        try:
            answers: list[EncodedOutcome | BaseException] = await lane.handle.process_encoded.remote(
                ModelArray.of(JewelryOrder, orders)
            )
        except Exception as error:  # noqa: BLE001 - every order of the call gets the call's error
            answers = [error] * len(orders)
        finally:
            lane.calls -= 1
        for order, answer in zip(orders, answers, strict=True):
            self.in_flight -= 1
            lane.window.release()
            self._on_answer(order, answer)
        self._launch(lane)
