"""Where plain classes become Ray actors: names, namespaces, resources, scheduling.

Stage replicas are created here, by the driver (for the supervisor, which decides when), and
handed to the Dispatchers; a Dispatcher does not own them (an actor dies with its owner), so one
can die without taking the others with it.
With a ledger every actor restarts after a crash (see `_restart_options`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import ray
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.dispatch.dispatcher import Dispatcher
from actors.errors import SystemStartError, describe_error
from actors.intake.producer import Producer
from actors.models import STAGES, StageName
from actors.naming import NamedActor
from actors.stages import STAGE_CLASSES, ReplicaContext
from orchestration.settings import FanoutSettings

READY_POLL_S = 1.0
ADDRESS_PROBE_TIMEOUT_S = 5.0
# Stage replicas run one order at a time; snapshots go to this group so they never queue behind orders.
CONTROL_GROUP = "control"


def check_reachable(address: str) -> None:
    """Fail in seconds on a `host:port` nobody listens on, instead of Ray's minute of retries."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...", "http://...": Ray resolves and reports these itself
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise SystemStartError(f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {error}") from error


def connect_ray(settings: FanoutSettings) -> str:
    """Join the cluster in RAY_ADDRESS, or start the embedded local Ray; says which it did."""
    if ray.is_initialized():
        return "the Ray this process already runs"
    address = os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        ray.init(address=address, namespace=settings.namespace, log_to_driver=True)
        return f"the Ray cluster at {address}"
    ray.init(
        address="local",
        namespace=settings.namespace,
        num_cpus=settings.ray_num_cpus,
        include_dashboard=settings.dashboard,
        log_to_driver=True,
    )
    return "an embedded local Ray"


def replica_name(stage: StageName, index: int) -> str:
    return f"{stage.value}-{index}"


def _restart_options(settings: FanoutSettings) -> dict[str, Any]:
    """With a ledger an actor can die and come back: its state and every answer it gave are in the
    ledger, so Ray may restart it and re-send the calls it had (at-least-once, made exactly-once by
    the ledger's keys). Without one, a restart would come back empty, so nothing restarts."""
    if not settings.ledger.enabled:
        return {}
    return {"max_restarts": settings.ledger.max_restarts, "max_task_retries": -1}


def create_replica(settings: FanoutSettings, stage: StageName, index: int, artifacts_dir: Path | None) -> Any:
    """One stage replica; a replacement for a dead one is created the same way, under the same name,
    and comes back from the same checkpoint."""
    pool = settings.pool(stage)
    name = replica_name(stage, index)
    options: dict[str, Any] = {
        "name": name,
        "namespace": settings.namespace,
        "num_cpus": pool.num_cpus,
        "scheduling_strategy": pool.scheduling,
        **_restart_options(settings),
    }
    if pool.memory_mb:
        options["memory"] = pool.memory_mb * 1024 * 1024
    if pool.resources:
        options["resources"] = dict(pool.resources)
    groups = {CONTROL_GROUP: 1}
    actor_class = ray.remote(concurrency_groups=groups)(STAGE_CLASSES[stage])  # type: ignore[call-overload]  # Ray accepts it; its overloads omit it
    return _create(actor_class, options, *replica_args(settings, stage, index, artifacts_dir))


def replica_args(settings: FanoutSettings, stage: StageName, index: int, artifacts_dir: Path | None) -> tuple[Any, ...]:
    """What a stage replica is constructed with: its stage's business config and its place."""
    context = ReplicaContext(
        replica=replica_name(stage, index),
        index=index,
        replica_count=settings.pool(stage).slots,
        time_scale=settings.time_scale,
        artifacts_dir=artifacts_dir,
        log_level=settings.log_level,
        ledger=settings.stage_ledger_spec(stage),
    )
    return settings.stage_config(stage), context


def dispatcher_name(shard: int) -> str:
    return f"dispatcher-{shard}"


def create_dispatchers(settings: FanoutSettings, members: dict[StageName, list[str]]) -> list[Any]:
    """The Dispatcher shards, `dispatcher-0` … They are given the replicas by name, which a restarted
    shard resolves again; the supervisor then pushes the member lists as they are now."""
    shards = []
    for shard in range(settings.control.dispatchers):
        options = {
            "name": dispatcher_name(shard),
            "namespace": settings.namespace,
            "num_cpus": settings.control.num_cpus,
            # Async actor: enough concurrent calls for every admitted order plus control calls.
            "max_concurrency": dispatcher_concurrency(settings),
            **_restart_options(settings),
        }
        shards.append(_create(ray.remote(Dispatcher), options, *dispatcher_args(settings, members, shard)))
    return shards


def creation_options(settings: FanoutSettings) -> tuple[Any, ...]:
    """Every Ray option fixed when the system's actors are created, pool sizes aside: per pool its
    CPUs, memory, resources and scheduling; the shards, their CPUs and concurrency; and whether
    actors restart (with a ledger) and how often. A parked system is renewed only for settings that
    agree on all of these (`FanoutSystem.renewed`)."""
    pools = tuple(
        (p.num_cpus, p.memory_mb, tuple(sorted(p.resources.items())), p.scheduling)
        for p in (settings.pool(stage) for stage in STAGES)
    )
    control = (settings.control.dispatchers, settings.control.num_cpus, dispatcher_concurrency(settings))
    return (settings.ledger.enabled, settings.ledger.max_restarts, control, pools)


def dispatcher_concurrency(settings: FanoutSettings) -> int:
    return max(1000, settings.max_in_flight + 100)


def dispatcher_args(settings: FanoutSettings, members: dict[StageName, list[str]], shard: int) -> tuple[Any, ...]:
    """What a Dispatcher shard is constructed with: the replicas by name, and every stage's policies."""
    by_name = {
        stage: {name: NamedActor(name, settings.namespace) for name in names} for stage, names in members.items()
    }
    return (
        by_name,
        {stage: settings.pool(stage).timeout_s for stage in STAGES},
        settings.max_in_flight,
        settings.log_level,
        {stage: settings.pool(stage).retry for stage in STAGES},
        settings.ledger_spec(),
        settings.batching,
        shard,
        {stage: settings.pool(stage).breaker for stage in STAGES},
    )


def create_producer(settings: FanoutSettings) -> Any:
    """The Producer, for as long as the system is up. It runs on the driver's node, where the input
    file named on the command line is, and finds the Dispatcher shards by name."""
    options = {
        "name": "producer",
        "namespace": settings.namespace,
        "num_cpus": settings.control.num_cpus,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        **_restart_options(settings),
    }
    return _create(ray.remote(Producer), options, *producer_args(settings))


def producer_args(settings: FanoutSettings) -> tuple[Any, ...]:
    """What the Producer is constructed with: the shards by name, its window and its store."""
    shards = [NamedActor(dispatcher_name(shard), settings.namespace) for shard in range(settings.control.dispatchers)]
    return (
        shards,
        settings.max_in_flight,
        settings.control.outbox_limit,
        settings.log_level,
        settings.ledger_spec(),
        settings.http.limits(),
    )


def snapshot_ref(replica: Any) -> Any:
    """A replica's snapshot, answered beside whatever order it is working on."""
    return replica.snapshot.options(concurrency_group=CONTROL_GROUP).remote()


def collect_snapshots(replicas: dict[str, Any], timeout_s: float | None = None) -> list[Any]:
    """Snapshots of the replicas that answer; a dead one is skipped with a warning, not fatal."""
    refs = {name: snapshot_ref(handle) for name, handle in replicas.items()}
    snapshots = []
    for name, ref in refs.items():
        try:
            snapshots.append(ray.get(ref, timeout=timeout_s))
        except Exception as error:  # noqa: BLE001 - one dead replica must not hide the others
            logger.bind(stage="wiring").warning("no snapshot from {}: {}", name, type(error).__name__)
    return snapshots


def wait_until_ready(actors: dict[str, Any], timeout_s: float) -> None:
    """Every actor constructed, or a `SystemStartError` naming those that are not and why."""
    pending = {actor.__ray_ready__.remote(): name for name, actor in actors.items()}
    failures: list[str] = []
    waited = 0.0
    while pending and waited < timeout_s:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=READY_POLL_S)
        for ref in ready:
            name = pending.pop(ref)
            try:
                ray.get(ref)
            except Exception as error:  # noqa: BLE001 - reported below with the actor's name
                failures.append(f"{name}: {describe_error(error)}")
        waited += READY_POLL_S
    if failures:
        raise SystemStartError("actors failed to start: " + "; ".join(failures))
    if pending:
        names = ", ".join(sorted(pending.values()))
        raise SystemStartError(
            f"actors not running after {timeout_s:g} s: {names}. The cluster may lack the CPUs, memory or custom "
            f"resources they ask for (see `ray status`), or be slow to start workers."
        )


def kill_all(actors: dict[str, Any]) -> None:
    for name, actor in actors.items():
        try:
            ray.kill(actor)
        except Exception as error:  # noqa: BLE001 - shutting down; nothing more to do for it
            logger.bind(stage="wiring").debug("could not kill {}: {}", name, error)


def _create(actor_class: Any, options: dict[str, Any], *args: Any) -> Any:
    try:
        return actor_class.options(**options).remote(*args)
    except ValueError as error:
        if "already" in str(error).lower():
            raise SystemStartError(
                f"an actor named {options['name']!r} already exists in namespace {options['namespace']!r}: another "
                f"run is using it; stop that run or choose another namespace (--set namespace=...)"
            ) from error
        raise
