"""The Dispatcher's logic with in-process stand-ins for actor handles (no Ray in unit tests)."""

import asyncio

import pytest

from actors.dispatch.dispatcher import Dispatcher
from actors.dispatch.pool import ReplicaPool
from actors.dispatch.retry import RetryPolicy
from actors.errors import ReplayRefused
from actors.intake.samples import generate_orders
from actors.ledger import open_ledger
from actors.models import STAGES, OrderStatus, Priority, StageName, StageStatus
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from tests.conftest import make_order
from tests.fakes import DispatcherHandle, LocalHandle, local_stage_handles


def _handles(gates=None):
    gates = gates or {}
    return {
        stage: {
            f"{stage}-0": LocalHandle(
                STAGE_CLASSES[stage](STAGE_CONFIGS[stage](), ReplicaContext(f"{stage}-0", time_scale=0)),
                gates.get(stage),
            )
        }
        for stage in STAGES
    }


def test_least_loaded_replica_gets_the_next_call():
    pool = ReplicaPool("production", {"production-0": "a", "production-1": "b", "production-2": "c"})
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    assert {first.name, second.name, third.name} == {"production-0", "production-1", "production-2"}
    pool.release(second, 0.01)
    assert pool.acquire() is second  # the only replica with nothing outstanding
    loads = {load.replica: load for load in pool.loads()}
    assert loads["production-1"].calls == 2 and loads["production-0"].ongoing == 1


def test_ties_go_to_the_replica_that_has_done_least():
    pool = ReplicaPool("design", {"design-0": "a", "design-1": "b"})
    for _ in range(4):
        pool.release(pool.acquire(), 0.0)
    assert [load.calls for load in pool.loads()] == [2, 2]


def test_all_six_stages_are_called_concurrently_and_gathered(closing):
    async def scenario():
        gate = asyncio.Event()
        handles = _handles(dict.fromkeys(STAGES, gate))
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0)))
        task = asyncio.create_task(dispatcher.process(make_order(0)))
        for _ in range(10):  # a few turns of the loop; the gate keeps every stage from answering
            await asyncio.sleep(0)
        # Every stage has been called before any of them answered: a fan-out, not a chain.
        started = {stage: next(iter(h.values())).calls for stage, h in handles.items()}
        gate.set()
        return started, await task

    started, outcome = asyncio.run(scenario())
    assert set(started.values()) == {1}
    assert outcome.status is OrderStatus.COMPLETED and len(outcome.results) == 6


def test_a_stage_timeout_fails_the_order_and_keeps_the_other_results(closing):
    async def scenario():
        never = asyncio.Event()
        dispatcher = closing(Dispatcher(_handles({"production": never}), dict.fromkeys(STAGES, 0.05)))
        return await dispatcher.process(make_order(0)), await dispatcher.stats()

    outcome, stats = asyncio.run(scenario())
    assert outcome.status is OrderStatus.FAILED and outcome.failed_stages == ("production",)
    assert "timed out after 0.05 s" in outcome.reason
    assert sum(r.status is StageStatus.OK for r in outcome.results.values()) == 5
    production = stats.stages["production"][0]
    assert stats.by_status["failed"] == 1 and production.errors == production.calls == 3  # each attempt timed out


def test_the_same_order_sent_again_while_in_flight_waits_for_the_one_outcome(closing):
    async def scenario():
        gate = asyncio.Event()
        handles = _handles({"design": gate})
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0)))
        first = asyncio.create_task(dispatcher.process(make_order(0)))
        await asyncio.sleep(0)
        second = asyncio.create_task(dispatcher.process(make_order(0)))  # e.g. re-sent by a restarted Producer
        await asyncio.sleep(0)
        gate.set()
        return await first, await second, handles["design"]["design-0"].calls

    first, second, design_calls = asyncio.run(scenario())
    assert first.status is OrderStatus.COMPLETED and second == first
    assert design_calls == 1


