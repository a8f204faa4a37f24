"""`jewelry-fanout` (and `python -m orchestration`): run the workshop, print what happened.

Exit codes: 0 every valid order reached a terminal outcome; 1 some did not (lost, the source
stopped early, or unfinished because the ledger was unreachable: the same command finishes them);
2 bad arguments, settings, input file or ledger (for trace: an order id it does not hold; for
cancel: an order that has started or is not scheduled); 3 the actors could not start, or (for
status, submit, stop, cancel) no running system or front door was found; 4 the run
finished but some orders are dead-lettered and wait for `replay` (for `replay`: the order is still
dead-lettered); 130 the run was interrupted (Ctrl-C or SIGTERM) before it had read its source:
the same command resumes it.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from actors.errors import ConfigurationError
from actors.logs import configure_logging
from orchestration.cli.exit_codes import (
    EXIT_DEAD_LETTERS,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_START,
    EXIT_USAGE,
)
from orchestration.cli.ledger_commands import (
    replay_command,
    restock_command,
    runs_command,
    trace_command,
)
from orchestration.cli.parser import _replicas, build_parser, overrides_from
from orchestration.cli.remote import operate_command
from orchestration.cli.run import run_command
from orchestration.cli.schedule_commands import cancel_command, scheduled_command
from orchestration.cli.terminal import stderr_console
from orchestration.settings import FanoutSettings, load_settings

__all__ = [  # the exit codes are part of the command's contract (see above)
    "EXIT_DEAD_LETTERS",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_START",
    "EXIT_USAGE",
    "_replicas",
    "build_parser",
    "main",
    "overrides_from",
]


def main(argv: list[str] | None = None, settings: FanoutSettings | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = stderr_console()
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
        serve = args.serve or settings.http.port is not None  # the front door takes orders while serving
        return run_command(settings, as_json=args.json, serve=serve, err=err)
    if args.command == "replay":
        return replay_command(args, settings, err)
    if args.command == "restock":
        return restock_command(args, settings, err)
    if args.command == "trace":
        return trace_command(args, settings, err)
    if args.command == "runs":
        return runs_command(args, settings, err)
    if args.command == "scheduled":
        return scheduled_command(args, settings, err)
    if args.command == "cancel":
        return cancel_command(args, settings, err)
    return operate_command(args, settings, err)
