"""`jewelry-fanout replay`, `restock`, `trace` and `runs`: act on a run's ledger, or read what it holds."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from actors.dispatch.verdict import stages_to_replay
from actors.errors import FanoutError, ReplayRefused
from actors.ledger import LedgerSpec, open_ledger
from actors.models import OrderStatus, StageName
from actors.stages.stock_units import human, stored_quantity
from orchestration.cli.exit_codes import EXIT_DEAD_LETTERS, EXIT_OK, EXIT_USAGE
from orchestration.cli.run import start_system
from orchestration.cli.terminal import stdout_console
from orchestration.render import render_runs, render_trace
from orchestration.settings import FanoutSettings
from orchestration.trace import UnknownOrder, trace_order


def replay_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    """Start the workshop on the run's ledger (replicas come back with their state) and replay one order."""
    if (spec := run_ledger(settings, err, "replay needs a ledger")) is None:
        return EXIT_USAGE
    stage = StageName(args.stage) if args.stage else None
    try:  # refused from the ledger alone, before any actor is started for it
        with open_ledger(spec) as ledger:
            stages_to_replay(args.order_id, ledger.outcome(args.order_id), stage)
    except ReplayRefused as error:
        err.print(f"[red]cannot replay {args.order_id}:[/red] {error}")
        return EXIT_USAGE
    except (FileNotFoundError, FanoutError) as error:
        err.print(f"[red]ledger:[/red] {error}")
        return EXIT_USAGE
    system = start_system(settings, err)
    if isinstance(system, int):
        return system
    try:
        outcome = system.replay(args.order_id, stage, args.abandon)
    except ReplayRefused as error:
        err.print(f"[red]cannot replay {args.order_id}:[/red] {error}")
        return EXIT_USAGE
    finally:
        system.shutdown()
    if args.json:
        sys.stdout.write(outcome.model_dump_json() + "\n")
    else:
        err.print(f"{outcome.order_id}: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
        for stage_name, done in outcome.compensations.items():
            err.print(f"  compensated {stage_name}: {done}")
    return EXIT_DEAD_LETTERS if outcome.status is OrderStatus.DEAD_LETTERED else EXIT_OK


def restock_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    """Add to the workshop's stock in its ledger, without Ray: a running system sees it at its next order."""
    spec = settings.ledger_spec()
    if spec is None:
        err.print("[red]restock needs a ledger[/red] (a run without one starts from its settings' stock)")
        return EXIT_USAGE
    try:
        changes = [(lot, stored_quantity(lot, amount)) for lot, _, amount in (a.partition("=") for a in args.lots)]
        ledger = open_ledger(spec)
    except ValueError as error:
        err.print(f"[red]restock:[/red] {error}")
        return EXIT_USAGE
    except (FileNotFoundError, FanoutError) as error:
        err.print(f"[red]ledger:[/red] {error}")
        return EXIT_USAGE
    try:
        for lot, quantity in changes:
            now = ledger.restock(lot, quantity, args.reason)
            err.print(f"{lot}: +{human(lot, quantity)}, now {human(lot, now)}")
        stock = ledger.inventory()
    finally:
        ledger.close()
    if args.json:
        sys.stdout.write(json.dumps(stock) + "\n")
    elif not changes:
        for lot, quantity in stock.items():
            sys.stdout.write(f"{lot:<24} {human(lot, quantity):>16}\n")
    return EXIT_OK


def trace_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    """Read one order's story from the ledger, without Ray: lanes on a time axis, or `--json`."""
    if (spec := run_ledger(settings, err, "trace needs a ledger: a run without one keeps no story")) is None:
        return EXIT_USAGE
    try:
        ledger = open_ledger(spec)
    except (FileNotFoundError, FanoutError) as error:
        err.print(f"[red]ledger:[/red] {error}")
        return EXIT_USAGE
    try:
        trace = trace_order(ledger, args.order_id)
    except UnknownOrder as error:
        err.print(f"[red]unknown order:[/red] {error} ({spec})")
        return EXIT_USAGE
    finally:
        ledger.close()
    if args.json:
        sys.stdout.write(trace.model_dump_json() + "\n")
    else:
        render_trace(stdout_console(), trace)
    return EXIT_OK


def runs_command(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    """List the runs in the ledger, without Ray: every system's that shares the database."""
    if (spec := run_ledger(settings, err, "runs needs a ledger: a run without one records none")) is None:
        return EXIT_USAGE
    try:
        with open_ledger(spec) as ledger:
            runs = ledger.runs()
    except (FileNotFoundError, FanoutError) as error:
        err.print(f"[red]ledger:[/red] {error}")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps([run.model_dump(mode="json") for run in runs]) + "\n")
    else:
        render_runs(stdout_console(), runs)
    return EXIT_OK


def run_ledger(settings: FanoutSettings, err: Console, without: str) -> LedgerSpec | None:
    """The ledger of the run the command is about, if there is one where the settings point."""
    spec = settings.ledger_spec()
    if spec is None:
        err.print(f"[red]{without}[/red]")
        return None
    if spec.path is not None and not spec.path.exists():
        err.print(f"[red]ledger:[/red] {spec.path} does not exist; pass --out DIR or --ledger PATH of the run")
        return None
    return spec
