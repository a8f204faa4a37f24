"""Hot rows: what it costs when every order takes from the same lot, on PostgreSQL.

    python -m benchmarks.contention [--orders 600] [--workers 4] [--rounds 3]

Each worker is its own process with its own material replica (its own connection pool), as Ray
would run it, reserving gold for orders through the real stage and store code, one order per
commit. Scenarios, alternated in rounds so that drift on this shared machine hits all alike:
- `distinct lots`: every worker takes from a lot of its own: no row is shared (the ceiling);
- `hot lot, 1 row`: every worker takes from one lot kept in one row;
- `hot lot, 8 rows`: the same lot spread over 8 sub-rows (the slotted counter, `ledger.stock_slots`).
Figures are orders/s and ratios to the ceiling. The server is the tests' throwaway PostgreSQL
(fsync off), so the commit's disk flush is not in the figures: row locks are. Writes
benchmarks/results/contention.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

from actors.ledger import LedgerSpec, open_ledger
from actors.models import Metal, StageName
from actors.stages import MaterialConfig, MaterialVerification, ReplicaContext
from benchmarks.foundation import machine
from tests.conftest import make_order
from tests.postgres_server import PostgresServer

RESULTS = Path(__file__).parent / "results" / "contention.json"
HALLMARKS = [Metal.AU750, Metal.AU585, Metal.AU999, Metal.PT950, Metal.PT900, Metal.AG925]


def _worker(url: str, slots: int, index: int, orders: int, metal: str, start: Any, done: Any) -> None:
    spec = LedgerSpec(url=url, stock_slots=slots)
    config = MaterialConfig(duration_s=0, metal_stock_g=dict.fromkeys(HALLMARKS, 10000000.0))
    replica = MaterialVerification(
        config, ReplicaContext(f"material-{index}", time_scale=0, ledger=spec, log_level="ERROR")
    )
    batch = [make_order(0, order_id=f"J{index:02d}{n:06d}", metal=metal, gemstones=[]) for n in range(orders)]
    start.wait()
    began = time.perf_counter()
    for order in batch:
        assert replica.process(order).status.value == "ok"
    done.put(time.perf_counter() - began)


def scenario(server: PostgresServer, name: str, slots: int, hot: bool, workers: int, orders: int) -> float:
    database = f"bench_{name.replace(' ', '_').replace(',', '')}_{time.monotonic_ns() % 10**8}"
    server.psql(f"CREATE DATABASE {database}")
    url = server.url.rsplit("/", 1)[0] + f"/{database}"
    open_ledger(LedgerSpec(url=url, stock_slots=slots), create=True).close()
    context = multiprocessing.get_context("spawn")
    start, done = context.Barrier(workers + 1), context.Queue()
    metals = [HALLMARKS[0] if hot else HALLMARKS[i % len(HALLMARKS)] for i in range(workers)]
    procs = [
        context.Process(target=_worker, args=(url, slots, i, orders, str(metals[i]), start, done))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    began = time.perf_counter()
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - began
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    ledger = open_ledger(LedgerSpec(url=url, stock_slots=slots))
    taken = sum(ledger.stock_changes().values()) - sum(ledger.inventory().values())
    assert len(ledger.effects_of(StageName.MATERIAL)) == workers * orders and taken > 0
    ledger.close()
    return workers * orders / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=600, help="orders per worker")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scenarios = {"distinct lots": (1, False), "hot lot, 1 row": (1, True), "hot lot, 8 rows": (8, True)}
    runs: dict[str, list[float]] = {name: [] for name in scenarios}
    server = PostgresServer()
    try:
        for round_ in range(args.rounds):
            names = list(scenarios) if round_ % 2 == 0 else list(reversed(scenarios))
            for name in names:
                slots, hot = scenarios[name]
                runs[name].append(scenario(server, name, slots, hot, args.workers, args.orders))
    finally:
        server.close()
    ceiling = statistics.median(runs["distinct lots"])
    rows = [
        {
            "scenario": name,
            "orders_per_s": round(statistics.median(r), 1),
            "runs_per_s": [round(x, 1) for x in r],
            "ratio_to_distinct_lots": round(statistics.median(r) / ceiling, 3),
        }
        for name, r in runs.items()
    ]
    result = {
        "machine": machine(),
        "workers": args.workers,
        "orders_per_worker": args.orders,
        "rounds": args.rounds,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for row in rows:
        print(
            f"{row['scenario']:<18} {row['orders_per_s']:>8.1f} orders/s  x{row['ratio_to_distinct_lots']:.3f} "
            f"of distinct lots   runs {row['runs_per_s']}"
        )


if __name__ == "__main__":
    main()
