"""What durability costs: the same runs with the ledger (the default) and without (`--no-ledger`).

    python -m benchmarks.durability [--orders 3000] [--rounds 3] [--scaled-orders 600] [--store postgresql]

Zero-wait runs show the ledger's cost at its most visible (every order is seven SQLite commits
and nothing else takes time); runs at time scale 0.01 show it where stages have real durations.
Runs alternate ledger / no ledger in one Ray session, so that drift on this shared machine hits
both alike; the figure is the ratio of medians. `--store postgresql` puts each ledger run in a new
database on a throwaway local PostgreSQL server (the tests' one, fsync off) instead of an SQLite file.
Writes benchmarks/results/durability[-postgresql].json.
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

RESULTS = Path(__file__).parent / "results" / "durability.json"
ZERO_WAIT = {"time_scale": 0.0, "material": {"stock_multiplier": 10}}
SCALED = {"time_scale": 0.01}
# The targets: what durability may cost, by store and scenario.
TARGET_COST = {"sqlite": {"zero-wait": 0.10, "scale-0.01": 0.10}, "postgresql": {"zero-wait": 0.15, "scale-0.01": 0.05}}


def compare(
    label: str, orders: int, rounds: int, base: dict[str, Any], workdir: Path, location: Callable[[], str | None]
) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"ledger": [], "no-ledger": []}
    for round_ in range(rounds):
        order = ["ledger", "no-ledger"] if round_ % 2 == 0 else ["no-ledger", "ledger"]
        for variant in order:
            ledger: dict[str, Any] = {"enabled": variant == "ledger"}
            if variant == "ledger" and (where := location()):
                ledger["location"] = where
            overrides = {**base, "ledger": ledger}
            row = measure(f"{label}-{variant}-{round_}", orders, overrides, workdir)
            assert row["completed"] + row["failed"] >= orders - 20, row
            runs[variant].append(row["throughput_per_s"])
    with_ledger, without = statistics.median(runs["ledger"]), statistics.median(runs["no-ledger"])
    return {
        "scenario": label,
        "orders": orders,
        "rounds": rounds,
        "runs_per_s": runs,
        "ledger_per_s": with_ledger,
        "no_ledger_per_s": without,
        "ratio": round(with_ledger / without, 4),
        "cost": round(1 - with_ledger / without, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000, help="zero-wait orders per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scaled-orders", type=int, default=600, help="orders per run at time scale 0.01")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    configure_logging("WARNING")
    server = None
    if args.store == "postgresql":
        from tests.postgres_server import PostgresServer

        server = PostgresServer()

    def location() -> str | None:
        """A new database per run on PostgreSQL; on SQLite, None: the run's own file."""
        return server.new_database() if server is not None else None

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [
                compare("zero-wait", args.orders, args.rounds, ZERO_WAIT, Path(tmp), location),
                compare("scale-0.01", args.scaled_orders, 1, SCALED, Path(tmp), location),
            ]
    finally:
        ray.shutdown()
        if server is not None:
            server.close()
    results = RESULTS if args.store == "sqlite" else RESULTS.with_name("durability-postgresql.json")
    results.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"store: {args.store}")
    print(f"{'scenario':12} {'orders':>7} {'ledger/s':>9} {'no-ledger/s':>12} {'ratio':>7} {'cost':>7}  target")
    for row in rows:
        goal = TARGET_COST[args.store][row["scenario"]]
        verdict = "met" if row["cost"] < goal else "MISSED"
        print(
            f"{row['scenario']:12} {row['orders']:>7} {row['ledger_per_s']:>9.1f} {row['no_ledger_per_s']:>12.1f} "
            f"{row['ratio']:>7.3f} {row['cost']:>7.1%}  cost < {goal:.0%}: {verdict}"
        )
    print(f"written to {results}")


if __name__ == "__main__":
    main()
