"""Micro-batching: a batch gives each order the result it would get alone, repeats nothing, and the
batcher sends idle orders at once, batches a backlog, puts rush orders first and bounds what is sent."""

from __future__ import annotations

import asyncio

import pytest

from actors.dispatch.batching import BatchPolicy, ReplicaBatcher
from actors.intake.samples import generate_orders
from actors.ledger import LedgerSpec, open_ledger
from actors.models import STAGES, OrderStatus, Priority, StageName, StageStatus
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from actors.stages.pacing import HANDOVER_S
from tests.conftest import make_order
from tests.fakes import FakeClock, FakeReplica, FakeTimers, LocalHandle


def _replica(stage: StageName, index: int = 0, count: int = 1, ledger: LedgerSpec | None = None):
    config = STAGE_CONFIGS[stage](**({"defect_rate": 0.2} if stage is StageName.QUALITY else {}))
    context = ReplicaContext(f"{stage.value}-{index}", index=index, replica_count=count, time_scale=0, ledger=ledger)
    return STAGE_CLASSES[stage](config, context)


def _answer(result):
    return result.status, result.reason, result.output.model_dump(exclude={"cache_hit"}) if result.output else None


@pytest.mark.parametrize("stage", STAGES)
def test_a_batch_gives_each_order_the_result_it_gets_alone(stage):
    orders = list(generate_orders(60, seed=11))
    alone, batched = _replica(stage), _replica(stage)
    one_by_one = [alone.process(order) for order in orders]
    in_batches = [r for i in range(0, 60, 16) for r in batched.process_batch(orders[i : i + 16])]
    assert [_answer(r) for r in in_batches] == [_answer(r) for r in one_by_one]
    assert batched.snapshot().state == alone.snapshot().state


def test_batches_repeat_no_side_effect(spec, closing):
    orders = list(generate_orders(10, seed=3))
    packing = closing(_replica(StageName.PACKAGING, ledger=spec))
    first = packing.process_batch(orders + orders[:2])  # the same order twice in one batch: one answer
    assert [r.output.certificate_serial for r in first[-2:]] == [r.output.certificate_serial for r in first[:2]]
    again = packing.process_batch(orders)
    assert all(r.replayed for r in again) and packing.snapshot().state["serials_issued"] == 10
    assert len(closing(open_ledger(spec)).effects_of(StageName.PACKAGING)) == 10


def test_a_batch_holding_an_order_another_replica_recorded_gets_that_record(spec, closing):
    orders = list(generate_orders(6, seed=4))
    a = closing(_replica(StageName.LOGISTICS, index=0, count=2, ledger=spec))
    b = closing(_replica(StageName.LOGISTICS, index=1, count=2, ledger=spec))
    by_a = a.process(orders[3])
    results = b.process_batch(orders)
    assert results[3].replica == "logistics-0" and results[3].output == by_a.output
    assert b.snapshot().state["tracking_numbers_issued"] == 5
    numbers = [e.result.output.tracking_number for e in closing(open_ledger(spec)).effects_of(StageName.LOGISTICS)]
    assert len(numbers) == len(set(numbers)) == 6


def _one(batcher: ReplicaBatcher, order) -> asyncio.Future:
    """One order's answer from the batcher: its part's only result."""
    return asyncio.ensure_future(_only(batcher.submit([order])))


async def _only(part):
    [answer] = await part
    return answer


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _busy_replica(
    max_batch: int, timers: FakeTimers | None = None
) -> tuple[FakeReplica, ReplicaBatcher, asyncio.Future]:
    """A batcher allowing one call at a time, and that call under way for the first order."""
    replica = FakeReplica()
    batcher = ReplicaBatcher(
        replica.send,
        BatchPolicy(max_batch=max_batch, max_outstanding=1),
        call_later=timers.call_later if timers else None,
    )
    first = _one(batcher, make_order(0))
    await _turns()
    return replica, batcher, first


