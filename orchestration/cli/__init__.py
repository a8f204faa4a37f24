"""`jewelry-fanout` (and `python -m orchestration`): run the workshop, print what happened.

Exit codes: 0 every valid order reached a terminal outcome; 1 some did not (lost, the source
stopped early, or unfinished because the ledger was unreachable: the same command finishes them);
2 bad arguments, settings, input file or ledger; 3 the actors could not start, or (for status,
submit, stop) no running system was found; 4 the run finished but some orders are
dead-lettered and wait for `replay` (for `replay`: the order is still dead-lettered); 130 the run
was interrupted (Ctrl-C or SIGTERM) before it had read its source: the same command resumes it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from actors.errors import (
    ConfigurationError,
    FanoutError,
    ReplayRefused,
    RunIncomplete,
    SourceError,
    SystemStartError,
)
from actors.ledger import open_ledger
from actors.logs import configure_logging
from actors.models import STAGES, OrderStatus, StageName
from actors.stages.stock_units import human, stored_quantity
from orchestration.operate import (
    NotRunning,
    connect_existing,
    stop_serving,
    submit_file,
    system_status,
)
from orchestration.render import render_status, render_summary
from orchestration.settings import FanoutSettings, deep_merge, load_settings
from orchestration.system import FanoutSystem, RunResult


EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_START, EXIT_DEAD_LETTERS = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process ended by Ctrl-C


def _stdout_console() -> Console:
    """Tables at the terminal's width, or wide enough for logs and `ray job logs` when piped."""
    return Console() if sys.stdout.isatty() else Console(width=150)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jewelry-fanout", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="fan orders out to the six stages and report the outcomes")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--orders", type=int, metavar="N", help="generate N sample orders (default 100)")
    source.add_argument("--input", type=Path, metavar="FILE", help="read orders from a .jsonl or .csv file")
    run.add_argument("--seed", type=int, help="seed for generated orders")
    run.add_argument("--time-scale", type=float, metavar="S", help="multiplies stage durations; 0 = no waiting")
    run.add_argument("--replicas", type=_replicas, metavar="STAGE=K,...", help="e.g. production=4,design=2")
    run.add_argument("--max-in-flight", type=int, metavar="K", help="orders at the dispatcher at once")
    run.add_argument("--out", type=Path, metavar="DIR", help="where outcomes, rejects and artifacts go")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    run.add_argument("--no-artifacts", action="store_true", help="skip STL meshes and certificate files")
    run.add_argument("--serve", action="store_true",
                     help="stay up after the source is read and take more orders (submit) until stopped")
    _ledger_options(run)
    run.add_argument("--no-ledger", action="store_true",
                     help="keep nothing durable: faster, but a crash loses in-flight work and nothing restarts")
    _common(run)

    replay = commands.add_parser("replay", help="complete a dead-lettered order by re-running its dead stage(s)")
    replay.add_argument("order_id", metavar="ORDER_ID")
    replay.add_argument("--stage", choices=[s.value for s in STAGES], help="re-run only this dead-lettered stage")
    replay.add_argument("--abandon", action="store_true", help="give the order up instead: compensate and fail it")
    replay.add_argument("--out", type=Path, metavar="DIR", help="the run's output directory (holds its ledger)")
    replay.add_argument("--json", action="store_true", help="print the new outcome as JSON")
    _ledger_options(replay)
    _common(replay)

    status = commands.add_parser("status", help="in-flight orders, replicas, queues and stage state of a running system")
    status.add_argument("--json", action="store_true", help="print the status as one JSON object")
    _common(status)

    submit = commands.add_parser("submit", help="send more orders to a system running with --serve")
    submit.add_argument("--input", type=Path, required=True, metavar="FILE", help=".jsonl or .csv file of orders")
    _common(submit)

    stop = commands.add_parser("stop", help="end a --serve run once what it accepted is done")
    _common(stop)

    restock = commands.add_parser("restock", help="add stock to the shared workshop (recorded), and show what it holds")
    restock.add_argument("lots", nargs="*", metavar="LOT=AMOUNT",
                         help="e.g. jade/A=5 metal/AU750=250.5 (grams) gem/diamond/G-J/VS=12 (carats) box/ring=100")
    restock.add_argument("--reason", default="restocked by an operator", help="recorded with each change")
    restock.add_argument("--out", type=Path, metavar="DIR", help="the run's output directory (holds its ledger)")
    restock.add_argument("--json", action="store_true", help="print the workshop's stock as JSON")
    _ledger_options(restock)
    _common(restock)

    config = commands.add_parser("config", help="print the effective settings (defaults, env, file, flags)")
    _common(config)
    return parser


