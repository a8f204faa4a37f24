"""CPU time as the benchmarks count it: per process, read from /proc, by kind of process.

A run's cost to the machine is the sum over every process of its CPU time during the run: the
actors, Ray's own processes and the driver. Reading each process before and after (rather than
/proc/stat's totals) says which process spent it, and leaves out what no process of this machine did.
"""

from __future__ import annotations

import os
from collections import defaultdict

from actors.stages import STAGE_CLASSES

RAY_SYSTEM = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "DashboardAgent")
STAGE_CLASS_NAMES = {cls.__name__ for cls in STAGE_CLASSES.values()}


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
        # Its title names the method it runs (ray::Producer.poll): the actor is what stays the same, so
        # that a process read twice is one kind both times, and only its CPU in between is counted.
        name = command.split()[0].removeprefix("ray::").split(":")[-1].split(".")[0]
        if name in STAGE_CLASS_NAMES:
            return "six stage replicas"
        return "ray system" if name in ("DashboardAgent", "RuntimeEnvAgent", "IDLE") else name
    if any(part in command for part in RAY_SYSTEM):
        return "ray system"
    if "locust" in command:  # the HTTP benchmark's load generator
        return "locust"
    return "other"


def by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    spent: dict[str, float] = defaultdict(float)
    for pid, (kind, cpu_s) in after.items():
        start = before.get(pid)
        spent[kind] += cpu_s - (start[1] if start is not None and start[0] == kind else 0.0)
    return dict(spent)


def spent_s(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> float:
    """CPU seconds all processes spent between the two readings."""
    return sum(by_kind(before, after).values())
