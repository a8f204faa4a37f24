"""The circuit breaker: its state machine on an injected clock, then inside a stage's router, where
opening answers the orders waiting on the stage at once instead of letting them spend retries."""

import asyncio

import pytest

from actors.dispatch.batching import BatchPolicy
from actors.dispatch.breaker import BreakerPolicy, CircuitBreaker, CircuitOpen
from actors.dispatch.breaker_room import room
from actors.dispatch.client import StageClient
from actors.dispatch.retry import RetryPolicy
from actors.models import StageName, StageStatus
from actors.models.breakers import BreakerState
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from actors.telemetry import DispatchMetrics
from tests.conftest import make_order
from tests.fakes import LocalHandle, ManualClock

POLICY = BreakerPolicy(failure_rate_threshold=50, window=10, minimum_calls=4, open_s=30, half_open_calls=3)


def _breaker(policy=POLICY):
    clock, moves = ManualClock(), []
    return CircuitBreaker("logistics", policy, clock=clock, on_change=moves.append), clock, moves


def test_it_judges_no_rate_before_the_minimum_number_of_calls():
    breaker, _, moves = _breaker()
    breaker.record(breaker.epoch, 0, 3)
    assert breaker.state is BreakerState.CLOSED and breaker.permit(5) == 5 and moves == []
    assert breaker.snapshot().failure_rate is None
    breaker.record(breaker.epoch, 0, 1)  # the fourth call: 100 % of 4
    assert breaker.state is BreakerState.OPEN and moves == [BreakerState.OPEN]


def test_it_opens_on_the_rate_over_the_sliding_window_not_on_a_run_of_failures():
    breaker, _, _ = _breaker()
    for _ in range(5):  # 40 %, failures never consecutive for long: stays closed
        breaker.record(breaker.epoch, 3, 2)
    assert breaker.state is BreakerState.CLOSED and breaker.snapshot().failure_rate == 40.0
    breaker.record(breaker.epoch, 0, 3)  # the last 10 calls now hold 5 failures: 50 %, the threshold
    assert breaker.state is BreakerState.OPEN


def test_open_refuses_everything_then_lets_the_trial_calls_through_once_its_time_is_up():
    breaker, clock, _ = _breaker()
    breaker.record(breaker.epoch, 0, 4)
    assert breaker.permit(7) == 0 and breaker.refused == 7
    assert breaker.snapshot().retry_after_s == 30.0
    clock.now += 29.9
    assert breaker.state is BreakerState.OPEN and breaker.retry_after_s() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.permit(2) == 2 and breaker.permit(5) == 1 and breaker.permit(1) == 0  # three trials in all
    assert isinstance(breaker.refusal(), CircuitOpen) and "half_open" in str(breaker.refusal())


def test_trials_that_succeed_close_it_and_trials_that_fail_open_it_again():
    breaker, clock, moves = _breaker()
    breaker.record(breaker.epoch, 0, 4)
    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.permit(3)
    breaker.record(breaker.epoch, 1, 1)  # two of three trials answered: not judged yet
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record(breaker.epoch, 0, 1)  # 2 of 3 failed: 67 % >= 50 %
    assert breaker.state is BreakerState.OPEN and breaker.opened == 2
    clock.now += 30
    breaker.permit(3)
    breaker.record(breaker.epoch, 2, 1)  # 33 %: healed
    assert breaker.state is BreakerState.CLOSED
    assert [m.value for m in moves] == ["open", "half_open", "open", "half_open", "closed"]
    assert breaker.permit(100) == 100 and breaker.snapshot().calls == 0  # a fresh window


def test_a_late_answer_from_before_the_breaker_moved_never_counts():
    breaker, clock, _ = _breaker()
    before = breaker.epoch
    breaker.record(before, 0, 4)
    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.permit(3)
    breaker.record(before, 0, 10)  # calls sent while closed, answering now: not trials
    assert breaker.state is BreakerState.HALF_OPEN and breaker.snapshot().calls == 0


