"""The two-core limits the suite measures throughput against: what the stages' own code costs.

Each limit is 2 (the machine's cores) divided by the CPU seconds per order of plain stage code,
run single-threaded in this process for the same orders the measured run gets, with no Ray and no
ledger (`MemoryJournal`). Whatever the distributed path spends on top (calls, serialisation,
commits) is the gap between a figure and its limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from actors.models import JewelryOrder, StageName
from actors.stages import STAGE_CLASSES, ReplicaContext
from orchestration.settings import FanoutSettings

CORES = 2


def cpu_s_per_order(settings: FanoutSettings, stages: Iterable[StageName], orders: list[JewelryOrder]) -> float:
    """CPU seconds per order of the given stages' `process`, one instance each, on this thread."""
    replicas = [
        STAGE_CLASSES[stage](settings.stage_config(stage), ReplicaContext(f"{stage.value}-0", time_scale=0))
        for stage in stages
    ]
    started = time.thread_time()
    for order in orders:
        for replica in replicas:
            replica.process(order)
    return (time.thread_time() - started) / len(orders)


def two_core_limit(
    settings: FanoutSettings, stages: Iterable[StageName], orders: list[JewelryOrder]
) -> tuple[float, float]:
    """Orders per second two cores could do of this work alone, and the CPU seconds per order it came from."""
    per_order = cpu_s_per_order(settings, stages, orders)
    return CORES / per_order, per_order
