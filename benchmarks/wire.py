"""What a record costs to cross between actors, in each form: one model per item as its own JSON
(`JsonPickled`, what every record used before the batch became the unit) against the forms used now.

    python -m benchmarks.wire [--orders 200]

Each form is pickled with Ray's cloudpickle and loaded back, as a call carries it; the best of
seven rounds, in µs per item. Writes benchmarks/results/wire.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray import cloudpickle

from actors.intake.samples import generate_orders
from actors.logs import configure_logging
from actors.models import STAGES, EncodedOutcome, JewelryOrder, OrderOutcome, StageResult
from actors.models.wire import ModelArray, dumped
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from benchmarks.foundation import machine
from orchestration.digest import digest

RESULTS = Path(__file__).parent / "results" / "wire.json"


def crossed(value: Any) -> Any:
    return pickle.loads(cloudpickle.dumps(value))


def best_us_per_item(work: Callable[[], object], items: int, rounds: int = 7) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return round(best / items * 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    configure_logging("WARNING")
    orders = list(generate_orders(args.orders, seed=1))
    replicas = [STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)) for s in STAGES]
    rows = [[replica.process(order) for replica in replicas] for order in orders]
    results = [result for row in rows for result in row]
    now = datetime.now(UTC)
    outcomes = [OrderOutcome.from_results(o, row, now, now) for o, row in zip(orders, rows, strict=True)]
    made_once = [dumped(order) for order in orders]

    def outcomes_encoded() -> list[EncodedOutcome]:  # Dispatcher -> Producer -> driver
        encoded: list[EncodedOutcome] = crossed(crossed([EncodedOutcome.of(outcome) for outcome in outcomes]))
        return encoded

    forms = {
        "order to a stage, JsonPickled each": (lambda: crossed(orders), len(orders)),
        "order to a stage, in a ModelArray joined from JSON made once": (
            lambda: crossed(ModelArray.joined(JewelryOrder, made_once)),
            len(orders),
        ),
        "stage result, JsonPickled each": (lambda: crossed(results), len(results)),
        "stage result, in a ModelArray": (lambda: crossed(ModelArray.of(StageResult, results)), len(results)),
        "outcome to the driver via the Producer, JsonPickled": (lambda: crossed(crossed(outcomes)), len(outcomes)),
        "outcome to the driver via the Producer, EncodedOutcome, digested": (
            lambda: [digest(e) for e in outcomes_encoded()],
            len(outcomes),
        ),
        "outcome to the driver via the Producer, EncodedOutcome, decoded whole": (
            lambda: [e.decoded() for e in outcomes_encoded()],
            len(outcomes),
        ),
    }
    measured = {name: best_us_per_item(work, items) for name, (work, items) in forms.items()}
    RESULTS.write_text(json.dumps({"machine": machine(), "us_per_item": measured}, indent=2) + "\n", encoding="utf-8")
    for name, us in measured.items():
        print(f"{name:72} {us:8.1f} µs/item")


if __name__ == "__main__":
    main()
