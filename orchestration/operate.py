"""Talking to a system that is already running: `status`, `submit`, `stop`.

A running system is found the way operators find it in the dashboard: by namespace and actor
name (`dispatcher-<i>`, `producer`, `<stage>-<i>`), on the cluster in RAY_ADDRESS or, without it,
the most recent Ray started on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray

from actors.errors import FanoutError, NotRunning, SourceError, SystemStartError
from actors.intake.sources import SUPPORTED_SUFFIXES, read_rows
from actors.ledger.schedule import Cancelled
from actors.models.messages import DispatcherStats, SubmitReceipt, SystemStatus
from orchestration.wiring import check_reachable, collect_snapshots, dispatcher_name

CALL_TIMEOUT_S = 15.0


def connect_existing(namespace: str) -> str:
    """Join the running cluster (never start one): RAY_ADDRESS, else this machine's latest Ray."""
    if ray.is_initialized():
        return "the Ray this process already runs"
    address = os.environ.get("RAY_ADDRESS") or "auto"
    try:
        check_reachable(address)
        ray.init(address=address, namespace=namespace, log_to_driver=False)
    except (ConnectionError, RuntimeError, SystemStartError) as error:
        raise NotRunning(f"no Ray cluster to connect to at {address}: {error}") from error
    return f"the Ray cluster at {address}"


def _actor(name: str, namespace: str) -> Any:
    actor = _maybe_actor(name, namespace)
    if actor is None:
        raise NotRunning(f"no actor {name!r} in namespace {namespace!r}: is a run going on there?")
    return actor


def system_status(namespace: str) -> SystemStatus:
    """The running system's shards (`dispatcher-0`, … as many as answer to their names), its
    Producer if a run is going on, and every live replica's snapshot."""
    shards = [_actor(dispatcher_name(0), namespace)]
    while (more := _maybe_actor(dispatcher_name(len(shards)), namespace)) is not None:
        shards.append(more)
    stats: list[DispatcherStats] = ray.get([shard.stats.remote() for shard in shards], timeout=CALL_TIMEOUT_S)
    producer = _maybe_actor("producer", namespace)  # between runs of a long-lived system there is none
    described = ray.get(producer.describe.remote(), timeout=CALL_TIMEOUT_S) if producer is not None else None
    snapshots = {}
    for stage, loads in stats[0].stages.items():
        live = {
            load.replica: actor for load in loads if (actor := _maybe_actor(load.replica, namespace)) is not None
        }  # one dead for good is skipped
        snapshots[stage] = collect_snapshots(live, timeout_s=CALL_TIMEOUT_S)
    return SystemStatus(namespace=namespace, dispatchers=stats, producer=described, snapshots=snapshots)


def _maybe_actor(name: str, namespace: str) -> Any:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def submit_file(namespace: str, path: Path) -> SubmitReceipt:
    """Send a file's records to the serving Producer, which validates them like its own source."""
    if not path.is_file() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise SourceError(f"{path} is not a readable {' or '.join(SUPPORTED_SUFFIXES)} file")
    rows = list(read_rows(path))
    receipt: SubmitReceipt = ray.get(
        _actor("producer", namespace).submit.remote(rows, path.name), timeout=CALL_TIMEOUT_S
    )
    return receipt


def cancel_scheduled_order(namespace: str, order_id: str) -> Cancelled:
    """Ask the system's Producer to cancel a scheduled order that has not started."""
    try:
        result: Cancelled = ray.get(_actor("producer", namespace).cancel_order.remote(order_id), timeout=CALL_TIMEOUT_S)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, FanoutError):  # NotServing: no ledger to cancel in
            raise error.cause from None
        raise
    return result


def stop_serving(namespace: str) -> None:
    ray.get(_actor("producer", namespace).stop.remote(), timeout=CALL_TIMEOUT_S)
