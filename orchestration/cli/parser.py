"""The command line: its commands and options, and the settings overrides they amount to."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from actors.models import STAGES
from orchestration.settings import deep_merge


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
    run.add_argument("--max-in-flight", type=int, metavar="K", help="orders each Dispatcher shard admits at once")
    run.add_argument(
        "--dispatchers",
        type=int,
        metavar="N",
        help="Dispatcher shards (control.dispatchers); each order goes to one by a hash of its id",
    )
    run.add_argument("--out", type=Path, metavar="DIR", help="where outcomes, rejects and artifacts go")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    run.add_argument("--no-artifacts", action="store_true", help="skip STL meshes and certificate files")
    run.add_argument(
        "--serve",
        action="store_true",
        help="stay up after the source is read and take more orders (submit) until stopped",
    )
    run.add_argument(
        "--http",
        type=_host_port,
        metavar="[HOST:]PORT",
        help="serve, and take orders over HTTP too: the front door's address (default host 127.0.0.1)",
    )
    _ledger_options(run)
    run.add_argument(
        "--no-ledger",
        action="store_true",
        help="keep nothing durable: faster, but a crash loses in-flight work and nothing restarts",
    )
    _common(run)

    replay = commands.add_parser("replay", help="complete a dead-lettered order by re-running its dead stage(s)")
    replay.add_argument("order_id", metavar="ORDER_ID")
    replay.add_argument("--stage", choices=[s.value for s in STAGES], help="re-run only this dead-lettered stage")
    replay.add_argument("--abandon", action="store_true", help="give the order up instead: compensate and fail it")
    replay.add_argument("--out", type=Path, metavar="DIR", help="the run's output directory (holds its ledger)")
    replay.add_argument("--json", action="store_true", help="print the new outcome as JSON")
    _ledger_options(replay)
    _common(replay)

    trace = commands.add_parser(
        "trace",
        help="one order's story from the ledger: its six stage calls on one time "
        "axis, retries, compensations, dead letter, replay and outcome",
    )
    trace.add_argument("order_id", metavar="ORDER_ID")
    trace.add_argument("--out", type=Path, metavar="DIR", help="the run's output directory (holds its ledger)")
    trace.add_argument("--json", action="store_true", help="print the trace as one JSON object")
    _ledger_options(trace)
    _common(trace)

    runs = commands.add_parser(
        "runs",
        help="the runs a ledger holds, of every system that shares it: id, namespace, start and end, "
        "orders by status, and whether each is still going",
    )
    runs.add_argument("--out", type=Path, metavar="DIR", help="a run's output directory (holds its ledger)")
    runs.add_argument("--json", action="store_true", help="print the runs as one JSON list")
    _ledger_options(runs)
    _common(runs)

    status = commands.add_parser(
        "status", help="in-flight orders, replicas, queues and stage state of a running system"
    )
    status.add_argument("--json", action="store_true", help="print the status as one JSON object")
    _common(status)

    submit = commands.add_parser("submit", help="send more orders to a system running with --serve")
    submit.add_argument("--input", type=Path, required=True, metavar="FILE", help=".jsonl or .csv file of orders")
    submit.add_argument(
        "--http",
        metavar="URL",
        help="post them to the HTTP front door at URL (key: the first of http.api_keys) instead of joining "
        "the cluster; a repeat of the same file sends the same idempotency keys, so nothing is accepted twice",
    )
    _common(submit)

    scheduled = commands.add_parser("scheduled", help="list the orders waiting for their time (not_before)")
    scheduled.add_argument("--http", metavar="URL", help="ask the front door at URL instead of reading the ledger")
    scheduled.add_argument("--json", action="store_true", help="print them as one JSON list")
    _ledger_options(scheduled)
    _common(scheduled)

    cancel = commands.add_parser("cancel", help="cancel a scheduled order that has not started")
    cancel.add_argument("order_id", metavar="ORDER_ID")
    cancel.add_argument("--http", metavar="URL", help="through the front door at URL instead of joining the cluster")
    _common(cancel)

    stop = commands.add_parser("stop", help="end a --serve run once what it accepted is done")
    _common(stop)

    restock = commands.add_parser("restock", help="add stock to the shared workshop (recorded), and show what it holds")
    restock.add_argument(
        "lots",
        nargs="*",
        metavar="LOT=AMOUNT",
        help="e.g. jade/A=5 metal/AU750=250.5 (grams) gem/diamond/G-J/VS=12 (carats) box/ring=100",
    )
    restock.add_argument("--reason", default="restocked by an operator", help="recorded with each change")
    restock.add_argument("--out", type=Path, metavar="DIR", help="the run's output directory (holds its ledger)")
    restock.add_argument("--json", action="store_true", help="print the workshop's stock as JSON")
    _ledger_options(restock)
    _common(restock)

    config = commands.add_parser("config", help="print the effective settings (defaults, env, file, flags)")
    _common(config)
    return parser


def _ledger_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        metavar="PATH|URL",
        help="the durable ledger: an SQLite file (default: "
        "<out>/ledger.sqlite3) or a postgresql:// URL; run again on the same ledger to resume",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_assignment,
        help="any setting by its dotted path, e.g. quality.defect_rate=0.05 (repeatable)",
    )
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


def _host_port(text: str) -> dict[str, Any]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}")
    return {"host": host, "port": int(port)} if host else {"port": int(port)}


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
    if getattr(args, "dispatchers", None):
        overrides = deep_merge(overrides, {"control": {"dispatchers": args.dispatchers}})
    if getattr(args, "command", None) == "run" and getattr(args, "http", None):
        overrides = deep_merge(overrides, {"http": args.http})
    if getattr(args, "replicas", None):
        overrides = deep_merge(overrides, args.replicas)
    return overrides
