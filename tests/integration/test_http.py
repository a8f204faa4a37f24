"""The HTTP front door on a real Ray Serve, on loopback, in front of a real serving system: orders
posted in batches by the CLI's client, read back by GET, one event stream read to its end, the
idempotency cases, and 401 and 503 produced for real.

One system and one front door for the module (a Serve start is a controller, a proxy and a replica:
three worker processes); each test sends its own orders."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from actors.ledger import open_ledger
from actors.models import STAGES, OrderStatus
from actors.models.messages import SubmitReceipt
from orchestration.cli import main
from orchestration.cli.http_submit import submit_over_http
from orchestration.wiring import dispatcher_name
from tests.integration.browser import routes_on_the_api_docs
from tests.integration.chaos import Killer
from tests.integration.front_door import ServingDoor, door_settings, fresh_orders, serving_door
from tests.support import free_port, wait_until

KEY = "integration-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORDERS = 500
TERMINAL = {status.value for status in (OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.DEAD_LETTERED)}


@pytest.fixture(scope="module")
def door(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingDoor]:
    out = tmp_path_factory.mktemp("http")
    settings = door_settings(
        "http", out, http={"port": free_port(), "api_keys": [KEY], "max_queued": 50, "max_batch": 100}
    )
    with serving_door(settings, out, KEY) as door:
        yield door


def assert_one_outcome_each(door: ServingDoor, posted: set[str], timeout_s: float) -> None:
    """Wait until the ledger has an outcome for every posted order, then: exactly one each, and no
    accepted order left without one."""
    with open_ledger(door.system.settings.ledger_spec()) as ledger:

        def concluded() -> list[str]:
            lines = [json.loads(line)["order_id"] for line in ledger.outcome_lines()]
            return lines if posted <= set(lines) else []

        recorded = wait_until(concluded, timeout_s=timeout_s, interval_s=0.5, what="every posted order concluded")
        assert Counter(order_id for order_id in recorded if order_id in posted) == Counter(posted), "one outcome each"
        assert ledger.unfinished_accepted() == []


def test_orders_posted_in_batches_each_get_one_outcome_and_answer_by_get(door: ServingDoor, tmp_path: Path) -> None:
    orders = fresh_orders(ORDERS, seed=4242)
    source = tmp_path / "shop.jsonl"
    source.write_text("".join(json.dumps(order) + "\n" for order in orders))
    # Batches of 100 against a queue of 50: every batch is answered busy for some orders, and the
    # client sends it again under the same key until each order is accepted.
    receipt = submit_over_http(door.url, source, KEY, batch_size=100)
    assert receipt.accepted == ORDERS and receipt.rejected == []
    again = submit_over_http(door.url, source, KEY, batch_size=100)  # the same command again: the same answers
    assert again.accepted == ORDERS

    posted = {order["order_id"] for order in orders}
    assert_one_outcome_each(door, posted, timeout_s=120)
    with door.client() as client:
        statuses = Counter(client.get(f"/v1/orders/{order_id}").json()["status"] for order_id in posted)
        assert set(statuses) <= TERMINAL and sum(statuses.values()) == ORDERS
        view = client.get(f"/v1/orders/{orders[0]['order_id']}").json()
        assert view["outcome"]["order_id"] == orders[0]["order_id"] and view["outcome"]["status"] == view["status"]
        trace = client.get(f"/v1/orders/{orders[0]['order_id']}/trace")
        assert trace.status_code == 200 and len(trace.json()["calls"]) == 6


def test_an_event_stream_reads_acceptance_each_stage_and_the_outcome_then_ends(door: ServingDoor) -> None:
    body = {k: v for k, v in fresh_orders(1, seed=9)[0].items() if k != "order_id"}  # the front door names it
    with door.client(**{"Idempotency-Key": f"sse-{uuid.uuid4()}"}) as client:
        accepted = client.post("/v1/orders", json=body)
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        events = []
        with client.stream("GET", f"{location}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for block in "".join(stream.iter_text()).strip().split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
                if fields:
                    events.append(fields)
    names = [event["event"] for event in events]
    assert names[0] == "accepted" and names[-1] == "outcome" and names.count("outcome") == 1
    stages = [json.loads(event["data"])["stage"] for event in events if event["event"] == "stage"]
    assert len(stages) == len(set(stages)) and 1 <= len(stages) <= 6
    ids = [int(event["id"], 16) for event in events]
    assert all(later > earlier and later & earlier == earlier for earlier, later in itertools.pairwise(ids))
    assert json.loads(events[-1]["data"])["order_id"] == accepted.json()["order_id"]


def test_idempotency_unauthorized_and_busy_for_real(door: ServingDoor) -> None:
    orders = fresh_orders(102, seed=77)
    key = f"k-{uuid.uuid4()}"
    with door.client(**{"Idempotency-Key": key}) as client:
        first = client.post("/v1/orders", json=orders[0])
        repeat = client.post("/v1/orders", json=orders[0])
        other = client.post("/v1/orders", json=orders[1])
        assert (first.status_code, repeat.status_code) == (202, 202) and first.json() == repeat.json()
        assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
        assert other.json()["type"].endswith("/idempotency-key-reused")
        missing = httpx.post(f"{door.url}/v1/orders", json=orders[1], headers=AUTH)
        assert missing.status_code == 400
        # The same key from eight clients at once: one acceptance; each other answer is it again or 409.
        race = {**AUTH, "Idempotency-Key": f"{key}-race"}
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: httpx.post(f"{door.url}/v1/orders", json=orders[1], headers=race), range(8))
            )
        assert {a.status_code for a in answers} <= {202, 409} and any(a.status_code == 202 for a in answers)
        assert len({a.json()["order_id"] for a in answers if a.status_code == 202}) == 1
        # A batch of 100 against a queue of 50: the orders past the queue's bound are refused, 503 each.
        batch = client.post("/v1/orders:batch", json={"orders": orders[2:]}, headers={"Idempotency-Key": f"{key}-b"})
        results: list[dict[str, Any]] = batch.json()["results"]
        busy = [r for r in results if r.get("status") == 503]
        assert batch.status_code == 200 and len(busy) >= 48 and all(r["type"].endswith("/busy") for r in busy)
        assert all(r["status"] == "accepted" for r in results if r not in busy)
    http = door.system.status(snapshots=False).producer["http"]  # what `status` shows of the backpressure
    assert http["answers"]["busy"] >= len(busy) and http["max_queued"] == 50
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        refused = httpx.post(f"{door.url}/v1/orders", json=orders[2], headers={**headers, "Idempotency-Key": "x"})
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{door.url}/readyz").status_code == 200
    assert httpx.get(f"{door.url}/healthz").json() == {"status": "up"}
    assert serve.status().applications["jewelry-fanout"].status == "RUNNING"


def test_a_real_browser_finds_every_route_on_the_api_docs(door: ServingDoor, tmp_path: Path) -> None:
    documented = set(httpx.get(f"{door.url}/openapi.json").json()["paths"])
    shown = routes_on_the_api_docs(door.url, tmp_path / "api-docs.png")
    assert documented >= {"/v1/orders", "/v1/orders:batch", "/v1/orders/{order_id}", "/healthz", "/readyz"}
    assert set(shown) == documented, (shown, documented)
    assert (tmp_path / "api-docs.png").stat().st_size > 10_000


def test_the_cli_posts_a_file_and_its_rerun_accepts_nothing_twice(
    door: ServingDoor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = fresh_orders(30, seed=55)
    source = tmp_path / "backlog.jsonl"
    source.write_text("".join(json.dumps(order) + "\n" for order in orders) + '{"order_id": "J1", "metal": "tin"}\n')
    monkeypatch.setenv("JEWELRY_HTTP__API_KEYS", json.dumps([KEY]))
    for _ in range(2):
        assert main(["submit", "--http", door.url, "--input", str(source)]) == 0
        said = capsys.readouterr().err
        assert "backlog.jsonl: 30 accepted, 1 rejected" in said and "line 31" in said
    monkeypatch.setenv("JEWELRY_HTTP__API_KEYS", json.dumps(["wrong"]))
    assert main(["submit", "--http", door.url, "--input", str(source)]) == 3
    assert "401" in capsys.readouterr().err


def test_replicas_a_shard_and_the_producer_killed_mid_way_lose_no_accepted_order_and_the_api_keeps_answering(
    door: ServingDoor, tmp_path: Path
) -> None:
    """Late in the module: it kills the shared system's actors (Ray brings each back)."""
    orders = fresh_orders(300, seed=31)
    source = tmp_path / "shop.jsonl"
    source.write_text("".join(json.dumps(order) + "\n" for order in orders))
    namespace = door.system.settings.namespace
    killer = Killer(namespace, dict.fromkeys(STAGES, 1), every_s=0.3)
    sent: list[SubmitReceipt] = []
    poster = threading.Thread(target=lambda: sent.append(submit_over_http(door.url, source, KEY, batch_size=50)))
    answered: Counter[int] = Counter()
    killer.start()
    poster.start()
    try:
        with door.client() as client:
            first = f"/v1/orders/{orders[0]['order_id']}"
            wait_until(lambda: client.get(first).status_code == 200, timeout_s=30, what="the first order accepted")
            ray.kill(ray.get_actor(dispatcher_name(0), namespace=namespace), no_restart=False)  # one shard, mid-way
            producer_killed = False
            while poster.is_alive():  # the API keeps answering reads while actors die and come back
                answered[client.get(first).status_code] += 1
                if not producer_killed and sum(answered.values()) >= 5:  # and the Producer, which takes up
                    ray.kill(ray.get_actor("producer", namespace=namespace), no_restart=False)  # what it accepted
                    producer_killed = True
                poster.join(timeout=0.2)
    finally:
        killer.stop.set()
        killer.join()
    assert sent and sent[0].accepted == len(orders) and sent[0].rejected == []
    assert set(answered) == {200} and sum(killer.kills.values()) >= 3, (answered, killer.kills)
    assert producer_killed
    assert_one_outcome_each(door, {order["order_id"] for order in orders}, timeout_s=180)


def test_a_run_that_stops_serving_answers_503_with_retry_after(door: ServingDoor) -> None:
    """Last: it ends the module's serving run."""
    door.system.drain()
    door.thread.join(timeout=120)
    assert door.result is not None and door.result.summary.lost == 0
    refused = httpx.post(
        f"{door.url}/v1/orders", json=fresh_orders(1, seed=66)[0], headers={**AUTH, "Idempotency-Key": "late"}
    )
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["type"].endswith("/unavailable") and "not taking orders" in refused.json()["detail"]
