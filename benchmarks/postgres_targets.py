"""The saturation and scaling targets, on the PostgreSQL ledger.

    python -m benchmarks.postgres_targets [--orders 2400] [--zero-wait-orders 3000] [--rounds 3]

Each run keeps its ledger in a new database on a throwaway local PostgreSQL server (the tests' one,
on loopback, fsync off, synchronous commits), sharing the two cores with the workshop. Targets, each
a ratio from this one run:

- saturation at time scale 0.01, one replica per stage: >= 97 % of the theoretical limit;
- the same with production x4 and design x2: >= 97 %;
- doubling the bottleneck (production x1 -> x2, design x2): >= 1.9x the throughput;
- material x4 against material x1 at zero wait (four replicas updating the same stock rows):
  throughput ratio >= 0.90. Runs alternate x1 / x4, so that drift on this shared machine hits
  both alike; the figure is the ratio of medians. On two cores this also pays for three more
  actor processes and four times the material calls, so a second figure isolates the row locks:
  material x4 with each lot in one row against the same with each lot spread over four rows.

A saturation run is 2,400 orders: what it measures is the rate once the pipeline is full. Filling
and draining the pipeline takes the same time however long the run, so a short run understates
the rate by that share.

Writes benchmarks/results/postgres-targets.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from actors.logs import configure_logging
from benchmarks.foundation import machine, measure

RESULTS = Path(__file__).parent / "results" / "postgres-targets.json"
SCALE = 0.01
ZERO_WAIT = {"time_scale": 0.0, "material": {"stock_multiplier": 30}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2400, help="orders per saturation run")
    parser.add_argument("--zero-wait-orders", type=int, default=3000, help="orders per material x1 / x4 run")
    parser.add_argument("--rounds", type=int, default=3, help="x1 / x4 pairs")
    args = parser.parse_args()
    configure_logging("WARNING")
    from tests.postgres_server import PostgresServer  # the tests' throwaway server

    server = PostgresServer()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    targets: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []

    def run(name: str, orders: int, overrides: dict[str, Any], workdir: Path) -> dict[str, Any]:
        ledger = {**overrides.get("ledger", {}), "location": server.new_database()}
        row = measure(name, orders, {**overrides, "ledger": ledger}, workdir)
        runs.append(row)
        return row

    def target(name: str, figure: float, reference: float, goal: float) -> None:
        ratio = figure / reference
        targets.append(
            {
                "target": name,
                "figure": round(figure, 2),
                "reference": round(reference, 2),
                "ratio": round(ratio, 4),
                "goal": goal,
                "met": ratio >= goal,
            }
        )

    def alternating(name: str, overrides: Callable[[int], dict[str, Any]], workdir: Path) -> dict[int, float]:
        """Zero-wait runs of the settings for 1 and 4, alternating which goes first each round, so that
        drift on this shared machine hits both alike: the median throughput of each."""
        rates: dict[int, list[float]] = {1: [], 4: []}
        for round_ in range(args.rounds):
            for n in (1, 4) if round_ % 2 == 0 else (4, 1):
                row = run(f"{name.format(n=n)}-{round_}", args.zero_wait_orders, overrides(n), workdir)
                rates[n].append(row["throughput_per_s"])
        return {n: statistics.median(found) for n, found in rates.items()}

    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            one = run("one-replica", args.orders, {"time_scale": SCALE}, work)
            target(
                "saturation, one replica per stage: >= 97% of the limit",
                one["throughput_per_s"],
                one["limit_per_s"],
                0.97,
            )
            four = run(
                "production4-design2",
                args.orders,
                {"time_scale": SCALE, "production": {"replicas": 4}, "design": {"replicas": 2}},
                work,
            )
            target(
                "saturation, production x4 design x2: >= 97% of the limit",
                four["throughput_per_s"],
                four["limit_per_s"],
                0.97,
            )
            rates = {
                n: run(
                    f"production{n}-design2",
                    args.orders,
                    {"time_scale": SCALE, "production": {"replicas": n}, "design": {"replicas": 2}},
                    work,
                )["throughput_per_s"]
                for n in (1, 2)
            }
            target("doubling the bottleneck (production x1 -> x2): >= 1.9x throughput", rates[2], rates[1], 1.9)
            material = alternating(
                "zero-wait-material{n}",
                lambda n: {**ZERO_WAIT, "material": {**ZERO_WAIT["material"], "replicas": n}},
                work,
            )
            target(
                "zero wait, material x4 against x1 (hot stock rows): >= 0.90 of the throughput",
                material[4],
                material[1],
                0.90,
            )
            # The same four replicas with each lot kept in one row, then spread over four (the slotted
            # counter): the actors, calls and batches are the same, so the ratio is the row locks alone.
            slots = alternating(
                "zero-wait-material4-slots{n}",
                lambda n: {
                    **ZERO_WAIT,
                    "material": {**ZERO_WAIT["material"], "replicas": 4},
                    "ledger": {"stock_slots": n},
                },
                work,
            )
            target(
                "zero wait, material x4, one row per lot against four (the row locks alone): >= 0.90",
                slots[1],
                slots[4],
                0.90,
            )
    finally:
        ray.shutdown()
        server.close()
    RESULTS.write_text(
        json.dumps({"machine": machine(), "targets": targets, "runs": runs}, indent=2) + "\n", encoding="utf-8"
    )
    for row in targets:
        verdict = "met" if row["met"] else "MISSED"
        print(f"{row['target']:80} {row['figure']:>8.1f} / {row['reference']:>8.1f} = {row['ratio']:.3f}  {verdict}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
