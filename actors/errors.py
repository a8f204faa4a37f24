"""Every exception jewelry-fanout raises, under one root.

Business outcomes (out of stock, QC reject) are not here: they travel as results. Only
`BusinessFailure` crosses from a stage's logic to its shared base, which turns it into a result.
"""

from __future__ import annotations

from typing import Any


class FanoutError(Exception):
    """Root of jewelry-fanout's errors."""


class BusinessFailure(FanoutError):
    """A stage's logic declines an order for a business reason; the base records it as a result."""

    def __init__(self, reason: str, output: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output


class SourceError(FanoutError):
    """The order source as a whole cannot be read (missing file, unknown format)."""


class ConfigurationError(FanoutError):
    """Settings that cannot describe a runnable system."""


class LedgerUnavailable(FanoutError):
    """The store could not run a transaction within its retry budget (a database down or cut off for
    longer than `ledger.retry_s`). Nothing of that transaction is recorded, so an order it was for is
    not done: it is reported unfinished, and the same command finishes it once the store is back."""


class SystemStartError(FanoutError):
    """The actors could not be created or did not become ready in time."""


class RunIncomplete(FanoutError):
    """A run ended with valid orders that never reached a terminal outcome."""

    def __init__(self, missing: int, cause: str) -> None:
        super().__init__(f"{missing} accepted order(s) never reached a terminal outcome: {cause}")
        self.missing = missing
        self.cause = cause
