"""The layers of a stage's router, each on its own: replica choice and versioned membership
(`pool`), one attempt's answer (`attempt`), and their composition (`StageClient`)."""

import asyncio
from datetime import UTC, datetime

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from actors.dispatch.attempt import Attempt, answers_of, is_replica_dead
from actors.dispatch.batching import BatchPolicy
from actors.dispatch.client import StageClient
from actors.dispatch.pool import Replica, ReplicaPool
from actors.dispatch.retry import RetryPolicy
from actors.errors import MembershipError
from actors.models import Priority, StageName, StageResult, StageStatus
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
            attempt = Attempt(QUALITY, replica, [0, 1], future, datetime.now(UTC), 0.0)
            answers.append(await answers_of([make_order(0), make_order(1)], attempt, 2.5))
        # A call that answered one order and failed the other: each order gets its own answer.
        future = loop.create_future()
        future.set_result([ActorDiedError(), (await client.call(make_order(1)))])
        split = await answers_of(
            [make_order(0), make_order(1)], Attempt(QUALITY, replica, [0, 1], future, datetime.now(UTC), 0.0), 2.5
        )
        return answers, split

    client = _client({"quality-0": _replica_handle()})
    (timed_out_pair, died_pair), split = asyncio.run(scenario())
    assert len(timed_out_pair) == len(died_pair) == 2  # a failed call answers each of its orders
    timed_out, died = timed_out_pair[1], died_pair[0]
    assert timed_out.result.status is StageStatus.ERROR and timed_out.result.reason == "timed out after 2.5 s"
    assert (
        timed_out.result.replica == "quality-3" and timed_out.result.node_id == "node-a" and not timed_out.replica_dead
    )
    assert died.replica_dead and died.result.reason.startswith("ActorDiedError")
    assert split[0].replica_dead and split[0].result.status is StageStatus.ERROR
    assert split[1].result.status is StageStatus.OK and not split[1].replica_dead


def test_a_batch_spreads_over_the_least_loaded_replicas_and_a_busy_one_takes_less():
    pool = ReplicaPool(QUALITY, {"quality-0": "a", "quality-1": "b", "quality-2": "c"})
    assert [(r.name, n) for r, n in pool.spread(7)] == [("quality-0", 3), ("quality-1", 2), ("quality-2", 2)]
    assert [r.ongoing for r in (pool.named(f"quality-{i}") for i in range(3))] == [3, 2, 2]
    pool.release(pool.named("quality-1"), 0.01, orders=2)
    pool.release(pool.named("quality-2"), 0.01, orders=2)
    # quality-0 still has 3 outstanding: the next 4 go to the idle two first, and it gets none.
    assert [(r.name, n) for r, n in pool.spread(4)] == [("quality-1", 2), ("quality-2", 2)]
    pool.mark_dead(pool.named("quality-2"))
    assert all(r.name != "quality-2" for r, _ in pool.spread(6))  # nothing to a dead replica


def test_a_batch_goes_in_one_call_per_replica_and_priority():
    async def scenario():
        handles = {"quality-0": _replica_handle("quality-0"), "quality-1": _replica_handle("quality-1")}
        client = _client(handles)
        batch = [
            make_order(i % 3, order_id=f"J20258{i:02d}", priority=Priority.RUSH if i < 2 else Priority.NORMAL)
            for i in range(6)
        ]
        attempts = client.send(batch)
        answers = [await client.answers(batch, attempt) for attempt in attempts]
        return handles, batch, attempts, answers

    handles, batch, attempts, answers = asyncio.run(scenario())
    # Three orders each; quality-0's three are the two rush orders and a normal one: two calls.
    assert [(a.replica.name, a.indices) for a in attempts] == [
        ("quality-0", [0, 1]),
        ("quality-0", [2]),
        ("quality-1", [3, 4, 5]),
    ]
    assert [len(b) for b in handles["quality-0"].batches] == [2, 1] and len(handles["quality-1"].batches) == 1
    joined = {
        batch[i].order_id: answer.result
        for a, got in zip(attempts, answers, strict=True)
        for i, answer in zip(a.indices, got, strict=True)
    }
    assert sorted(joined) == sorted(o.order_id for o in batch)
    assert all(result.order_id == order_id and result.status is StageStatus.OK for order_id, result in joined.items())


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
