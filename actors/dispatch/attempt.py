"""One attempt of one stage for some orders of a batch: what was sent, and what its answers mean.

Each order's answer is always a `StageResult`: a timeout and a failed call become error results
that name the replica, so the order's outcome says what went wrong where. Whether the replica is
gone for good is decided by the exception's type: `ActorDiedError` (restarts exhausted, killed
for good, node lost) is; `ActorUnavailableError` is not (the actor is restarting, and the same
replica comes back).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from ray.exceptions import ActorUnavailableError, RayActorError

from actors.dispatch.batching import Outcome
from actors.dispatch.pool import Replica
from actors.errors import describe_error
from actors.models import JewelryOrder, StageName, StageResult, StageStatus


@dataclass
class Attempt:
    """Orders of a batch sent to `replica` for one stage, answered together through `future`;
    `indices` are their places in the batch."""

    stage: StageName
    replica: Replica
    indices: list[int]
    future: asyncio.Future[list[Outcome]]
    started_at: datetime
    clock: float  # perf_counter when sent


@dataclass(frozen=True)
class Answer:
    result: StageResult  # errors included
    replica: Replica  # the one that answered (or failed to)
    replica_dead: bool


async def answers_of(orders: list[JewelryOrder], attempt: Attempt, timeout_s: float | None) -> list[Answer]:
    """Each order's answer, for `orders` (the attempt's, in its order). Orders that timed out still
    waiting left their queue; ones already sent are finished and recorded by the replica, and a
    retry gets that record back."""
    try:
        outcomes: list[Outcome] = await attempt.future
    except Exception as error:  # noqa: BLE001 - a timeout, or a call that found no replica
        outcomes = [error] * len(orders)
    replica = attempt.replica
    return [
        Answer(outcome, replica, False)
        if isinstance(outcome, StageResult)
        else Answer(error_result(attempt, order, _why(outcome, timeout_s)), replica, is_replica_dead(outcome, replica))
        for order, outcome in zip(orders, outcomes, strict=True)
    ]


def _why(error: BaseException, timeout_s: float | None) -> str:
    return f"timed out after {timeout_s:g} s" if isinstance(error, TimeoutError) else describe_error(error)


def is_replica_dead(error: BaseException, replica: Replica) -> bool:
    """Whether the error says the actor the replica's name points to now is gone for good.

    A call sent to the actor that a replacement took over from fails late (seconds, on a busy
    machine); taking that for the replacement's death marked every fresh replacement dead again."""
    if isinstance(error, ActorUnavailableError) or not isinstance(error, RayActorError):
        return False
    died = getattr(error, "actor_id", None)
    actor_id = getattr(replica.handle, "_actor_id", None)
    return died is None or actor_id is None or died == actor_id.hex()


def error_result(attempt: Attempt, order: JewelryOrder, reason: str) -> StageResult:
    replica = attempt.replica
    return StageResult(
        order_id=order.order_id,
        stage=attempt.stage,
        status=StageStatus.ERROR,
        reason=reason,
        started_at=attempt.started_at,
        finished_at=datetime.now(UTC),
        replica=replica.name,
        node_id=replica.node_id or "unknown",
    )
