"""Reference figures for the performance work, each measured in the same run as jewelry-fanout:

- R, the raw ceiling: a plain driver's batched calls to one trivial actor, per second;
- the original design, written from its description: a bounded queue of 100, one dispatcher
  thread that takes one order, starts six threads (one per stage, each doing the stage's work and
  waiting its duration) and joins them before taking the next order;
- jewelry-fanout itself, one replica per stage, through `FanoutSystem` (the CLI's code path).

    python -m benchmarks.baselines [--orders 3000]

Writes benchmarks/results/baselines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray

from actors.intake.sources import SourceSpec, read_records
from actors.logs import configure_logging
from actors.models import STAGES
from actors.stages import STAGE_CLASSES, ReplicaContext
from orchestration.settings import load_settings
from orchestration.system import FanoutSystem

RESULTS = Path(__file__).parent / "results" / "baselines.json"
QUEUE_SIZE = 100


class _Echo:
    def call(self, value: int) -> int:
        return value


def raw_ceiling(calls: int = 20_000, batch: int = 1_000) -> float:
    """R: actor calls per second from a plain driver submitting in batches and gathering once."""
    actor = ray.remote(_Echo).options(num_cpus=0).remote()
    ray.get(actor.call.remote(0))
    started = time.perf_counter()
    for _ in range(calls // batch):
        ray.get([actor.call.remote(i) for i in range(batch)])
    rate = calls / (time.perf_counter() - started)
    ray.kill(actor)
    return rate


def original_design(orders: int, time_scale: float) -> float:
    """Orders per second of the original thread-per-stage design, with the same stage logic."""
    settings = load_settings({"time_scale": time_scale, "material": {"stock_multiplier": 10}})
    stages = [
        STAGE_CLASSES[s](settings.stage_config(s), ReplicaContext(f"{s}-0", time_scale=time_scale)) for s in STAGES
    ]
    work: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
    done = threading.Event()

    def dispatcher() -> None:
        while True:
            order = work.get()
            if order is None:
                done.set()
                return
            threads = [threading.Thread(target=stage.process, args=(order,)) for stage in stages]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    source = list(read_records(SourceSpec(count=orders, seed=7)))
    started = time.perf_counter()
    threading.Thread(target=dispatcher, daemon=True).start()
    for order in source:
        work.put(order)
    work.put(None)
    done.wait()
    return orders / (time.perf_counter() - started)


def fanout(orders: int, time_scale: float) -> float:
    with tempfile.TemporaryDirectory() as out:  # a fresh ledger: nothing answered from an earlier run
        settings = load_settings(
            {
                "namespace": f"baseline-{time_scale}",
                "time_scale": time_scale,
                "artifacts": False,
                "out_dir": out,
                "log_level": "WARNING",
                "material": {"stock_multiplier": 10},
            }
        )
        system = FanoutSystem.start(settings)
        try:
            system.run(SourceSpec(count=50, seed=7))  # warm the workers; the measured run answers these from the ledger
            return system.run(SourceSpec(count=orders, seed=7)).summary.throughput_per_s
        finally:
            system.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    args = parser.parse_args()
    configure_logging("WARNING")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    r = raw_ceiling()
    for time_scale, orders in ((0.0, args.orders), (0.01, min(args.orders, 600))):
        original = original_design(orders, time_scale)
        ours = fanout(orders, time_scale)
        limit = 1 / (2.0 * time_scale) if time_scale else None
        rows.append(
            {
                "time_scale": time_scale,
                "orders": orders,
                "raw_ceiling_R_calls_per_s": round(r, 1),
                "original_design_per_s": round(original, 1),
                "jewelry_fanout_per_s": round(ours, 1),
                "ours_vs_original": round(ours / original, 3),
                "ours_vs_R": round(ours / r, 4),
                "theoretical_limit_per_s": limit,
            }
        )
    ray.shutdown()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__}
    RESULTS.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"raw ceiling R: {r:.0f} actor calls/s")
    header = ("time scale", 10), ("orders", 7), ("original/s", 11), ("ours/s", 8), ("ours/original", 14), ("ours/R", 7)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'limit/s':>8}")
    for row in rows:
        limit = f"{row['theoretical_limit_per_s']:.0f}" if row["theoretical_limit_per_s"] else "-"
        print(
            f"{row['time_scale']:>10} {row['orders']:>7} {row['original_design_per_s']:>11.1f} "
            f"{row['jewelry_fanout_per_s']:>8.1f} {row['ours_vs_original']:>14.2f} {row['ours_vs_R']:>7.3f} {limit:>8}"
        )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
