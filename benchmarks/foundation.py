"""Foundation benchmark: throughput against the slowest pool's limit, at zero wait, and latency at low load.

    python -m benchmarks.foundation [--orders 1500] [--zero-wait-orders 5000]

Runs on one embedded local Ray, through `FanoutSystem` (the code path of the CLI, with artifacts
written as in a normal run), and reports each figure as a ratio to its reference from the same
run: the theoretical limit min over stages of replicas / (duration x time_scale), and for latency at low
load the slowest stage's duration (the target allows it + 5 ms).
Writes benchmarks/results/foundation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from actors.intake.sources import SourceSpec
from actors.logs import configure_logging
from actors.models import STAGES
from orchestration.settings import load_settings
from orchestration.system import FanoutSystem

RESULTS = Path(__file__).parent / "results" / "foundation.json"


def measure(name: str, orders: int, overrides: dict[str, Any], workdir: Path) -> dict[str, Any]:
    settings = load_settings(
        {"namespace": f"bench-{name}", "out_dir": str(workdir / name), "log_level": "WARNING", **overrides}
    )
    system = FanoutSystem.start(settings)
    try:
        # Warm the workers' imports and first calls. The same seed as the measured run, so that with a
        # ledger these 20 are answered from it there (not counted), rather than clashing by order id.
        system.run(SourceSpec(count=20))
        started = time.perf_counter()
        result = system.run(SourceSpec(count=orders), out_dir=settings.out_dir)
        elapsed = time.perf_counter() - started
    finally:
        system.shutdown()
    summary = result.summary
    limit = settings.theoretical_limit_per_s()
    return {
        "scenario": name,
        "orders": orders,
        "settings": overrides,
        "completed": summary.completed - summary.from_ledger,
        "failed": summary.failed,
        "throughput_per_s": summary.throughput_per_s,
        "limit_per_s": limit,
        "ratio_to_limit": round(summary.throughput_per_s / limit, 4) if limit else None,
        "latency_ms": summary.latency_ms.model_dump(),
        "run_call_s_with_producer_startup": round(elapsed, 2),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--zero-wait-orders", type=int, default=5000)
    args = parser.parse_args()
    configure_logging("WARNING")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = [
            measure("scale-0.01-one-replica", args.orders, {"time_scale": 0.01}, workdir),
            measure(
                "scale-0.01-production4-design2",
                args.orders,
                {"time_scale": 0.01, "production": {"replicas": 4}, "design": {"replicas": 2}},
                workdir,
            ),
            # Default stock covers about 4,900 generated orders; this run is about speed, not shortage.
            measure(
                "zero-wait", args.zero_wait_orders, {"time_scale": 0.0, "material": {"stock_multiplier": 10}}, workdir
            ),
            # One order at a time: latency is then the slowest stage plus what the system adds.
            measure("low-load-one-in-flight", 200, {"time_scale": 0.01, "max_in_flight": 1}, workdir),
        ]
        slowest_ms = 1000 * 0.01 * max(load_settings().pool(s).duration_s for s in STAGES)
    ray.shutdown()
    RESULTS.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n", encoding="utf-8")
    columns = ("orders", 7), ("done", 6), ("orders/s", 9), ("limit", 7), ("ratio", 7), ("p50 ms", 8), ("p99 ms", 8)
    print(f"{'scenario':36}", " ".join(f"{name:>{width}}" for name, width in columns))
    for row in rows:
        limit = f"{row['limit_per_s']:.1f}" if row["limit_per_s"] else "-"
        ratio = f"{row['ratio_to_limit']:.1%}" if row["ratio_to_limit"] else "-"
        print(
            f"{row['scenario']:36} {row['orders']:>7} {row['completed']:>6} {row['throughput_per_s']:>9.1f} "
            f"{limit:>7} {ratio:>7} {row['latency_ms']['p50']:>8.0f} {row['latency_ms']['p99']:>8.0f}"
        )
    low = rows[-1]["latency_ms"]["p50"]
    verdict = "met" if low <= slowest_ms + 5 else "missed"
    print(f"low load: p50 {low:.1f} ms against the slowest stage's {slowest_ms:.0f} ms + 5 ms: {verdict}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
