"""The one base every stage shares: the path a call takes through a replica, once for all six.

A stage module only says what its stage does to an order and what state it keeps (the hooks of
`contract.py`). Everything a call goes through on the way is here, so that six stages cannot
drift apart in how they time, log, fail, repeat or survive a restart: each order is decided, run
at the stage's pace (`pacing.py`), and committed with the state after it before its result is
returned (`effect_log.py`); a repeated order is answered from its record.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from actors.clock import Clock
from actors.errors import BusinessFailure
from actors.ledger import (
    CANCELLED_BEFORE_RUN,
    Claim,
    ClaimRefused,
    DuplicateEffect,
    RecordedEffect,
    StageJournal,
    WorkshopView,
    open_journal,
)
from actors.models import (
    JewelryOrder,
    StageResult,
    StageSnapshot,
    StageStatus,
)
from actors.models.wire import ModelArray
from actors.runtime import current_node_id, prepare_process
from actors.stages.contract import ConfigT, ReplicaContext, StageContract
from actors.stages.effect_log import EffectLog
from actors.stages.pacing import Cadence

# Times a batch is decided again after the workshop refused one of its claims; each time reads the
# workshop afresh, so a second refusal needs another replica to win the same last piece again.
CLAIM_ATTEMPTS = 5


class Stage(StageContract[ConfigT]):
    """A stateful stage replica. Call `process(order)`; subclasses implement `handle` and `state`."""

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
        self._effects = EffectLog(
            context.journal or open_journal(context.ledger),
            context.replica,
            self.name,
            self._checkpoint,
            self._restore,
        )
        self._cadence = Cadence()

    def resume(self) -> None:
        """Come back as the last commit left this replica. Subclasses call it at the end of their
        `__init__`, once their initial state exists (a restarted actor re-runs `__init__`)."""
        saved = self._effects.take_over(self.initial_stock())
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
        return self._effects.journal

    @property
    def workshop(self) -> WorkshopView:
        """The workshop every replica of every pool shares: read it to decide, claim in `claim`."""
        return self._effects.pending

    def compensate(self, order_id: str) -> str | None:
        """Undo this stage's work for an order that failed elsewhere, once.

        Idempotent like `process`: a second call returns the first answer. None means there was
        nothing to undo (the stage never ran for the order, or declined it); a stage that never
        ran is marked so that a call still on its way cannot do the work afterwards.
        """
        with self._state_lock:
            self._effects.resync()
            recorded = self._effects.recorded(order_id)
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
            self._effects.record_compensation(order_id, replica, note, release)
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

    def process_encoded(self, orders: Sequence[JewelryOrder]) -> ModelArray:
        """`process_batch` as the Dispatcher calls it: the results cross back as one JSON array."""
        return ModelArray.of(StageResult, self.process_batch(orders))

    def _process_batch(self, orders: Sequence[JewelryOrder], queued: bool) -> list[StageResult]:
        """`process_batch`; `queued` says the call may have waited behind the last one (a batch taken
        apart after a refusal did not)."""
        with self._state_lock:
            self._effects.resync()
        try:
            return self._decide_and_commit(orders, queued)
        except BaseException:
            # Something failed part-way (a store read, when the store is down): orders already run
            # changed memory but were never committed, so memory goes back to the last commit before
            # the next call.
            self._effects.unsynced = True
            raise

    def _decide_and_commit(self, orders: Sequence[JewelryOrder], queued: bool) -> list[StageResult]:
        """`process_batch` itself: decide each order, then commit them together (again if refused)."""
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            answers: dict[str, StageResult] = {}
            fresh: list[StageResult] = []
            claims: dict[str, Claim] = {}
            due = self._cadence.start(self.clock.monotonic(), self._per_order_s, first_try=queued and attempt == 1)
            self._effects.pending.clear()
            # One read for the batch's recorded effects, not one per order (on PostgreSQL each read is a
            # round trip). One recorded after this read by another replica is caught at the commit.
            known = self._effects.known([order.order_id for order in orders])
            self._effects.pending.look_up([c for o in orders if o.order_id not in known for c in self.certificates(o)])
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
                        self._effects.pending.add(order.order_id, claim)
                answers[order.order_id] = recorded
            self._effects.pending.clear()
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
                self._effects.record(standing, claims)
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
        return self._answer_from(order_id, self._effects.recorded(order_id))

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
            for result in self.store.live_effects(self.context.replica):
                self.remember(result)

    def close(self) -> None:
        """Release the replica's store connection (a PostgreSQL pool: its connections and threads)."""
        self.store.close()

    def snapshot(self) -> StageSnapshot:
        with self._state_lock:
            self._effects.resync()
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
