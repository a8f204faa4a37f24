"""A run's scheduled orders waiting for their time: the timer over what the ledger keeps.

An order with `not_before` in the future is held here instead of being sent; when it is due, the
run's `release` admits it through the ledger (`ScheduleLedger.admit_scheduled`, which refuses an
order cancelled meanwhile or not due yet) and sends it. Nothing here is the record: a Producer that
starts again rebuilds its schedule from the ledger (orders over HTTP) or from its source (files),
and the ledger's row says whether each was admitted already.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable

from loguru import logger

from actors.intake.accept import Accepted

LOOK_AT_LEAST_EVERY_S = 30.0  # a far-off order is looked at again now and then: the wall clock may jump
RELEASE_AGAIN_AFTER_S = 1.0  # a release that failed (the ledger out of reach) is tried again then


class Schedule:
    def __init__(self, release: Callable[[Accepted], Awaitable[None]], clock: Callable[[], float] = time.time) -> None:
        self._release = release
        self._clock = clock
        self._heap: list[tuple[float, int, Accepted]] = []
        self._held: set[str] = set()
        self._sequence = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def __len__(self) -> int:
        return len(self._held)

    @property
    def next_due(self) -> float | None:
        return min((due for due, _, a in self._heap if a.order.order_id in self._held), default=None)

    def hold(self, accepted: Accepted, due: float | None = None) -> None:
        """Hold the order until `due` (epoch seconds; its `not_before` unless the ledger says otherwise)."""
        due = due if due is not None else accepted.order.due_ts
        assert due is not None, "only a scheduled order is held"
        self._held.add(accepted.order.order_id)
        heapq.heappush(self._heap, (due, next(self._sequence), accepted))
        self._changed.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def drop(self, order_id: str) -> bool:
        """Forget a held order (it was cancelled); whether it was held."""
        if order_id not in self._held:
            return False
        self._held.discard(order_id)
        self._changed.set()
        return True

    def poke(self) -> None:
        """Look at the clock again now (a test's clock moved; the timer otherwise wakes by itself)."""
        self._changed.set()

    async def drained(self) -> None:
        """Return once nothing is held (every order released or dropped), or the schedule stops."""
        while self._held and not self._stopping:
            self._changed.clear()
            await self._changed.wait()

    def stopping(self) -> None:
        """Release nothing more (the run stops admitting); `stop` then waits for a release under way."""
        self._stopping = True
        self._changed.set()

    async def stop(self) -> None:
        """Release nothing more; a release under way finishes first. What is held stays in the ledger."""
        self._stopping = True
        self._changed.set()
        if self._task is not None:
            await self._task

    def abandon(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while not self._stopping:
            while self._heap and self._heap[0][2].order.order_id not in self._held:
                heapq.heappop(self._heap)  # dropped
            if self._heap and self._heap[0][0] <= self._clock():
                _, _, accepted = heapq.heappop(self._heap)
                self._held.discard(accepted.order.order_id)
                try:
                    await self._release(accepted)
                except Exception as error:  # noqa: BLE001 - the order stays held; the timer goes on
                    logger.bind(stage="producer", order_id=accepted.order.order_id).warning(
                        "scheduled order not released ({}); again in {:g} s", error, RELEASE_AGAIN_AFTER_S
                    )
                    self.hold(accepted, due=self._clock() + RELEASE_AGAIN_AFTER_S)
                self._changed.set()
                continue
            wait_s = (
                LOOK_AT_LEAST_EVERY_S
                if not self._heap
                else min(self._heap[0][0] - self._clock(), LOOK_AT_LEAST_EVERY_S)
            )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(wait_s, 0.0))
