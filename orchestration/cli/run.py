"""`jewelry-fanout run`: start the system, feed the source with a progress bar, print the summary;
the first Ctrl-C or SIGTERM drains, a second one leaves."""

from __future__ import annotations

import signal
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from actors.errors import FanoutError, RunIncomplete, SourceError, SystemStartError, describe_error
from orchestration.cli.exit_codes import (
    EXIT_DEAD_LETTERS,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_START,
    EXIT_USAGE,
)
from orchestration.cli.terminal import reserve_stdout, stdout_console, write_answer
from orchestration.render import render_summary
from orchestration.settings import FanoutSettings
from orchestration.system import FanoutSystem, RunResult


def run_command(settings: FanoutSettings, as_json: bool, serve: bool, err: Console) -> int:
    try:
        settings.source().check_readable()
    except SourceError as error:
        err.print(f"[red]cannot read orders:[/red] {error}")
        return EXIT_USAGE
    if as_json:
        reserve_stdout()  # before Ray starts forwarding log lines
    system = start_system(settings, err)
    if isinstance(system, int):
        return system
    _stop_admitting_on_interrupt(system, err)
    front_door = None
    if settings.http.port is not None:
        front_door = _start_front_door(system, settings, err)
        if isinstance(front_door, int):
            return front_door
    if serve:
        err.print("serving: submit more with `jewelry-fanout submit --input FILE`, end with `jewelry-fanout stop`")
    resume = (
        "run the same command again to resume: the ledger has every outcome"
        if settings.ledger.enabled
        else "without a ledger the same command starts over"
    )
    try:
        result = _run_with_progress(system, settings, err, serve)
    except KeyboardInterrupt:  # the second Ctrl-C: leave now
        err.print(f"[red]interrupted again:[/red] left without waiting for the orders in flight; {resume}")
        return EXIT_INTERRUPTED
    finally:
        if front_door is not None:
            from orchestration.http.ingress import stop_front_door

            stop_front_door()
        system.shutdown()

    if result.summary.orders_total == 0:
        err.print(f"[yellow]warning:[/yellow] {settings.source().label} held no records")
    if as_json:
        write_answer(result.summary.model_dump_json())
    else:
        render_summary(stdout_console(), result.summary, result.files)
    if result.summary.not_started:  # a stop came while records were still unread
        done = result.summary.completed + result.summary.failed + result.summary.dead_lettered
        err.print(
            f"[yellow]interrupted:[/yellow] {done} order(s) done, {result.summary.not_started} record(s) "
            f"not started; {resume}"
        )
        return EXIT_INTERRUPTED
    try:
        result.raise_if_incomplete()
    except RunIncomplete as error:
        err.print(f"[red]run incomplete:[/red] {error}")
        return EXIT_INCOMPLETE
    if result.summary.dead_lettered:
        err.print(
            f"[magenta]{result.summary.dead_lettered} order(s) dead-lettered:[/magenta] see "
            f"dead-lettered outcomes in {settings.out_dir}, then `jewelry-fanout replay ORDER_ID`"
        )
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
        err.print(
            f"[yellow]{signal.Signals(signum).name}:[/yellow] admitting no more orders; those in flight "
            f"conclude (Ctrl-C again to leave at once)"
        )
        system.drain()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_interrupt)


def _start_front_door(system: FanoutSystem, settings: FanoutSettings, err: Console) -> str | int:
    """The HTTP front door's URL, or the exit code that says why there is none (the system is stopped)."""
    from orchestration.http.ingress import start_front_door  # Serve and FastAPI cost a second to import

    try:
        url = start_front_door(settings)
    except Exception as error:  # noqa: BLE001 - Serve's own errors (a port taken, say): said, and the run not begun
        err.print(f"[red]could not start the HTTP front door:[/red] {describe_error(error)}")
        system.shutdown()
        return EXIT_START
    err.print(f"orders over HTTP: POST {url}/v1/orders (API docs at {url}/docs)")
    return url


def start_system(settings: FanoutSettings, err: Console) -> FanoutSystem | int:
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


def _run_with_progress(system: FanoutSystem, settings: FanoutSettings, err: Console, serve: bool) -> RunResult:
    columns = (
        TextColumn("orders"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
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
