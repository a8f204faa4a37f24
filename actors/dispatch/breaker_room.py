"""How many fresh orders a shard may start while a stage's circuit breaker is not closed.

Every order calls all six stages at once, so one stage's breaker decides for the whole order:
- all closed: every order starts;
- one open: none starts; the orders wait in the shard, which holds the run's admissions (the
  Producer's window fills and it stops reading; the HTTP queue fills and answers busy);
- one half-open (none open): a trial batch starts once nothing else is in flight, at most as many
  orders as that stage has trial calls left, so that no order is refused for want of a trial call.
  The verdict of the trials then lets everything through, or holds it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from actors.dispatch.breaker import CircuitBreaker
from actors.models.breakers import BreakerState

LOOK_EVERY_S = 0.05  # while a breaker is not closed: how often a held order looks again


def room(breakers: Sequence[CircuitBreaker], wanted: int, admitted: int) -> int:
    """How many of `wanted` orders may start now (0: wait)."""
    states = [breaker.state for breaker in breakers]
    if BreakerState.OPEN in states:
        return 0
    if BreakerState.HALF_OPEN not in states:
        return wanted
    if admitted:
        return 0
    trials = min(b.trials_left for b in breakers if b.state is BreakerState.HALF_OPEN)
    return min(wanted, max(trials, 1))


async def wait_for_room(breakers: Sequence[CircuitBreaker], wanted: int, admitted: Callable[[], int]) -> int:
    """`room`, once it is more than 0."""
    while not (allowed := room(breakers, wanted, admitted())):
        await asyncio.sleep(LOOK_EVERY_S)
    return allowed
