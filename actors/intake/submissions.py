"""Serve mode's source: the records operators submit to a running system, in a queue.

To the Producer it is one more source, read after the file or generated orders: `submit` puts
accepted orders in, rush first and then in arrival order, and the Producer takes them out until
the queue is closed (`stop`) and empty.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator

from actors.intake.accept import Accepted


class SubmissionQueue:
    def __init__(self) -> None:
        self._waiting: list[tuple[int, int, Accepted]] = []
        self._sequence = itertools.count()
        self._more = asyncio.Event()
        self.closed = False

    def put(self, accepted: Accepted) -> None:
        heapq.heappush(self._waiting, (accepted.order.priority.rank, next(self._sequence), accepted))
        self._more.set()

    def __len__(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        """No more submissions; what is queued is still taken."""
        self.closed = True
        self._more.set()

    async def orders(self) -> AsyncIterator[Accepted]:
        while self._waiting or not self.closed:
            if not self._waiting:
                self._more.clear()
                await self._more.wait()
                continue
            yield heapq.heappop(self._waiting)[2]
