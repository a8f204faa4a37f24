"""`FanoutSystem`: the one object the CLI, tests and notebooks use to run the workshop.

`start` creates the stage pools (through the supervisor, which owns them from then on) and the
Dispatcher shards; `run` feeds a source through them until every accepted order has its outcome;
`submit` hands records to a serving run; `drain` stops admitting; `status` reads the shards, the
Producer and the replicas; `replay` completes a dead letter; `shutdown` stops everything; `park`
and `renewed` keep the actor processes for the next settings instead. Nobody outside this module
juggles actor handles or object refs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import ray
from loguru import logger

from actors.dispatch.sharding import shard_of
from actors.errors import (
    FanoutError,
    LedgerUnavailable,
    NotServing,
    ReplayRefused,
    RunIncomplete,
    describe_error,
    ledger_outage,
)
from actors.intake.intake_run import RunPlan
from actors.intake.sources import Row, SourceSpec
from actors.ledger import SqlLedger, open_ledger
from actors.models import STAGES, OrderOutcome, RejectedRecord, StageName, StageSnapshot
from actors.models.messages import LostOrder, ProducerProgress, SubmitReceipt, SystemStatus
from actors.runtime import close_actor, construct_again
from orchestration.digest import OutcomeDigest, digest
from orchestration.output import RunFiles
from orchestration.report import RunSummary, RunTally
from orchestration.run_book import RunBook
from orchestration.settings import FanoutSettings
from orchestration.supervisor import PoolSupervisor
from orchestration.wiring import (
    collect_snapshots,
    connect_ray,
    create_dispatchers,
    create_producer,
    creation_options,
    dispatcher_args,
    dispatcher_name,
    kill_all,
    producer_args,
    replica_args,
    replica_name,
    wait_until_ready,
)

T = TypeVar("T")
POLL_BATCH = 2000
POLL_WAIT_S = 0.25

ProgressCallback = Callable[[ProducerProgress, RunTally], None]


@dataclass
class _Collected:
    """What a run gathers as it goes; outcomes and rejects only when the caller keeps them."""

    outcomes: list[OrderOutcome] = field(default_factory=list)
    rejects: list[RejectedRecord] = field(default_factory=list)
    lost: list[LostOrder] = field(default_factory=list)
    source_error: str | None = None


@dataclass(kw_only=True)
class RunResult(_Collected):
    summary: RunSummary
    files: RunFiles | None = None

    def raise_if_incomplete(self) -> None:
        lost = [order for order in self.lost if not order.resumable]
        if lost:
            raise RunIncomplete(len(self.lost), f"first: {lost[0].order_id}: {lost[0].reason}")
        if self.lost:
            first = self.lost[0]
            raise RunIncomplete(
                len(self.lost),
                f"not recorded in the ledger, so not lost: run the same command "
                f"again to finish them (first: {first.order_id}: {first.reason})",
            )
        if self.source_error:
            raise RunIncomplete(0, f"the source stopped early: {self.source_error}")


class FanoutSystem:
    def __init__(
        self,
        settings: FanoutSettings,
        supervisor: PoolSupervisor,
        dispatchers: list[Any],
        producer: Any,
        ledger: SqlLedger | None,
    ) -> None:
        self.settings = settings
        self._ledger = ledger
        self._supervisor = supervisor
        self._dispatchers = dispatchers
        self._producer = producer
        self._running: RunPlan | None = None  # the run in progress, for `submit`
        self._stop_admitting = threading.Event()
        self.log = logger.bind(stage="system")

    @staticmethod
    def connect(settings: FanoutSettings) -> str:
        """Join the cluster in RAY_ADDRESS, or start the embedded local Ray; says which it did."""
        return connect_ray(settings)

    @classmethod
    def start(cls, settings: FanoutSettings) -> FanoutSystem:
        """Create every stage replica, the Dispatcher shards and the Producer, and wait until all are
        running (on the Ray this process is connected to, or else on one `connect` finds or starts)."""
        cls.connect(settings)
        ledger, artifacts_dir = _prepare_store(settings)
        supervisor = PoolSupervisor(settings, artifacts_dir)
        replicas = supervisor.create_pools()
        dispatchers = create_dispatchers(settings, supervisor.member_names())
        producer = create_producer(settings)
        system = cls(settings, supervisor, dispatchers, producer, ledger)
        try:
            shards = {dispatcher_name(i): handle for i, handle in enumerate(dispatchers)}
            wait_until_ready({**replicas, **shards, "producer": producer}, settings.actor_start_timeout_s)
            supervisor.attach(dispatchers)
        except Exception:
            system.shutdown()
            raise
        supervisor.start()
        return system

    def park(self) -> None:
        """Stop supervising and release every store connection, the actors' and this driver's, and
        leave the actor processes up for `renewed`. Starting a system costs a worker process per
        actor, most of it Ray's own start-up; a test suite or a notebook that tries one setting after
        another keeps a parked system instead."""
        self._supervisor.stop()
        # Each close queues behind the calls an actor still has (abandoned ones too), so a parked
        # actor is idle: nothing from this system's runs lands in the next settings' ledger.
        closes = [actor.__ray_call__.remote(close_actor) for actor in self.actors().values()]
        ray.get(closes, timeout=self.settings.actor_start_timeout_s)
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def renewed(self, settings: FanoutSettings) -> FanoutSystem:
        """What `start(settings)` makes, on this parked system's actor processes: each actor is
        constructed again with the new settings (its ledger, out dir, business rules, policies) in
        the process it has. A pool may have another size: a replica past the new size is stopped, a
        missing one started, so only the difference costs processes. It keeps this system's
        namespace, and needs the same Ray options fixed at creation (`wiring.creation_options`):
        the shards, and each pool's CPUs, resources and scheduling.

        Ray restarts a crashed actor with the arguments it was created with, not these: a renewed
        system is for runs in which no actor is killed. The parked system is spent: its actors are
        the renewed one's now."""
        settings = settings.model_copy(update={"namespace": self.settings.namespace})
        if creation_options(settings) != creation_options(self.settings):
            raise ValueError("a system is renewed only with the Ray options its actors were created with")
        replicas = self._supervisor.replicas()
        ledger, artifacts_dir = _prepare_store(settings)
        supervisor = PoolSupervisor(settings, artifacts_dir)
        started = supervisor.adopt_pools(replicas)
        adopted = supervisor.replicas()
        for name, handle in replicas.items():
            if name not in adopted:
                ray.kill(handle, no_restart=True)
        members = supervisor.member_names()
        renewals = [
            adopted[replica_name(stage, i)].__ray_call__.remote(
                construct_again, *replica_args(settings, stage, i, artifacts_dir)
            )
            for stage in STAGES
            for i in range(settings.pool(stage).replicas)
            if replica_name(stage, i) not in started
        ]
        renewals += [
            shard.__ray_call__.remote(construct_again, *dispatcher_args(settings, members, i))
            for i, shard in enumerate(self._dispatchers)
        ]
        renewals.append(self._producer.__ray_call__.remote(construct_again, *producer_args(settings)))
        system = type(self)(settings, supervisor, self._dispatchers, self._producer, ledger)
        try:
            ray.get(renewals, timeout=settings.actor_start_timeout_s)
            wait_until_ready(started, settings.actor_start_timeout_s)
            supervisor.attach(self._dispatchers)
        except Exception:
            system.shutdown()
            raise
        supervisor.start()
        return system

    def actors(self) -> dict[str, Any]:
        """Every actor of the system by name: stage replicas, Dispatcher shards and the Producer."""
        shards = {dispatcher_name(i): handle for i, handle in enumerate(self._dispatchers)}
        return {**self._supervisor.replicas(), **shards, "producer": self._producer}

    def run(
        self,
        source: SourceSpec | None = None,
        out_dir: Path | None = None,
        keep_outcomes: bool = False,
        on_progress: ProgressCallback | None = None,
        serve: bool = False,
    ) -> RunResult:
        """Feed a source through the system until every accepted order has its outcome; with
        `serve`, keep taking submissions after the source is read, until `drain`."""
        source = source or self.settings.source()
        source.check_readable()
        files = RunFiles.open(out_dir) if out_dir is not None else None
        tally, collected = RunTally(), _Collected()
        seen: set[str] = set()
        producer = self._producer
        plan = RunPlan(run_id=uuid.uuid4().hex[:12], source=source, serve=serve)
        book = RunBook(self._ledger, plan)
        stop_sent = False  # a stop asked before the run began (a Ctrl-C during start-up) is honoured
        not_started = scheduled = 0  # records an interrupt left unread; orders still waiting for their time
        ending = "stopped"  # what ends the run if the loop below does not finish it (a second Ctrl-C, an error)
        try:
            started = time.perf_counter()
            book.begin()
            ray.get(producer.begin.remote(plan))
            self._running = plan
            while True:
                if self._stop_admitting.is_set() and not stop_sent:
                    producer.stop.remote()
                    stop_sent = True
                progress: ProducerProgress = ray.get(producer.poll.remote(plan, POLL_BATCH, POLL_WAIT_S))
                self._collect(progress, tally, collected, files, keep_outcomes, seen)
                self._note_outage(progress)
                if on_progress is not None:
                    on_progress(progress, tally)
                if progress.finished:
                    collected.source_error, not_started = progress.source_error, progress.not_started or 0
                    scheduled = progress.scheduled
                    break
            wall_s = time.perf_counter() - started
            ending = _ending(collected, not_started)
        finally:
            self._running = None
            self._stop_admitting.clear()  # the next run starts admitting
            book.end(ending)
            if files is not None:
                files.close()
                if self._ledger is not None:
                    # The ledger is the record: this run's outcomes, those answered from it and those a crash
                    # kept from the file included (and no other run's: several may share the database).
                    try:
                        files.replace_outcomes(book.outcome_lines())
                    except LedgerUnavailable as error:  # the store's retries are spent
                        self.log.warning("outcomes.jsonl keeps the outcomes this driver collected only: {}", error)
        status = self.status()
        summary = tally.summary(
            wall_s,
            self.settings.theoretical_limit_per_s(),
            status.replica_counts(),
            status.snapshots,
            not_started,
            run_id=plan.run_id if self._ledger is not None else None,
            namespace=self.settings.namespace,
            scheduled=scheduled,
        )
        if files is not None:
            files.write_summary(summary)
        return RunResult(**vars(collected), summary=summary, files=files)

    def submit(self, rows: list[Row], source: str = "submitted") -> SubmitReceipt:
        """Hand records to the serving run in progress (`run(serve=True)` on another thread); they
        are checked like its own source's, and the receipt names each reject."""
        if self._running is None:
            raise NotServing("no run is in progress: start one with run(serve=True)")
        return _get_refusing(self._producer.submit.remote(rows, source), NotServing, SubmitReceipt)

    def drain(self) -> None:
        """Admit no more orders (Ctrl-C, SIGTERM): a serving run stops serving, a run reading its
        source stops reading. What is already accepted still gets its outcome. Only sets a flag, so
        a signal handler may call it: the run's loop tells the Producer at its next poll."""
        self._stop_admitting.set()

    def status(self, snapshots: bool = True) -> SystemStatus:
        """Every shard's stats; with `snapshots`, every live replica's snapshot as well."""
        shards = ray.get([shard.stats.remote() for shard in self._dispatchers])
        try:
            described = ray.get(self._producer.describe.remote(), timeout=15)
        except Exception as error:  # noqa: BLE001 - a restarting Producer: status goes on without it
            self.log.debug("no description from the producer: {}", describe_error(error))
            described = None
        taken: dict[StageName, list[StageSnapshot]] = {}
        if snapshots:  # every replica asked at once: one that must probe a store found down waits alone
            every = collect_snapshots(self._supervisor.replicas())
            taken = {stage: [s for s in every if s.stage is stage] for stage in StageName}
        return SystemStatus(
            namespace=self.settings.namespace,
            dispatchers=shards,
            producer=described,
            snapshots=taken,
            scaling_events=list(self._supervisor.events),
        )

    def replay(self, order_id: str, stage: StageName | None = None, abandon: bool = False) -> OrderOutcome:
        """Complete a dead-lettered order by re-running its dead stage(s), or give it up (`abandon`)."""
        shard = self._dispatchers[shard_of(order_id, len(self._dispatchers))]
        return _get_refusing(shard.replay.remote(order_id, stage, abandon), ReplayRefused, OrderOutcome)

    def shutdown(self) -> None:
        self._supervisor.stop()
        kill_all({"producer": self._producer})
        kill_all({dispatcher_name(i): handle for i, handle in enumerate(self._dispatchers)})
        self._supervisor.stop_replicas()
        if self._ledger is not None:
            self._ledger.close()

    def _note_outage(self, progress: ProducerProgress) -> None:
        """An order lost because the store is down (a stage, the Dispatcher or the Producer spent
        its retry budget on it) tells this driver as much: its own next transaction probes once."""
        if self._ledger is None:
            return
        for lost in progress.lost:
            if (outage := ledger_outage(lost.reason)) is not None:
                self._ledger.found_down_elsewhere(str(outage))
                return

    @staticmethod
    def _collect(
        progress: ProducerProgress,
        tally: RunTally,
        collected: _Collected,
        files: RunFiles | None,
        keep: bool,
        seen: set[str],
    ) -> None:
        # A restarted Producer reads its source again and answers finished orders from the ledger:
        # each order counts once.
        encoded = [outcome for outcome in progress.outcomes if outcome.order_id not in seen]
        seen.update(outcome.order_id for outcome in encoded)
        fresh = [outcome.decoded() for outcome in encoded] if keep else []
        tallied: list[OrderOutcome] | list[OutcomeDigest] = fresh if keep else [digest(o) for o in encoded]
        for outcome in tallied:
            tally.add_outcome(outcome)
        for reject in progress.rejects:
            tally.add_reject(reject)
        for lost in progress.lost:
            tally.add_lost(lost)
        collected.lost.extend(progress.lost)
        if keep:
            collected.outcomes.extend(fresh)
            collected.rejects.extend(progress.rejects)
        if files is not None:
            files.write(encoded, progress.rejects)


