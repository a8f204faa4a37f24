"""A stage's circuit breaker as the rest of the system sees it: its state, and why.

The breaker itself is `actors.dispatch.breaker`; this is the record a Dispatcher shard reports to
the Producer (which holds admissions on it), to `status` and to the front door.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """0 closed, 1 half-open, 2 open: the gauge's value, and how bad it is."""
        return _LEVELS[self]


_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class BreakerSnapshot(BaseModel):
    """A breaker as `status`, the Producer and the front door see it."""

    model_config = ConfigDict(frozen=True)

    stage: str
    state: BreakerState
    failure_rate: float | None  # percent: over the window (None: fewer calls than the minimum), the trials, or
    calls: int  # ... the calls that opened it (open)
    retry_after_s: float  # open: until trial calls are let through; else 0
    opened: int  # times it opened
    refused: int  # calls refused while open or past the trials
