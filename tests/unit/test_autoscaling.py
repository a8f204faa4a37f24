"""The autoscaling policy: sizes from ongoing orders over a look-back window, within min and max,
changed only after the up- or downscale delay has held without a break."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actors.dispatch.autoscaling import AutoscalingConfig, AutoscalingPolicy

CONFIG = AutoscalingConfig(
    min_replicas=1, max_replicas=4, target_ongoing_per_replica=5, upscale_delay_s=2, downscale_delay_s=10, look_back_s=3
)


def _feed(policy, start, end, ongoing, current, step=0.5):
    """Tick every `step` seconds from `start` to `end`; the sizes decided, with the time of each change."""
    t, changes = start, []
    while t <= end + 1e-9:
        decided = policy.decide(t, ongoing, current)
        if decided != current:
            changes.append((round(t, 2), decided))
            current = decided
        t += step
    return current, changes


def test_a_backlog_grows_the_pool_after_the_upscale_delay_to_what_the_target_asks():
    policy = AutoscalingPolicy(CONFIG)
    size, changes = _feed(policy, 0, 10, ongoing=17, current=1)
    assert changes == [(2.0, 4)]  # 17 ongoing / 5 per replica -> 4, once wanted for 2 s
    assert size == 4


def test_the_pool_never_leaves_min_and_max():
    policy = AutoscalingPolicy(CONFIG)
    assert _feed(policy, 0, 10, ongoing=500, current=1)[0] == 4
    policy = AutoscalingPolicy(CONFIG)
    assert _feed(policy, 0, 30, ongoing=0, current=4)[0] == 1


def test_it_shrinks_only_after_the_downscale_delay_of_idleness():
    policy = AutoscalingPolicy(CONFIG)
    _feed(policy, 0, 5, ongoing=20, current=4)
    size, changes = _feed(policy, 5.5, 30, ongoing=0, current=4)
    # The window still holds the busy samples for 3 s; then 10 s of wanting fewer before acting.
    assert changes and 5.5 + 10 <= changes[0][0] <= 5.5 + 3 + 10
    assert size == 1


def test_once_the_load_stops_the_pool_shrinks_one_delay_later_not_a_window_later():
    policy = AutoscalingPolicy(CONFIG.model_copy(update={"look_back_s": 6}))
    _feed(policy, 0, 5, ongoing=20, current=4)
    _, changes = _feed(policy, 5.5, 30, ongoing=0, current=4)
    assert changes == [(15.5, 1)]  # the 6 s window still wanted 4 until about 8, the samples not after 5.5


def test_a_change_due_before_the_next_tick_is_made_on_this_one():
    """Ticks 0.75 s apart, quiet from the tick at 6.0: the shrink due at 16.0 would come on the first
    tick after it, at 16.5; it comes on the last tick before it, so that the pool is at its new size
    when the delay is up, never after."""
    policy = AutoscalingPolicy(CONFIG.model_copy(update={"look_back_s": 6}))
    t, current, changes = 0.0, 4, []
    while t <= 30:
        decided = policy.decide(t, 20 if t < 5.5 else 0, current, tick_s=0.75)
        if decided != current:
            changes.append((t, decided))
            current = decided
        t += 0.75
    assert changes == [(15.75, 1)]


def test_a_single_busy_sample_restarts_the_wait_to_shrink():
    policy = AutoscalingPolicy(CONFIG.model_copy(update={"look_back_s": 0.5}))
    _feed(policy, 0, 5, ongoing=20, current=4)
    _, changes = _feed(policy, 5.5, 12, ongoing=0, current=4)
    assert changes == []
    assert policy.decide(12.5, 40, 4) == 4  # a burst: 10 s of quiet needed again from here
    _, changes = _feed(policy, 13, 30, ongoing=0, current=4)
    assert changes == [(23.0, 1)]


def test_a_burst_shorter_than_the_delay_changes_nothing():
    policy = AutoscalingPolicy(CONFIG.model_copy(update={"look_back_s": 0.5}))
    _, changes = _feed(policy, 0, 1.0, ongoing=40, current=1)  # 1 s of backlog against a 2 s delay
    assert changes == []
    _, changes = _feed(policy, 1.5, 8, ongoing=0, current=1)
    assert changes == []


def test_wanting_both_ways_in_turn_restarts_the_delay():
    policy = AutoscalingPolicy(CONFIG.model_copy(update={"look_back_s": 0.5}))
    current = 2
    for t, ongoing in [(0, 30), (1, 30), (1.5, 0), (2, 0), (2.5, 30), (3, 30), (4, 30)]:
        current = policy.decide(t, ongoing, current)
    assert current == 2  # up wanted from 0, down from 2, up again from 2.5: not 2 s yet at 4
    assert policy.decide(4.5, 30, current) == 4


def test_min_above_max_is_refused_with_both_numbers():
    with pytest.raises(ValidationError, match=r"min_replicas \(3\) is above max_replicas \(2\)"):
        AutoscalingConfig(min_replicas=3, max_replicas=2)


def test_a_pool_scaled_down_lets_go_of_its_highest_slots_as_many_as_asked():
    from actors.models.messages import PoolMember
    from orchestration.supervisor import highest_slots

    serving = [PoolMember(f"production-{i}", i, handle=None) for i in (2, 0, 1)]
    assert [m.index for m in highest_slots(serving, 2)] == [1, 2]  # 3 -> 1: two go, not one
    assert [m.index for m in highest_slots(serving, 1)] == [2]
    assert highest_slots(serving, 0) == []