def _ending(collected: _Collected, not_started: int) -> str:
    """How a run that read its source to its end, or was stopped, is recorded as having ended."""
    if not_started:
        return "interrupted"
    if collected.lost or collected.source_error:
        return "incomplete"
    return "completed"


def _get_refusing(ref: Any, refusal: type[FanoutError], answer: type[T]) -> T:
    """`ray.get` of an answer of type `answer`, with a refusal the actor raised re-raised as itself:
    the caller (the CLI) catches our error and prints its message, not Ray's wrapper and the actor's
    traceback."""
    try:
        value = ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, refusal):
            raise error.cause from None
        raise
    if not isinstance(value, answer):
        raise TypeError(f"expected {answer.__name__} from the actor, got {type(value).__name__}")
    return value


def _prepare_store(settings: FanoutSettings) -> tuple[SqlLedger | None, Path | None]:
    """The driver's ledger, bound to the run's business rules before any replica restores a
    checkpoint (or a fresh scratch workshop without one), and the artifacts dir."""
    artifacts_dir = settings.out_dir.expanduser().resolve() if settings.artifacts else None
    for warning in settings.timeout_warnings():
        logger.bind(stage="system").warning(warning)
    spec = settings.ledger_spec()
    ledger = open_ledger(spec, create=True) if spec is not None else None
    if ledger is not None:
        ledger.bind(settings.stage_setup())
        logger.bind(stage="system").info("ledger {}: {}", spec, ledger.outcome_counts() or "new")
    else:
        _new_scratch_workshop(settings)
    return ledger, artifacts_dir


def _new_scratch_workshop(settings: FanoutSettings) -> None:
    """A run without a ledger starts from a fresh workshop: the last run's scratch store is deleted."""
    scratch = settings.scratch_workshop()
    assert scratch.path is not None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{scratch.path}{suffix}").unlink(missing_ok=True)
    open_ledger(scratch, create=True).close()