def _ledger_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger", metavar="PATH|URL", help="the durable ledger: an SQLite file (default: "
                        "<out>/ledger.sqlite3) or a postgresql:// URL; run again on the same ledger to resume")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_assignment,
                        help="any setting by its dotted path, e.g. quality.defect_rate=0.05 (repeatable)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="actor log level")


def _replicas(text: str) -> dict[str, Any]:
    known = {stage.value for stage in STAGES}
    overrides: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        stage, _, count = part.partition("=")
        if stage not in known:
            raise argparse.ArgumentTypeError(f"unknown stage {stage!r}; stages are {', '.join(sorted(known))}")
        if not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"{stage}: replica count must be a positive integer, got {count!r}")
        overrides[stage] = {"replicas": int(count)}
    return overrides


def _assignment(text: str) -> dict[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    nested: dict[str, Any] = {}
    target = nested
    *parents, leaf = key.split(".")
    for parent in parents:
        target = target.setdefault(parent, {})
    target[leaf] = value
    return nested


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for assignment in args.set:
        overrides = deep_merge(overrides, assignment)
    flags = {
        "orders": getattr(args, "orders", None),
        "input": getattr(args, "input", None),
        "seed": getattr(args, "seed", None),
        "time_scale": getattr(args, "time_scale", None),
        "max_in_flight": getattr(args, "max_in_flight", None),
        "out_dir": getattr(args, "out", None),
        "log_level": args.log_level,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if getattr(args, "no_artifacts", False):
        overrides["artifacts"] = False
    if getattr(args, "ledger", None):
        overrides = deep_merge(overrides, {"ledger": {"location": args.ledger}})
    if getattr(args, "no_ledger", False):
        overrides = deep_merge(overrides, {"ledger": {"enabled": False}})
    if getattr(args, "replicas", None):
        overrides = deep_merge(overrides, args.replicas)
    return overrides


def main(argv: list[str] | None = None, settings: FanoutSettings | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True, soft_wrap=True)  # messages stay one greppable line
    try:
        settings = settings or load_settings(overrides_from(args), args.config)
    except (ValidationError, ConfigurationError) as error:
        err.print(f"[red]invalid settings:[/red] {error}")
        return EXIT_USAGE
    configure_logging(settings.log_level)

    if args.command == "config":
        sys.stdout.write(settings.model_dump_json(indent=2) + "\n")
        return EXIT_OK
    if args.command == "run":
        return _run(settings, as_json=args.json, serve=args.serve, err=err)
    if args.command == "replay":
        return _replay(args, settings, err)
    if args.command == "restock":
        return _restock(args, settings, err)
    return _operate(args, settings, err)


def _operate(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    try:
        connect_existing(settings.namespace)
        if args.command == "status":
            status = system_status(settings.namespace)
            if args.json:
                sys.stdout.write(status.model_dump_json() + "\n")
            else:
                render_status(_stdout_console(), status)
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


def _run(settings: FanoutSettings, as_json: bool, serve: bool, err: Console) -> int:
    try:
        settings.source().check_readable()
    except SourceError as error:
        err.print(f"[red]cannot read orders:[/red] {error}")
        return EXIT_USAGE
    system = _start(settings, err)
    if isinstance(system, int):
        return system
    _stop_admitting_on_interrupt(system, err)
    if serve:
        err.print("serving: submit more with `jewelry-fanout submit --input FILE`, end with `jewelry-fanout stop`")
    resume = ("run the same command again to resume: the ledger has every outcome" if settings.ledger.enabled
              else "without a ledger the same command starts over")
    try:
        result = _run_with_progress(system, settings, err, serve)
    except KeyboardInterrupt:  # the second Ctrl-C: leave now
        err.print(f"[red]interrupted again:[/red] left without waiting for the orders in flight; {resume}")
        return EXIT_INTERRUPTED
    finally:
        system.shutdown()

    if result.summary.orders_total == 0:
        err.print(f"[yellow]warning:[/yellow] {settings.source().label} held no records")
    if as_json:
        sys.stdout.write(result.summary.model_dump_json() + "\n")
    else:
        render_summary(_stdout_console(), result.summary, result.files)
    if result.summary.not_started:  # a stop came while records were still unread
        done = result.summary.completed + result.summary.failed + result.summary.dead_lettered
        err.print(f"[yellow]interrupted:[/yellow] {done} order(s) done, {result.summary.not_started} record(s) "
                  f"not started; {resume}")
        return EXIT_INTERRUPTED
    try:
        result.raise_if_incomplete()
    except RunIncomplete as error:
        err.print(f"[red]run incomplete:[/red] {error}")
        return EXIT_INCOMPLETE
    if result.summary.dead_lettered:
        err.print(f"[magenta]{result.summary.dead_lettered} order(s) dead-lettered:[/magenta] see "
                  f"dead-lettered outcomes in {settings.out_dir}, then `jewelry-fanout replay ORDER_ID`")
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def _stop_admitting_on_interrupt(system: FanoutSystem, err: Console) -> None:
    """The first Ctrl-C or SIGTERM (what `ray job stop` sends) stops admitting orders and lets those
    in flight conclude, so that outcomes and summary are written; a second one leaves at once."""
    interrupts = []

    def on_interrupt(signum: int, _frame: Any) -> None:
        interrupts.append(signum)
        if len(interrupts) > 1:
            raise KeyboardInterrupt
        err.print(f"[yellow]{signal.Signals(signum).name}:[/yellow] admitting no more orders; those in flight "
                  f"conclude (Ctrl-C again to leave at once)")
        system.drain()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_interrupt)


def _start(settings: FanoutSettings, err: Console) -> FanoutSystem | int:
    """A started system, or the exit code that says why there is none."""
    try:
        where = FanoutSystem.connect(settings)
        err.print(f"jewelry-fanout on {where}, namespace [bold]{settings.namespace}[/bold]")
        return FanoutSystem.start(settings)
    except SystemStartError as error:
        err.print(f"[red]could not start:[/red] {error}")
        return EXIT_START
    except FanoutError as error:  # a ledger that does not match or cannot be used
        err.print(f"[red]ledger:[/red] {error}")
        return EXIT_USAGE


def _replay(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
    """Start the workshop on the run's ledger (replicas come back with their state) and replay one order."""
    if not settings.ledger.enabled:
        err.print("[red]replay needs a ledger[/red]")
        return EXIT_USAGE
    spec = settings.ledger_spec()
    if spec.path is not None and not spec.path.exists():
        err.print(f"[red]ledger:[/red] {spec.path} does not exist; pass --out DIR or --ledger PATH of the run")
        return EXIT_USAGE
    system = _start(settings, err)
    if isinstance(system, int):
        return system
    try:
        stage = StageName(args.stage) if args.stage else None
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


def _restock(args: argparse.Namespace, settings: FanoutSettings, err: Console) -> int:
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


def _run_with_progress(system: FanoutSystem, settings: FanoutSettings, err: Console, serve: bool) -> RunResult:
    columns = (TextColumn("orders"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("orders", total=None, detail="")

        def on_progress(progress: Any, tally: Any) -> None:
            bar.update(
                task,
                total=progress.expected_records or None,
                completed=tally.terminal + tally.invalid_records + tally.lost + tally.unfinished,
                detail=f"in flight {progress.in_flight}",
            )

        return system.run(out_dir=settings.out_dir, on_progress=on_progress, serve=serve)