def test_admission_bounds_the_orders_in_flight(closing):
    async def scenario():
        gate = asyncio.Event()
        dispatcher = closing(Dispatcher(_handles({"quality": gate}), dict.fromkeys(STAGES, 5.0), max_in_flight=3))
        orders = [make_order(0, order_id=f"J20288{i:02d}") for i in range(10)]
        tasks = [asyncio.create_task(dispatcher.process(order)) for order in orders[:5]]
        tasks.append(asyncio.create_task(dispatcher.process_batch(orders[5:])))
        steps = []
        for _ in range(5):  # at every step, even before an order's own task has started
            await asyncio.sleep(0)
            steps.append(await dispatcher.stats())
        gate.set()
        await asyncio.gather(*tasks)
        return steps, await dispatcher.stats()

    steps, after = asyncio.run(scenario())
    assert all(stats.in_flight <= 3 for stats in steps), [(s.in_flight, s.waiting) for s in steps]
    assert (steps[-1].in_flight, steps[-1].waiting) == (3, 7)
    assert after.orders_done == 10 and after.in_flight == 0


def _jam(handle, failures):
    """Make the real stage behind a handle raise on its next `failures` calls (the base turns
    each into an error result, as a fault inside a replica would)."""
    stage, remaining = handle.stage, [failures]
    real = stage.handle

    def handle_order(order):
        if remaining[0]:
            remaining[0] -= 1
            raise RuntimeError("bench jammed")
        return real(order)

    stage.handle = handle_order


def _fast_retries(attempts):
    from actors.dispatch.retry import RetryPolicy

    return {s: RetryPolicy(attempts=attempts, base_delay_s=0.001, max_delay_s=0.002) for s in STAGES}


def test_errors_are_retried_on_the_same_replica_and_the_result_counts_attempts(closing):
    handles = _handles()
    production = handles["production"]["production-0"]
    _jam(production, failures=2)
    dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0), retry_policies=_fast_retries(3)))
    outcome = asyncio.run(dispatcher.process(make_order(0)))
    assert outcome.status is OrderStatus.COMPLETED
    assert outcome.results["production"].attempts == 3 and production.calls == 3


def test_retries_stop_at_the_policy_and_business_failures_are_never_retried(closing):
    handles = _handles()
    production, quality = handles["production"]["production-0"], handles["quality"]["quality-0"]
    _jam(production, failures=5)
    quality.stage.config = quality.stage.config.model_copy(update={"defect_rate": 1.0})
    dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0), retry_policies=_fast_retries(2)))
    outcome = asyncio.run(dispatcher.process(make_order(0)))
    assert outcome.results["production"].status is StageStatus.ERROR
    assert outcome.results["production"].attempts == 2 and production.calls == 2
    assert outcome.results["quality"].status is StageStatus.BUSINESS_FAILURE and quality.calls == 1


def test_backoff_grows_with_full_jitter_up_to_the_cap():
    import random

    from actors.dispatch.retry import RetryPolicy

    policy, rng = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=1.0), random.Random(1)
    delays = {n: [policy.delay_s(n, rng) for _ in range(500)] for n in (1, 2, 3, 8)}
    assert max(delays[1]) <= 0.1 and max(delays[2]) <= 0.2 and max(delays[3]) <= 0.4 and max(delays[8]) <= 1.0
    assert max(delays[8]) > 0.9 and min(delays[8]) < 0.1  # jitter spreads retries over the whole window


def test_a_failed_order_is_compensated_by_the_stages_that_did_their_part(closing):
    handles = _handles()
    quality = handles["quality"]["quality-0"]
    quality.stage.config = quality.stage.config.model_copy(update={"defect_rate": 1.0})
    material = handles["material"]["material-0"].stage
    before = material.store.inventory()
    outcome = asyncio.run(closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0))).process(make_order(0)))
    assert outcome.status is OrderStatus.FAILED
    assert set(outcome.compensations) == {"material", "production", "packaging", "logistics"}
    assert outcome.compensations["material"].startswith("released metal/AU750")
    assert "voided certificate JF-00000001" in outcome.compensations["packaging"]
    assert material.store.inventory() == before  # as if the order never came


