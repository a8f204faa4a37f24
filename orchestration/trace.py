"""One order's story, read from the ledger alone: `jewelry-fanout trace ORDER_ID`.

The ledger already holds every part of it: the outcome (admission and conclusion, and each of the
six stage results with its replica, node, attempts, start and end), each stage's effect record (and
whether it was compensated, and how), and the dead letters with their resolution (a replay, or the
operator giving up). Gathered here into one `OrderTrace`, in time order, with what the lanes show:
how long the six stages ran at the same time. Reading it needs no Ray and no running system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from actors.errors import FanoutError
from actors.ledger import SqlLedger
from actors.models import STAGES, DeadLetter, OrderOutcome, StageName, StageStatus


class UnknownOrder(FanoutError):
    """The ledger has no outcome for the order id asked about."""


class StageCall(BaseModel):
    """One stage's part in the order, as its result and effect record have it."""

    model_config = ConfigDict(frozen=True)

    stage: StageName
    replica: str
    node_id: str
    attempts: int
    started_at: datetime
    finished_at: datetime
    status: StageStatus
    reason: str | None
    replayed: bool  # re-run by `replay` after a dead letter
    compensation: str | None  # what the stage undid for a failed order


class TraceEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    what: str


class OrderTrace(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    status: str
    reason: str | None
    admitted_at: datetime
    concluded_at: datetime
    latency_ms: float
    calls: list[StageCall]
    events: list[TraceEvent]
    all_six_overlap_ms: float  # how long all six stages of the first run were running at once (0: never)
    peak_concurrent: int  # the most stage calls running at one moment


def trace_order(ledger: SqlLedger, order_id: str) -> OrderTrace:
    """The order's story as its ledger has it."""
    outcome = ledger.outcome(order_id)
    if outcome is None:
        raise UnknownOrder(f"the ledger has no order {order_id}")
    compensations = {}
    for stage in STAGES:
        effect = ledger.effect(stage, order_id)
        if effect is not None and effect.compensation:
            compensations[stage] = effect.compensation
    return trace_outcome(outcome, ledger.dead_letters(order_id, open_only=False), compensations)


def trace_outcome(
    outcome: OrderOutcome, letters: Sequence[DeadLetter] = (), compensations: Mapping[StageName, str] | None = None
) -> OrderTrace:
    """The story an outcome tells by itself (a run without a ledger), with the dead letters and the
    effect records' compensations where there is a ledger to read them from."""
    resolved = {letter.stage for letter in letters if letter.resolved_at is not None}
    compensations = compensations or {}
    calls = [
        _call(
            outcome,
            stage,
            stage in resolved and outcome.results[stage].status is not StageStatus.ERROR,
            compensations.get(stage),
        )
        for stage in STAGES
        if stage in outcome.results
    ]
    first_run = [call for call in calls if not call.replayed]
    admitted = min([outcome.started_at, *(call.started_at for call in first_run)])
    events = [TraceEvent(at=admitted, what="admitted by a Dispatcher shard")]
    events.extend(
        TraceEvent(
            at=call.finished_at,
            what=f"{call.stage} answered after {call.attempts} attempts ({call.attempts - 1} retried)",
        )
        for call in calls
        if call.attempts > 1
    )
    for letter in letters:
        settled = f" (then {letter.resolution})" if letter.resolved_at is not None and letter.resolution else ""
        events.append(
            TraceEvent(
                at=letter.recorded_at,
                what=f"{letter.stage} dead-lettered after {letter.attempts} attempt(s): {letter.error}{settled}",
            )
        )
    if any(call.replayed for call in calls):
        events.append(
            TraceEvent(
                at=outcome.started_at,
                what="replayed by the operator: " + ", ".join(call.stage.value for call in calls if call.replayed),
            )
        )
    for stage, done in outcome.compensations.items():
        events.append(TraceEvent(at=outcome.finished_at, what=f"{stage} compensated: {done}"))
    events.sort(key=lambda event: event.at)
    events.append(
        TraceEvent(at=outcome.finished_at, what=f"{outcome.status}" + (f": {outcome.reason}" if outcome.reason else ""))
    )
    return OrderTrace(
        order_id=outcome.order_id,
        status=outcome.status.value,
        reason=outcome.reason,
        admitted_at=admitted,
        concluded_at=outcome.finished_at,
        latency_ms=(outcome.finished_at - admitted).total_seconds() * 1000,
        calls=calls,
        events=events,
        all_six_overlap_ms=_all_overlap_ms(first_run) if len(first_run) == len(STAGES) else 0.0,
        peak_concurrent=_peak(calls),
    )


def _call(outcome: OrderOutcome, stage: StageName, replayed: bool, compensation: str | None) -> StageCall:
    result = outcome.results[stage]
    return StageCall(
        stage=stage,
        replica=result.replica,
        node_id=result.node_id,
        attempts=result.attempts,
        started_at=result.started_at,
        finished_at=result.finished_at,
        status=result.status,
        reason=result.reason,
        replayed=replayed,
        compensation=compensation,
    )


def _all_overlap_ms(calls: list[StageCall]) -> float:
    latest_start = max(call.started_at for call in calls)
    earliest_end = min(call.finished_at for call in calls)
    return max(0.0, (earliest_end - latest_start).total_seconds() * 1000)


def _peak(calls: list[StageCall]) -> int:
    """The most calls running at one moment (an end at the same instant as a start does not overlap)."""
    edges = sorted(
        [(call.started_at, 1) for call in calls] + [(call.finished_at, -1) for call in calls],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak
