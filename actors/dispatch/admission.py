"""Admission in priority order: at most `capacity` holders, and rush orders are let in first.

`asyncio.Semaphore` wakes waiters in arrival order, so under load a rush order would queue behind
every normal order that came before it. This gate keeps its waiters in a heap by priority (then
arrival), the same order the stage queues use (`actors/dispatch/batching.py`), so that rush orders overtake
at every queue they meet.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from actors.models import JewelryOrder, Priority


class PriorityGate:
    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, future in self._waiters if not future.done())

    @asynccontextmanager
    async def admit(self, priority: Priority) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, priority: Priority) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority.rank, next(self._sequence), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # let in just as it was cancelled: pass the place on
            raise

    def take(self, wanted: int) -> int:
        """Up to `wanted` places taken at once, without waiting: none while others wait for one."""
        taken = 0 if self.waiting else min(self._free, wanted)
        self._free -= taken
        return taken

    def release(self) -> None:
        while self._waiters:
            *_, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


def same_priority_runs(orders: Sequence[JewelryOrder], start: int, end: int) -> list[list[int]]:
    """The indices from `start` to `end` of orders sorted rush first, in runs of one priority: a
    stage call carries one priority, and a batch concludes together, so rush orders travel apart."""
    runs: list[list[int]] = []
    for i in range(start, end):
        if runs and orders[runs[-1][0]].priority is orders[i].priority:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
