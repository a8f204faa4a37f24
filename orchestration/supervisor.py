"""`PoolSupervisor`: the one owner of pool membership, the role Ray Serve's controller plays.

Only the supervisor creates, replaces, adopts, grows, drains and stops stage replicas, and only it
says who the members of a pool are: every change is a new version of the member lists, pushed to
every Dispatcher shard (`Dispatcher.apply_members`), whose routers only ever stop calling a replica
they found dead until a list names a new actor for it.

It runs in the driver, which owns the replicas (an actor dies with its owner; see `wiring`), in a
thread for as long as the system is up: in a run, while serving, during a replay, and between
runs. Each tick it reads every shard's stats, and
- brings a shard that is behind (restarted, so back at its first list) up to the current lists;
- with a ledger, replaces a replica that a shard found dead for good: the replacement takes the
  same name and slot, and restores the same checkpoint;
- asks each autoscaled pool's policy (`actors/dispatch/autoscaling.py`, a pure function of the
  load and a clock) for a size, and grows the pool, or drains its highest slots;
- stops a drained replica once every shard has drained it; its checkpoint stays in the ledger.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import ray
from loguru import logger

from actors.dispatch.autoscaling import AutoscalingPolicy
from actors.dispatch.pool import same_actor
from actors.errors import SystemStartError, describe_error
from actors.models import STAGES, StageName
from actors.models.messages import DispatcherStats, PoolMember, PoolMembers, ScalingEvent
from orchestration.settings import FanoutSettings
from orchestration.wiring import create_replica, replica_name, wait_until_ready

TICK_S = 0.25  # each tick asks every shard for its stats: one small call each
PING_S = 2.0  # how long a replica the shards took for dead has, to answer, before it is taken to be dead
CALL_TIMEOUT_S = 10.0  # a shard that does not answer (restarting) is skipped for the tick


class PoolSupervisor:
    def __init__(self, settings: FanoutSettings, artifacts_dir: Path | None) -> None:
        self._settings = settings
        self._artifacts_dir = artifacts_dir
        self._members: dict[StageName, dict[str, PoolMember]] = {stage: {} for stage in STAGES}
        self._version = 0
        self._shards: list[Any] = []
        self._policies = {stage: AutoscalingPolicy(config) for stage, config in settings.autoscaled().items()}
        self._drains: dict[tuple[StageName, str], list[Any]] = {}  # the shards' `drained` calls
        self._replaced: dict[tuple[StageName, str], int] = {}  # the version that named a replacement
        self._lock = threading.Lock()  # the members, read by the driver's other threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events: list[ScalingEvent] = []
        self.log = logger.bind(stage="supervisor")

    def create_pools(self) -> dict[str, Any]:
        """Every stage's first replicas, by name (not waited for: see `wiring.wait_until_ready`)."""
        for stage in STAGES:
            for index in range(self._settings.pool(stage).replicas):
                self._join(stage, index, self._start_replica(stage, index))
        return self.replicas()

    def adopt_pools(self, replicas: dict[str, Any]) -> dict[str, Any]:
        """Every stage's first replicas: those already running under their names (a renewed
        system's) adopted, the others started; returns the started ones, by name (not waited for).
        A running replica past its pool's size is not adopted: its owner stops it."""
        started = {}
        for stage in STAGES:
            for index in range(self._settings.pool(stage).replicas):
                name = replica_name(stage, index)
                handle = replicas.get(name)
                if handle is None:
                    handle = started[name] = self._start_replica(stage, index)
                self._join(stage, index, handle)
        return started

    def attach(self, shards: list[Any]) -> None:
        """The Dispatcher shards to keep up to date, then the first push: version 1."""
        self._shards = list(shards)
        self._publish()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pool-supervisor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop supervising (the replicas keep running: see `stop_replicas`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def stop_replicas(self) -> None:
        for name, handle in self.replicas().items():
            try:
                ray.kill(handle)
            except Exception as error:  # noqa: BLE001 - shutting down; nothing more to do for it
                self.log.debug("could not kill {}: {}", name, error)

    def replicas(self, stage: StageName | None = None) -> dict[str, Any]:
        """The replicas by name: of one stage, or of all."""
        with self._lock:
            stages = [stage] if stage is not None else STAGES
            return {name: m.handle for s in stages for name, m in self._members[s].items()}

    def member_names(self) -> dict[StageName, list[str]]:
        with self._lock:
            return {stage: list(members) for stage, members in self._members.items()}

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick(time.monotonic())
            except Exception as error:  # noqa: BLE001 - a failed tick is retried on the next one
                self.log.opt(exception=error).warning("supervision tick failed: {}", error)

    def tick(self, now: float) -> None:
        self._finish_drains()
        stats = self._shard_stats()
        for shard, shard_stats in stats.items():
            if shard_stats.members_version < self._version:
                self.log.info(
                    "dispatcher-{} is at members v{}; pushing v{}", shard, shard_stats.members_version, self._version
                )
                self._push(self._shards[shard])
        if self._settings.ledger.enabled:
            self._replace_dead(stats.values())
        for stage, policy in self._policies.items():
            self._autoscale(now, stage, policy, stats.values())

    def _shard_stats(self) -> dict[int, DispatcherStats]:
        refs = {shard: handle.stats.remote() for shard, handle in enumerate(self._shards)}
        stats = {}
        for shard, ref in refs.items():
            try:
                stats[shard] = ray.get(ref, timeout=CALL_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - a restarting shard is read on a later tick
                self.log.debug("no stats from dispatcher-{}: {}", shard, describe_error(error))
        return stats

    def _replace_dead(self, stats: Any) -> None:
        """Replace the replicas a shard found dead for good. A shard still on a list older than the
        replacement's reports the dead actor it knew, not the replacement: that is not news."""
        for shard_stats in stats:
            for stage, loads in shard_stats.stages.items():
                for load in loads:
                    key = (stage, load.replica)
                    member = self._members[stage].get(load.replica)
                    if load.alive or member is None or shard_stats.members_version < self._replaced.get(key, 0):
                        continue
                    self.log.warning("{} died for good; starting a replacement", load.replica)
                    if self._replace(stage, member):
                        self._replaced[key] = self._publish()

    def _replace(self, stage: StageName, member: PoolMember) -> bool:
        """Put a new actor in the member's slot, listed under the next epoch. If the name still
        holds the same actor, that actor is either dead and not yet released by Ray (try again next
        tick) or alive, and a shard took it for dead: listed again, the shards call it again. (Listing
        it as it was had the shard report it dead again, and the supervisor replaced it every tick.)"""
        handle = self._start_replica(stage, member.index)
        if same_actor(handle, member.handle) and not _answers(handle):
            self.log.info("{}: the name still holds the dead actor; replacing it on a later tick", member.name)
            return False
        self._join(stage, member.index, handle, epoch=member.epoch + 1)
        return True

    def _autoscale(self, now: float, stage: StageName, policy: AutoscalingPolicy, stats: Any) -> None:
        serving = [m for m in self._members[stage].values() if not m.draining]
        ongoing = sum(load.ongoing for shard_stats in stats for load in shard_stats.stages[stage])
        # In place by the end of the delay: the change waits at most a tick to be decided here, and a
        # drain is given up to a tick to finish (below) before the replica is stopped.
        desired = policy.decide(now, ongoing, len(serving), tick_s=2 * TICK_S)
        if desired == len(serving):
            return
        self.events.append(ScalingEvent(at_s=now, stage=stage, replicas_before=len(serving), replicas_after=desired))
        self.log.info("{}: {} ongoing over {} replica(s); scaling to {}", stage, ongoing, len(serving), desired)
        if desired > len(serving):
            self._grow(stage, desired - len(serving))
        else:
            self._drain(stage, highest_slots(serving, len(serving) - desired))
            self._finish_drains(timeout_s=TICK_S)  # an idle replica drains at once: stop it now

    def _grow(self, stage: StageName, count: int) -> None:
        """The lowest free slots; a new replica restores its slot's checkpoint from the ledger."""
        taken = {m.index for m in self._members[stage].values()}
        free = [i for i in range(self._settings.pool(stage).slots) if i not in taken][:count]
        created = {replica_name(stage, index): self._start_replica(stage, index) for index in free}
        wait_until_ready(created, self._settings.actor_start_timeout_s)
        for index in free:
            self._join(stage, index, created[replica_name(stage, index)])
        self._publish()

    def _drain(self, stage: StageName, leaving: list[PoolMember]) -> None:
        """List the replicas as draining (no new orders), then ask every shard to say when it is done
        with them: its orders in flight concluded, its calls to them answered."""
        with self._lock:
            for member in leaving:
                self._members[stage][member.name] = dataclasses.replace(member, draining=True)
        self._publish()
        for member in leaving:
            self._drains[(stage, member.name)] = [shard.drained.remote(stage, member.name) for shard in self._shards]

    def _finish_drains(self, timeout_s: float = 0.0) -> None:
        """Stop the replicas every shard has drained; their checkpoints stay in the ledger."""
        for (stage, name), refs in list(self._drains.items()):
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
            if len(done) < len(refs):
                continue
            del self._drains[(stage, name)]
            with self._lock:
                member = self._members[stage].pop(name)
            self._publish()
            ray.kill(member.handle, no_restart=True)
            self.log.info("{} drained and stopped", name)

    def _start_replica(self, stage: StageName, index: int) -> Any:
        """A new replica in the slot, or, if its name is still taken (a replica let go and not yet
        gone, or one a restarted Dispatcher forgot), the actor that holds it."""
        try:
            return create_replica(self._settings, stage, index, self._artifacts_dir)
        except SystemStartError:
            return ray.get_actor(replica_name(stage, index), namespace=self._settings.namespace)

    def _join(self, stage: StageName, index: int, handle: Any, epoch: int = 0) -> None:
        with self._lock:
            self._members[stage][replica_name(stage, index)] = PoolMember(
                replica_name(stage, index), index, handle, epoch=epoch
            )

    def _publish(self) -> int:
        """A new version of every member list, pushed to every shard; the version."""
        self._version += 1
        for shard in self._shards:
            self._push(shard)
        return self._version

    def _push(self, shard: Any) -> None:
        with self._lock:
            lists = [
                PoolMembers(stage, self._version, tuple(members.values())) for stage, members in self._members.items()
            ]
        try:
            ray.get(shard.apply_members.remote(lists), timeout=CALL_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - a shard that missed it is behind: pushed again on a tick
            self.log.warning("could not push members v{}: {}", self._version, describe_error(error))


def highest_slots(members: list[PoolMember], count: int) -> list[PoolMember]:
    """The `count` members a pool scaled down by `count` lets go: the highest slots, so that the
    pool stays packed into its lowest slots (a replica scaled up later takes the lowest free one)."""
    return sorted(members, key=lambda member: member.index)[len(members) - count :] if count > 0 else []


def _answers(handle: Any) -> bool:
    """Whether the actor answers within PING_S (dead, or not answering: not a live member now)."""
    try:
        wait_until_ready({"replica": handle}, PING_S)
        return True
    except SystemStartError:
        return False
