"""The HTTP API, versioned under /v1: FastAPI routes over a `Backend` (the serving system, or a fake
in unit tests), with no Ray in this module.

- `POST /v1/orders` takes one order under an `Idempotency-Key`; `POST /v1/orders:batch` up to
  `max_batch`, item i under the key `KEY#i`, answered item by item.
- `GET /v1/orders/{id}` its status and outcome; `/events` its progress as Server-Sent Events;
  `/trace` its story from the ledger.
- `GET /v1/orders?status=scheduled` the orders waiting for their time; `DELETE /v1/orders/{id}`
  cancels one that has not started (`schedule_routes`).
- `/healthz` (up), `/readyz` (the Producer and every shard answer), `/openapi.json`, `/docs`.
Every error is `application/problem+json`. Every /v1 call needs `Authorization: Bearer KEY`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from actors.errors import FanoutError, LedgerUnavailable, NotServing
from actors.intake.sources import validate_record
from actors.models import FieldError, JewelryOrder, RejectedRecord, StageName
from actors.models.submissions import OrderProgress, Submission, SubmissionAnswer, Verdict
from orchestration.http.problems import Problem, ProblemResponse, field_errors, problem, problem_body
from orchestration.http.schedule_routes import ScheduleBackend, add_schedule_routes

EVENTS_POLL_S = 0.2
EVENTS_KEEPALIVE_S = 10.0
STAGE_ORDER = list(StageName)
RETRYABLE = (429, 503)  # refusals for now: answered with Retry-After


class Unavailable(FanoutError):
    """The backend cannot reach the system right now (a Producer restarting, say): try again."""


class Backend(ScheduleBackend, Protocol):
    async def accept(self, submissions: list[Submission]) -> list[SubmissionAnswer]: ...

    async def progress(self, order_id: str) -> OrderProgress | None: ...

    async def trace(self, order_id: str) -> dict[str, Any] | None: ...

    async def readiness(self) -> dict[str, str]: ...  # each part of the system: "ok" or why not


class ApiConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_digests: tuple[str, ...] = ()  # SHA-256 of each API key
    max_batch: int = 500
    retry_after_s: float = 1.0


class Accepted(BaseModel):
    order_id: str
    status: str = Field(description="accepted, or scheduled (it has a not_before)")


class OrderView(BaseModel):
    order_id: str
    status: str = Field(description="scheduled, accepted, running, completed, failed, dead_lettered or cancelled")
    outcome: dict[str, Any] | None = Field(description="the whole OrderOutcome once concluded")


class BatchIn(BaseModel):
    orders: list[dict[str, Any]] = Field(description="orders, each as POST /v1/orders takes it")


class BatchOut(BaseModel):
    results: list[Accepted | Problem]


def build_api(backend: Backend, config: ApiConfig) -> FastAPI:
    app = FastAPIOffline(
        title="jewelry-fanout",
        version="1",
        description="Orders into the workshop's six stages; each answered once, idempotently.",
    )
    log = logger.bind(stage="http")

    def client_of(authorization: str | None = Header(default=None)) -> str:
        """The caller's client id (a digest of its key), or 401."""
        scheme, _, key = (authorization or "").partition(" ")
        digest = hashlib.sha256(key.strip().encode()).hexdigest()
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(digest, known) for known in config.key_digests):
            raise _Refusal(
                problem(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "a valid API key is needed: Authorization: Bearer KEY",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            )
        return digest[:16]

    @app.exception_handler(_Refusal)
    async def _refused(_: Request, refusal: _Refusal) -> Response:
        return refusal.response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        errors = field_errors(error.errors(), skip=1)
        return problem(422, "invalid-body", "Invalid body", _count(errors), instance=request.url.path, errors=errors)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": Problem}})
    async def readyz() -> Response:
        parts = await backend.readiness()
        down = {part: why for part, why in parts.items() if why != "ok"}
        if down:
            detail = "; ".join(f"{part}: {why}" for part, why in down.items())
            return problem(503, "not-ready", "Not ready", detail, headers=_retry(config))
        return JSONResponse({"status": "ready", "parts": parts})

    @app.post(
        "/v1/orders",
        status_code=202,
        tags=["orders"],
        response_model=Accepted,
        responses={code: {"model": Problem} for code in (400, 401, 409, 422, 429, 503)},
        openapi_extra={"requestBody": _order_body()},
    )
    async def post_order(
        request: Request,
        client: str = Depends(client_of),
        idempotency_key: str | None = Header(default=None),
    ) -> Response:
        key = _required_key(idempotency_key)
        body = await _json_body(request)
        item = _submission(body, client, key, 1)
        if isinstance(item, RejectedRecord):
            return problem(
                422,
                "invalid-order",
                "Invalid order",
                _count(item.errors),
                instance=request.url.path,
                errors=item.errors,
            )
        [answer] = await _accept(backend, [item], config)
        log.bind(order_id=answer.order_id).info("POST /v1/orders from {}: {}", client, answer.verdict.value)
        return _single(answer, request.url.path, config)

    @app.post(
        "/v1/orders:batch",
        tags=["orders"],
        response_model=BatchOut,
        responses={code: {"model": Problem} for code in (400, 401, 413, 422, 429, 503)},
    )
    async def post_batch(
        batch: BatchIn,
        request: Request,
        client: str = Depends(client_of),
        idempotency_key: str | None = Header(default=None),
    ) -> Response:
        key = _required_key(idempotency_key)
        if len(batch.orders) > config.max_batch:
            return problem(
                413,
                "batch-too-large",
                "Batch too large",
                f"{len(batch.orders)} orders; at most {config.max_batch} per batch",
                instance=request.url.path,
                errors=[FieldError(field="orders", reason=f"at most {config.max_batch} items")],
            )
        items = [_submission(body, client, f"{key}#{i}", i) for i, body in enumerate(batch.orders)]
        valid = [item for item in items if isinstance(item, Submission)]
        answers = iter(await _accept(backend, valid, config)) if valid else iter(())
        results: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            instance = f"{request.url.path}#/orders/{i}"
            if isinstance(item, RejectedRecord):
                errors = [FieldError(field=f"orders.{i}.{e.field}", reason=e.reason) for e in item.errors]
                body = problem_body(
                    422, "invalid-order", "Invalid order", _count(errors), instance=instance, errors=errors
                )
                results.append(body.model_dump(mode="json", exclude_none=True))
            else:
                results.append(_item(next(answers), instance, config))
        log.info("POST /v1/orders:batch from {}: {} item(s)", client, len(items))
        refusals = {r.get("status") for r in results}
        if results and len(refusals) == 1 and (status := refusals.pop()) in RETRYABLE:  # the request as a whole
            first = results[0]
            return ProblemResponse(
                {**first, "instance": request.url.path},
                status_code=status,
                headers=_retry(config, first.get("retry_after_s")),
            )
        return JSONResponse({"results": results})

    @app.get("/v1/orders/{order_id}", tags=["orders"], response_model=OrderView, responses={404: {"model": Problem}})
    async def get_order(order_id: str, request: Request, _: str = Depends(client_of)) -> Response:
        progress = await _progress(backend, order_id, config)
        if progress is None:
            return _unknown(order_id, request)
        outcome = json.loads(progress.outcome) if progress.outcome is not None else None
        return JSONResponse({"order_id": order_id, "status": progress.status, "outcome": outcome})

    @app.get(
        "/v1/orders/{order_id}/events",
        tags=["orders"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Problem}},
    )
    async def order_events(
        order_id: str,
        request: Request,
        _: str = Depends(client_of),
        last_event_id: str | None = Header(default=None),
    ) -> Response:
        progress = await _progress(backend, order_id, config)
        if progress is None:
            return _unknown(order_id, request)
        sent = _events_sent(last_event_id)
        return StreamingResponse(
            _event_stream(backend, order_id, progress, sent, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/v1/orders/{order_id}/trace", tags=["orders"], responses={404: {"model": Problem}})
    async def order_trace(order_id: str, request: Request, _: str = Depends(client_of)) -> Response:
        try:
            trace = await backend.trace(order_id)
        except (Unavailable, LedgerUnavailable) as error:
            return _unavailable(str(error), config)
        if trace is None:
            return _unknown(order_id, request)
        return JSONResponse(trace)

    add_schedule_routes(app, backend, client_of, lambda detail: _unavailable(detail, config))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # the order schema, documented once
    return app


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _required_key(key: str | None) -> str:
    if not key or not key.strip() or len(key) > 255:
        raise _Refusal(
            problem(
                400,
                "idempotency-key-required",
                "Idempotency-Key required",
                "send an Idempotency-Key header (1-255 characters) so that a retry never duplicates the order",
                errors=[FieldError(field="Idempotency-Key", reason="missing or empty")],
            )
        )
    return key.strip()


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as error:
        raise _Refusal(
            problem(
                422,
                "invalid-body",
                "Invalid body",
                "the body is not JSON",
                errors=[FieldError(field="<body>", reason=f"malformed JSON: {error}")],
            )
        ) from error


def _submission(body: Any, client: str, key: str, line: int) -> Submission | RejectedRecord:
    """The body as a valid order under its key (an id generated if it has none), or every fault."""
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    if isinstance(body, dict) and body.get("order_id") is None:
        body = {**body, "order_id": f"J{secrets.randbelow(10**12):012d}"}
    record = validate_record(body, "http", line)
    if isinstance(record, RejectedRecord):
        return record
    assert isinstance(record, JewelryOrder)
    return Submission(client=client, idempotency_key=key, body_hash=body_hash, order=record)


async def _accept(backend: Backend, items: list[Submission], config: ApiConfig) -> list[SubmissionAnswer]:
    try:
        return await backend.accept(items)
    except NotServing as error:
        raise _Refusal(_unavailable(f"not taking orders: {error}", config)) from error
    except (Unavailable, LedgerUnavailable) as error:
        raise _Refusal(_unavailable(str(error), config)) from error


async def _progress(backend: Backend, order_id: str, config: ApiConfig) -> OrderProgress | None:
    try:
        return await backend.progress(order_id)
    except (Unavailable, LedgerUnavailable) as error:
        raise _Refusal(_unavailable(str(error), config)) from error


def _single(answer: SubmissionAnswer, path: str, config: ApiConfig) -> Response:
    body = _item(answer, path, config)
    if "type" in body:
        headers = _retry(config, answer.retry_after_s) if body["status"] in RETRYABLE else None
        return ProblemResponse(body, status_code=body["status"], headers=headers)
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/orders/{answer.order_id}"})


def _item(answer: SubmissionAnswer, instance: str, config: ApiConfig) -> dict[str, Any]:
    """An answer as the API gives it: the accepted body, or a problem."""
    if answer.verdict in (Verdict.ACCEPTED, Verdict.REPEATED):
        return {"order_id": answer.order_id, "status": answer.status}
    found: Problem
    if answer.verdict is Verdict.KEY_REUSED:
        found = problem_body(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            f"this key was used for another body (order {answer.order_id}); use a new key for a new order",
            instance=instance,
            errors=[FieldError(field="Idempotency-Key", reason="already used with another body")],
        )
    elif answer.verdict is Verdict.IN_PROGRESS:
        found = problem_body(
            409, "request-in-progress", "Request in progress", "this key's first request is still being accepted"
        )
    elif answer.verdict is Verdict.BUSY:
        found = problem_body(
            503,
            "busy",
            "Busy",
            f"the run's queue is full; try again in {answer.retry_after_s or config.retry_after_s:g} s",
            retry_after_s=answer.retry_after_s,
        )
    elif answer.verdict is Verdict.RATE_LIMITED:
        found = problem_body(
            429,
            "rate-limited",
            "Too many requests",
            f"this API key is over its rate limit; try again in {answer.retry_after_s or 0:.2f} s",
            retry_after_s=answer.retry_after_s,
        )
    elif answer.verdict is Verdict.STAGE_OPEN:
        stages = ", ".join(answer.stages)
        found = problem_body(
            503,
            "stage-unavailable",
            "Stage unavailable",
            f"the circuit breaker of {stages} is open: it fails most calls, so no order is taken until its "
            f"trial calls succeed; try again in {answer.retry_after_s or 0:.1f} s",
            stages=answer.stages,
            retry_after_s=answer.retry_after_s,
        )
    else:
        found = problem_body(
            422, "order-refused", "Order refused", _count(answer.errors), instance=instance, errors=answer.errors
        )
    return found.model_dump(mode="json", exclude_none=True)


def _unknown(order_id: str, request: Request) -> Response:
    return problem(404, "unknown-order", "Unknown order", f"no order {order_id}", instance=request.url.path)


def _unavailable(detail: str, config: ApiConfig) -> Response:
    return problem(503, "unavailable", "Unavailable", detail, headers=_retry(config))


def _retry(config: ApiConfig, after_s: float | None = None) -> dict[str, str]:
    """Retry-After in whole seconds (RFC 9110), rounded up: a client that waits it is let in."""
    return {"Retry-After": str(max(1, math.ceil(after_s or config.retry_after_s)))}


def _count(errors: Any) -> str:
    errors = list(errors)
    return f"{len(errors)} field(s) at fault: " + "; ".join(f"{e.field}: {e.reason}" for e in errors)


# -- Server-Sent Events: acceptance, each stage's result as it lands, the outcome ------------------
# An event's id is the set of events sent so far, as a hex bit mask (bit 0 acceptance, bits 1-6 the
# stages, bit 7 the outcome): a stream resumed with Last-Event-ID sends exactly what is missing,
# whatever order the stages landed in.

ACCEPTED_BIT, OUTCOME_BIT = 1, 1 << 7


def _events_sent(last_event_id: str | None) -> int:
    try:
        return int(last_event_id or "0", 16) & 0xFF
    except ValueError:
        return 0


def _events(progress: OrderProgress) -> list[tuple[int, str, str]]:
    found = [(ACCEPTED_BIT, "accepted", json.dumps({"order_id": progress.order_id, "at": progress.accepted_at}))]
    for effect in progress.effects:
        if effect.stage in STAGE_ORDER:
            bit = 2 << STAGE_ORDER.index(StageName(effect.stage))
            found.append((bit, "stage", effect.result or json.dumps({"stage": effect.stage, "status": effect.status})))
    if progress.outcome is not None:
        found.append((OUTCOME_BIT, "outcome", progress.outcome))
    return found


async def _event_stream(
    backend: Backend, order_id: str, progress: OrderProgress | None, sent: int, request: Request
) -> AsyncIterator[str]:
    quiet_s = 0.0
    while True:
        if progress is not None:
            for bit, event, data in _events(progress):
                if not sent & bit:
                    sent |= bit
                    quiet_s = 0.0
                    yield f"id: {sent:x}\nevent: {event}\ndata: {data}\n\n"
            if progress.outcome is not None:
                return
        if await request.is_disconnected():
            return
        if quiet_s >= EVENTS_KEEPALIVE_S:
            quiet_s = 0.0
            yield ": still running\n\n"
        await asyncio.sleep(EVENTS_POLL_S)
        quiet_s += EVENTS_POLL_S
        try:
            progress = await backend.progress(order_id)
        except (Unavailable, LedgerUnavailable):
            progress = None  # the ledger is back soon: the stream waits for it


# -- OpenAPI: the order body is documented from the order model, with order_id optional -----------


def _order_body() -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrderIn"}}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        order = JewelryOrder.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(order.pop("$defs", {}))
        order["required"] = [name for name in order.get("required", []) if name != "order_id"]
        order["title"] = "OrderIn"
        components["OrderIn"] = order
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():  # /docs then has an Authorize button for them
            for operation in operations.values() if path.startswith("/v1/") else ():
                operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
