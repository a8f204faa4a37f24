"""The driver's record of its run in the ledger: begun, stamped while it goes, ended.

Several systems may share one ledger database, so a run's files are built from what it admitted
(`SqlLedger.run_outcome_lines`), not from every outcome there. The stamp is what tells a run that
is still going from one whose driver died without ending it (`jewelry-fanout runs`); it is written
by a thread of its own, so that a store that is down never holds up the run's polls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from loguru import logger

from actors.errors import LedgerUnavailable
from actors.intake.intake_run import RunPlan
from actors.ledger import SqlLedger
from actors.models.runs import HEARTBEAT_S


class RunBook:
    def __init__(self, ledger: SqlLedger | None, plan: RunPlan) -> None:
        self._ledger = ledger
        self.plan = plan
        self._stop = threading.Event()
        self._stamper: threading.Thread | None = None
        self.log = logger.bind(stage="system", run=plan.run_id)

    def begin(self) -> None:
        """Record the run (before the Producer admits its first order), and start stamping it."""
        if self._ledger is None:
            return
        self._ledger.retry_afresh()
        self._ledger.begin_run(self.plan.run_id, self.plan.source.label + (" then served" if self.plan.serve else ""))
        self._stamper = threading.Thread(target=self._stamp, name=f"run-{self.plan.run_id}", daemon=True)
        self._stamper.start()

    def end(self, ending: str) -> None:
        """Record how the run ended; a store that is down leaves it unended (`runs` then shows it
        abandoned once its stamps are old), which the same command's next run puts right."""
        self._stop.set()
        if self._ledger is None or self._stamper is None:
            return
        self._stamper.join()
        try:
            self._ledger.end_run(self.plan.run_id, ending)
        except LedgerUnavailable as error:
            self.log.warning("the run's end is not recorded: {}", error)

    def outcome_lines(self) -> Iterator[str]:
        """The outcomes of the orders this run admitted, from the ledger."""
        assert self._ledger is not None
        return self._ledger.run_outcome_lines(self.plan.run_id)

    def _stamp(self) -> None:
        assert self._ledger is not None
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._ledger.heartbeat(self.plan.run_id)
            except LedgerUnavailable as error:
                self.log.debug("no stamp this time: {}", error)
