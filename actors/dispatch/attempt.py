"""One attempt of one stage for one order: what was sent, and what its answer means.

An attempt's answer is always a `StageResult`: a timeout and a failed call become error results
that name the replica, so the order's outcome says what went wrong where. Whether the replica is
gone for good is decided by the exception's type: `ActorDiedError` (restarts exhausted, killed
for good, node lost) is; `ActorUnavailableError` is not (the actor is restarting, and the same
replica comes back).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ray.exceptions import ActorUnavailableError, RayActorError

from actors.dispatch.pool import Replica
from actors.errors import describe_error
from actors.models import JewelryOrder, StageName, StageResult, StageStatus


@dataclass
class Attempt:
    """Sent to `replica`, answered through `future`."""

    stage: StageName
    replica: Replica
    future: asyncio.Future[StageResult]
    started_at: datetime
    clock: float  # perf_counter when sent


@dataclass(frozen=True)
class Answer:
    result: StageResult  # errors included
    replica_dead: bool
    latency_s: float


async def answer_of(order: JewelryOrder, attempt: Attempt, timeout_s: float | None) -> Answer:
    """The attempt's answer. A timed-out order still waiting left its queue; one already sent is
    finished and recorded by the replica, and a retry gets that record back."""
    dead = False
    try:
        result: StageResult = await attempt.future
    except TimeoutError:
        result = error_result(attempt, order, f"timed out after {timeout_s:g} s")
    except Exception as error:  # noqa: BLE001 - a dead replica or a lost call is an error result
        dead = is_replica_dead(error, attempt.replica)
        result = error_result(attempt, order, describe_error(error))
    return Answer(result, dead, time.perf_counter() - attempt.clock)


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