def test_an_idle_replica_gets_an_order_at_once_and_a_backlog_goes_in_batches_rush_first():
    async def scenario():
        replica, batcher, first = await _busy_replica(max_batch=3)
        assert replica.sent == [["J2025001"]]  # alone, without waiting for company
        normal = [_one(batcher, make_order(0, order_id=f"J2025{i:02d}0")) for i in range(4)]
        rush = _one(batcher, make_order(0, order_id="J2025999", priority=Priority.RUSH))
        await _turns()
        assert len(replica.sent) == 1 and batcher.waiting == 5  # one call outstanding at most
        replica.release(0)
        assert await first == "done J2025001"
        await _turns()
        assert replica.sent[1] == ["J2025999"]  # rush first, in a batch of its own
        replica.release(1)
        await _turns()
        assert replica.sent[2] == ["J2025000", "J2025010", "J2025020"]  # then in arrival order
        replica.release(2)
        await _turns()
        assert replica.sent[3] == ["J2025030"]
        replica.release(3)
        return await asyncio.gather(*normal, rush)

    answers = asyncio.run(scenario())
    assert answers[-1] == "done J2025999"


def test_an_order_that_times_out_while_waiting_is_never_sent():
    async def scenario():
        timers = FakeTimers()
        replica, batcher, busy = await _busy_replica(max_batch=8, timers=timers)
        waiting = batcher.submit([make_order(1)], timeout_s=0.5)
        timers.advance(0.499)
        await _turns()
        assert not waiting.done() and batcher.waiting == 1  # not yet: the timer has 1 ms to go
        timers.advance(0.001)
        with pytest.raises(TimeoutError):
            await waiting
        assert batcher.waiting == 0  # it left the queue
        late = batcher.submit([make_order(2)])
        replica.release(0)
        await busy
        await _turns()
        replica.release(1)
        await late
        return replica.sent

    assert asyncio.run(scenario()) == [["J2025001"], ["J2025003"]]


def test_an_answer_in_time_cancels_its_timer():
    async def scenario():
        timers = FakeTimers()
        replica = FakeReplica()
        batcher = ReplicaBatcher(replica.send, BatchPolicy(max_batch=8), call_later=timers.call_later)
        answered = batcher.submit([make_order(0)], timeout_s=0.5)
        await _turns()
        replica.release(0)
        [result] = await answered
        timers.advance(1.0)  # the timer would fire now; it was cancelled with the answer
        return result, answered

    result, future = asyncio.run(scenario())
    assert result == "done J2025001" and future.exception() is None


def test_a_failed_call_fails_every_order_it_carried():
    async def scenario():
        replica = FakeReplica()
        batcher = ReplicaBatcher(replica.send, BatchPolicy(max_batch=8, max_outstanding=1))
        calls = [batcher.submit([make_order(i, priority=Priority.NORMAL)]) for i in range(3)]
        await _turns()
        replica.release(0)
        await _turns()
        replica.release(1, RuntimeError("ActorDiedError"))
        return await asyncio.gather(*calls)

    first, *rest = asyncio.run(scenario())
    assert first == ["done J2025001"] and all(isinstance(r, RuntimeError) for [r] in rest)


def test_a_part_splits_over_calls_and_merges_with_others_each_order_answered_in_its_place():
    async def scenario():
        replica, batcher, busy = await _busy_replica(max_batch=3)
        orders = [make_order(0, order_id=f"J20251{i:02d}") for i in range(5)]
        parts = [batcher.submit(orders[:4]), batcher.submit(orders[4:])]
        replica.release(0)
        await busy
        await _turns()
        assert replica.sent[1] == ["J2025100", "J2025101", "J2025102"]  # the first part, split
        replica.release(1, RuntimeError("lost"))  # the call carrying three of its orders fails
        await _turns()
        assert replica.sent[2] == ["J2025103", "J2025104"]  # its last order, with the second part
        replica.release(2)
        return await asyncio.gather(*parts), batcher

    (first, second), batcher = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in first[:3]) and first[3] == "done J2025103"
    assert second == ["done J2025104"] and (batcher.batch_calls, batcher.orders_sent) == (3, 6)


