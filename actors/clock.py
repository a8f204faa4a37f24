"""The clock a stage replica paces itself by, passed in so that tests can hold time still.

A stage's duration is a cadence (`Stage._run` tops its own work up to it), so the base reads a
monotonic clock and sleeps; results carry wall-clock times. Unit tests give a fake clock that
moves only when slept or advanced, instead of asserting wall-clock windows on a busy machine.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""

    def sleep(self, seconds: float) -> None:
        """Wait that long (blocking: a stage replica runs one call at a time)."""

    def utcnow(self) -> datetime:
        """The wall-clock time, timezone-aware, for the times a result reports."""


class SystemClock:
    """The real one: `time.perf_counter`, `time.sleep`, `datetime.now(UTC)`."""

    def monotonic(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def utcnow(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()
