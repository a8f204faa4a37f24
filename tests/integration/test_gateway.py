"""The gateway protections and scheduled orders on a real Ray Serve (two front door replicas), on
loopback, in front of a real serving system: a rate limit that holds across both replicas (429), a
stage whose carrier is down opening its breaker (503s, orders dead-lettered at once), healing until
it closes, and replay finishing the parked orders; a scheduled order cancelled, and one admitted
when due after the run was stopped and started again.

One system and one front door for the module; each test uses its own API key (its own bucket)."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import ray
from ray import serve
from rich.console import Console

from actors.ledger import open_ledger
from actors.models import OrderStatus, StageName
from orchestration.cli import main
from orchestration.render import render_status
from orchestration.wiring import replica_name
from tests.integration.front_door import ServingDoor, door_settings, fresh_orders, serving_door
from tests.support import free_port, wait_until

KEYS = {name: f"gateway-{name}" for name in ("rate", "breaker", "cancel", "due")}
RATE_PER_S = 2.0
OPEN_S = 2.0


@pytest.fixture(scope="module")
def door(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingDoor]:
    out = tmp_path_factory.mktemp("gateway")
    settings = door_settings(
        "gateway",
        out,
        # Back-offs of several seconds: an order retried at all would take seconds, not milliseconds.
        logistics={
            "retry": {"attempts": 3, "base_delay_s": 4.0, "max_delay_s": 8.0},
            # One failed call is enough to open (the rate over a window is the unit tests' business):
            # every order is then either in flight when it opens or held and sent as a trial call.
            "breaker": {"minimum_calls": 1, "window": 10, "open_s": OPEN_S, "half_open_calls": 12},
        },
        http={
            "port": free_port(),
            "api_keys": list(KEYS.values()),
            "rate_limit_per_s": RATE_PER_S,
            "replicas": 2,
        },
    )
    with serving_door(settings, out, KEYS["rate"]) as door:
        yield door


def post(client: httpx.Client, body: Any, key: str, polite: bool = True) -> httpx.Response:
    """POST one order; a polite client waits out a 429 (this module's keys allow 2 requests a second)."""
    while True:
        answer = client.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
        if answer.status_code != 429 or not polite:
            return answer
        time.sleep(float(answer.json()["retry_after_s"]))


def test_a_key_over_its_rate_limit_gets_429_and_the_limit_holds_across_both_replicas(door: ServingDoor) -> None:
    order, another = fresh_orders(2, seed=801)
    with door.client(KEYS["rate"]) as client:
        assert post(client, order, "rate-1").status_code == 202  # recorded: its repeats are answered from the ledger
        time.sleep(1.0)  # a full bucket again
        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:  # ten requests at once: the same order's repeats, cheap to answer
            answers = list(pool.map(lambda _: post(client, order, "rate-1", polite=False), range(10)))
        elapsed_s = time.monotonic() - started
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) == {202, 429}, codes
    # One bucket for the key, whichever replica took the request: a bucket per replica lets twice the burst by.
    assert codes[202] <= RATE_PER_S + RATE_PER_S * elapsed_s, (codes, elapsed_s)
    limited = next(answer for answer in answers if answer.status_code == 429)
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["type"].endswith("/rate-limited") and int(limited.headers["retry-after"]) >= 1
    deployment = serve.status().applications["jewelry-fanout"].deployments["front-door"]
    assert deployment.replica_states.get("RUNNING") == 2
    with door.client(KEYS["cancel"]) as other:  # another key has its own bucket
        assert post(other, another, "rate-1", polite=False).status_code == 202  # not 429