def test_dispatcher_results_are_the_same_with_and_without_batching():
    from actors.dispatch.dispatcher import Dispatcher

    # One priority, so that both runs serve the orders in the same sequence (rush first would reorder
    # them, and bench schedules, serials and tracking numbers follow the sequence).
    orders = [o.model_copy(update={"priority": Priority.NORMAL}) for o in generate_orders(40, seed=8)]

    async def run(policy):
        handles = {s: {f"{s}-0": LocalHandle(_replica(s))} for s in STAGES}
        dispatcher = Dispatcher(handles, dict.fromkeys(STAGES, 5.0), batching=policy)
        outcomes = await asyncio.gather(*(dispatcher.process(o) for o in orders))
        return outcomes, {s: len(h[f"{s}-0"].batches) for s, h in handles.items()}

    single, single_calls = asyncio.run(run(BatchPolicy(max_batch=1)))
    batched, batched_calls = asyncio.run(run(BatchPolicy(max_batch=16)))
    assert [o.status for o in single] == [o.status for o in batched]
    assert set(single_calls.values()) == {40} and max(batched_calls.values()) < 10
    # A failed order's compensation gives back what it took (a bench slot, stock), and when it lands
    # among the other orders depends on when the failure is known, which batching changes. Among
    # orders that all complete, every replica sees the same sequence of events either way.
    orders = [order for order, outcome in zip(orders, single, strict=True) if outcome.status is OrderStatus.COMPLETED]
    single, _ = asyncio.run(run(BatchPolicy(max_batch=1)))
    batched, _ = asyncio.run(run(BatchPolicy(max_batch=16)))
    assert len(orders) > 20 and all(o.status is OrderStatus.COMPLETED for o in single + batched)
    for alone, together in zip(single, batched, strict=True):
        assert {s: _answer(r) for s, r in alone.results.items()} == {s: _answer(r) for s, r in together.results.items()}


def test_batches_are_bounded_by_estimated_work_and_only_long_calls_are_pipelined():
    policy = BatchPolicy(max_batch=32, max_outstanding=2, max_batch_s=0.2, pipeline_after_s=0.005)
    assert policy.batch_size(None) == 32  # nothing measured yet
    assert policy.batch_size(0.0001) == 32  # zero-wait stages: the backlog decides
    assert policy.batch_size(0.02) == 10  # a 20 ms stage: 200 ms of work per call at most
    assert policy.batch_size(1.0) == 1
    assert policy.calls_allowed(0.0001, 32) == 1  # a 3 ms call: gather the backlog into the next batch
    assert policy.calls_allowed(0.02, 10) == 2  # a 200 ms call: queue the next one behind it


def test_the_batcher_learns_the_time_per_order_from_the_replicas_results():
    clock = FakeClock()
    stage = _replica(StageName.PRODUCTION)
    stage.context = ReplicaContext("production-0", time_scale=0.002, clock=clock)  # 2.0 s x 0.002 = 4 ms per order

    async def scenario():
        async def send(orders):
            return stage.process_batch(orders)

        batcher = ReplicaBatcher(send, BatchPolicy(max_batch=32, max_batch_s=0.02))
        await asyncio.gather(*(batcher.submit([o]) for o in generate_orders(12, seed=5)))
        return batcher.per_order_s

    per_order_s = asyncio.run(scenario())
    assert per_order_s == pytest.approx(0.004)
    assert BatchPolicy(max_batch=32, max_batch_s=0.02).batch_size(per_order_s) == 5  # 20 ms of work per call


@pytest.mark.parametrize(("work_s", "per_order_s"), [(0.002, 0.005), (0.008, 0.008)])
def test_a_replica_keeps_its_cadence_over_a_batch(work_s, per_order_s):
    """Each order takes the stage's duration, its own work inside it (a 2 ms job in a 5 ms stage
    takes 5 ms, not 7); work longer than the duration takes its real time."""
    clock = FakeClock()
    stage = _replica(StageName.LOGISTICS)
    stage.context = ReplicaContext("logistics-0", time_scale=0.01, clock=clock)  # 0.5 s x 0.01 = 5 ms per order
    handle = stage.handle

    def working(order):
        clock.advance(work_s)
        return handle(order)

    stage.handle = working
    results = stage.process_batch(list(generate_orders(20, seed=6)))
    assert clock.monotonic() == pytest.approx(20 * per_order_s)
    assert [r.duration_ms for r in results] == pytest.approx([1000 * per_order_s] * 20)
    assert all(r.status is StageStatus.OK for r in results)


