"""Where the CPU goes at zero wait: every process's CPU per order, by difference between two runs.

    python -m benchmarks.processes [--orders 5000] [--small 500] [--rounds 3] [--in-flight 100]

A small and a large zero-wait run, alternating, `rounds` times, each on a system of its own (the
CLI's: `FanoutSystem` on the embedded Ray, dashboard included, a new ledger), warmed first. Every
process on the machine is read from /proc just before and after the measured run (the actors live
through it, so nothing is missed when a process exits), and each process's CPU per order is
(large - small) / (orders - small): what every run costs whatever its size cancels out. The driver
is this process. Writes benchmarks/results/processes.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from actors.intake.sources import SourceSpec, read_records
from actors.logs import configure_logging
from actors.models import STAGES
from benchmarks.cpu import by_kind, process_cpu_s
from benchmarks.foundation import machine
from benchmarks.limits import cpu_s_per_order
from benchmarks.suite import ZERO_WAIT, _orders_file
from orchestration.settings import load_settings
from orchestration.system import FanoutSystem

RESULTS = Path(__file__).parent / "results" / "processes.json"


def measured_run(overrides: dict[str, Any], workdir: Path, orders: int) -> dict[str, float]:
    """CPU seconds by process of one zero-wait run of `orders` on a system of its own (a new ledger:
    generated ids repeat from run to run, and a ledger would answer them)."""
    system = FanoutSystem.start(load_settings({**overrides, "out_dir": str(workdir)}))
    try:
        system.run(_orders_file(workdir / "warm.jsonl", 50, prefix="J8"))  # ids the measured run does not reuse
        before = process_cpu_s()
        system.run(SourceSpec(count=orders))
        spent = by_kind(before, process_cpu_s())
    finally:
        system.shutdown()
    spent["whole machine"] = sum(spent.values())
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    configure_logging("WARNING")
    overrides = {**ZERO_WAIT, "namespace": "bench-processes", "log_level": "WARNING", "artifacts": False}
    overrides["max_in_flight"] = args.in_flight
    own_ms = 1000 * cpu_s_per_order(load_settings(overrides), STAGES, list(read_records(SourceSpec(count=args.orders))))
    per_order: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            small = measured_run(overrides, Path(tmp) / f"small-{round_}", args.small)
            large = measured_run(overrides, Path(tmp) / f"large-{round_}", args.orders)
            for kind in set(small) | set(large):
                per_order[kind].append(
                    1000 * (large.get(kind, 0.0) - small.get(kind, 0.0)) / (args.orders - args.small)
                )
    rows = {kind: round(statistics.median(values), 4) for kind, values in per_order.items()}
    report = {"machine": machine(), "args": vars(args), "stages_own_ms_per_order": own_ms, "ms_per_order": rows}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'process':24} {'ms/order':>9} {'x own work':>10}")
    for kind, ms in sorted(rows.items(), key=lambda row: -row[1]):
        print(f"{kind:24} {ms:9.3f} {ms / own_ms:10.2f}")
    print(f"(the six stages' own work: {own_ms:.3f} ms per order; medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