def test_a_stage_failing_every_call_opens_its_breaker_sheds_load_heals_and_replay_finishes_the_parked(
    door: ServingDoor,
) -> None:
    namespace = door.system.settings.namespace
    carrier = ray.get_actor(replica_name(StageName.LOGISTICS, 0), namespace=namespace)

    def carrier_down(stage: Any) -> None:
        def unreachable(order: Any) -> Any:
            raise ConnectionError("carrier API unreachable")

        stage.handle = unreachable

    ray.get(carrier.__ray_call__.remote(carrier_down))
    orders = fresh_orders(12, seed=802)
    parked = [order["order_id"] for order in orders]
    keys = (f"b-{i}" for i in itertools.count())
    ledger = open_ledger(door.system.settings.ledger_spec())
    try:
        with door.client(KEYS["breaker"]) as client:
            batch = client.post("/v1/orders:batch", json={"orders": orders}, headers={"Idempotency-Key": next(keys)})
            assert batch.status_code == 200 and {r["status"] for r in batch.json()["results"]} == {"accepted"}
            outcomes = wait_until(
                lambda: len(found := ledger.outcomes(parked)) == len(parked) and list(found.values()),
                timeout_s=30,
                interval_s=0.1,
                what="every order dead-lettered",
            )
            assert {o.status for o in outcomes} == {OrderStatus.DEAD_LETTERED}
            carrier_results = [o.results[StageName.LOGISTICS] for o in outcomes]
            # Those in flight when it opened, and those held and then sent as trial calls that failed: none
            # spent a retry (each would have waited a 4-8 s back-off first).
            assert [r.attempts for r in carrier_results] == [1] * len(parked), [r.reason for r in carrier_results]
            assert all("ConnectionError: carrier API unreachable" in (r.reason or "") for r in carrier_results)

            # New orders are refused while it is open; one that comes while it is half-open is a trial.
            def refused() -> httpx.Response | None:
                answer = post(client, fresh_orders(1, seed=803 + len(parked))[0], next(keys))
                if answer.status_code == 202:
                    parked.append(answer.json()["order_id"])  # held, then a failed trial or run once healed
                return answer if answer.status_code == 503 else None

            shed = wait_until(refused, timeout_s=15, interval_s=0.1, what="a new order refused while it is open")
            assert shed.json()["stages"] == ["logistics"] and shed.json()["type"].endswith("/stage-unavailable")
            assert int(shed.headers["retry-after"]) >= 1
            console = Console(record=True, width=200)
            render_status(console, door.system.status(snapshots=False))
            assert "circuit breakers: logistics OPEN" in console.export_text()

            ray.get(carrier.__ray_call__.remote(lambda stage: delattr(stage, "handle")))  # the carrier is back
            late = fresh_orders(3, seed=899)
            wait_until(
                lambda: post(client, late[0], f"late-{time.monotonic()}").status_code == 202,
                timeout_s=OPEN_S + 10,
                interval_s=0.3,
                what="orders taken again once trial calls may go",
            )
            for order in late[1:]:
                assert post(client, order, next(keys)).status_code == 202
            healed = wait_until(
                lambda: len(done := ledger.outcomes([o["order_id"] for o in late])) == 3 and done,
                timeout_s=30,
                what="the orders after the heal concluded",
            )
            assert {o.status for o in healed.values()} == {OrderStatus.COMPLETED}
            breakers = [b for shard in door.system.status(snapshots=False).dispatchers for b in shard.breakers]
            assert {b.state.value for b in breakers if b.stage == "logistics"} == {"closed"}
            assert max(b.opened for b in breakers if b.stage == "logistics") >= 1

        wait_until(lambda: len(ledger.outcomes(parked)) == len(parked), timeout_s=30, what="every trial concluded")
        dead = [o.order_id for o in ledger.outcomes(parked).values() if o.status is OrderStatus.DEAD_LETTERED]
        assert len(dead) >= 12  # (a probe accepted while it was open was held, and ran once it closed)
        for order_id in dead:  # the parked orders, completed by replay
            assert door.system.replay(order_id).status is OrderStatus.COMPLETED
        assert {o.status for o in ledger.outcomes(parked).values()} == {OrderStatus.COMPLETED}
    finally:
        ray.get(carrier.__ray_call__.remote(lambda stage: stage.__dict__.pop("handle", None)))
        ledger.close()


def test_a_scheduled_order_is_listed_then_cancelled_and_never_starts(
    door: ServingDoor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    due = datetime.now(UTC) + timedelta(hours=2)
    order = {**fresh_orders(1, seed=805)[0], "not_before": due.isoformat()}
    with door.client(KEYS["cancel"]) as client:
        accepted = post(client, order, "c-1")
        assert accepted.status_code == 202 and accepted.json()["status"] == "scheduled"
        assert client.get(f"/v1/orders/{order['order_id']}").json()["status"] == "scheduled"
    monkeypatch.setenv("JEWELRY_HTTP__API_KEYS", json.dumps([KEYS["cancel"]]))
    assert main(["scheduled", "--http", door.url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert order["order_id"] in [o["order_id"] for o in listed]
    assert main(["cancel", order["order_id"], "--http", door.url]) == 0
    assert "cancelled" in capsys.readouterr().err
    with door.client(KEYS["cancel"]) as client:
        view = client.get(f"/v1/orders/{order['order_id']}").json()
        assert view["status"] == "cancelled" and view["outcome"]["due_at"] is not None
        assert order["order_id"] not in [
            o["order_id"] for o in client.get("/v1/orders?status=scheduled").json()["orders"]
        ]
        assert client.delete(f"/v1/orders/{order['order_id']}").status_code == 200  # again: the same answer
        done = fresh_orders(1, seed=806)[0]
        assert post(client, done, "c-2").status_code == 202
        wait_until(lambda: client.get(f"/v1/orders/{done['order_id']}").json()["outcome"], timeout_s=30, what="done")
        too_late = client.delete(f"/v1/orders/{done['order_id']}")
        assert too_late.status_code == 409 and too_late.json()["type"].endswith("/order-started")
    assert main(["cancel", done["order_id"], "--http", door.url]) == 2


def test_a_scheduled_order_is_admitted_when_due_after_the_run_was_stopped_and_started_again(door: ServingDoor) -> None:
    """Last: it stops the module's serving run and starts another."""
    due = datetime.now(UTC) + timedelta(seconds=5)
    order = {**fresh_orders(1, seed=807)[0], "not_before": due.isoformat()}
    with door.client(KEYS["due"]) as client:
        assert post(client, order, "d-1").json()["status"] == "scheduled"
    door.system.drain()  # the run stops before the order is due: it stays in the ledger
    door.thread.join(timeout=120)
    assert door.result is not None and door.result.summary.scheduled == 1
    assert datetime.now(UTC) < due
    door.serve()  # a new serving run takes it up from the ledger
    with door.client(KEYS["due"]) as client:
        view = wait_until(
            lambda: (v := client.get(f"/v1/orders/{order['order_id']}").json())["outcome"] and v,
            timeout_s=60,
            interval_s=0.5,
            what="the scheduled order concluded",
        )
    outcome = view["outcome"]
    assert view["status"] == "completed"
    assert datetime.fromisoformat(outcome["due_at"]) == due
    assert datetime.fromisoformat(outcome["admitted_at"]) >= due  # never early
    assert datetime.fromisoformat(outcome["started_at"]) >= due
    with open_ledger(door.system.settings.ledger_spec()) as ledger:
        assert ledger.scheduled_states([order["order_id"]])[order["order_id"]].admitted_at is not None
        assert [json.loads(line)["order_id"] for line in ledger.outcome_lines()].count(order["order_id"]) == 1