def test_a_dead_replica_gets_no_more_calls():
    pool = ReplicaPool("design", {"design-0": "a", "design-1": "b"})
    dead = pool.acquire()
    pool.mark_dead(dead)
    pool.release(dead, 0.0, errors=1)
    assert all(pool.acquire() is not dead for _ in range(5))
    assert [load.alive for load in pool.loads()] == [dead.name != "design-0", dead.name != "design-1"]


def test_a_stage_erroring_after_its_retries_parks_the_order_and_replay_completes_it(spec, closing):
    once = {s: RetryPolicy(attempts=2, base_delay_s=0, max_delay_s=0) for s in STAGES}

    async def scenario():
        closed = asyncio.Event()
        handles = local_stage_handles(spec, {"logistics": closed}, closing=closing)
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 0.05), retry_policies=once, ledger=spec))
        parked = await dispatcher.process(make_order(0))
        closed.set()  # the carrier's system is back
        replayed = await dispatcher.replay(parked.order_id)
        calls = {stage: h[f"{stage}-0"].calls for stage, h in handles.items()}
        return parked, replayed, calls

    parked, replayed, calls = asyncio.run(scenario())
    assert parked.status is OrderStatus.DEAD_LETTERED and parked.compensations == {}
    assert replayed.status is OrderStatus.COMPLETED
    # The other five ran once, never again. Logistics got the stuck first attempt and the replay: the
    # retry waited behind the stuck call (one call per replica at a time) and timed out unsent.
    assert calls == {**dict.fromkeys(STAGES, 1), "logistics": 2}
    ledger = closing(open_ledger(spec))
    assert ledger.outcome(parked.order_id).status is OrderStatus.COMPLETED
    assert ledger.dead_letters(parked.order_id) == []
    assert ledger.dead_letters(parked.order_id, open_only=False)[0].attempts == 2


def test_an_abandoned_dead_letter_is_compensated(spec, closing):
    async def scenario():
        handles = local_stage_handles(spec, {"design": asyncio.Event()}, closing=closing)
        once = dict.fromkeys(STAGES, RetryPolicy(attempts=1))
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 0.05), retry_policies=once, ledger=spec))
        parked = await dispatcher.process(make_order(0))
        with pytest.raises(ReplayRefused, match="no dead letter for material"):
            await dispatcher.replay(parked.order_id, StageName.MATERIAL)
        return await dispatcher.replay(parked.order_id, abandon=True)

    abandoned = asyncio.run(scenario())
    assert abandoned.status is OrderStatus.FAILED and abandoned.reason.startswith("abandoned after dead letter")
    assert {"material", "packaging", "logistics", "production"} <= set(abandoned.compensations)


def test_a_restarted_dispatcher_answers_a_finished_order_from_the_ledger(spec, closing):
    async def scenario():
        handles = local_stage_handles(spec, closing=closing)
        first = await closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0), ledger=spec)).process(make_order(0))
        again = await closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0), ledger=spec)).process(make_order(0))
        return first, again, {h[f"{s}-0"].calls for s, h in handles.items()}

    first, again, calls = asyncio.run(scenario())
    assert again == first and calls == {1}


def test_a_resent_batch_is_answered_from_the_ledger_and_by_joining_what_is_in_flight(spec, closing):
    """One ledger query serves a whole batch; the order still running is joined, not run twice."""

    async def scenario():
        gate = asyncio.Event()
        handles = local_stage_handles(spec, {"design": gate}, closing=closing)
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0), ledger=spec))
        gate.set()
        finished = await dispatcher.process(make_order(0))
        gate.clear()
        running = asyncio.create_task(dispatcher.process(make_order(1)))
        await asyncio.sleep(0.01)
        batch = asyncio.create_task(
            dispatcher.process_batch([make_order(0), make_order(1), make_order(2), make_order(2)])
        )
        await asyncio.sleep(0.01)
        gate.set()
        return finished, await running, await batch, handles["design"]["design-0"].calls

    finished, running, (again, joined, fresh, twin), design_calls = asyncio.run(scenario())
    assert again == finished and joined == running and twin == fresh
    assert fresh.status is OrderStatus.COMPLETED and fresh.order_id != finished.order_id
    assert design_calls == 3  # orders 0, 1 and 2, once each


