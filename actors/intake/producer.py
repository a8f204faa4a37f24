"""The Producer: the system's one intake, for as long as the system is up; it runs one run at a time.

A run (`IntakeRun`) reads or generates orders, rejects bad records and feeds the Dispatcher shards;
the Producer holds what outlives a run: the shards it feeds, its ledger connection and its metrics.
It is created with the rest of the system rather than per run, so a run starts without waiting
for a new worker process.

The driver names the run it wants on every poll (`RunPlan`). A restarted Producer has lost its run
and takes it up from that plan: it reads its source again from the top, and answers the orders
already finished from the ledger.
"""

from __future__ import annotations

import time
from typing import Any

from loguru import logger

from actors.errors import NotServing, RunInProgress
from actors.intake.breaker_watch import BreakerWatch
from actors.intake.http_intake import HttpLimits
from actors.intake.intake_run import IntakeRun, RunPlan, cancel_scheduled
from actors.intake.rate_limit import RateLimiter
from actors.intake.sources import Row
from actors.ledger import LedgerSpec, open_ledger
from actors.ledger.schedule import Cancelled
from actors.models.messages import ProducerProgress, SubmitReceipt
from actors.models.submissions import Submission, SubmissionAnswer
from actors.naming import resolve
from actors.runtime import prepare_process
from actors.telemetry import SourceMetrics


class Producer:
    def __init__(
        self,
        dispatchers: Any,
        max_in_flight: int = 100,
        outbox_limit: int = 10_000,
        log_level: str | None = None,
        ledger: LedgerSpec | None = None,
        http_limits: HttpLimits | None = None,
    ) -> None:
        prepare_process(log_level)
        shards = dispatchers if isinstance(dispatchers, list) else [dispatchers]
        self._shards = [resolve(shard) for shard in shards]
        self._max_in_flight = max_in_flight
        self._outbox_limit = outbox_limit
        self._http_limits = http_limits or HttpLimits()
        self._ledger = open_ledger(ledger) if ledger is not None else None
        self._metrics = SourceMetrics()
        self._breakers = BreakerWatch(self._shards)
        rate = self._http_limits.rate_limit_per_s
        self._limiter = RateLimiter(rate) if rate is not None else None  # across runs: a new run is no reset
        self._run: IntakeRun | None = None
        self.log = logger.bind(stage="producer")

    async def begin(self, plan: RunPlan) -> int:
        """Start the run (or go on with it, if it is the one running); how many records its source
        holds. A run that has not finished refuses another."""
        run = self._run
        if run is None or run.plan.run_id != plan.run_id:
            if run is not None and not run.finished:
                raise RunInProgress(f"run {run.plan.run_id} is still going; another cannot start")
            if self._ledger is not None:
                self._ledger.retry_afresh()
            run = self._run = IntakeRun(
                plan,
                self._shards,
                self._max_in_flight,
                self._outbox_limit,
                self._ledger,
                self._metrics,
                self._http_limits,
                self._breakers.open_stages,
                self._limiter,
            )
        self._breakers.start()
        return run.start()

    async def poll(self, plan: RunPlan, max_items: int = 1000, wait_s: float = 0.5) -> ProducerProgress:
        """Collect the run's finished outcomes and rejects, taking the run up first if this Producer
        does not have it (it restarted); waits up to `wait_s` when there is nothing new."""
        if self._run is None or self._run.plan.run_id != plan.run_id:
            await self.begin(plan)
        assert self._run is not None
        return await self._run.poll(max_items, wait_s)

    async def describe(self) -> dict[str, object] | None:
        """Where the run in progress stands, for `status` (None between runs); it collects nothing."""
        if self._run is None or self._run.finished:
            return None
        return {**self._run.describe(), "cpu_s": time.process_time()}

    async def submit(self, rows: list[Row], source: str) -> SubmitReceipt:
        """Serve mode: take further records into the serving run."""
        return self._serving_run().submit(rows, source)

    async def accept_orders(self, submissions: list[Submission]) -> list[SubmissionAnswer]:
        """Serve mode: orders sent over HTTP, each answered under its idempotency key."""
        return await self._serving_run().accept_submissions(submissions)

    async def cancel_order(self, order_id: str) -> Cancelled:
        """Cancel a scheduled order that has not started; with no run in progress, in the ledger alone."""
        if self._run is not None and not self._run.finished:
            return await self._run.cancel(order_id)
        result, _ = await cancel_scheduled(self._ledger, order_id)
        return result

    async def stop(self) -> None:
        """Admit no more orders into the run in progress (see `IntakeRun.stop`)."""
        if self._run is not None:
            self._run.stop()

    def close(self) -> None:
        """Stop watching the breakers and release the Producer's ledger connection."""
        self._breakers.stop()
        if self._ledger is not None:
            self._ledger.close()

    def _serving_run(self) -> IntakeRun:
        if self._run is None or self._run.finished:
            raise NotServing("no run is taking submissions: start one with `jewelry-fanout run --serve`")
        return self._run
