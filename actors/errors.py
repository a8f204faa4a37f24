"""Every exception jewelry-fanout raises, under one root.

Business outcomes (out of stock, QC reject) are not here: they travel as results. Only
`BusinessFailure` crosses from a stage's logic to its shared base, which turns it into a result.
"""

from __future__ import annotations

from typing import Any


def describe_error(error: BaseException) -> str:
    """`TypeName: first line of the message`: how an error is named in a result, a log line or a
    report, without the traceback Ray appends to an error that crossed from another process."""
    if isinstance(cause := getattr(error, "cause", None), BaseException):
        error = cause  # what a failed Ray call wraps (a RayTaskError's own error)
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text.strip() else type(error).__name__


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


def ledger_outage(reason: str | None) -> LedgerUnavailable | None:
    """The `LedgerUnavailable` a stage's error result reports, if that is what it reports: the stage
    could not read or record in the store (its own write, or the call raised it). Such an order is
    not the stage's failure and not done: it must not be dead-lettered or failed, because the
    store may be back by the time its outcome is written."""
    for prefix in (f"{LedgerUnavailable.__name__}: ", f"ledger: {LedgerUnavailable.__name__}: "):
        if reason is not None and reason.startswith(prefix):
            return LedgerUnavailable(reason.removeprefix(prefix))
    return None


class SystemStartError(FanoutError):
    """The actors could not be created or did not become ready in time."""


class RunIncomplete(FanoutError):
    """A run ended with valid orders that never reached a terminal outcome."""

    def __init__(self, missing: int, cause: str) -> None:
        super().__init__(f"{missing} accepted order(s) never reached a terminal outcome: {cause}")
        self.missing = missing
        self.cause = cause


class ClaimRefused(FanoutError):
    """The store cannot grant an order's claim (stock ran out, a certificate is held by another
    order): the transaction is rolled back, and the replica decides again from the store's truth."""

    def __init__(self, order_id: str, reason: str) -> None:
        super().__init__(f"order {order_id}: {reason}")
        self.order_id = order_id
        self.reason = reason


class DuplicateEffect(FanoutError):
    """Another replica recorded an effect for this (stage, order) first; its result stands."""


class Superseded(FanoutError):
    """A newer incarnation of this replica has taken over its checkpoint; this one must not write.

    It happens when a replica is declared dead while its process still runs: the actors of a
    SIGKILLed driver live on for a moment, and a resumed run starts the same replicas meanwhile.
    """


class LedgerMismatch(FanoutError):
    """The ledger was written by a run whose stages were set up differently."""


class NotRunning(FanoutError):
    """No running jewelry-fanout system was found where we looked."""


class ReplayRefused(FanoutError):
    """`replay` cannot act on the order: no ledger, an unknown id, or nothing dead-lettered to redo."""


class NotServing(FanoutError):
    """A submission reached a Producer that is not taking any (not in serve mode, or stopping)."""


class RunInProgress(FanoutError):
    """Another run is still going on this system: one run at a time."""


class NumbersExhausted(FanoutError):
    """A number series (S10 tracking numbers) has issued every number it has."""


class MembershipError(FanoutError):
    """A change to a pool's members that the pool cannot make (an unknown name, its last live replica)."""
