"""What the Producer has for the driver: finished outcomes, rejects and lost orders, until polled.

Outcomes are bounded (`limit`): a slow reader of results slows the source down (`reserve` waits)
instead of growing a queue. Rejects and lost orders are few and never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from actors.models import EncodedOutcome, RejectedRecord
from actors.models.messages import LostOrder


class Outbox:
    def __init__(self, limit: int) -> None:
        self._space = asyncio.Semaphore(limit)
        self.outcomes: deque[EncodedOutcome] = deque()
        self.rejects: deque[RejectedRecord] = deque()
        self.lost: deque[LostOrder] = deque()
        self.news = asyncio.Event()  # set whenever something arrives, or the run's state changes

    async def reserve(self) -> None:
        """A place for one more outcome: taken before the order is sent, given back when polled."""
        await self._space.acquire()

    def unreserve(self) -> None:
        self._space.release()

    def outcome(self, outcome: EncodedOutcome) -> None:
        self.outcomes.append(outcome)
        self.news.set()

    def reject(self, record: RejectedRecord) -> None:
        self.rejects.append(record)
        self.news.set()

    def lose(self, lost: LostOrder) -> None:
        self._space.release()  # a lost order has no outcome to hold a place for
        self.lost.append(lost)
        self.news.set()

    @property
    def empty(self) -> bool:
        return not (self.outcomes or self.rejects or self.lost)

    async def wait(self, wait_s: float) -> None:
        """Until something arrives, at most `wait_s`."""
        self.news.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.news.wait(), wait_s)

    def take(self, max_outcomes: int) -> tuple[list[EncodedOutcome], list[RejectedRecord], list[LostOrder]]:
        outcomes = [self.outcomes.popleft() for _ in range(min(max_outcomes, len(self.outcomes)))]
        for _ in outcomes:
            self._space.release()
        rejects = [self.rejects.popleft() for _ in range(len(self.rejects))]
        lost = [self.lost.popleft() for _ in range(len(self.lost))]
        return outcomes, rejects, lost
