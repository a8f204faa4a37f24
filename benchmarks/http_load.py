"""The HTTP front door under load, against the same orders through the file source in the same run.

    pip install -e '.[bench]'    # Locust
    python -m benchmarks.http_load [--orders 3000] [--users 4] [--batch 50] [--rounds 2] [--time-scale 0]

One system (the CLI's: `FanoutSystem` on the embedded Ray, a new ledger) with its front door on
loopback. Each round, alternating which goes first: `orders` through a file run; then as many others
posted in batches by a bounded, headless Locust run (`benchmarks/http_locustfile.py`: `users` shops
posting their backlog, each batch sent again under its key while it is answered busy) into a serving
run, until every one of them has its outcome. Then a run above the limit (twice the shops, each
batch a share of the whole queue: only 503s may be refused) and one below it (one shop offering
about half of the file run's rate: no error at all).

Reported: accepted and concluded orders/s over HTTP, their ratio to the file run's orders/s (target
at least 0.8), the batch POST latency (p50/p95/p99, Locust's), the end-to-end latency (accepted to
outcome, from the ledger), every status code answered, and the audit: every accepted order has
exactly one outcome. Writes benchmarks/results/http_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from actors.intake.samples import generate_orders
from actors.intake.sources import SourceSpec
from actors.ledger import SqlLedger, open_ledger
from actors.logs import configure_logging
from benchmarks.cpu import by_kind, process_cpu_s
from benchmarks.foundation import machine
from benchmarks.suite import ZERO_WAIT
from orchestration.http.ingress import start_front_door, stop_front_door
from orchestration.settings import load_settings
from orchestration.system import FanoutSystem, RunResult
from tests.support import free_port

RESULTS = Path(__file__).parent / "results" / "http_load.json"
LOCUSTFILE = Path(__file__).parent / "http_locustfile.py"
KEY = "bench-key"


def locust(
    url: str, orders: Path, workdir: Path, users: int, batch: int, pause_s: float, limit_s: int
) -> dict[str, Any]:
    """A bounded headless Locust run posting every order of the file; its batch latency and codes."""
    prefix, codes = workdir / orders.stem, workdir / f"{orders.stem}.codes.json"
    env = {
        **os.environ,
        "JEWELRY_BENCH_ORDERS": str(orders),
        "JEWELRY_BENCH_BATCH": str(batch),
        "JEWELRY_BENCH_PAUSE_S": str(pause_s),
        "JEWELRY_BENCH_KEY": KEY,
        "JEWELRY_BENCH_CODES": str(codes),
    }
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    command += ["-u", str(users), "-r", str(users), "-t", f"{limit_s}s", "--csv", str(prefix), "--host", url]
    finished = subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=limit_s + 60)
    if not codes.exists():
        raise RuntimeError(f"locust wrote no results: {finished.stderr[-2000:]}")
    written: dict[str, Any] = json.loads(codes.read_text())
    return written


def audited(ledger: SqlLedger, order_ids: list[str]) -> dict[str, Any]:
    """Accepted and concluded rates and the end-to-end latency of these orders, from the ledger; every
    one accepted has exactly one outcome (its key is the order id)."""
    marks = ",".join("?" * len(order_ids))
    accepted = dict(
        ledger._read(f"SELECT order_id, accepted_at FROM accepted_orders WHERE order_id IN ({marks})", order_ids)
    )
    outcomes = [json.loads(line) for line in ledger.outcome_lines()]
    finished = {
        o["order_id"]: datetime.fromisoformat(o["finished_at"]).timestamp()
        for o in outcomes
        if o["order_id"] in accepted
    }
    counts = [o["order_id"] for o in outcomes if o["order_id"] in accepted]
    if not len(accepted) == len(order_ids) == len(finished) == len(counts):
        raise AssertionError(
            f"{len(order_ids)} posted, {len(accepted)} accepted, {len(finished)} concluded, {len(counts)} outcomes"
        )
    first, last_accepted, last_done = min(accepted.values()), max(accepted.values()), max(finished.values())
    e2e = sorted((finished[i] - accepted[i]) * 1000 for i in accepted)
    return {
        "orders": len(order_ids),
        "accepted_per_s": len(order_ids) / (last_accepted - first),
        "concluded_per_s": len(order_ids) / (last_done - first),
        "end_to_end_ms": {q: _quantile(e2e, int(q) / 100) for q in ("50", "95", "99")},
    }


def _quantile(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def orders_file(path: Path, count: int, prefix: str, seed: int) -> SourceSpec:
    """Orders under ids and certificates of their own: every file of a run shares one ledger, and an
    order whose stone another already holds would fail and be compensated, a costlier order."""
    orders = list(generate_orders(count + 3, seed=seed))[3:]  # not the three fixed sample orders
    lines = (
        o.model_copy(update={"order_id": f"{prefix}{i:07d}"}).model_dump_json() + "\n" for i, o in enumerate(orders)
    )
    path.write_text("".join(lines), encoding="utf-8")
    return SourceSpec(path=path)


def concluded(ledger: SqlLedger, order_ids: list[str]) -> int:
    """How many of the orders have an outcome: a count, so that waiting costs the machine nothing."""
    marks = ",".join("?" * len(order_ids))
    query = f"SELECT COUNT(*) FROM outcomes WHERE order_id IN ({marks})"
    return int(ledger._read(query, order_ids)[0][0])


def cpu_ms_per_order(before: dict[int, tuple[str, float]], orders: int) -> dict[str, float]:
    """CPU per order since `before`, by kind of process, and the whole machine's."""
    spent = by_kind(before, process_cpu_s())
    spent = {kind: round(cpu_s * 1000 / orders, 2) for kind, cpu_s in sorted(spent.items()) if cpu_s > 0.05}
    return {**spent, "whole machine": round(sum(spent.values()), 2)}


