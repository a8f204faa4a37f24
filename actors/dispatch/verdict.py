"""What an order's gathered results call for, as plain functions of the results.

Kept apart from the Dispatcher so that the rules read in one place and are tested without actors:
- an order whose failed stages all *errored* (after their retries) is parked as a dead letter when
  there is a ledger to park it in: its other stages' work is held, and `replay` can complete it;
- an order that failed for a business reason, or was abandoned, is failed and compensated;
- an order a stage could not decide because the ledger was out of reach is not concluded at all:
  it is reported unfinished, and the same command runs it again once the store is back;
- a replay redoes only the stages that were dead-lettered.
"""

from __future__ import annotations

from actors.errors import ReplayRefused, ledger_outage
from actors.models import DeadLetter, OrderOutcome, OrderStatus, StageName, StageStatus


def verdict(outcome: OrderOutcome, ledgered: bool, give_up: bool = False) -> tuple[OrderOutcome, list[DeadLetter]]:
    """The outcome as it is to be recorded, and the dead letters to record with it; raises
    `LedgerUnavailable` when a stage failed for want of the store."""
    for stage in outcome.failed_stages:
        if (outage := ledger_outage(outcome.results[stage].reason)) is not None:
            raise outage
    if give_up:
        reason = f"abandoned after dead letter: {outcome.reason}"
        return outcome.model_copy(update={"status": OrderStatus.FAILED, "reason": reason}), []
    failures = [outcome.results[stage] for stage in outcome.failed_stages]
    if not ledgered or not failures or any(r.status is not StageStatus.ERROR for r in failures):
        return outcome, []
    letters = [
        DeadLetter(
            order_id=outcome.order_id,
            stage=r.stage,
            error=r.reason or "",
            attempts=r.attempts,
            order=outcome.order,
            recorded_at=r.finished_at,
        )
        for r in failures
    ]
    return outcome.model_copy(update={"status": OrderStatus.DEAD_LETTERED}), letters


def stages_to_replay(order_id: str, parked: OrderOutcome | None, stage: StageName | None) -> list[StageName]:
    """The dead-lettered stage(s) of a parked order that a replay re-runs, or why there are none."""
    if parked is None:
        raise ReplayRefused(f"order {order_id} is not in the ledger")
    if parked.status is not OrderStatus.DEAD_LETTERED or parked.order is None:
        raise ReplayRefused(f"order {order_id} is {parked.status}, not dead-lettered: there is nothing to replay")
    dead = [s for s in parked.failed_stages if parked.results[s].status is StageStatus.ERROR]
    if stage is not None and stage not in dead:
        raise ReplayRefused(f"order {order_id} has no dead letter for {stage}; dead-lettered: {', '.join(dead)}")
    return [stage] if stage is not None else dead