def _plan(source):
    from actors.intake.intake_run import RunPlan

    return RunPlan(run_id="test", source=source)


def _drain(producer, plan) -> tuple[list, list]:
    async def collect():
        outcomes, lost = [], []
        while True:
            progress = await producer.poll(plan, wait_s=0.05)
            outcomes += progress.outcomes
            lost += progress.lost
            if progress.finished:
                return outcomes, lost

    return collect()


def test_the_producer_sends_alone_when_idle_and_in_few_batched_calls_under_load_rush_first(closing):
    from actors.intake.producer import Producer
    from actors.intake.samples import generate_orders
    from actors.intake.sender import DISPATCH_CALLS, WINDOW_PER_ADMITTED
    from actors.intake.sources import SourceSpec
    from actors.models import Priority

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), max_in_flight=40)))
        producer = closing(Producer(handle, max_in_flight=40))
        plan = _plan(SourceSpec(count=300, seed=11))
        await producer.begin(plan)
        for _ in range(50):  # the Dispatcher answers nothing yet: the window fills
            await asyncio.sleep(0)
        held = [list(batch) for batch in handle.batches]
        handle.open.set()
        return handle, held, await _drain(producer, plan)

    handle, held, (outcomes, lost) = asyncio.run(scenario())
    # Nothing queued: each of the first orders went alone, at once, in its own call.
    assert [len(batch) for batch in held] == [1] * DISPATCH_CALLS
    assert handle.most_outstanding == DISPATCH_CALLS
    # Under load the waiting orders went together, never more than the window allows per call.
    window = WINDOW_PER_ADMITTED * 40
    sizes = [len(batch) for batch in handle.batches]
    assert max(sizes) == window // DISPATCH_CALLS and len(handle.batches) < 300 / 5
    # The first batch taken from the queue: its waiting rush orders first, then normal ones in order.
    sent = {order.order_id for batch in held for order in batch}
    waiting = [order for order in generate_orders(window, seed=11) if order.order_id not in sent]
    first_rank = sorted(waiting, key=lambda order: order.priority is not Priority.RUSH)[: window // DISPATCH_CALLS]
    assert any(order.priority is Priority.RUSH for order in first_rank)
    assert [order.order_id for order in handle.batches[DISPATCH_CALLS]] == [order.order_id for order in first_rank]
    # Every order answered exactly once.
    assert not lost and sorted(o.order_id for o in outcomes) == sorted({o.order_id for o in outcomes})
    assert len(outcomes) == 300


def test_a_failed_dispatcher_call_reports_each_of_its_orders_as_lost(closing):
    from actors.intake.producer import Producer
    from actors.intake.sources import SourceSpec

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0))), failing=1)
        producer = closing(Producer(handle, max_in_flight=8))
        plan = _plan(SourceSpec(count=20, seed=3))
        await producer.begin(plan)
        handle.open.set()
        return handle, await _drain(producer, plan)

    handle, (outcomes, lost) = asyncio.run(scenario())
    first_call = [order.order_id for order in handle.batches[0]]
    assert [entry.order_id for entry in lost] == first_call
    assert all("RuntimeError" in entry.reason for entry in lost)
    assert len(outcomes) + len(lost) == 20


def test_a_stop_while_reading_admits_nothing_more_and_every_admitted_order_concludes(closing):
    """What Ctrl-C asks of a run that is still reading its source."""
    from actors.intake.producer import Producer
    from actors.intake.sources import SourceSpec

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), max_in_flight=10)))
        producer = closing(Producer(handle, max_in_flight=10))
        plan = _plan(SourceSpec(count=100, seed=5))
        await producer.begin(plan)
        for _ in range(50):  # the Dispatcher answers nothing yet: the window fills and reading waits
            await asyncio.sleep(0)
        await producer.stop()
        handle.open.set()
        outcomes, lost = await _drain(producer, plan)
        return outcomes, lost, await producer.poll(plan, wait_s=0)

    outcomes, lost, last = asyncio.run(scenario())
    assert not lost and last.finished and 0 < last.read < 100
    assert len(outcomes) == last.accepted == last.read  # admitted, then concluded: every one
    assert last.not_started == 100 - last.read


