"""Started systems kept between tests, and renewed for the next test whose actors take the same Ray options.

A system's start costs a Ray worker process per actor, most of it Ray's own start-up (about 0.6
CPU-s each here), and most integration tests start one. A test that ends with every actor still in
the process it started in leaves its system parked (`FanoutSystem.park`); the next test whose actors
are created with the same Ray options (`wiring.creation_options`) gets it renewed
(`FanoutSystem.renewed`): every actor constructed again with that test's settings (its own ledger,
out dir, business rules and policies) in the same processes, a pool of another size resized (the
replicas past it stopped, the missing ones started). A test that kills actors is therefore isolated
as before: its system is shut down, not parked.

Not renewed: tests that name their namespace, autoscaled pools (their size is their policy's), and tests
marked `restarts_actors`: Ray restarts an actor with the arguments it was created with, which for a
renewed system are an earlier test's.
"""

from __future__ import annotations

import os
import time

import ray

from actors.models import STAGES
from orchestration.settings import FanoutSettings
from orchestration.system import FanoutSystem
from orchestration.wiring import creation_options

PIDS_TIMEOUT_S = 10.0


def processes_to_start(parked: FanoutSettings, wanted: FanoutSettings) -> int:
    """What renewing a system parked with `parked` for `wanted` costs: the replicas it starts."""
    return sum(max(0, wanted.pool(stage).replicas - parked.pool(stage).replicas) for stage in STAGES)


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
        self._parked: list[tuple[FanoutSystem, float]] = []
        self._pids: dict[int, dict[str, int]] = {}  # by id(system): its actors' processes when it began

    def start(self, settings: FanoutSettings, renewable: bool = True) -> FanoutSystem:
        """A parked system renewed for `settings` if one was created with the same Ray options (the
        one that starts the fewest replicas), else a new one."""
        self._evict()
        # An autoscaled pool's size is its policy's, not the settings': never renewed.
        renewable = renewable and not settings.autoscaled()
        system = None
        if renewable:
            options = creation_options(settings)
            fits = [
                (processes_to_start(parked.settings, settings), index)
                for index, (parked, _) in enumerate(self._parked)
                if creation_options(parked.settings) == options
            ]
            if fits:
                _, index = min(fits)
                parked, _ = self._parked.pop(index)
                try:
                    system = parked.renewed(settings)
                except Exception:  # noqa: BLE001 - a start says why, if it fails too
                    # Spent either way: a name a resize needed still held by an actor stopping, or
                    # settings no system starts with (then the start below raises what it must).
                    parked.shutdown()
        if system is None:
            system = FanoutSystem.start(settings)
        if renewable and (pids := actor_pids(system)) is not None:
            self._pids[id(system)] = pids
        return system

    def stop(self, system: FanoutSystem) -> None:
        """Park the system if every actor is still the process it was when the test began; else shut
        it down."""
        began = self._pids.pop(id(system), None)
        if began is None or actor_pids(system) != began:
            system.shutdown()
            return
        try:
            system.park()
        except Exception:  # noqa: BLE001 - a system that cannot park is shut down instead
            system.shutdown()
            return
        self._parked.append((system, time.monotonic()))
        self._evict()

    def _evict(self) -> None:
        """Shut down what was parked too long ago, then the oldest past `keep`."""
        now = time.monotonic()
        while self._parked and (len(self._parked) > self.keep or now - self._parked[0][1] > self.keep_s):
            oldest, _ = self._parked.pop(0)
            oldest.shutdown()

    def shutdown(self) -> None:
        for system, _ in self._parked:
            system.shutdown()
        self._parked.clear()
