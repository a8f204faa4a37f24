"""The driver's autoscaling loop: samples the Dispatcher's load per replica, asks each autoscaled
pool's policy (`actors/dispatch/autoscaling.py`) for a size, and creates or drains replicas to match.

It runs in a thread of the driver, which owns the replicas (an actor dies with its owner; see
`wiring`), for as long as the system is up, so a pool shrinks back after a run as well. A new
replica takes the lowest free slot and restores that slot's checkpoint from the ledger; a replica
scaled away is the highest slot, drained by the Dispatcher first (no new orders, its own finished,
every order in flight concluded), then stopped, its checkpoint left in the ledger.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ray
from loguru import logger

from actors.dispatch.autoscaling import AutoscalingPolicy
from actors.errors import SystemStartError
from actors.models import StageName
from actors.models.messages import ReplicaLoad, ScalingEvent
from orchestration.settings import FanoutSettings
from orchestration.wiring import (
    StagePools,
    create_replica,
    replica_name,
    wait_until_ready,
)

TICK_S = 0.25  # each tick asks the Dispatcher for its stats: one small call


class PoolAutoscaler:
    def __init__(
        self, settings: FanoutSettings, pools: StagePools, dispatcher: Any, artifacts_dir: Path | None,
        lock: threading.Lock,
    ) -> None:
        self._settings = settings
        self._pools = pools
        self._dispatcher = dispatcher
        self._artifacts_dir = artifacts_dir
        self._lock = lock  # guards `pools`, which the driver's other threads read
        self._policies = {stage: AutoscalingPolicy(config) for stage, config in settings.autoscaled().items()}
        self._draining: dict[Any, tuple[StageName, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events: list[ScalingEvent] = []
        self.log = logger.bind(stage="autoscaler")

    def start(self) -> None:
        if self._policies and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="autoscaler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick(time.monotonic())
            except Exception as error:  # noqa: BLE001 - a failed tick is retried on the next one
                self.log.opt(exception=error).warning("autoscaling tick failed: {}", error)

    def tick(self, now: float) -> None:
        self._finish_drains()
        stats = ray.get(self._dispatcher.stats.remote())
        for stage, policy in self._policies.items():
            loads = stats.stages[stage]
            serving = [load for load in loads if load.alive and not load.draining]
            ongoing = sum(load.ongoing for load in loads)
            # In place by the end of the delay: the change waits at most a tick to be decided here,
            # and a drain is given up to a tick to finish (below) before the replica is stopped.
            desired = policy.decide(now, ongoing, len(serving), tick_s=2 * TICK_S)
            if desired == len(serving):
                continue
            event = ScalingEvent(at_s=now, stage=stage, replicas_before=len(serving), replicas_after=desired)
            self.events.append(event)
            self.log.info("{}: {} ongoing over {} replica(s); scaling to {}", stage, ongoing, len(serving), desired)
            if desired > len(serving):
                self._grow(stage, loads, desired - len(serving))
            else:
                self._shrink(stage, serving, len(serving) - desired)
                self._finish_drains(timeout_s=TICK_S)  # an idle replica drains at once: stop it now

    def _grow(self, stage: StageName, loads: list[ReplicaLoad], count: int) -> None:
        taken = {load.index for load in loads}
        free = [i for i in range(self._settings.pool(stage).slots) if i not in taken][:count]
        created = {}
        for index in free:
            name = replica_name(stage, index)
            try:
                created[name] = create_replica(self._settings, stage, index, self._artifacts_dir)
            except SystemStartError:  # still held by a replica we let go, or one a restarted Dispatcher forgot
                created[name] = ray.get_actor(name, namespace=self._settings.namespace)
        wait_until_ready(created, self._settings.actor_start_timeout_s)
        for name, handle in created.items():
            with self._lock:
                self._pools.replicas[stage][name] = handle
            ray.get(self._dispatcher.add_replica.remote(stage, name, handle))

    def _shrink(self, stage: StageName, serving: list[ReplicaLoad], count: int) -> None:
        highest = sorted(serving, key=lambda load: load.index)[-count:]
        for load in highest:
            self._draining[self._dispatcher.drain_replica.remote(stage, load.replica)] = (stage, load.replica)

    def _finish_drains(self, timeout_s: float = 0.0) -> None:
        """Stop the replicas the Dispatcher has drained; their checkpoints stay in the ledger."""
        if not self._draining:
            return
        done, _ = ray.wait(list(self._draining), num_returns=len(self._draining), timeout=timeout_s)
        for ref in done:
            stage, name = self._draining.pop(ref)
            ray.get(ref)
            with self._lock:
                handle = self._pools.replicas[stage].pop(name, None)
            if handle is not None:
                ray.kill(handle, no_restart=True)
            self.log.info("{} drained and stopped", name)
