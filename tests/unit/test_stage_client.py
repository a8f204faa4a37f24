"""The layers of a stage's router, each on its own: replica choice and versioned membership
(`pool`), one attempt's answer (`attempt`), and their composition (`StageClient`)."""

import asyncio
from datetime import UTC, datetime

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from actors.dispatch.attempt import Attempt, answer_of, is_replica_dead
from actors.dispatch.batching import BatchPolicy
from actors.dispatch.client import StageClient
from actors.dispatch.pool import Replica, ReplicaPool
from actors.dispatch.retry import RetryPolicy
from actors.errors import MembershipError
from actors.models import StageName, StageResult, StageStatus
from actors.models.messages import PoolMember, PoolMembers
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from actors.telemetry import DispatchMetrics
from tests.conftest import make_order
from tests.fakes import DeadHandle, LocalHandle

QUALITY = StageName.QUALITY


def _members(version, *members):
    return PoolMembers(QUALITY, version, tuple(members))


def _replica_handle(name="quality-0"):
    return LocalHandle(STAGE_CLASSES[QUALITY](STAGE_CONFIGS[QUALITY](), ReplicaContext(name, time_scale=0)))


def test_a_newer_member_list_is_applied_and_an_older_one_never_undoes_it():
    pool = ReplicaPool(QUALITY, {"quality-0": "a"})
    kept = pool.acquire()
    assert pool.apply(_members(2, PoolMember("quality-0", 0, "a"), PoolMember("quality-1", 1, "b")))
    assert not pool.apply(_members(1, PoolMember("quality-0", 0, "a")))  # late, older: ignored
    assert [load.replica for load in pool.loads()] == ["quality-0", "quality-1"] and pool.version == 2
    assert pool.named("quality-0") is kept and kept.ongoing == 1  # a known member keeps its counters


def test_a_replacement_in_the_list_revives_a_dead_replica_and_a_dropped_one_leaves():
    pool = ReplicaPool(QUALITY, {"quality-0": "a", "quality-1": "b"})
    pool.mark_dead(pool.named("quality-1"))
    pool.apply(_members(1, PoolMember("quality-0", 0, "a"), PoolMember("quality-1", 1, "b")))
    assert not pool.named("quality-1").alive  # the same actor listed again: still dead
    pool.apply(_members(2, PoolMember("quality-0", 0, "a"), PoolMember("quality-1", 1, "b2")))
    assert pool.named("quality-1").alive and pool.named("quality-1").handle == "b2"
    pool.apply(_members(3, PoolMember("quality-0", 0, "a", draining=True), PoolMember("quality-1", 1, "b2")))
    assert all(pool.acquire().name == "quality-1" for _ in range(3))  # draining: nothing new goes to it
    pool.apply(_members(4, PoolMember("quality-1", 1, "b2")))
    assert [load.replica for load in pool.loads()] == ["quality-1"]


def test_the_same_actor_relisted_under_a_new_epoch_takes_calls_again():
    """A shard that took a live replacement for dead reported it dead on every tick, and the supervisor,
    finding the name held by that same live actor, listed it again unchanged, every tick, for good.
    Now a re-listing says so with the slot's next epoch, and the shard calls the actor again."""
    pool = ReplicaPool(QUALITY, {"quality-0": "a", "quality-1": "b"})
    pool.apply(_members(1, PoolMember("quality-0", 0, "a"), PoolMember("quality-1", 1, "b2", epoch=1)))
    pool.mark_dead(pool.named("quality-1"))  # e.g. a late failure of a call the old actor had
    pool.apply(_members(2, PoolMember("quality-0", 0, "a"), PoolMember("quality-1", 1, "b2", epoch=1)))
    assert not pool.named("quality-1").alive  # the same listing again: still dead
    pool.apply(_members(3, PoolMember("quality-0", 0, "a"), PoolMember("quality-1", 1, "b2", epoch=2)))
    assert pool.named("quality-1").alive and pool.named("quality-1").handle == "b2"


def test_an_empty_pool_says_so():
    with pytest.raises(MembershipError, match="no replicas yet"):
        ReplicaPool(QUALITY, {}).acquire()


def test_a_replica_is_dead_by_the_exception_type_not_its_name():
    replica = Replica("quality-0", object(), 0)
    assert is_replica_dead(ActorDiedError(), replica)
    assert not is_replica_dead(ActorUnavailableError("restarting", None), replica)  # it comes back
    assert not is_replica_dead(RuntimeError("ActorDiedError: but only in the text"), replica)


def test_an_attempt_that_times_out_or_fails_is_an_error_result_naming_its_replica():
    async def scenario():
        loop = asyncio.get_running_loop()
        replica = Replica("quality-3", object(), 3, node_id="node-a")
        answers = []
        for error in (TimeoutError(), ActorDiedError()):
            future = loop.create_future()
            future.set_exception(error)
            answers.append(
                await answer_of(make_order(0), Attempt(QUALITY, replica, future, datetime.now(UTC), 0.0), 2.5)
            )
        return answers

    timed_out, died = asyncio.run(scenario())
    assert timed_out.result.status is StageStatus.ERROR and timed_out.result.reason == "timed out after 2.5 s"
    assert (
        timed_out.result.replica == "quality-3" and timed_out.result.node_id == "node-a" and not timed_out.replica_dead
    )
    assert died.replica_dead and died.result.reason.startswith("ActorDiedError")


def _client(replicas, attempts=3):
    return StageClient(
        QUALITY,
        replicas,
        timeout_s=5.0,
        retry=RetryPolicy(attempts=attempts, base_delay_s=0, max_delay_s=0),
        batching=BatchPolicy(),
        metrics=DispatchMetrics(),
    )


def test_a_dead_replica_is_marked_and_the_retry_goes_to_another():
    async def scenario():
        dead, alive = DeadHandle(), _replica_handle("quality-1")
        client = _client({"quality-0": dead, "quality-1": alive})
        results = [await client.call(make_order(i % 3, order_id=f"J20259{i:02d}")) for i in range(4)]
        return client, dead, alive, results

    client, dead, alive, results = asyncio.run(scenario())
    assert all(r.status is StageStatus.OK and r.replica == "quality-1" for r in results)
    assert dead.calls == 1 and alive.calls == 4  # after its first failure the dead one got nothing more
    assert [(load.replica, load.alive) for load in client.loads()] == [("quality-0", False), ("quality-1", True)]
    assert results[0].attempts == 2


def test_a_shard_without_members_yet_answers_errors_and_recovers_once_they_arrive():
    async def scenario():
        client = _client({}, attempts=1)
        before: StageResult = await client.call(make_order(0))
        client.apply(_members(1, PoolMember("quality-0", 0, _replica_handle())))
        return before, await client.call(make_order(1))

    before, after = asyncio.run(scenario())
    assert before.status is StageStatus.ERROR and "no replicas yet" in before.reason
    assert after.status is StageStatus.OK and after.replica == "quality-0"


def test_compensating_on_a_replica_no_longer_in_the_pool_says_so():
    async def scenario():
        return await _client({"quality-0": _replica_handle()}).compensate("J2025001", "quality-7")

    assert asyncio.run(scenario()) == "compensation failed: quality-7 is no longer in the pool"
