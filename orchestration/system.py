"""`FanoutSystem`: the one object the CLI, tests and notebooks use to run the workshop.

It starts the stage pools and the Dispatcher once, then runs any number of sources through
them (`run`), reads their state (`snapshots`, `dispatcher_stats`) and stops them (`shutdown`),
so that nobody outside this module juggles actor handles or object refs. While a run goes, it
also replaces stage replicas that died for good, from the driver, which owns them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from loguru import logger

from actors.errors import LedgerUnavailable, ReplayRefused, RunIncomplete, SystemStartError
from actors.intake.sources import SourceSpec
from actors.ledger import SqlLedger, open_ledger
from actors.models import STAGES, OrderOutcome, RejectedRecord, StageName, StageSnapshot
from actors.models.messages import DispatcherStats, LostOrder, ProducerProgress
from orchestration.autoscaler import PoolAutoscaler
from orchestration.output import RunFiles
from orchestration.report import RunSummary, RunTally
from orchestration.settings import FanoutSettings
from orchestration.wiring import (
    StagePools,
    collect_snapshots,
    create_dispatcher,
    create_producer,
    create_replica,
    create_stage_pools,
    kill_all,
    wait_until_ready,
)

POLL_BATCH = 2000
POLL_WAIT_S = 0.25
SUPERVISE_EVERY_S = 1.0

ProgressCallback = Callable[[ProducerProgress, RunTally], None]


@dataclass
class _Collected:
    """What a run gathers as it goes; outcomes and rejects only when the caller keeps them."""

    outcomes: list[OrderOutcome] = field(default_factory=list)
    rejects: list[RejectedRecord] = field(default_factory=list)
    lost: list[LostOrder] = field(default_factory=list)
    source_error: str | None = None


@dataclass
class RunResult(_Collected):
    summary: RunSummary | None = None
    files: RunFiles | None = None

    def raise_if_incomplete(self) -> None:
        lost = [order for order in self.lost if not order.resumable]
        if lost:
            raise RunIncomplete(len(self.lost), f"first: {lost[0].order_id}: {lost[0].reason}")
        if self.lost:
            first = self.lost[0]
            raise RunIncomplete(len(self.lost), f"not recorded in the ledger, so not lost: run the same command "
                                                f"again to finish them (first: {first.order_id}: {first.reason})")
        if self.source_error:
            raise RunIncomplete(0, f"the source stopped early: {self.source_error}")


class FanoutSystem:
    def __init__(
        self, settings: FanoutSettings, pools: StagePools, dispatcher: Any, ledger: SqlLedger | None = None
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self._pools = pools
        self._dispatcher = dispatcher
        self._stop_admitting = threading.Event()
        self._artifacts_dir = settings.out_dir.expanduser().resolve() if settings.artifacts else None
        self._last_supervised = 0.0
        self._pools_lock = threading.Lock()  # the autoscaler's thread changes the pools
        self.autoscaler = PoolAutoscaler(settings, pools, dispatcher, self._artifacts_dir, self._pools_lock)
        self.log = logger.bind(stage="system")

    @classmethod
    def start(cls, settings: FanoutSettings) -> FanoutSystem:
        """Create every stage replica and the Dispatcher, and wait until all are running."""
        artifacts_dir = settings.out_dir.expanduser().resolve() if settings.artifacts else None
        for warning in settings.timeout_warnings():
            logger.bind(stage="system").warning(warning)
        spec = settings.ledger_spec()
        ledger = open_ledger(spec, create=True) if spec is not None else None
        if ledger is not None:
            ledger.bind(settings.stage_setup())  # before any replica restores a checkpoint
            logger.bind(stage="system").info("ledger {}: {}", spec, ledger.outcome_counts() or "new")
        else:
            _new_scratch_workshop(settings)
        pools = create_stage_pools(settings, artifacts_dir)
        dispatcher = create_dispatcher(settings, pools)
        system = cls(settings, pools, dispatcher, ledger)
        try:
            wait_until_ready({**pools.all(), "dispatcher": dispatcher}, settings.actor_start_timeout_s)
        except Exception:
            system.shutdown()
            raise
        system.autoscaler.start()
        return system

    def run(
        self,
        source: SourceSpec | None = None,
        out_dir: Path | None = None,
        keep_outcomes: bool = False,
        on_progress: ProgressCallback | None = None,
        serve: bool = False,
    ) -> RunResult:
        """Feed a source through the system until every accepted order has its outcome; with
        `serve`, keep taking submissions after the source is read, until `stop_admitting`."""
        source = source or self.settings.source()
        source.check_readable()
        files = RunFiles.open(out_dir) if out_dir is not None else None
        tally, collected = RunTally(), _Collected()
        seen: set[str] = set()
        producer = create_producer(self.settings, source, serve)
        stop_sent = False  # a stop asked before the run began (a Ctrl-C during start-up) is honoured
        not_started = 0  # records an interrupt left unread
        try:
            # A new worker process per run: its start-up is not order flow, so the clock starts after.
            wait_until_ready({"producer": producer}, self.settings.actor_start_timeout_s)
            started = time.perf_counter()
            ray.get(producer.start.remote())
            while True:
                if self._stop_admitting.is_set() and not stop_sent:
                    producer.stop.remote()
                    stop_sent = True
                progress: ProducerProgress = ray.get(producer.poll.remote(POLL_BATCH, POLL_WAIT_S))
                self._collect(progress, tally, collected, files, keep_outcomes, seen)
                self._supervise()
                if on_progress is not None:
                    on_progress(progress, tally)
                if progress.finished:
                    collected.source_error, not_started = progress.source_error, progress.not_started or 0
                    break
            wall_s = time.perf_counter() - started
        finally:
            self._stop_admitting.clear()  # the next run starts admitting
            kill_all({"producer": producer})
            if files is not None:
                files.close()
                if self.ledger is not None:
                    # The ledger is the record: outcomes of earlier runs, and those a crash kept from the file.
                    try:
                        files.replace_outcomes(self.ledger.outcome_lines())
                    except LedgerUnavailable as error:  # the store's retries are spent
                        self.log.warning("outcomes.jsonl keeps this run's outcomes only: {}", error)
        with self._pools_lock:
            replicas = {stage: len(self._pools.replicas[stage]) for stage in STAGES}
        summary = tally.summary(wall_s, self.settings.theoretical_limit_per_s(), replicas, self.snapshots(),
                                not_started)
        if files is not None:
            files.write_summary(summary)
        return RunResult(**vars(collected), summary=summary, files=files)

    def stop_admitting(self) -> None:
        """Ask the run to admit no more orders (Ctrl-C, SIGTERM): a serving run stops serving, a run
        reading its source stops reading. What is already accepted still gets its outcome. Only sets
        a flag, so a signal handler may call it: the run's loop tells the Producer at its next poll."""
        self._stop_admitting.set()

    def snapshots(self) -> dict[StageName, list[StageSnapshot]]:
        """Every live replica's snapshot, by stage."""
        with self._pools_lock:
            pools = {stage: dict(pool) for stage, pool in self._pools.replicas.items()}
        return {stage: collect_snapshots(pool) for stage, pool in pools.items()}

    def replica_counts(self) -> dict[StageName, int]:
        """Replicas taking orders now, by stage (an autoscaled pool changes while the system runs)."""
        return {stage: sum(1 for load in loads if load.alive and not load.draining)
                for stage, loads in self.dispatcher_stats().stages.items()}

    def dispatcher_stats(self) -> DispatcherStats:
        return ray.get(self._dispatcher.stats.remote())

    def replay(self, order_id: str, stage: StageName | None = None, abandon: bool = False) -> OrderOutcome:
        """Complete a dead-lettered order by re-running its dead stage(s), or give it up (`abandon`)."""
        try:
            return ray.get(self._dispatcher.replay.remote(order_id, stage, abandon))
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, ReplayRefused):
                raise error.cause from None  # the refusal itself, not Ray's wrapper and its traceback
            raise

    def shutdown(self) -> None:
        self.autoscaler.stop()
        with self._pools_lock:
            kill_all({"dispatcher": self._dispatcher, **self._pools.all()})
        if self.ledger is not None:
            self.ledger.close()

    def _supervise(self) -> None:
        """Replace replicas the Dispatcher found dead for good (restarts exhausted, node lost).

        The replacement takes the dead one's name and index, so it restores the same checkpoint.
        If the name is still taken (the dead actor not yet gone, or already replaced before a
        Dispatcher restart), the actor under that name is handed over instead.
        """
        now = time.monotonic()
        if self.ledger is None or now - self._last_supervised < SUPERVISE_EVERY_S:
            return
        self._last_supervised = now
        for stage, loads in self.dispatcher_stats().stages.items():
            for load in loads:
                if load.alive:
                    continue
                try:
                    handle = create_replica(self.settings, stage, load.index, self._artifacts_dir)
                    self.log.warning("{} died for good; started a replacement", load.replica)
                except SystemStartError:  # the name is taken: use whoever holds it
                    try:
                        handle = ray.get_actor(load.replica, namespace=self.settings.namespace)
                    except ValueError:
                        continue  # between death and release of the name: next round
                with self._pools_lock:
                    self._pools.replicas[stage][load.replica] = handle
                ray.get(self._dispatcher.replace_replica.remote(stage, load.replica, handle))

    @staticmethod
    def _collect(
        progress: ProducerProgress, tally: RunTally, collected: _Collected, files: RunFiles | None, keep: bool,
        seen: set[str],
    ) -> None:
        # A restarted Producer reads its source again and answers finished orders from the ledger:
        # each order counts once.
        fresh = [outcome for outcome in progress.outcomes if outcome.order_id not in seen]
        seen.update(outcome.order_id for outcome in fresh)
        progress = progress.model_copy(update={"outcomes": fresh})
        for outcome in progress.outcomes:
            tally.add_outcome(outcome)
        for reject in progress.rejects:
            tally.add_reject(reject)
        for lost in progress.lost:
            tally.add_lost(lost)
        collected.lost.extend(progress.lost)
        if keep:
            collected.outcomes.extend(progress.outcomes)
            collected.rejects.extend(progress.rejects)
        if files is not None:
            files.write(progress.outcomes, progress.rejects)


def _new_scratch_workshop(settings: FanoutSettings) -> None:
    """A run without a ledger starts from a fresh workshop: the last run's scratch store is deleted."""
    scratch = settings.scratch_workshop()
    assert scratch.path is not None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{scratch.path}{suffix}").unlink(missing_ok=True)
    open_ledger(scratch, create=True).close()
