"""What a Dispatcher shard does once a second rather than per order: gauges, counters, heap trims.

Gauges are sampled rather than set on every call: on the per-order path their cost showed at zero
wait, and the metrics agent exports them every few seconds anyway. Counters are tallied in memory
and handed to Ray here (see `actors.telemetry.Tally`). Every `TRIM_EVERY_TICKS` ticks freed heap
pages go back to the OS: the per-order garbage of 100,000 orders otherwise stays in glibc's arenas
as RSS (benchmarks/suite.py, memory).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping

from actors.dispatch.client import StageClient
from actors.models import StageName
from actors.runtime import trim_free_memory
from actors.telemetry import DispatchMetrics

GAUGE_EVERY_S = 1.0
TRIM_EVERY_TICKS = 10


async def publish_gauges(
    shard: int,
    clients: Mapping[StageName, StageClient],
    metrics: DispatchMetrics,
    in_flight: Callable[[], int],
    every_tick: Callable[[], None],
) -> None:
    """Forever, once a second: orders in flight, calls outstanding per replica, tallied counts;
    `every_tick` lets the shard refresh what it too samples (the order it calls the stages in)."""
    shard_tag = {"shard": str(shard)}
    for tick in itertools.count(1):
        if tick % TRIM_EVERY_TICKS == 0:
            trim_free_memory()
        every_tick()
        metrics.in_flight.set(in_flight(), tags=shard_tag)
        metrics.flush()
        for stage, client in clients.items():
            metrics.breaker_state.set(client.breaker.state.level, tags={"stage": stage.value, **shard_tag})
            for load in client.pool.loads():
                metrics.stage_ongoing.set(load.ongoing, tags={"stage": stage.value, "replica": load.replica})
        await asyncio.sleep(GAUGE_EVERY_S)
