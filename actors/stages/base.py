"""The one base every stage shares: timing, error wrapping, logging context, idempotency, counters.

A stage module only says what its stage does to an order (`handle`) and what state it keeps
(`state`). Everything a call goes through on the way is here, once, so that six stages cannot
drift apart in how they time, log, fail or repeat themselves.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from actors.errors import BusinessFailure
from actors.logs import configure_logging
from actors.models import (
    JewelryOrder,
    StageName,
    StageOutput,
    StageResult,
    StageSnapshot,
    StageStatus,
)
from actors.runtime import current_node_id


class StageConfig(BaseModel):
    """Settings every stage has; each stage extends it with its own business settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: float = Field(ge=0, description="simulated work per order, before time_scale")


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

    def share(self, total: float) -> float:
        """This replica's part of a stock that the pool's replicas split evenly."""
        base, extra = divmod(total, self.replica_count)
        return base + (extra if self.index == 0 else 0)


class Stage(ABC, Generic[ConfigT]):
    """A stateful stage replica. Call `process(order)`; subclasses implement `handle` and `state`."""

    name: ClassVar[StageName]

    def __init__(self, config: ConfigT, context: ReplicaContext) -> None:
        if context.log_level:
            configure_logging(context.log_level)
        self.config = config
        self.context = context
        self.log = logger.bind(stage=self.name.value, replica=context.replica)
        self._node_id = current_node_id()
        self._first_results: dict[str, StageResult] = {}
        self._compensated: dict[str, str | None] = {}
        self._counts = {status: 0 for status in StageStatus}
        self._replays = 0
        self._busy_s = 0.0
        # Snapshots run in their own concurrency group, beside a running call; state changes and
        # snapshots take this lock so that a snapshot never sees half an order.
        self._state_lock = threading.Lock()
        if context.artifacts_dir is not None:
            context.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log.info("replica ready on node {}", self._node_id[:12])

    @abstractmethod
    def handle(self, order: JewelryOrder) -> StageOutput:
        """Do this stage's work for one order; raise `BusinessFailure` to decline it."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """This stage's business state as plain data (stock left, serials issued, ...)."""

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        """Reverse this stage's side effects for a failed order; say what was undone, or None
        when the stage changed nothing that needs undoing (a design stays in the cache)."""
        return None

    def compensate(self, order_id: str) -> str | None:
        """Undo this replica's work for an order that failed elsewhere, once.

        Idempotent like `process`: a second call returns the first answer. None means there was
        nothing here to undo (the order never reached this replica, or the stage declined it).
        """
        with self._state_lock:
            if order_id in self._compensated:
                return self._compensated[order_id]
            first = self._first_results.get(order_id)
            done = None
            if first is not None and first.status is StageStatus.OK and first.output is not None:
                done = self.undo(order_id, first.output)
            self._compensated[order_id] = done
        if done:
            self.log.bind(order_id=order_id).info("compensated: {}", done)
        return done

    def process(self, order: JewelryOrder) -> StageResult:
        """Run the stage once per order id; a repeated call returns the first result unchanged.

        Errors (unexpected exceptions) are not remembered, so that a retry really retries;
        `handle` implementations change state only after their last check, so a failed call
        leaves no partial side effect behind.
        """
        with self._state_lock:
            first = self._first_results.get(order.order_id)
            if first is not None:
                self._replays += 1
                return first.model_copy(update={"replayed": True})

        log = self.log.bind(order_id=order.order_id)
        started_at, clock = datetime.now(UTC), time.perf_counter()
        output, reason = None, None
        try:
            self._simulate_work()
            with self._state_lock:
                output = self.handle(order)
            status = StageStatus.OK
        except BusinessFailure as failure:
            status, reason, output = StageStatus.BUSINESS_FAILURE, failure.reason, failure.output
            log.info("declined: {}", reason)
        except Exception as error:  # noqa: BLE001 - every fault becomes a result the dispatcher can act on
            status, reason = StageStatus.ERROR, f"{type(error).__name__}: {error}"
            log.opt(exception=error).error("failed: {}", reason)
        with self._state_lock:
            self._busy_s += time.perf_counter() - clock
            self._counts[status] += 1

        result = StageResult(
            order_id=order.order_id,
            stage=self.name,
            status=status,
            output=output,
            reason=reason,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            replica=self.context.replica,
            node_id=self._node_id,
        )
        if status is not StageStatus.ERROR:
            with self._state_lock:
                self._first_results[order.order_id] = result
        log.debug("{} in {:.1f} ms", status, result.duration_ms)
        return result

    def snapshot(self) -> StageSnapshot:
        with self._state_lock:
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
            compensations=sum(1 for done in self._compensated.values() if done),
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

    def _simulate_work(self) -> None:
        delay = self.config.duration_s * self.context.time_scale
        if delay > 0:
            time.sleep(delay)
