"""The HTTP API through httpx's ASGI transport, with no Ray: the routes over a fake backend whose
acceptance is the real one (`HttpIntake` and the run's acceptance rule over a real SQLite ledger),
so idempotency, backpressure and what the ledger keeps are the real thing; only the Producer's actor
call and its queue are stand-ins."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.intake.accept import Acceptance, Accepted
from actors.intake.http_intake import HttpIntake, HttpLimits
from actors.intake.intake_run import cancel_scheduled
from actors.intake.rate_limit import RateLimiter
from actors.ledger import SqlLedger, open_ledger
from actors.ledger.requests import AcceptedRequest
from actors.ledger.schedule import Cancelled, Scheduled
from actors.ledger.spec import LedgerSpec
from actors.models import STAGES, JewelryOrder, OrderOutcome, RejectedRecord, StageResult, StageStatus
from actors.models.breakers import BreakerSnapshot, BreakerState
from actors.models.submissions import OrderProgress, Submission, SubmissionAnswer
from orchestration.http.api import ApiConfig, build_api
from orchestration.trace import UnknownOrder, trace_order
from tests.conftest import order_dict
from tests.fakes import ManualClock

KEY = "shop-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
OTHER_SHOP = {"Authorization": "Bearer shop-key-2"}


class FakeProducer:
    """The Producer's part of the bargain, in this process: the real acceptance over a real ledger;
    accepted orders go to `queued` instead of shards."""

    def __init__(self, ledger: SqlLedger, room: int = 100, rate_per_s: float | None = None) -> None:
        self.ledger = ledger
        self.room = room
        self.queued: list[JewelryOrder] = []
        self.parts = {"producer": "ok", "dispatcher-0": "ok"}
        self.acceptance = Acceptance(ledger)
        self.open_stages: list[BreakerSnapshot] = []
        self.clock = ManualClock(50.0)
        self.intake = HttpIntake(
            "run-1",
            ledger,
            lambda order, source, line: self.acceptance.accept(order, source, line),
            self.acceptance.forget,
            lambda: self.room - len(self.queued),
            self._queue,
            HttpLimits(retry_after_s=3.0),
            lambda: self.open_stages,
            RateLimiter(rate_per_s, clock=self.clock) if rate_per_s else None,
        )

    def _queue(self, accepted: list[Accepted]) -> None:
        self.queued.extend(verdict.order for verdict in accepted)

    async def accept(self, submissions: list[Submission]) -> list[SubmissionAnswer]:
        return await self.intake.accept(submissions)

    async def progress(self, order_id: str) -> OrderProgress | None:
        return self.ledger.order_progress(order_id)

    async def cancel(self, order_id: str) -> Cancelled:
        result, _ = await cancel_scheduled(self.ledger, order_id)
        return result

    async def scheduled(self, limit: int, after: tuple[float, str] | None) -> list[Scheduled]:
        return self.ledger.waiting_scheduled(limit, after)

    async def trace(self, order_id: str) -> dict[str, Any] | None:
        try:
            return trace_order(self.ledger, order_id).model_dump(mode="json")
        except UnknownOrder:
            return None

    async def readiness(self) -> dict[str, str]:
        return dict(self.parts)


@pytest.fixture
def ledger(tmp_path: Path, closing: Callable[[Any], Any]) -> SqlLedger:
    return closing(open_ledger(LedgerSpec(path=tmp_path / "ledger.sqlite3"), create=True))  # type: ignore[no-any-return]


@pytest.fixture
def producer(ledger: SqlLedger) -> FakeProducer:
    return FakeProducer(ledger)


def call(
    producer: FakeProducer, *requests: tuple[str, str, dict[str, Any]], max_batch: int = 5
) -> list[httpx.Response]:
    """Send the requests at once, through the app, and return the responses in order."""
    digests = tuple(hashlib.sha256(key.encode()).hexdigest() for key in (KEY, "shop-key-2"))
    app = build_api(producer, ApiConfig(key_digests=digests, max_batch=max_batch))

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as client:
            return list(await asyncio.gather(*(client.request(m, url, **kw) for m, url, kw in requests)))

    return asyncio.run(scenario())


def post(body: Any, key: str | None = "k-1", auth: dict[str, str] = AUTH) -> tuple[str, str, dict[str, Any]]:
    headers = {**auth, **({"Idempotency-Key": key} if key is not None else {})}
    return ("POST", "/v1/orders", {"json": body, "headers": headers})


def get(url: str, **headers: str) -> tuple[str, str, dict[str, Any]]:
    return ("GET", url, {"headers": {**AUTH, **headers}})


def is_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].endswith("/" + slug) and body["title"] and body["detail"]
    return body


def test_an_order_is_accepted_once_recorded_with_its_key_and_queued(producer, ledger):
    [response] = call(producer, post(order_dict(0)))
    assert response.status_code == 202
    order_id = order_dict(0)["order_id"]
    assert response.json() == {"order_id": order_id, "status": "accepted"}
    assert response.headers["location"] == f"/v1/orders/{order_id}"
    assert [order.order_id for order in producer.queued] == [order_id]
    assert ledger.unfinished_accepted() and json.loads(ledger.unfinished_accepted()[0])["order_id"] == order_id
    [status] = call(producer, get(f"/v1/orders/{order_id}"))
    assert status.json() == {"order_id": order_id, "status": "accepted", "outcome": None}


def test_an_order_without_an_id_gets_one_and_its_repeat_gets_the_same_one(producer):
    body = {k: v for k, v in order_dict(1).items() if k != "order_id"}
    first, again = call(producer, post(body, key="no-id")), call(producer, post(body, key="no-id"))
    assert first[0].status_code == again[0].status_code == 202
    assert first[0].json() == again[0].json() and first[0].json()["order_id"].startswith("J")
    assert len(producer.queued) == 1


def test_the_same_key_and_body_answer_the_same_another_body_is_422_and_nothing_is_queued_twice(producer):
    [first] = call(producer, post(order_dict(0), key="k"))
    [repeat] = call(producer, post(order_dict(0), key="k"))
    [other] = call(producer, post(order_dict(2), key="k"))
    assert (first.status_code, repeat.status_code) == (202, 202) and first.json() == repeat.json()
    body = is_problem(other, 422, "idempotency-key-reused")
    assert body["errors"] == [{"field": "Idempotency-Key", "reason": "already used with another body"}]
    assert len(producer.queued) == 1


def test_the_same_key_while_its_first_request_is_being_accepted_is_409(producer, ledger):
    recording, release = threading.Event(), threading.Event()
    real = ledger.accept_requests

    def slow(run_id: str, client: str, accepted: Sequence[AcceptedRequest]) -> None:
        recording.set()
        release.wait(5)
        real(run_id, client, accepted)

    ledger.accept_requests = slow  # type: ignore[method-assign]  # holds the first request in its transaction
    threading.Timer(0.5, release.set).start()
    first, second = call(producer, post(order_dict(0), key="same"), post(order_dict(0), key="same"))
    assert recording.is_set()
    assert sorted([first.status_code, second.status_code]) == [202, 409]
    is_problem(first if first.status_code == 409 else second, 409, "request-in-progress")
    assert len(producer.queued) == 1


def test_a_missing_key_is_400_and_a_missing_or_wrong_api_key_is_401(producer):
    missing = call(producer, post(order_dict(0), key=None))[0]
    assert is_problem(missing, 400, "idempotency-key-required")["errors"][0]["field"] == "Idempotency-Key"
    for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        refused = call(producer, post(order_dict(0), auth=auth), ("GET", "/v1/orders/J2025001", {"headers": auth}))
        for response in refused:
            is_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
    assert call(producer, ("GET", "/healthz", {}))[0].json() == {"status": "up"}
    assert producer.queued == []


def test_an_invalid_body_names_every_field_at_fault_and_nothing_is_accepted(producer, ledger):
    bad = order_dict(0, metal="tin", ring_size=-3)
    body = is_problem(call(producer, post(bad))[0], 422, "invalid-order")
    assert {error["field"] for error in body["errors"]} >= {"metal", "ring_size"}
    not_json = call(
        producer, ("POST", "/v1/orders", {"content": b"{nope", "headers": {**AUTH, "Idempotency-Key": "x"}})
    )
    assert is_problem(not_json[0], 422, "invalid-body")["errors"][0]["field"] == "<body>"
    assert producer.queued == [] and ledger.unfinished_accepted() == []
    assert ledger.stored_requests(hashlib.sha256(KEY.encode()).hexdigest()[:16], ["k-1", "x"]) == {}


def test_a_taken_order_id_is_refused_by_the_acceptance_rule(producer):
    call(producer, post(order_dict(0), key="a"))
    [again] = call(producer, post(order_dict(0), key="b"))
    body = is_problem(again, 422, "order-refused")
    assert body["errors"][0]["field"] == "order_id" and "already accepted" in body["errors"][0]["reason"]


def test_a_batch_answers_item_by_item_in_order_and_refuses_more_than_its_bound(producer):
    orders = [order_dict(0), order_dict(1, metal="tin"), order_dict(2)]
    headers = {**AUTH, "Idempotency-Key": "batch-1"}
    [response] = call(producer, ("POST", "/v1/orders:batch", {"json": {"orders": orders}, "headers": headers}))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r.get("order_id") for r in results] == [orders[0]["order_id"], None, orders[2]["order_id"]]
    assert results[0]["status"] == results[2]["status"] == "accepted"
    assert results[1]["status"] == 422 and results[1]["errors"][0]["field"] == "orders.1.metal"
    [repeat] = call(producer, ("POST", "/v1/orders:batch", {"json": {"orders": orders}, "headers": headers}))
    assert repeat.json() == response.json() and len(producer.queued) == 2
    too_many = {"orders": [order_dict(i % 3, order_id=f"J30000{i:02d}") for i in range(6)]}
    [refused] = call(producer, ("POST", "/v1/orders:batch", {"json": too_many, "headers": headers}))
    assert is_problem(refused, 413, "batch-too-large")["errors"][0]["field"] == "orders"
    [no_key] = call(producer, ("POST", "/v1/orders:batch", {"json": {"orders": orders}, "headers": AUTH}))
    is_problem(no_key, 400, "idempotency-key-required")


def test_a_full_queue_answers_503_with_retry_after_and_accepts_nothing_beyond_it(producer, ledger):
    producer.room = 1
    headers = {**AUTH, "Idempotency-Key": "b"}
    orders = {"orders": [order_dict(0), order_dict(1)]}
    [partial] = call(producer, ("POST", "/v1/orders:batch", {"json": orders, "headers": headers}))
    first, busy = partial.json()["results"]
    assert first["status"] == "accepted" and busy["status"] == 503 and busy["type"].endswith("/busy")
    [single] = call(producer, post(order_dict(2), key="c"))
    is_problem(single, 503, "busy")
    assert single.headers["retry-after"] == "3"
    assert len(producer.queued) == 1 and len(ledger.unfinished_accepted()) == 1
    producer.queued.clear()  # the queue drained: the same request is accepted now
    [later] = call(producer, post(order_dict(2), key="c"))
    assert later.status_code == 202


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_another_key_is_not_held_back(ledger):
    producer = FakeProducer(ledger, rate_per_s=2.0)
    first = call(producer, post(order_dict(0), key="r0"), post(order_dict(1), key="r1"))  # the burst: 2
    assert [r.status_code for r in first] == [202, 202]
    [limited] = call(producer, post(order_dict(2), key="r2"))
    body = is_problem(limited, 429, "rate-limited")
    assert limited.headers["retry-after"] == "1" and body["retry_after_s"] == pytest.approx(0.5)
    [other] = call(producer, post(order_dict(2), key="r2", auth=OTHER_SHOP))  # its own bucket
    assert other.status_code == 202
    assert len(ledger.unfinished_accepted()) == 3  # the refused request left nothing behind
    producer.clock.now += 0.5  # a token back
    [later] = call(
        producer,
        (
            "POST",
            "/v1/orders:batch",
            {"json": {"orders": [order_dict(0, order_id="J2025777")]}, "headers": {**AUTH, "Idempotency-Key": "b"}},
        ),
    )
    assert later.status_code == 200 and later.json()["results"][0]["status"] == "accepted"
    [batch_limited] = call(
        producer,
        (
            "POST",
            "/v1/orders:batch",
            {"json": {"orders": [order_dict(1, order_id="J2025778")]}, "headers": {**AUTH, "Idempotency-Key": "c"}},
        ),
    )
    assert is_problem(batch_limited, 429, "rate-limited") and batch_limited.headers["retry-after"] == "1"


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst():
    clock = ManualClock(50.0)
    bucket = RateLimiter(4.0, clock=clock)
    assert [bucket.take("a") for _ in range(4)] == [0.0] * 4
    assert bucket.take("a") == pytest.approx(0.25)
    clock.now += 100  # idle for long: the burst, not 400 tokens
    assert [bucket.take("a") for _ in range(5)][-1] == pytest.approx(0.25)


def test_while_a_stage_is_open_a_new_order_gets_503_naming_it_and_a_repeat_still_gets_its_answer(producer, ledger):
    [accepted] = call(producer, post(order_dict(0), key="s0"))
    producer.open_stages = [
        BreakerSnapshot(
            stage="logistics",
            state=BreakerState.OPEN,
            failure_rate=100.0,
            calls=20,
            retry_after_s=7.2,
            opened=1,
            refused=0,
        )
    ]
    [refused] = call(producer, post(order_dict(1), key="s1"))
    body = is_problem(refused, 503, "stage-unavailable")
    assert body["stages"] == ["logistics"] and refused.headers["retry-after"] == "8" and "logistics" in body["detail"]
    [repeat] = call(producer, post(order_dict(0), key="s0"))  # costs the stages nothing: answered
    assert repeat.status_code == 202 and repeat.json() == accepted.json()
    assert len(ledger.unfinished_accepted()) == 1


def test_scheduled_orders_are_listed_soonest_first_page_by_page_and_one_not_started_is_cancelled(producer, ledger):
    soon, later = "2031-03-01T09:00:00+00:00", "2031-03-20T09:00:00+08:00"
    answers = call(
        producer,
        post(order_dict(0, order_id="J2031001", not_before=later), key="a"),
        post(order_dict(1, order_id="J2031002", not_before=soon), key="b"),
        post(order_dict(2, order_id="J2031003"), key="c"),  # not scheduled
    )
    assert [r.json()["status"] for r in answers] == ["scheduled", "scheduled", "accepted"]
    [shown] = call(producer, get("/v1/orders/J2031001"))
    assert shown.json()["status"] == "scheduled"
    [page] = call(producer, get("/v1/orders?status=scheduled&limit=1"))
    first = page.json()
    assert [o["order_id"] for o in first["orders"]] == ["J2031002"] and first["orders"][0]["not_before"].startswith(
        "2031-03-01T09:00"
    )
    [rest] = call(producer, get(f"/v1/orders?status=scheduled&limit=1&after={first['next']}"))
    assert [o["order_id"] for o in rest.json()["orders"]] == ["J2031001"]
    [bad] = call(producer, get("/v1/orders?status=running"))
    assert is_problem(bad, 422, "invalid-query")["errors"][0]["field"] == "status"

    [cancelled, again, unknown, not_scheduled] = call(
        producer,
        ("DELETE", "/v1/orders/J2031001", {"headers": AUTH}),
        ("DELETE", "/v1/orders/J2031001", {"headers": AUTH}),
        ("DELETE", "/v1/orders/J2099999", {"headers": AUTH}),
        ("DELETE", "/v1/orders/J2031003", {"headers": AUTH}),
    )
    assert cancelled.status_code == 200 and cancelled.json() == {"order_id": "J2031001", "status": "cancelled"}
    assert again.status_code == 200  # DELETE is idempotent
    is_problem(unknown, 404, "unknown-order")
    is_problem(not_scheduled, 409, "order-started")  # an order that was never scheduled is under way
    ledger.admit_scheduled("J2031002", datetime(2031, 3, 1, 9, tzinfo=UTC).timestamp())  # it fell due and started
    [started] = call(producer, ("DELETE", "/v1/orders/J2031002", {"headers": AUTH}))
    is_problem(started, 409, "order-started")
    [gone] = call(producer, get("/v1/orders?status=scheduled"))
    assert gone.json() == {"orders": [], "next": None}
    [view] = call(producer, get("/v1/orders/J2031001"))
    assert view.json()["status"] == "cancelled"
    assert datetime.fromisoformat(view.json()["outcome"]["due_at"]) == datetime(2031, 3, 20, 1, tzinfo=UTC)


def test_an_unknown_order_is_404_and_a_concluded_one_shows_its_whole_outcome(producer, ledger):
    is_problem(call(producer, get("/v1/orders/J9999999"))[0], 404, "unknown-order")
    is_problem(call(producer, get("/v1/orders/J9999999/trace"))[0], 404, "unknown-order")
    is_problem(call(producer, get("/v1/orders/J9999999/events"))[0], 404, "unknown-order")
    call(producer, post(order_dict(0)))
    order = JewelryOrder.model_validate(order_dict(0))
    outcome = conclude(ledger, order)
    [response] = call(producer, get(f"/v1/orders/{order.order_id}"))
    assert response.json() == {"order_id": order.order_id, "status": "completed", "outcome": json.loads(outcome)}
    [trace] = call(producer, get(f"/v1/orders/{order.order_id}/trace"))
    assert trace.status_code == 200 and trace.json()["order_id"] == order.order_id
    assert ledger.unfinished_accepted() == []


def test_the_event_stream_sends_acceptance_each_stage_and_the_outcome_and_resumes_after_the_last_id(producer, ledger):
    call(producer, post(order_dict(0)))
    order = JewelryOrder.model_validate(order_dict(0))
    conclude(ledger, order)
    [stream] = call(producer, get(f"/v1/orders/{order.order_id}/events"))
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    events = parse_events(stream.text)
    assert [name for name, _, _ in events] == ["accepted", *["stage"] * 6, "outcome"]
    assert {json.loads(data)["stage"] for name, _, data in events if name == "stage"} == {s.value for s in STAGES}
    assert json.loads(events[-1][2])["status"] == "completed"
    last_id = events[3][1]  # resumed after the third stage: the rest, once each
    [resumed] = call(producer, get(f"/v1/orders/{order.order_id}/events", **{"Last-Event-ID": last_id}))
    assert parse_events(resumed.text) == [(n, i, d) for n, i, d in events[4:]]


def test_readiness_names_what_does_not_answer(producer):
    assert call(producer, ("GET", "/readyz", {}))[0].status_code == 200
    producer.parts["dispatcher-0"] = "ActorDiedError: gone"
    body = is_problem(call(producer, ("GET", "/readyz", {}))[0], 503, "not-ready")
    assert "dispatcher-0" in body["detail"]


def test_the_openapi_document_lists_every_route_and_documents_the_order_with_its_id_optional(producer):
    [response] = call(producer, ("GET", "/openapi.json", {}))
    document = response.json()
    assert set(document["paths"]) >= {
        "/v1/orders",
        "/v1/orders:batch",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/events",
        "/v1/orders/{order_id}/trace",
        "/healthz",
        "/readyz",
    }
    order = document["components"]["schemas"]["OrderIn"]
    assert "order_id" in order["properties"] and "order_id" not in order["required"]
    assert document["paths"]["/v1/orders"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert call(producer, ("GET", "/docs", {}))[0].status_code == 200


def test_a_restarted_run_takes_up_every_accepted_order_without_an_outcome(producer, ledger):
    """What a Producer that starts serving reads back: the orders accepted over HTTP, whole."""
    call(producer, post(order_dict(0), key="a"), post(order_dict(1), key="b"))
    conclude(ledger, JewelryOrder.model_validate(order_dict(0)))
    [left] = ledger.unfinished_accepted()
    assert JewelryOrder.model_validate_json(left) == JewelryOrder.model_validate(order_dict(1))


# -- helpers ----------------------------------------------------------------------------------------


def conclude(ledger: SqlLedger, order: JewelryOrder) -> str:
    """The order done by all six stages, written as the replicas and the Dispatcher would: each
    stage's effect, then the outcome. Returns the outcome's JSON line."""
    now = datetime.now(UTC)
    results = [
        StageResult(
            order_id=order.order_id,
            stage=stage,
            status=StageStatus.OK,
            started_at=now,
            finished_at=now,
            replica=f"{stage}-0",
            node_id="n",
        )
        for stage in STAGES
    ]
    rows = [
        (r.stage.value, r.order_id, r.replica, r.status.value, r.model_dump_json(), i, "ns")
        for i, r in enumerate(results)
    ]
    ledger._write(
        lambda db: db.executemany(
            "INSERT INTO effects (stage, order_id, replica, status, result, recorded_at, namespace) "
            "VALUES (?,?,?,?,?,?,?)",
            rows,
        )
    )
    outcome = OrderOutcome.from_results(order, results, now, now)
    ledger.record_outcome(outcome)
    [line] = [line for line in ledger.outcome_lines() if json.loads(line)["order_id"] == order.order_id]
    return line


def parse_events(text: str) -> list[tuple[str, str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            events.append((fields["event"], fields["id"], fields["data"]))
    return events


def test_records_refused_are_not_submissions():
    assert not isinstance(RejectedRecord(source="http", line=1, order_id=None, errors=(), raw={}), Submission)


def test_api_keys_never_reach_the_logs(producer):
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message} {extra}")
    try:
        call(producer, post(order_dict(0)), post(order_dict(1), auth={"Authorization": "Bearer not-the-key"}))
    finally:
        logger.remove(sink)
    assert lines and not any(KEY in line or "not-the-key" in line for line in lines)


def test_the_settings_keep_keys_secret_and_the_front_door_gets_digests(tmp_path):
    from orchestration.settings import load_settings

    keys = tmp_path / "keys"
    keys.write_text("# shops\nfile-key\n\n")
    settings = load_settings({"http": {"api_keys": [KEY], "api_keys_file": str(keys), "port": 8000}})
    assert KEY not in settings.model_dump_json() and "file-key" not in settings.model_dump_json()
    assert settings.http.key_digests() == tuple(
        sorted(hashlib.sha256(k.encode()).hexdigest() for k in (KEY, "file-key"))
    )


def test_a_front_door_without_the_ledger_is_refused_with_the_reason():
    from pydantic import ValidationError

    from orchestration.settings import load_settings

    with pytest.raises(ValidationError, match="keeps idempotency keys and accepted orders in the ledger"):
        load_settings({"http": {"port": 8000}, "ledger": {"enabled": False}})
