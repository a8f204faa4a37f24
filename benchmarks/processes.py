"""Where the CPU goes at zero wait: every process's CPU per order, by difference between two runs.

    python -m benchmarks.processes [--orders 5000] [--small 500] [--rounds 2] [--in-flight 100]

One system (the CLI's: `FanoutSystem` on the embedded Ray, dashboard included, ledger on) runs a
small and a large zero-wait run, alternating, `rounds` times. Every process on the machine is read
from /proc before and after each run (the actors live through both runs, so nothing is missed when
a process exits), and each process's CPU per order is (large - small) / (orders - small): what every
run costs whatever its size cancels out. The driver is this process. Writes
benchmarks/results/processes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from actors.intake.sources import SourceSpec, read_records
from actors.logs import configure_logging
from actors.models import STAGES
from actors.stages import STAGE_CLASSES
from benchmarks.foundation import machine
from benchmarks.limits import cpu_s_per_order
from benchmarks.suite import ZERO_WAIT, machine_busy_s
from orchestration.settings import load_settings
from orchestration.system import FanoutSystem

RESULTS = Path(__file__).parent / "results" / "processes.json"
STAGE_CLASS_NAMES = {cls.__name__ for cls in STAGE_CLASSES.values()}
RAY_SYSTEM = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "DashboardAgent")


def process_cpu_s() -> dict[int, tuple[str, float]]:
    """Every process's kind (from its command line) and CPU seconds so far."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        found[int(entry)] = (_kind(int(entry), command), (int(fields[11]) + int(fields[12])) / tick)
    return found


def _kind(pid: int, command: str) -> str:
    if pid == os.getpid():
        return "driver"
    if command.startswith("ray::"):  # an actor's worker: ray::Dispatcher, ray::Design, ...
        name = command.split()[0].removeprefix("ray::").split(":")[-1]
        if name in STAGE_CLASS_NAMES:
            return "six stage replicas"
        return "ray system" if name in ("DashboardAgent", "RuntimeEnvAgent", "IDLE") else name
    if any(part in command for part in RAY_SYSTEM):
        return "ray system"
    return "other"


def by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    spent: dict[str, float] = defaultdict(float)
    for pid, (kind, cpu_s) in after.items():
        start = before.get(pid)
        spent[kind] += cpu_s - (start[1] if start is not None and start[0] == kind else 0.0)
    return dict(spent)


def measured_run(system: FanoutSystem, orders: int) -> dict[str, float]:
    before, busy = process_cpu_s(), machine_busy_s()
    system.run(SourceSpec(count=orders))
    spent = by_kind(before, process_cpu_s())
    spent["whole machine"] = machine_busy_s() - busy
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"namespace": "bench-processes", "out_dir": tmp, "log_level": "WARNING", "artifacts": False}
        settings = load_settings({**ZERO_WAIT, **overrides, "max_in_flight": args.in_flight})
        own_ms = 1000 * cpu_s_per_order(settings, STAGES, list(read_records(SourceSpec(count=args.orders))))
        system = FanoutSystem.start(settings)
        try:
            system.run(SourceSpec(count=50))  # warm
            per_order: dict[str, list[float]] = defaultdict(list)
            for _ in range(args.rounds):
                small, large = measured_run(system, args.small), measured_run(system, args.orders)
                for kind in set(small) | set(large):
                    per_order[kind].append(
                        1000 * (large.get(kind, 0.0) - small.get(kind, 0.0)) / (args.orders - args.small)
                    )
        finally:
            system.shutdown()
    rows = {kind: round(statistics.median(values), 4) for kind, values in per_order.items()}
    report = {"machine": machine(), "args": vars(args), "stages_own_ms_per_order": own_ms, "ms_per_order": rows}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'process':24} {'ms/order':>9} {'x own work':>10}")
    for kind, ms in sorted(rows.items(), key=lambda row: -row[1]):
        print(f"{kind:24} {ms:9.3f} {ms / own_ms:10.2f}")
    print(f"(the six stages' own work: {own_ms:.3f} ms per order; medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