def file_round(system: FanoutSystem, spec: SourceSpec, orders: int) -> dict[str, Any]:
    before = process_cpu_s()
    summary = system.run(spec).summary
    return {"per_s": summary.throughput_per_s, "cpu_ms_per_order": cpu_ms_per_order(before, orders)}


def http_round(system: FanoutSystem, url: str, orders: Path, workdir: Path, **load: Any) -> dict[str, Any]:
    """A serving run fed over HTTP until every order of the file has its outcome."""
    result: list[RunResult] = []
    serving = threading.Thread(target=lambda: result.append(system.run(SourceSpec(count=0), serve=True)))
    serving.start()
    ids = [json.loads(line)["order_id"] for line in orders.read_text().splitlines()]
    try:
        before = process_cpu_s()
        posted = locust(url, orders, workdir, **load)
        with open_ledger(system.settings.ledger_spec()) as ledger:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and concluded(ledger, ids) < len(ids):
                time.sleep(0.5)
            cpu = cpu_ms_per_order(before, len(ids))
            return {**posted, **audited(ledger, ids), "cpu_ms_per_order": cpu}
    finally:
        system.drain()
        serving.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--time-scale", type=float, default=0.0)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--queue", type=int, default=1000, help="http.max_queued (its default)")
    args = parser.parse_args()
    configure_logging("WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    settings = load_settings(
        {
            **ZERO_WAIT,
            "time_scale": args.time_scale,
            "namespace": "bench-http",
            "log_level": "WARNING",
            "artifacts": False,
            "out_dir": str(workdir),
            "max_in_flight": args.in_flight,
            "http": {"port": free_port(), "api_keys": [KEY], "max_queued": args.queue, "max_batch": 500},
        }
    )
    system = FanoutSystem.start(settings)
    url = start_front_door(settings)
    rounds: list[dict[str, Any]] = []
    try:
        system.run(orders_file(workdir / "warm.jsonl", 50, prefix="J9", seed=9))
        for r in range(args.rounds):
            file_spec = orders_file(workdir / f"file{r}.jsonl", args.orders, prefix=f"J1{r}", seed=100 + r)
            http_orders = orders_file(workdir / f"http{r}.jsonl", args.orders, prefix=f"J2{r}", seed=200 + r).path
            assert http_orders is not None
            load = {"users": args.users, "batch": args.batch, "pause_s": 0.0, "limit_s": 600}
            measured: dict[str, Any] = {}
            for kind in ("file", "http") if r % 2 == 0 else ("http", "file"):
                if kind == "file":
                    measured["file"] = file_round(system, file_spec, args.orders)
                    measured["file_per_s"] = measured["file"]["per_s"]
                else:
                    measured["http"] = http_round(system, url, http_orders, workdir, **load)
            measured["ratio"] = measured["http"]["concluded_per_s"] / measured["file_per_s"]
            print(f"round {r}: {measured}", flush=True)
            rounds.append(measured)
        # Above the limit: shops offering more at once than the queue holds; then below it: one shop
        # offering about half what the file run reached.
        above_orders = orders_file(workdir / "above.jsonl", args.orders, prefix="J31", seed=301).path
        assert above_orders is not None
        above_load = {"users": 2 * args.users, "batch": max(1, args.queue // args.users), "pause_s": 0.0}
        above = http_round(system, url, above_orders, workdir, limit_s=600, **above_load)
        file_rate = statistics.median(m["file_per_s"] for m in rounds)
        below_orders = orders_file(workdir / "below.jsonl", min(args.orders, 1000), prefix="J30", seed=300).path
        assert below_orders is not None
        pause_s = args.batch / (0.5 * file_rate)
        below = http_round(system, url, below_orders, workdir, users=1, batch=args.batch, pause_s=pause_s, limit_s=600)
    finally:
        stop_front_door()
        system.shutdown()
    ratios = [m["ratio"] for m in rounds]
    report = {
        "machine": machine(),
        "command": "python -m benchmarks.http_load " + " ".join(sys.argv[1:]),
        "settings": vars(args),
        "rounds": rounds,
        "ratio_median": statistics.median(ratios),
        "target_ratio": 0.8,
        "above_the_limit": {**above, **above_load},
        "below_the_limit": {**below, "offered_per_s": round(args.batch / pause_s, 1)},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ratio_median", "above_the_limit", "below_the_limit")}, indent=2))


if __name__ == "__main__":
    main()
