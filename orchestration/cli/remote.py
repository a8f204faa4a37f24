"""`jewelry-fanout status`, `submit` and `stop`: commands for a system that is already running."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from actors.errors import NotRunning, SourceError
from actors.models.messages import SubmitReceipt
from orchestration.cli.exit_codes import EXIT_OK, EXIT_START, EXIT_USAGE
from orchestration.cli.http_submit import FrontDoorRefused, submit_over_http
from orchestration.cli.terminal import stdout_console
from orchestration.operate import (
    connect_existing,
    stop_serving,
    submit_file,
    system_status,
)
from orchestration.render import render_status
from orchestration.settings import FanoutSettings


def operate_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    if args.command == "submit" and args.http:
        return _submit_over_http(args, settings, err)
    try:
        connect_existing(settings.namespace)
        if args.command == "status":
            status = system_status(settings.namespace)
            if args.json:
                sys.stdout.write(status.model_dump_json() + "\n")
            else:
                render_status(stdout_console(), status)
        elif args.command == "submit":
            _print_receipt(args.input, submit_file(settings.namespace, args.input), err)
        elif args.command == "stop":
            stop_serving(settings.namespace)
            err.print(f"asked the run in namespace {settings.namespace} to finish")
    except NotRunning as error:
        err.print(f"[red]not running:[/red] {error}")
        return EXIT_START
    except SourceError as error:
        err.print(f"[red]cannot read orders:[/red] {error}")
        return EXIT_USAGE
    return EXIT_OK


def _submit_over_http(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    keys = settings.http.api_keys
    try:
        receipt = submit_over_http(
            args.http, args.input, keys[0].get_secret_value() if keys else None, settings.http.max_batch
        )
    except SourceError as error:
        err.print(f"[red]cannot read orders:[/red] {error}")
        return EXIT_USAGE
    except FrontDoorRefused as error:
        err.print(f"[red]refused by the front door at {args.http}:[/red] {error}")
        return EXIT_START
    _print_receipt(args.input, receipt, err)
    return EXIT_OK


def _print_receipt(path: Path, receipt: SubmitReceipt, err: Console) -> None:
    err.print(f"{path.name}: {receipt.accepted} accepted, {len(receipt.rejected)} rejected")
    for reject in receipt.rejected:
        err.print(f"  [red]rejected[/red] {reject.message}")
