"""The scheduled orders' routes: `GET /v1/orders?status=scheduled` lists the orders waiting for their
time (from the ledger, so any replica answers), `DELETE /v1/orders/{id}` cancels one that has not
started (through the Producer, which holds it; 409 once it has started)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from actors.errors import LedgerUnavailable, NotServing
from actors.ledger.schedule import Cancelled, Scheduled
from actors.models import FieldError
from orchestration.http.problems import Problem, problem

MAX_PAGE = 1000


class ScheduleBackend(Protocol):
    async def cancel(self, order_id: str) -> Cancelled: ...

    async def scheduled(self, limit: int, after: tuple[float, str] | None) -> list[Scheduled]: ...


class ScheduledView(BaseModel):
    order_id: str
    status: str = Field(description="scheduled")
    not_before: str = Field(description="when it is due (RFC 3339)")
    order: dict[str, Any]


class ScheduledPage(BaseModel):
    orders: list[ScheduledView]
    next: str | None = Field(description="pass as `after` for the next page; none on the last one")


class CancelledView(BaseModel):
    order_id: str
    status: str = Field(description="cancelled")


def add_schedule_routes(
    app: FastAPI,
    backend: ScheduleBackend,
    client_of: Callable[..., str],
    unavailable: Callable[[str], Response],
) -> None:
    @app.get(
        "/v1/orders",
        tags=["orders"],
        response_model=ScheduledPage,
        responses={code: {"model": Problem} for code in (401, 422, 503)},
    )
    async def list_orders(
        request: Request,
        _: str = Depends(client_of),
        status: str = Query(description="which orders: `scheduled` (the orders waiting for their time)"),
        limit: int = Query(default=100, ge=1, le=MAX_PAGE),
        after: str | None = Query(default=None, description="the `next` of the page before"),
    ) -> Response:
        if status != "scheduled":
            return _invalid(request, "status", f"{status!r}: only 'scheduled' orders are listed")
        cursor = _cursor(after)
        if after is not None and cursor is None:
            return _invalid(request, "after", "not a cursor this API gave")
        try:
            found = await backend.scheduled(limit, cursor)
        except LedgerUnavailable as error:
            return unavailable(str(error))
        orders = [s.view() for s in found]
        last = found[-1] if len(found) == limit else None
        return JSONResponse({"orders": orders, "next": _encoded(last.not_before, last.order_id) if last else None})

    @app.delete(
        "/v1/orders/{order_id}",
        tags=["orders"],
        response_model=CancelledView,
        responses={code: {"model": Problem} for code in (401, 404, 409, 503)},
    )
    async def cancel_order(order_id: str, request: Request, _: str = Depends(client_of)) -> Response:
        try:
            result = await backend.cancel(order_id)
        except NotServing as error:
            return unavailable(f"not taking orders: {error}")
        except LedgerUnavailable as error:
            return unavailable(str(error))
        if result is Cancelled.UNKNOWN:
            return problem(404, "unknown-order", "Unknown order", f"no order {order_id}", instance=request.url.path)
        if result is Cancelled.STARTED:
            return problem(
                409,
                "order-started",
                "Order started",
                f"order {order_id} has started (it was due, or was never scheduled): it runs to its outcome",
                instance=request.url.path,
            )
        return JSONResponse({"order_id": order_id, "status": "cancelled"})


def _invalid(request: Request, field: str, reason: str) -> Response:
    return problem(
        422,
        "invalid-query",
        "Invalid query",
        f"1 field(s) at fault: {field}: {reason}",
        instance=request.url.path,
        errors=[FieldError(field=field, reason=reason)],
    )


def _encoded(not_before: float, order_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([not_before, order_id]).encode()).decode()


def _cursor(after: str | None) -> tuple[float, str] | None:
    if after is None:
        return None
    try:
        due, order_id = json.loads(base64.urlsafe_b64decode(after.encode()))
        return float(due), str(order_id)
    except (ValueError, TypeError):
        return None
