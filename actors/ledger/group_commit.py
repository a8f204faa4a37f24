"""Group commit: the outcomes that conclude in one turn of the Dispatcher's event loop share one
transaction.

At zero wait a commit per order was a sixth of the Dispatcher's time. Each order still waits for
its own outcome to be committed before anyone is told (the promise is unchanged); the orders that
concluded together just wait for the same commit, one loop turn later.
"""

from __future__ import annotations

import asyncio

from actors.ledger.sql import SqlLedger
from actors.models import DeadLetter, OrderOutcome


class OutcomeGroupCommit:
    def __init__(self, ledger: SqlLedger) -> None:
        self._ledger = ledger
        self._pending: list[tuple[OrderOutcome, list[DeadLetter], asyncio.Future[None]]] = []

    async def record(self, outcome: OrderOutcome, dead_letters: list[DeadLetter]) -> None:
        """Returns once the outcome is committed; raises what the commit raised."""
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._commit)  # after everything else ready in this turn
        self._pending.append((outcome, dead_letters, committed))
        await committed

    def _commit(self) -> None:
        group, self._pending = self._pending, []
        try:
            self._ledger.record_outcomes([(outcome, letters) for outcome, letters, _ in group])
        except Exception as error:  # noqa: BLE001 - every order of the group gets the failure
            for *_, committed in group:
                if not committed.done():
                    committed.set_exception(error)
            return
        for *_, committed in group:
            if not committed.done():
                committed.set_result(None)
