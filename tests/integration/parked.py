"""Started systems kept between tests, and renewed for the next test that asks for the same pools.

A system's start costs a Ray worker process per actor, most of it Ray's own start-up (about 0.6
CPU-s each here), and most integration tests start one. A test that ends with every actor still in
the process it started in leaves its system parked (`FanoutSystem.park`); the next test whose pools
have the same shape gets it renewed (`FanoutSystem.renewed`): every actor constructed again with
that test's settings (its own ledger, out dir, business rules and policies) in the same processes.
A test that kills actors is therefore isolated as before: its system is shut down, not parked.

Not renewed: tests that name their namespace, autoscaled pools (their shape changes), and tests
marked `restarts_actors`: Ray restarts an actor with the arguments it was created with, which for a
renewed system are an earlier test's.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray

from actors.models import STAGES
from orchestration.settings import FanoutSettings
from orchestration.system import FanoutSystem
from orchestration.wiring import dispatcher_concurrency

PIDS_TIMEOUT_S = 10.0

Shape = tuple[Any, ...]


def shape_of(settings: FanoutSettings) -> Shape | None:
    """What a renewed system must share with the test's settings: every Ray option fixed when an
    actor is created (pool sizes, resources, restarts, concurrency). None: never renewed."""
    if settings.autoscaled():
        return None
    pools = tuple(
        (p.replicas, p.num_cpus, p.memory_mb, tuple(sorted(p.resources.items())), p.scheduling)
        for p in (settings.pool(stage) for stage in STAGES)
    )
    control = (settings.control.dispatchers, settings.control.num_cpus, dispatcher_concurrency(settings))
    return (settings.ledger.enabled, settings.ledger.max_restarts, control, pools)


def actor_pids(system: FanoutSystem) -> dict[str, int] | None:
    """Each actor's process id; None when one does not answer (dead, or restarting)."""
    actors = system.actors()
    try:
        # A lambda travels by value: a function of this module would make every worker import it,
        # and with it half of `orchestration`.
        asked = [handle.__ray_call__.remote(lambda actor: os.getpid()) for handle in actors.values()]
        pids = ray.get(asked, timeout=PIDS_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - any actor that cannot say is one not to park
        return None
    return dict(zip(actors, pids, strict=True))


class ParkedSystems:
    """The session's parked systems: at most `keep`, none parked longer than `keep_s`.

    A parked system is not free: each of its idle worker processes spends about 1 % of a core on
    Ray's own timers, so eight of them cost about a start's CPU in a minute."""

    def __init__(self, keep: int = 3, keep_s: float = 60.0) -> None:
        self.keep, self.keep_s = keep, keep_s
        self._parked: list[tuple[Shape, FanoutSystem, float]] = []
        self._pids: dict[int, dict[str, int]] = {}  # by id(system): its actors' processes when it began

    def start(self, settings: FanoutSettings, renewable: bool = True) -> FanoutSystem:
        self._evict()
        shape = shape_of(settings) if renewable else None
        for index, (parked_shape, parked, _) in enumerate(self._parked):
            if shape is not None and parked_shape == shape:
                del self._parked[index]
                system = parked.renewed(settings)
                break
        else:
            system = FanoutSystem.start(settings)
        if shape is not None and (pids := actor_pids(system)) is not None:
            self._pids[id(system)] = pids
        return system

    def stop(self, system: FanoutSystem) -> None:
        """Park the system if every actor is still the process it was when the test began; else shut
        it down."""
        began = self._pids.pop(id(system), None)
        shape = shape_of(system.settings)
        if began is None or shape is None or actor_pids(system) != began:
            system.shutdown()
            return
        try:
            system.park()
        except Exception:  # noqa: BLE001 - a system that cannot park is shut down instead
            system.shutdown()
            return
        self._parked.append((shape, system, time.monotonic()))
        self._evict()

    def _evict(self) -> None:
        """Shut down what was parked too long ago, then the oldest past `keep`."""
        now = time.monotonic()
        while self._parked and (len(self._parked) > self.keep or now - self._parked[0][2] > self.keep_s):
            _, oldest, _ = self._parked.pop(0)
            oldest.shutdown()

    def shutdown(self) -> None:
        for _, system, _ in self._parked:
            system.shutdown()
        self._parked.clear()
