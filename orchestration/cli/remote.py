"""`jewelry-fanout status`, `submit` and `stop`: commands for a system that is already running."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from actors.errors import NotRunning, SourceError
from orchestration.cli.exit_codes import EXIT_OK, EXIT_START, EXIT_USAGE
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
    try:
        connect_existing(settings.namespace)
        if args.command == "status":
            status = system_status(settings.namespace)
            if args.json:
                sys.stdout.write(status.model_dump_json() + "\n")
            else:
                render_status(stdout_console(), status)
        elif args.command == "submit":
            receipt = submit_file(settings.namespace, args.input)
            err.print(f"{args.input.name}: {receipt.accepted} accepted, {len(receipt.rejected)} rejected")
            for reject in receipt.rejected:
                err.print(f"  [red]rejected[/red] {reject.message}")
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
