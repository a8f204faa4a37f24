"""Locust's users for `benchmarks.http_load`: web shops posting their backlog to the front door.

Each user takes the next batch of the order file (`JEWELRY_BENCH_ORDERS`, `JEWELRY_BENCH_BATCH`
orders a batch) and posts it under its own idempotency key (the file's name and the batch's place)
until every order of it is accepted: a batch answered busy for some orders, or 503 as a whole, is
sent again under the same key. When the file is used up, the last user ends the run. Every answer's
status code is counted and written to `JEWELRY_BENCH_CODES` when the run stops, with each POST's
latency quantiles.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, task
from locust.exception import StopUser

BATCH = int(os.environ.get("JEWELRY_BENCH_BATCH", "50"))
PAUSE_S = float(os.environ.get("JEWELRY_BENCH_PAUSE_S", "0"))  # between a user's batches: the offered load
KEY = os.environ.get("JEWELRY_BENCH_KEY", "")
SOURCE = Path(os.environ["JEWELRY_BENCH_ORDERS"]).name  # a batch's key: its file and its place in it
CODES: Counter[str] = Counter()
LATENCIES_MS: list[float] = []
_state: dict[str, Any] = {"active": 0}


def _batches() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    orders = [json.loads(line) for line in Path(os.environ["JEWELRY_BENCH_ORDERS"]).read_text().splitlines()]
    for number, start in enumerate(range(0, len(orders), BATCH)):
        yield number, orders[start : start + BATCH]


BATCHES = _batches()


class Shop(FastHttpUser):
    wait_time = between(PAUSE_S * 0.5, PAUSE_S * 1.5) if PAUSE_S else constant(0)

    def on_start(self) -> None:
        _state["active"] += 1

    @task
    def post_backlog(self) -> None:
        taken = next(BATCHES, None)
        if taken is None:
            _state["active"] -= 1
            if _state["active"] == 0:
                self.environment.runner.quit()
            raise StopUser()
        number, orders = taken
        headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": f"{SOURCE}-{number}"}
        while True:
            sent = time.perf_counter()
            with self.client.post(
                "/v1/orders:batch", json={"orders": orders}, headers=headers, catch_response=True, name="batch"
            ) as response:
                LATENCIES_MS.append((time.perf_counter() - sent) * 1000)
                CODES[str(response.status_code)] += 1
                if response.status_code == 200:
                    results = response.json()["results"]
                    busy = sum(1 for result in results if result.get("status") == 503)
                    CODES["item 503"] += busy
                    response.success()
                    if not busy:
                        return
                    time.sleep(0.05)
                elif response.status_code == 503:
                    response.failure("503")
                    time.sleep(float(response.headers.get("retry-after", "1")))
                else:
                    response.failure(f"HTTP {response.status_code}")
                    return


@events.quitting.add_listener
def _write_codes(**_: Any) -> None:
    latencies = sorted(LATENCIES_MS) or [0.0]
    quantiles = {q: round(latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))], 1) for q in (50, 95, 99)}
    written = {"codes": CODES, "posts": len(LATENCIES_MS), "post_latency_ms": quantiles}
    Path(os.environ["JEWELRY_BENCH_CODES"]).write_text(json.dumps(written))
