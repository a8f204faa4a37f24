"""Where the CLI writes: tables to stdout, messages to stderr, one greppable line each."""

from __future__ import annotations

import sys

from rich.console import Console


def stdout_console() -> Console:
    """Tables at the terminal's width, or wide enough for logs and `ray job logs` when piped."""
    return Console() if sys.stdout.isatty() else Console(width=150)


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True)