def test_stage_calls_are_named_by_stage_and_batch_size_in_powers_of_two():
    from actors.dispatch.client import task_name

    assert [task_name(StageName.MATERIAL, n) for n in (1, 2, 3, 4, 7, 8, 127, 128)] == [
        "material[1]",
        "material[2-3]",
        "material[2-3]",
        "material[4-7]",
        "material[4-7]",
        "material[8-15]",
        "material[64-127]",
        "material[128-255]",
    ]
    # Ray keeps a metric series per task name for good: the names must stay few whatever the batch sizes
    assert len({task_name(StageName.MATERIAL, n) for n in range(1, 257)}) == 9


def test_a_late_death_of_the_replaced_actor_does_not_mark_its_replacement_dead():
    from types import SimpleNamespace

    from ray.exceptions import ActorUnavailableError, RayActorError

    from actors.dispatch.attempt import is_replica_dead
    from actors.models.messages import PoolMember, PoolMembers

    def handle(actor_id: str):
        return SimpleNamespace(_actor_id=SimpleNamespace(hex=lambda: actor_id))

    pool = ReplicaPool("logistics", {"logistics-0": handle("aa"), "logistics-1": handle("bb")})
    replica = pool.named("logistics-1")
    assert is_replica_dead(RayActorError(actor_id="bb"), replica)  # the actor it points to died
    assert pool.apply(
        PoolMembers(
            "logistics",
            1,
            (
                PoolMember("logistics-0", 0, pool.named("logistics-0").handle),
                PoolMember("logistics-1", 1, handle("cc")),
            ),
        )
    )
    assert not is_replica_dead(RayActorError(actor_id="bb"), replica)  # a call to the old one, failing late
    assert is_replica_dead(RayActorError(actor_id="cc"), replica)
    # by type, not by name: restarting is not dead, and an error merely named like a death is not one
    assert not is_replica_dead(ActorUnavailableError("restarting", None), replica)
    assert not is_replica_dead(RuntimeError("ActorDiedError"), replica)


def test_one_producer_runs_one_run_after_another_and_a_restarted_one_takes_its_run_up_from_the_poll(closing):
    """The Producer lives as long as the system: runs follow each other on it, a second run is refused
    while one is going, and a fresh instance (what Ray restarts) takes the run up from the plan the
    driver sends with every poll."""
    from actors.errors import RunInProgress
    from actors.intake.producer import Producer
    from actors.intake.sources import SourceSpec

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), max_in_flight=10)))
        producer = closing(Producer(handle, max_in_flight=10))
        first, second = _plan(SourceSpec(count=12, seed=1)), _plan(SourceSpec(count=5, seed=2))
        second = second.model_copy(update={"run_id": "second"})
        assert await producer.begin(first) == 12
        with pytest.raises(RunInProgress, match="run test is still going"):
            await producer.begin(second)
        handle.open.set()
        ran = await _drain(producer, first)
        assert await producer.describe() is None  # between runs
        after = await _drain(producer, second)  # the next run, begun by its first poll
        restarted = closing(Producer(handle, max_in_flight=10))  # lost its run: the poll names it
        again = await _drain(restarted, second)
        return ran, after, again

    (ran, _), (after, _), (again, _) = asyncio.run(scenario())
    assert len(ran) == 12 and len(after) == len(again) == 5
    assert [o.order_id for o in again] == [o.order_id for o in after]


def _stage(stage, name):
    return STAGE_CLASSES[stage](STAGE_CONFIGS[stage](), ReplicaContext(name, time_scale=0))


def _normal_orders(n, seed):
    return [o.model_copy(update={"priority": Priority.NORMAL}) for o in generate_orders(n, seed=seed)]


