"""Where the CLI writes: tables to stdout, messages to stderr, one greppable line each."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console

_answers: list[TextIO] = []  # the process's stdout, once `reserve_stdout` has kept it for the answer


def stdout_console() -> Console:
    """Tables at the terminal's width, or wide enough for logs and `ray job logs` when piped."""
    return Console() if sys.stdout.isatty() else Console(width=150)


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def reserve_stdout() -> None:
    """Keep this process's stdout for its one machine-readable answer (`run --json`).

    Ray forwards the log lines of its workers and raylet to the driver's stdout, at any moment up to
    the process's exit: a warning about calls to actors that `shutdown` had just killed once landed
    after the summary, and the JSON no longer parsed. From here on, whatever else writes to stdout,
    from Python or at the file-descriptor level, goes to stderr. For a command run as a process:
    it is not undone."""
    if _answers:
        return
    sys.stdout.flush()
    _answers.append(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def write_answer(text: str) -> None:
    """One line of the command's answer on stdout (the reserved one, after `reserve_stdout`)."""
    out = _answers[0] if _answers else sys.stdout
    out.write(text + "\n")
    out.flush()
