"""`jewelry-fanout scheduled` lists the orders waiting for their time; `jewelry-fanout cancel ID`
cancels one that has not started.

With `--http URL` both go through the front door (`GET /v1/orders?status=scheduled`, `DELETE
/v1/orders/ID`, key: the first of http.api_keys), as a web shop would. Without it, `scheduled`
reads the ledger the settings point to (no Ray needed) and `cancel` asks the running system's
Producer over Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from actors.errors import FanoutError, NotRunning, NotServing
from actors.ledger import open_ledger
from actors.ledger.schedule import Cancelled
from orchestration.cli.exit_codes import EXIT_OK, EXIT_START, EXIT_USAGE
from orchestration.cli.ledger_commands import run_ledger
from orchestration.cli.terminal import stdout_console
from orchestration.operate import cancel_scheduled_order, connect_existing
from orchestration.settings import FanoutSettings

PAGE = 500


def scheduled_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    try:
        orders = _listed_over_http(args.http, _key(settings)) if args.http else _listed_in_ledger(settings, err)
    except (httpx.HTTPError, FanoutError, FileNotFoundError) as error:
        err.print(f"[red]cannot list scheduled orders:[/red] {error}")
        return EXIT_START if args.http else EXIT_USAGE
    if orders is None:
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps(orders) + "\n")
        return EXIT_OK
    table = Table(title=f"{len(orders)} scheduled order(s), soonest first", title_justify="left")
    for column in ("order", "due (not_before)", "product", "customer"):
        table.add_column(column)
    for order in orders:
        table.add_row(
            order["order_id"], order["not_before"], order["order"]["product_type"], order["order"]["customer"]
        )
    stdout_console().print(table)
    return EXIT_OK


def cancel_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    try:
        if args.http:
            result = _cancelled_over_http(args.http, _key(settings), args.order_id)
        else:
            connect_existing(settings.namespace)
            result = cancel_scheduled_order(settings.namespace, args.order_id)
    except (httpx.HTTPError, NotRunning, NotServing) as error:
        err.print(f"[red]cannot cancel:[/red] {error}")
        return EXIT_START
    if result in (Cancelled.CANCELLED, Cancelled.ALREADY):
        err.print(f"{args.order_id}: cancelled; it never starts")
        return EXIT_OK
    why = "it has started (it was due)" if result is Cancelled.STARTED else "no such scheduled order"
    err.print(f"[red]{args.order_id} not cancelled:[/red] {why}")
    return EXIT_USAGE


def _key(settings: FanoutSettings) -> str:
    keys = settings.http.api_keys
    if not keys:
        raise NotServing("no API key: set http.api_keys (e.g. JEWELRY_HTTP__API_KEYS='[\"KEY\"]')")
    return keys[0].get_secret_value()


def _listed_over_http(url: str, key: str) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    after: str | None = None
    with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while True:
            params = {"status": "scheduled", "limit": str(PAGE), **({"after": after} if after else {})}
            response = client.get("/v1/orders", params=params)
            if response.status_code != 200:
                raise NotServing(f"{response.status_code}: {response.text}")
            page = response.json()
            orders += page["orders"]
            if not (after := page["next"]):
                return orders


def _listed_in_ledger(settings: FanoutSettings, err: Console) -> list[dict[str, Any]] | None:
    if (spec := run_ledger(settings, err, "scheduled orders are kept in the ledger: this system has none")) is None:
        return None
    with open_ledger(spec) as ledger:
        found = ledger.waiting_scheduled(limit=100_000)
    return [s.view() for s in found]


def _cancelled_over_http(url: str, key: str, order_id: str) -> Cancelled:
    with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        response = client.delete(f"/v1/orders/{order_id}")
    if response.status_code == 200:
        return Cancelled.CANCELLED
    if response.status_code == 409:
        return Cancelled.STARTED
    if response.status_code == 404:
        return Cancelled.UNKNOWN
    raise NotServing(f"{response.status_code}: {response.text}")