def test_a_batch_is_one_call_per_replica_and_stage_and_its_answers_are_joined_by_order(closing):
    async def scenario():
        handles = _handles()
        handles[StageName.PRODUCTION] = {
            f"production-{i}": LocalHandle(_stage("production", f"production-{i}")) for i in range(2)
        }
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0)))
        orders = _normal_orders(8, seed=21)
        return orders, await dispatcher.process_batch(orders), handles

    orders, outcomes, handles = asyncio.run(scenario())
    assert [o.order_id for o in outcomes] == [o.order_id for o in orders]  # each in its place
    assert all(
        r.order_id == o.order_id and r.status is not StageStatus.ERROR for o in outcomes for r in o.results.values()
    )
    for stage in STAGES:  # one call per replica: production's two replicas took four orders each
        expected = [4, 4] if stage == "production" else [8]
        assert [len(b) for h in handles[stage].values() for b in h.batches] == expected


def test_an_order_that_errors_leaves_its_batch_and_is_retried_alone_while_its_batch_mates_conclude(closing):
    orders = _normal_orders(5, seed=22)
    flaky = orders[2].order_id

    async def scenario():
        handles = _handles()
        quality = handles[StageName.QUALITY]["quality-0"].stage
        handle, broken = quality.handle, {flaky}

        def once_broken(order):
            if order.order_id in broken:
                broken.discard(order.order_id)
                raise RuntimeError("bench jammed")
            return handle(order)

        quality.handle = once_broken
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0)))
        return await dispatcher.process_batch(orders), handles[StageName.QUALITY]["quality-0"].batches

    outcomes, quality_calls = asyncio.run(scenario())
    assert all(r.status is not StageStatus.ERROR for o in outcomes for r in o.results.values())
    attempts = {o.order_id: o.results[StageName.QUALITY].attempts for o in outcomes}
    assert attempts == {o.order_id: 2 if o.order_id == flaky else 1 for o in orders}
    assert quality_calls == [[o.order_id for o in orders], [flaky]]  # the retry went alone
    # Its batch-mates concluded together, without waiting for it: it concluded after them.
    mates = {o.finished_at for o in outcomes if o.order_id != flaky}
    assert len(mates) == 1 and outcomes[2].finished_at > mates.pop()


def test_one_order_timing_out_fails_only_itself_and_its_batch_mates_complete(closing):
    orders = _normal_orders(3, seed=23)

    async def scenario():
        handles = _handles()
        stuck = asyncio.Event()  # never set: production-1 never answers
        handles[StageName.PRODUCTION] = {
            "production-0": LocalHandle(_stage("production", "production-0")),
            "production-1": LocalHandle(_stage("production", "production-1"), stuck),
        }
        retry = {s: RetryPolicy(attempts=1) for s in STAGES}
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 0.1), retry_policies=retry))
        return await dispatcher.process_batch(orders), handles

    outcomes, handles = asyncio.run(scenario())
    assert handles[StageName.PRODUCTION]["production-1"].batches == [[orders[2].order_id]]  # split 2 + 1
    late = outcomes[2]
    assert late.status is OrderStatus.FAILED and late.failed_stages == ("production",)
    assert late.reason == "production: timed out after 0.1 s"
    assert sum(r.status is StageStatus.OK for r in late.results.values()) == 5  # its other results kept
    assert all(r.status is not StageStatus.ERROR for o in outcomes[:2] for r in o.results.values())


def test_rush_orders_of_a_batch_travel_and_conclude_apart_from_its_normal_ones(closing):
    """A batch concludes together, so a rush order batched with normal ones would wait for them:
    the orders of one call go as one batch per priority, rush first."""
    orders = [
        o.model_copy(update={"priority": Priority.RUSH if i in (1, 3) else Priority.NORMAL})
        for i, o in enumerate(generate_orders(5, seed=24))
    ]

    async def scenario():
        handles = _handles()
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 5.0)))
        return await dispatcher.process_batch(orders), handles

    outcomes, handles = asyncio.run(scenario())
    rush, normal = [orders[1].order_id, orders[3].order_id], [orders[i].order_id for i in (0, 2, 4)]
    assert all(h.batches == [rush, normal] for stage in STAGES for h in handles[stage].values())
    finished = {o.order_id: o.finished_at for o in outcomes}
    assert finished[rush[0]] == finished[rush[1]] < min(finished[n] for n in normal)