def test_a_disabled_breaker_lets_everything_through():
    breaker, _, _ = _breaker(BreakerPolicy(enabled=False, minimum_calls=1))
    breaker.record(breaker.epoch, 0, 50)
    assert breaker.state is BreakerState.CLOSED and breaker.permit(9) == 9


# -- in a stage's router ------------------------------------------------------------------------


def _failing_replica(name: str, gate: asyncio.Event | None = None) -> LocalHandle:
    """A logistics replica whose carrier is down: every order errors (the stage's own code raises)."""
    stage = STAGE_CLASSES[StageName.LOGISTICS](STAGE_CONFIGS[StageName.LOGISTICS](), ReplicaContext(name, time_scale=0))

    def carrier_down(order):
        raise ConnectionError("carrier API unreachable")

    stage.handle = carrier_down
    return LocalHandle(stage, gate)


def test_opening_answers_the_orders_waiting_on_the_stage_at_once_and_spends_no_retry():
    async def scenario():
        hung = asyncio.Event()  # a replica that has not answered yet (never, here)
        client = StageClient(
            StageName.LOGISTICS,
            {"logistics-0": _failing_replica("logistics-0"), "logistics-1": _failing_replica("logistics-1", hung)},
            timeout_s=60.0,
            retry=RetryPolicy(attempts=3, base_delay_s=30, max_delay_s=30),
            batching=BatchPolicy(),
            metrics=DispatchMetrics(),
            breaker=BreakerPolicy(minimum_calls=4, window=10, open_s=60),
        )
        waiting = make_order(0, order_id="J2025100")
        [stuck] = client.send([waiting], client.pool.named("logistics-1"))
        failing = [make_order(i % 3, order_id=f"J20251{i:02d}") for i in range(1, 5)]
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(client.finish(o, a) for o, a in zip(failing, await _firsts(client, failing), strict=True)),
            client.finish(waiting, (await client.answers([waiting], stuck))[0]),
        )
        took_s = asyncio.get_running_loop().time() - started
        [refused] = client.send([make_order(2, order_id="J2025199")], None)
        return client, results, took_s, refused

    client, results, took_s, refused = asyncio.run(scenario())
    assert took_s < 5  # neither the 60 s timeout nor a 30 s back-off was waited for
    assert client.breaker.state is BreakerState.OPEN
    assert all(r.status is StageStatus.ERROR and r.attempts == 1 for r in results)
    assert all("not retried" in r.reason and "carrier API unreachable" in r.reason for r in results[:4])
    assert results[4].reason.startswith("CircuitOpen: logistics circuit open")  # the hung call, cut short
    assert refused.replica.name == "no replica" and isinstance(refused.future.exception(), CircuitOpen)


async def _firsts(client, orders):
    answers = []
    for order in orders:
        [attempt] = client.send([order], client.pool.named("logistics-0"))
        answers.append((await client.answers([order], attempt))[0])
    return answers


def test_a_shard_starts_nothing_while_a_stage_is_open_and_one_trial_batch_while_it_is_half_open():
    logistics, _, _ = _breaker()
    clock = ManualClock()
    quality = CircuitBreaker("quality", POLICY, clock=clock)
    breakers = [quality, logistics]
    assert room(breakers, 50, admitted=7) == 50  # all closed
    logistics.record(logistics.epoch, 0, 4)
    assert room(breakers, 50, admitted=0) == 0  # open: held
    logistics._clock.now += 30  # half-open, three trial calls
    assert room(breakers, 50, admitted=2) == 0  # trials go only once nothing else is in flight
    assert room(breakers, 50, admitted=0) == 3 and room(breakers, 2, admitted=0) == 2
    logistics.permit(3)
    logistics.record(logistics.epoch, 3, 0)
    assert room(breakers, 50, admitted=0) == 50  # closed again


def test_fewer_trial_orders_than_trial_calls_are_judged_once_they_have_all_answered():
    breaker, clock, _ = _breaker()
    breaker.record(breaker.epoch, 0, 4)
    clock.now += 30
    assert breaker.permit(1) == 1  # the only order waiting: one trial of three
    breaker.record(breaker.epoch, 0, 1)
    assert breaker.state is BreakerState.OPEN  # judged on it, not left half-open for trials never sent
