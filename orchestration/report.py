"""The summary of a run, tallied as outcomes stream in so that memory does not grow with outcomes.

`RunSummary` is what `--json` prints and what the table shows: counts by terminal status,
throughput against the slowest pool's limit, latency percentiles, per-stage time and replica load.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict

from actors.models import (
    STAGES,
    OrderOutcome,
    OrderStatus,
    RejectedRecord,
    StageName,
    StageSnapshot,
)
from actors.models.messages import LostOrder
from orchestration.digest import OutcomeDigest


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class LatencySummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    p50: float
    p95: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> LatencySummary:
        return cls(
            p50=round(percentile(values, 50), 3),
            p95=round(percentile(values, 95), 3),
            p99=round(percentile(values, 99), 3),
            mean=round(sum(values) / len(values), 3) if values else 0.0,
            max=round(max(values), 3) if values else 0.0,
        )


class StageSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    calls: int
    replicas: int
    ok: int
    business_failures: int
    errors: int
    time_ms: LatencySummary
    replica_calls: dict[str, int]
    snapshot: dict[str, dict[str, Any]]


class RunSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str | None = None  # as the ledger records the run (`jewelry-fanout runs`); none without a ledger
    namespace: str | None = None
    orders_total: int
    completed: int
    failed: int
    rejected: int
    lost: int
    unfinished: int = 0  # not recorded in the ledger (it was unreachable): the same command finishes them
    not_started: int = 0  # records an interrupt left unread: the same command (with a ledger) does them
    dead_lettered: int = 0
    cancelled: int = 0  # scheduled orders cancelled before they were due
    scheduled: int = 0  # scheduled orders still waiting for their time: kept in the ledger for a later run
    from_ledger: int = 0
    wall_s: float
    throughput_per_s: float
    theoretical_limit_per_s: float | None
    efficiency: float | None
    latency_ms: LatencySummary
    stages: dict[StageName, StageSummary]
    failure_reasons: dict[str, int]


class RunTally:
    """Counts and latencies of a run so far; outcomes themselves are not kept."""

    def __init__(self) -> None:
        self.by_status = dict.fromkeys(OrderStatus, 0)
        self.invalid_records = 0
        self.lost = 0
        self.unfinished = 0
        self.from_ledger = 0
        self.processed = 0
        self.latencies_ms: list[float] = []
        self.stage_ms: dict[StageName, list[float]] = defaultdict(list)
        self.stage_status: dict[StageName, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.replica_calls: dict[StageName, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.failure_reasons: dict[str, int] = defaultdict(int)

    @property
    def terminal(self) -> int:
        return sum(self.by_status.values())

    def add_outcome(self, outcome: OrderOutcome | OutcomeDigest) -> None:
        self.by_status[outcome.status] += 1
        if outcome.status is OrderStatus.REJECTED:
            self.failure_reasons[f"rejected: {outcome.reason}"] += 1
            return
        if outcome.status is OrderStatus.CANCELLED:  # no stage did anything
            return
        if outcome.from_ledger:  # done in an earlier run: counted, but not this run's work or time
            self.from_ledger += 1
            return
        self.processed += 1
        self.latencies_ms.append(outcome.latency_ms)
        for stage, result in outcome.results.items():
            self.stage_ms[stage].append(result.duration_ms)
            self.stage_status[stage][result.status.value] += 1
            self.replica_calls[stage][result.replica] += 1
        for stage in outcome.failed_stages:
            reason = outcome.results[stage].reason or ""
            self.failure_reasons[f"{stage}: {_reason_kind(reason)}"] += 1

    def add_reject(self, reject: RejectedRecord) -> None:
        self.invalid_records += 1
        self.failure_reasons[f"invalid record: {reject.errors[0].field}"] += 1

    def add_lost(self, lost: LostOrder) -> None:
        if lost.resumable:
            self.unfinished += 1
            self.failure_reasons[f"unfinished: {lost.reason[:60]}"] += 1
        else:
            self.lost += 1
            self.failure_reasons[f"lost: {lost.reason[:60]}"] += 1

    def summary(
        self,
        wall_s: float,
        limit_per_s: float | None,
        replicas: dict[StageName, int],
        snapshots: dict[StageName, list[StageSnapshot]],
        not_started: int = 0,
        run_id: str | None = None,
        scheduled: int = 0,
        namespace: str | None = None,
    ) -> RunSummary:
        throughput = self.processed / wall_s if wall_s > 0 else 0.0
        stages = {}
        for stage in STAGES:
            status = self.stage_status[stage]
            stages[stage] = StageSummary(
                calls=sum(status.values()),
                replicas=replicas.get(stage, 0),
                ok=status.get("ok", 0),
                business_failures=status.get("business_failure", 0),
                errors=status.get("error", 0),
                time_ms=LatencySummary.of(self.stage_ms[stage]),
                replica_calls=dict(sorted(self.replica_calls[stage].items())),
                snapshot={
                    snap.replica: snap.model_dump(mode="json", exclude={"stage"}) for snap in snapshots.get(stage, [])
                },
            )
        return RunSummary(
            run_id=run_id,
            namespace=namespace,
            orders_total=self.terminal + self.invalid_records + self.lost + self.unfinished + scheduled,
            completed=self.by_status[OrderStatus.COMPLETED],
            failed=self.by_status[OrderStatus.FAILED],
            rejected=self.by_status[OrderStatus.REJECTED] + self.invalid_records,
            lost=self.lost,
            unfinished=self.unfinished,
            not_started=not_started,
            dead_lettered=self.by_status[OrderStatus.DEAD_LETTERED],
            cancelled=self.by_status[OrderStatus.CANCELLED],
            scheduled=scheduled,
            from_ledger=self.from_ledger,
            wall_s=round(wall_s, 3),
            throughput_per_s=round(throughput, 3),
            theoretical_limit_per_s=round(limit_per_s, 3) if limit_per_s else None,
            efficiency=round(throughput / limit_per_s, 4) if limit_per_s else None,
            latency_ms=LatencySummary.of(self.latencies_ms),
            stages=stages,
            failure_reasons=dict(sorted(self.failure_reasons.items(), key=lambda kv: -kv[1])),
        )


def _reason_kind(reason: str) -> str:
    """The reason without order-specific detail, so that like failures count together."""
    head = reason.split(":", 1)[0]
    return head if len(head) < 60 else head[:57] + "..."
