"""The one base every stage shares: timing, error wrapping, logging context, idempotency,
counters, and durability.

A stage module only says what its stage does to an order (`handle`, `undo`) and what state it
keeps (`state` to show it, `checkpoint`/`restore` to persist it). Everything a call goes through
on the way is here, once, so that six stages cannot drift apart in how they time, log, fail,
repeat or survive a restart: an effect and the state after it are committed together before the
result is returned, and a new replica comes back from the last commit.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from actors.clock import SYSTEM_CLOCK, Clock
from actors.errors import BusinessFailure
from actors.ledger import (
    CANCELLED_BEFORE_RUN,
    Claim,
    ClaimRefused,
    DuplicateEffect,
    LedgerSpec,
    PendingClaims,
    RecordedEffect,
    StageJournal,
    WorkshopView,
    open_journal,
)
from actors.models import (
    JewelryOrder,
    StageName,
    StageOutput,
    StageResult,
    StageSnapshot,
    StageStatus,
)
from actors.runtime import current_node_id, prepare_process
from actors.stages.pacing import Cadence

# Times a batch is decided again after the workshop refused one of its claims; each time reads the
# workshop afresh, so a second refusal needs another replica to win the same last piece again.
CLAIM_ATTEMPTS = 5


class StageConfig(BaseModel):
    """Settings every stage has; each stage extends it with its own business settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: float = Field(
        ge=0, description="time per order at this stage (own work topped up by a simulated wait), before time_scale"
    )


ConfigT = TypeVar("ConfigT", bound=StageConfig)


@dataclass(frozen=True)
class ReplicaContext:
    """Who this replica is among its pool, and the run-wide knobs it needs."""

    replica: str
    index: int = 0
    replica_count: int = 1
    time_scale: float = 1.0
    artifacts_dir: Path | None = None
    log_level: str | None = None
    ledger: LedgerSpec | None = None
    clock: Clock = SYSTEM_CLOCK  # what the stage's cadence and its results' times are read from
    journal: StageJournal | None = None  # a store given in-process (tests); otherwise opened from `ledger`


