"""The orders a Dispatcher shard is working on: one run per order id, and their admission.

An order sent again while it runs (a restarted Producer re-sends what it cannot know finished, and
Ray re-sends a batch to a restarted shard) joins the run in flight instead of running twice. Each
run waits at the priority gate (rush first) until one of `capacity` places frees up; a batch takes
as many places as are free at once (`admit_now`), and waits for the rest one by one. `stats`
counts in flight only the admitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from actors.dispatch.admission import PriorityGate
from actors.models import EncodedOutcome, Priority


class OrdersInFlight:
    def __init__(self, capacity: int) -> None:
        self._gate = PriorityGate(capacity)
        self._runs: dict[str, asyncio.Future[EncodedOutcome]] = {}
        self.waiting = 0  # registered, not admitted yet

    @property
    def admitted(self) -> int:
        return len(self._runs) - self.waiting

    def joined(self, order_id: str) -> Awaitable[EncodedOutcome] | None:
        """The outcome of the order's run in flight, if it has one."""
        running = self._runs.get(order_id)
        return asyncio.shield(running) if running is not None else None

    def register(self, order_id: str) -> asyncio.Future[EncodedOutcome]:
        """A run of the order starts: from now on a repeat joins it (see `joined`). The future of its
        answer (`settle` gives it)."""
        run = self._runs[order_id] = asyncio.get_running_loop().create_future()
        self.waiting += 1
        return run

    def admit_now(self, wanted: int) -> int:
        """How many of `wanted` registered orders are let in at once, without waiting."""
        taken = self._gate.take(wanted)
        self.waiting -= taken
        return taken

    async def admit(self, priority: Priority) -> None:
        """Wait for one place, rush first."""
        try:
            await self._gate.acquire(priority)
        finally:
            self.waiting -= 1

    def settle(self, order_id: str, answer: EncodedOutcome | BaseException, admitted: bool = True) -> bool:
        """The run is over: its joiners get `answer`, and its place (if it had one) is free. True if
        no order is in flight any more."""
        run = self._runs.pop(order_id)
        if admitted:
            self._gate.release()
        if run.done():  # its caller went away (a cancelled call); joiners were told by the cancellation
            return not self._runs
        if isinstance(answer, BaseException):
            run.set_exception(answer)
            run.exception()  # retrieved: only joiners, if any, need it
        else:
            run.set_result(answer)
        return not self._runs

    async def concluded(self) -> None:
        """Return once every order in flight now has its outcome (or error)."""
        await asyncio.gather(*(asyncio.shield(f) for f in self._runs.values()), return_exceptions=True)


def answered(outcome: EncodedOutcome) -> Awaitable[EncodedOutcome]:
    """An outcome known already (the ledger's), as the awaitable a run would give."""
    future: asyncio.Future[EncodedOutcome] = asyncio.get_running_loop().create_future()
    future.set_result(outcome)
    return future