def test_a_batch_queued_behind_the_last_one_keeps_the_replica_s_rate_across_the_commit():
    """A call that starts as the last one returns waited in the queue for it: it picks the cadence up
    where the last batch's ended, so the commit between them (3 ms here, inside the last call) is
    inside the next order's 5 ms, and ten orders take 50 ms. A call that arrives after the replica
    sat idle starts its cadence when it starts. The replica tells the two apart by its own clock."""
    clock = FakeClock()
    stage = _replica(StageName.LOGISTICS)
    stage.context = ReplicaContext("logistics-0", time_scale=0.01, clock=clock)  # 5 ms per order
    journal = stage.store
    record = journal.record_effects

    def slow_commit(*args, **kwargs):
        clock.advance(0.003)  # the commit takes 3 ms, inside the call
        return record(*args, **kwargs)

    journal.record_effects = slow_commit
    orders = list(generate_orders(17, seed=8))
    stage.process_batch(orders[:5])  # 25 ms of orders, then the commit
    clock.advance(HANDOVER_S / 2)  # the queued call starts as this one returns
    stage.process_batch(orders[5:10])
    assert clock.monotonic() == pytest.approx(0.053)  # the commit and hand-over were inside the first order
    clock.advance(0.002)  # a round trip: the replica was idle, nothing is made up
    stage.process_batch(orders[10:15])
    assert clock.monotonic() == pytest.approx(0.053 + 0.002 + 0.025 + 0.003)
    journal.record_effects = lambda *args, **kwargs: (clock.advance(0.040), record(*args, **kwargs))[1]
    stage.process_batch(orders[15:16])  # a long commit: at most one order's time is made up
    assert stage.process_batch(orders[16:])[0].duration_ms == 0


def test_a_long_call_gets_the_next_one_queued_behind_it():
    async def scenario():
        replica = FakeReplica()
        batcher = ReplicaBatcher(replica.send, BatchPolicy(max_batch=4, pipeline_after_s=0))
        batcher._per_order_s = 0.01  # learned: long enough to pipeline
        waiting = [batcher.submit([o]) for o in generate_orders(9, seed=3)]
        await _turns()
        while not all(w.done() for w in waiting):  # answer the oldest call, one at a time
            next(gate for gate in replica.gates if not gate.done()).set_result(None)
            await _turns()
        later = batcher.submit([next(generate_orders(10, seed=4))])
        await _turns()
        replica.gates[-1].set_result(None)
        await later
        assert (batcher.batch_calls, batcher.orders_sent) == (len(replica.sent), 10)  # what `status` shows
        return replica.sent, replica.running

    sent, running = asyncio.run(scenario())
    # The first call found the replica idle, the second was sent while it ran; then each call is sent as
    # one answers, while the other is still running.
    assert [len(call) for call in sent] == [1, 1, 1, 4, 2, 1] and running == [0, 1, 1, 1, 1, 0]


def test_rush_orders_are_admitted_first():
    from actors.dispatch.admission import PriorityGate

    async def scenario():
        gate, admitted = PriorityGate(1), []
        await gate.acquire(Priority.NORMAL)

        async def enter(name, priority):
            async with gate.admit(priority):
                admitted.append(name)
                await asyncio.sleep(0)

        waiting = [asyncio.create_task(enter(f"normal-{i}", Priority.NORMAL)) for i in range(3)]
        waiting.append(asyncio.create_task(enter("rush", Priority.RUSH)))
        await _turns()
        assert gate.waiting == 4 and not admitted
        gate.release()
        await asyncio.gather(*waiting)
        return admitted

    assert asyncio.run(scenario()) == ["rush", "normal-0", "normal-1", "normal-2"]