class Stage(ABC, Generic[ConfigT]):
    """A stateful stage replica. Call `process(order)`; subclasses implement `handle` and `state`."""

    name: ClassVar[StageName]

    def __init__(self, config: ConfigT, context: ReplicaContext) -> None:
        prepare_process(context.log_level)
        self.config = config
        self.context = context
        self.log = logger.bind(stage=self.name.value, replica=context.replica)
        self._node_id = current_node_id()
        self._counts = dict.fromkeys(StageStatus, 0)
        self._replays = 0
        self._compensations = 0
        self._busy_s = 0.0
        # Snapshots run in their own concurrency group, beside a running call; state changes and
        # snapshots take this lock so that a snapshot never sees half an order.
        self._state_lock = threading.Lock()
        if context.artifacts_dir is not None:
            context.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self._journal: StageJournal = context.journal or open_journal(context.ledger)
        # What `handle` reads the shared workshop through: the store's truth, less what earlier
        # orders of the batch being decided have claimed.
        self._pending = PendingClaims(self._journal)
        self._initial_checkpoint: dict[str, Any] | None = None
        self._cadence = Cadence()
        # Set while memory may be ahead of the last commit (a write failed, or a call failed part-way
        # through a batch) and has not been put back yet, e.g. because the store was unreachable: it is
        # put back before the next order, compensation or snapshot.
        self._unsynced = False

    def resume(self) -> None:
        """Come back as the last commit left this replica. Subclasses call it at the end of their
        `__init__`, once their initial state exists (a restarted actor re-runs `__init__`)."""
        self._initial_checkpoint = self._checkpoint()
        if stock := self.initial_stock():
            self._journal.seed_stock(stock)  # once per ledger: lots already stocked keep what they hold
        saved = self._journal.take_over(self.context.replica, self.name)
        if saved is not None:
            self._restore(saved)
            self.log.info(
                "restored from the ledger: {} ok, {} compensated", self._counts[StageStatus.OK], self._compensations
            )
        self.log.info("replica ready on node {}", self._node_id[:12])

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def store(self) -> StageJournal:
        """The store this replica journals in (audits and tests: inventory, certificates, voids)."""
        return self._journal

    @property
    def workshop(self) -> WorkshopView:
        """The workshop every replica of every pool shares: read it to decide, claim in `claim`."""
        return self._pending

    def initial_stock(self) -> dict[str, int]:
        """Lots this stage draws from, with what the workshop starts with (once per ledger)."""
        return {}

    def certificates(self, order: JewelryOrder) -> Collection[str]:
        """The certificates deciding this order asks the workshop about (`holder`): looked up for
        the whole batch in one read."""
        return ()

    def claim(self, output: StageOutput) -> Claim | None:
        """What an effect takes from the shared workshop (committed with it, given back by its
        compensation); a function of the recorded output, so that it holds after a restart too."""
        return None

    @abstractmethod
    def handle(self, order: JewelryOrder) -> StageOutput:
        """Do this stage's work for one order; raise `BusinessFailure` to decline it."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """This stage's business state as plain data (stock left, serials issued, ...)."""

    @abstractmethod
    def checkpoint(self) -> dict[str, Any]:
        """The state to persist after each effect, as JSON-able data. Keep it small: what grows
        with orders belongs in the effect records, which the journal keeps per order."""

    @abstractmethod
    def restore(self, saved: dict[str, Any]) -> None:
        """Take back the state `checkpoint` returned."""

    def remember(self, result: StageResult) -> None:
        """Rebuild a per-order memo from a standing effect after a restart (most stages keep none)."""

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        """Reverse this stage's side effects for a failed order; say what was undone, or None
        when the stage changed nothing that needs undoing (a design stays in the cache)."""
        return None

    def compensate(self, order_id: str) -> str | None:
        """Undo this stage's work for an order that failed elsewhere, once.

        Idempotent like `process`: a second call returns the first answer. None means there was
        nothing to undo (the stage never ran for the order, or declined it); a stage that never
        ran is marked so that a call still on its way cannot do the work afterwards.
        """
        with self._state_lock:
            self._resync()
            recorded = self._journal.effect(self.name, order_id)
            if recorded is not None and recorded.compensated:
                return None if recorded.compensation == CANCELLED_BEFORE_RUN else recorded.compensation
            result = recorded.result if recorded else None
            done, release = None, None
            if result is not None and result.status is StageStatus.OK and result.output is not None:
                done = self.undo(order_id, result.output)
                self._compensations += 1
                release = self.claim(result.output) if done else None
            replica = recorded.replica if recorded else self.context.replica
            note = done if recorded else CANCELLED_BEFORE_RUN
            self._commit(
                lambda: self._journal.record_compensation(
                    self.name, order_id, replica, note, self._checkpoint(), release
                )
            )
        if done:
            self.log.bind(order_id=order_id).info("compensated: {}", done)
        return done

    def process(self, order: JewelryOrder) -> StageResult:
        """Run the stage once per order id; a repeated call, on this replica or any other, returns
        the first result unchanged."""
        return self.process_batch([order])[0]

    def process_batch(self, orders: Sequence[JewelryOrder]) -> list[StageResult]:
        """Run the stage for several orders in one call and one commit: each gets the result `process`
        would give it (batching saves calls and commits, not work; each order still takes its time).

        Errors (unexpected exceptions) are not recorded, so that a retry really retries; `handle`
        implementations change state only after their last check, so a failed order leaves no
        partial side effect behind. Each order takes the stage's time (see `actors/stages/pacing.py`).
        """
        try:
            return self._process_batch(orders, queued=True)
        finally:
            self._cadence.returned(self.clock.monotonic())

    def _process_batch(self, orders: Sequence[JewelryOrder], queued: bool) -> list[StageResult]:
        """`process_batch`; `queued` says the call may have waited behind the last one (a batch taken
        apart after a refusal did not)."""
        with self._state_lock:
            self._resync()
        try:
            return self._decide_and_commit(orders, queued)
        except BaseException:
            # Something failed part-way (a store read, when the store is down): orders already run
            # changed memory but were never committed, so memory goes back to the last commit before
            # the next call.
            self._unsynced = True
            raise

    def _decide_and_commit(self, orders: Sequence[JewelryOrder], queued: bool) -> list[StageResult]:
        """`process_batch` itself: decide each order, then commit them together (again if refused)."""
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            answers: dict[str, StageResult] = {}
            fresh: list[StageResult] = []
            claims: dict[str, Claim] = {}
            due = self._cadence.start(self.clock.monotonic(), self._per_order_s, first_try=queued and attempt == 1)
            self._pending.clear()
            # One read for the batch's recorded effects, not one per order (on PostgreSQL each read is a
            # round trip). One recorded after this read by another replica is caught at the commit.
            known = self._journal.effects(self.name, [order.order_id for order in orders])
            self._pending.look_up([c for o in orders if o.order_id not in known for c in self.certificates(o)])
            for order in orders:
                if order.order_id in answers:
                    continue  # the same order twice in one batch: one answer
                with self._state_lock:
                    recorded = self._answer_from(order.order_id, known.get(order.order_id))
                if recorded is None:
                    due = self._cadence.due_after(due, self.clock.monotonic(), self._per_order_s)
                    recorded = self._run(order, due)
                    fresh.append(recorded)
                    ok = recorded.status is StageStatus.OK and recorded.output is not None
                    if ok and recorded.output is not None and (claim := self.claim(recorded.output)):
                        claims[order.order_id] = claim
                        self._pending.add(order.order_id, claim)
                answers[order.order_id] = recorded
            self._pending.clear()
            if not fresh:
                break
            self._cadence.ended(due)
            if self._commit_batch(fresh, answers, claims):
                break
            # Nothing was committed, and memory is back at the last commit: another replica recorded one
            # of these orders first (this one was thought dead), or took the stock or the certificate a
            # claim wanted. A batch goes again order by order (the recorded ones answer from the ledger,
            # the uncontended ones commit at once); a lone order decides again from the workshop now.
            if len(fresh) > 1:
                return [self._process_batch([order], queued=False)[0] for order in orders]
            self.log.info("claim refused (attempt {} of {}); deciding again", attempt, CLAIM_ATTEMPTS)
        else:
            reason = f"workshop: claims refused {CLAIM_ATTEMPTS} times in a row (heavy contention); not done"
            self._counts[StageStatus.ERROR] += len(fresh)
            for result in fresh:
                answers[result.order_id] = result.model_copy(
                    update={"status": StageStatus.ERROR, "output": None, "reason": reason}
                )
        return [answers[order.order_id] for order in orders]

    @property
    def _per_order_s(self) -> float:
        """What one order takes at this stage, own work included."""
        return self.config.duration_s * self.context.time_scale

    def _commit_batch(
        self, fresh: list[StageResult], answers: dict[str, StageResult], claims: dict[str, Claim]
    ) -> bool:
        """Commit a batch's new results with their claims; False when nothing was committed because a
        claim was refused or one of several results was recorded elsewhere first. A lone order recorded
        elsewhere gets that record as its answer. A failed write turns the batch's results into errors:
        not recorded, so not done."""
        standing = [r for r in fresh if r.status is not StageStatus.ERROR]
        with self._state_lock:
            try:
                self._commit(
                    lambda: self._journal.record_effects(
                        self.context.replica, self.name, standing, self._checkpoint(), claims
                    )
                )
            except ClaimRefused:
                return False
            except DuplicateEffect:
                if len(fresh) > 1:
                    return False
                answers[fresh[0].order_id] = self._recorded(fresh[0].order_id) or fresh[0]
            except Exception as error:  # noqa: BLE001 - errors worth a retry
                reason = f"ledger: {type(error).__name__}: {error}"
                self.log.opt(exception=error).error("could not record {} result(s): {}", len(standing), reason)
                self._counts[StageStatus.ERROR] += len(standing)
                for result in standing:
                    answers[result.order_id] = result.model_copy(
                        update={"status": StageStatus.ERROR, "output": None, "reason": reason}
                    )
        return True

    def _run(self, order: JewelryOrder, due: float) -> StageResult:
        """Do one order's work, then wait out the rest of the stage's time (until `due`, on the
        replica's monotonic clock), and count it; the caller commits it.

        `duration_s` is what an order takes at this stage, our own work included: the simulated
        wait tops that work up to the duration (the casting, the courier) rather than coming on
        top of it, so a replica handles exactly 1 / (duration x time_scale) orders per second, the
        rate the theoretical limit assumes. Work longer than the duration takes its real time.
        """
        log = self.log.bind(order_id=order.order_id)
        started_at, clock = self.clock.utcnow(), self.clock.monotonic()
        with self._state_lock:
            output, reason = None, None
            try:
                output = self.handle(order)
                status = StageStatus.OK
            except BusinessFailure as failure:
                status, reason, output = StageStatus.BUSINESS_FAILURE, failure.reason, failure.output
                log.info("declined: {}", reason)
            except Exception as error:  # noqa: BLE001 - every fault becomes a result the dispatcher can act on
                status, reason = StageStatus.ERROR, f"{type(error).__name__}: {error}"
                log.opt(exception=error).error("failed: {}", reason)
            self._counts[status] += 1
        if (rest := due - self.clock.monotonic()) > 0:
            self.clock.sleep(rest)
        self._busy_s += self.clock.monotonic() - clock
        result = StageResult(
            order_id=order.order_id,
            stage=self.name,
            status=status,
            output=output,
            reason=reason,
            started_at=started_at,
            finished_at=self.clock.utcnow(),
            replica=self.context.replica,
            node_id=self._node_id,
        )
        log.debug("{} in {:.1f} ms", status, result.duration_ms)
        return result

    def _recorded(self, order_id: str) -> StageResult | None:
        """The recorded answer for an order, if any (called under the state lock)."""
        return self._answer_from(order_id, self._journal.effect(self.name, order_id))

    def _answer_from(self, order_id: str, recorded: RecordedEffect | None) -> StageResult | None:
        """The answer a recorded effect gives a repeated call: its result, or a cancellation for a
        tombstone; None when there is no record (called under the state lock)."""
        if recorded is None:
            return None
        self._replays += 1
        if recorded.result is None:
            now = self.clock.utcnow()
            return StageResult(
                order_id=order_id,
                stage=self.name,
                status=StageStatus.ERROR,
                reason=CANCELLED_BEFORE_RUN,
                started_at=now,
                finished_at=now,
                replica=self.context.replica,
                node_id=self._node_id,
                replayed=True,
            )
        return recorded.result.model_copy(update={"replayed": True})

    def _commit(self, write: Callable[[], None]) -> None:
        """Run a journal write; if it fails, memory goes back to the last commit, so that this replica
        never holds an effect the ledger does not. The caller then sees the error."""
        try:
            write()
        except BaseException:
            self._unsynced = True
            try:
                self._resync()
            except Exception as error:  # noqa: BLE001 - the write's error is the one to report
                self.log.warning(
                    "memory not yet back at the last commit ({}: {}); it will be before the next call",
                    type(error).__name__,
                    error,
                )
            raise

    def _resync(self) -> None:
        """Back to the last commit, if a failed write left memory ahead of it (under the state lock)."""
        if self._unsynced:
            self._restore(self._journal.checkpoint_of(self.context.replica) or self._initial_checkpoint or {})
            self._unsynced = False

    def _checkpoint(self) -> dict[str, Any]:
        return {
            "counts": {status.value: n for status, n in self._counts.items()},
            "replays": self._replays,
            "compensations": self._compensations,
            "busy_s": self._busy_s,
            "stage": self.checkpoint(),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        self._counts = {status: saved["counts"][status.value] for status in StageStatus}
        self._replays = saved["replays"]
        self._compensations = saved["compensations"]
        self._busy_s = saved["busy_s"]
        self.restore(saved["stage"])
        if type(self).remember is not Stage.remember:
            for result in self._journal.live_effects(self.context.replica):
                self.remember(result)

    def close(self) -> None:
        """Release the replica's store connection (a PostgreSQL pool: its connections and threads)."""
        self._journal.close()

    def snapshot(self) -> StageSnapshot:
        with self._state_lock:
            self._resync()
            return self._snapshot()

    def _snapshot(self) -> StageSnapshot:
        return StageSnapshot(
            stage=self.name,
            replica=self.context.replica,
            node_id=self._node_id,
            calls=sum(self._counts.values()) + self._replays,
            ok=self._counts[StageStatus.OK],
            business_failures=self._counts[StageStatus.BUSINESS_FAILURE],
            errors=self._counts[StageStatus.ERROR],
            replays=self._replays,
            compensations=self._compensations,
            busy_s=round(self._busy_s, 6),
            state=self.state(),
        )

    def artifact_path(self, *parts: str) -> Path | None:
        """Where to write an artifact, or None when the run keeps no artifacts."""
        if self.context.artifacts_dir is None:
            return None
        path = self.context.artifacts_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
