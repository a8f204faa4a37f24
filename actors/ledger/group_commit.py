"""Group commit: the batches of outcomes that conclude in one turn of the Dispatcher's event loop
share one transaction.

At zero wait a commit per order was a sixth of the Dispatcher's time. Each order still waits for
its own outcome to be committed before anyone is told (the promise is unchanged); the batches that
concluded together just wait for the same commit, one loop turn later.
"""

from __future__ import annotations

import asyncio

from actors.ledger.sql import SqlLedger
from actors.models import DeadLetter, OrderOutcome


class OutcomeGroupCommit:
    def __init__(self, ledger: SqlLedger) -> None:
        self._ledger = ledger
        self._pending: list[tuple[list[tuple[OrderOutcome, list[DeadLetter]]], list[str], asyncio.Future[None]]] = []

    async def record(self, concluded: list[tuple[OrderOutcome, list[DeadLetter]]], lines: list[str]) -> None:
        """Returns once the outcomes (a batch's, each with its dead letters and its JSON line) are
        committed; raises what the commit raised."""
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._commit)  # after everything else ready in this turn
        self._pending.append((concluded, lines, committed))
        await committed

    def _commit(self) -> None:
        group, self._pending = self._pending, []
        try:
            self._ledger.record_outcomes(
                [pair for concluded, _, _ in group for pair in concluded],
                [line for _, lines, _ in group for line in lines],
            )
        except Exception as error:  # noqa: BLE001 - every order of the group gets the failure
            for *_, committed in group:
                if not committed.done():
                    committed.set_exception(error)
            return
        for *_, committed in group:
            if not committed.done():
                committed.set_result(None)
