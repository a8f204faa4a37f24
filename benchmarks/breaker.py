"""What the circuit breaker saves when a stage fails every call: the time for N orders, all in flight,
to reach their terminal state (dead-lettered for replay), with the breaker and without it.

    python -m benchmarks.breaker [--orders 200] [--rounds 2] [--timeout-s 1.0]

Two ways a dependency fails:
- `hangs`: logistics does not answer (its carrier call outlasts the stage timeout); every attempt
  costs the timeout. Without a breaker each order spends all its attempts (3 by default) and the
  back-offs between them; with it, the first attempts' timeouts open it and every retry is cut.
- `fails`: logistics answers every call with an error at once (injected into the live replica);
  only the retries' back-offs are saved.
The stage timeout is scaled down (`--timeout-s`, default 1 s against the 300 s default) so that a
round takes seconds; the ratio is what carries over. Each round starts a fresh system per variant,
breaker first or second in turn, so that drift on this shared machine hits both alike; the figure
is the ratio of medians. Writes benchmarks/results/breaker.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from actors.intake.sources import SourceSpec
from actors.logs import configure_logging
from actors.models import StageName
from benchmarks.foundation import machine
from orchestration.settings import load_settings
from orchestration.system import FanoutSystem
from orchestration.wiring import replica_name

RESULTS = Path(__file__).parent / "results" / "breaker.json"
QUICK = {stage.value: {"duration_s": 0.0} for stage in StageName if stage is not StageName.LOGISTICS}


def carrier_down(stage: Any) -> None:
    """Make a live logistics replica fail every order at once, as a dead carrier API would."""

    def unreachable(order: Any) -> Any:
        raise ConnectionError("carrier API unreachable")

    stage.handle = unreachable


def one_run(name: str, mode: str, breaker: bool, orders: int, timeout_s: float, workdir: Path) -> dict[str, Any]:
    logistics: dict[str, Any] = {"timeout_s": timeout_s, "breaker": {"enabled": breaker}}
    if mode == "hangs":
        logistics["duration_s"] = 30.0 * timeout_s  # the carrier never answers within the timeout
    settings = load_settings(
        {
            "namespace": f"bench-{name}",
            "out_dir": str(workdir / name),
            "log_level": "ERROR",
            "time_scale": 1.0,
            "max_in_flight": orders,  # every order in flight: what the breaker cuts short
            "material": {"stock_multiplier": 10},
            **QUICK,
            "logistics": logistics,
        }
    )
    system = FanoutSystem.start(settings)
    try:
        if mode == "fails":
            replica = ray.get_actor(replica_name(StageName.LOGISTICS, 0), namespace=settings.namespace)
            ray.get(replica.__ray_call__.remote(carrier_down))
        started = time.perf_counter()
        result = system.run(SourceSpec(count=orders), keep_outcomes=True)
        elapsed = time.perf_counter() - started
        breakers = [b for shard in system.status(snapshots=False).dispatchers for b in shard.breakers]
    finally:
        system.shutdown()
    attempts = [o.results[StageName.LOGISTICS].attempts for o in result.outcomes]
    return {
        "terminal_s": round(elapsed, 3),
        "dead_lettered": result.summary.dead_lettered,
        "mean_logistics_attempts": round(statistics.fmean(attempts), 3),
        "breaker_opened": max((b.opened for b in breakers if b.stage == "logistics"), default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=1.0, help="logistics' stage timeout")
    args = parser.parse_args()
    configure_logging("ERROR")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    scenarios = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for mode in ("hangs", "fails"):
            runs: dict[str, list[dict[str, Any]]] = {"breaker": [], "no-breaker": []}
            for round_ in range(args.rounds):
                variants = ["breaker", "no-breaker"] if round_ % 2 == 0 else ["no-breaker", "breaker"]
                for variant in variants:
                    row = one_run(
                        f"{mode}-{variant}-{round_}", mode, variant == "breaker", args.orders, args.timeout_s, workdir
                    )
                    assert row["dead_lettered"] == args.orders, row
                    print(mode, variant, round_, row, flush=True)
                    runs[variant].append(row)
            with_breaker = statistics.median(r["terminal_s"] for r in runs["breaker"])
            without = statistics.median(r["terminal_s"] for r in runs["no-breaker"])
            scenarios.append(
                {
                    "mode": mode,
                    "orders": args.orders,
                    "timeout_s": args.timeout_s,
                    "runs": runs,
                    "breaker_terminal_s": with_breaker,
                    "no_breaker_terminal_s": without,
                    "ratio": round(with_breaker / without, 4),
                }
            )
    ray.shutdown()
    report = {
        "machine": machine(),
        "retry_policy": "3 attempts, full jitter 0.1 s doubling to 2 s",
        "scenarios": scenarios,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for s in scenarios:
        print(
            f"{s['mode']}: {s['orders']} orders terminal in {s['breaker_terminal_s']:.2f} s with the breaker, "
            f"{s['no_breaker_terminal_s']:.2f} s without: ratio {s['ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
