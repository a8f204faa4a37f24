"""A circuit breaker per stage: stop spending retries and timeouts on a stage that fails every call.

The states and rules are Resilience4j's (resilience4j.readme.io/docs/circuitbreaker):
- **closed**: every call goes; outcomes fill a count-based sliding window of the last `window`
  calls. Once it holds at least `minimum_calls`, a failure rate at or above
  `failure_rate_threshold` percent opens the breaker.
- **open**: no call goes (the caller gets `CircuitOpen` at once). After `open_s` it turns
  half-open by itself, the next time anyone looks.
- **half-open**: up to `half_open_calls` trial calls go, the rest are refused; once every trial let
  through has answered, their failure rate decides: at or above the threshold it opens again, below
  it closes. (Resilience4j waits for all `half_open_calls`; a shard with fewer orders waiting than
  that would stay half-open, its few trial orders retrying into the missing trial calls.)

Written here rather than taken from a library: the maintained Python breakers (pybreaker,
aiobreaker, circuitbreaker, purgatory) open on a count of failures, with no failure-rate window and
no minimum number of calls, so a busy stage that fails one call in ten opens them as surely as a
dead one. The breaker is a plain class on an
injected clock, so its state machine is unit-tested without time passing.

A call is one order's attempt at the stage (a batch call of 50 orders is 50 calls): the rate is
over orders, whatever the batching. Outcomes of calls permitted in an earlier state (`epoch`) are
ignored, so a late answer from before the breaker opened never counts as a trial.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from actors.errors import FanoutError
from actors.models.breakers import BreakerSnapshot, BreakerState


class BreakerPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    failure_rate_threshold: float = Field(
        default=50.0, gt=0, le=100, description="percent of failed calls in the window that opens it"
    )
    window: int = Field(default=100, ge=1, description="the last N calls whose outcomes count")
    minimum_calls: int = Field(default=20, ge=1, description="calls in the window before a rate is judged")
    open_s: float = Field(default=10.0, gt=0, description="how long it stays open before trial calls")
    half_open_calls: int = Field(default=5, ge=1, description="trial calls while half-open")


class CircuitOpen(FanoutError):
    """A call the stage's breaker refused: nothing was sent."""


class CircuitBreaker:
    def __init__(
        self,
        stage: str,
        policy: BreakerPolicy,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.stage = stage
        self.policy = policy
        self._clock = clock
        self._on_change = on_change or (lambda _state: None)
        self._state = BreakerState.CLOSED
        self.epoch = 0  # bumped on every transition
        self._window: deque[bool] = deque(maxlen=policy.window)  # True: the call failed
        self._failures = 0  # in the window
        self._opened_at = 0.0
        self._trials_sent = 0
        self._trial_outcomes: list[bool] = []
        self.opened = 0
        self.refused = 0
        self.last_failure = ""
        self._tripped = (0.0, 0)  # the failure rate and calls that last opened it

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.policy.open_s:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def permit(self, calls: int) -> int:
        """How many of `calls` may go now (the first ones); the rest are refused."""
        if not self.policy.enabled:
            return calls
        state = self.state
        if state is BreakerState.CLOSED:
            return calls
        allowed = 0
        if state is BreakerState.HALF_OPEN:
            allowed = min(calls, self.policy.half_open_calls - self._trials_sent)
            self._trials_sent += allowed
        self.refused += calls - allowed
        return allowed

    @property
    def trials_left(self) -> int:
        """Half-open: trial calls not sent yet."""
        return self.policy.half_open_calls - self._trials_sent if self.state is BreakerState.HALF_OPEN else 0

    def record(self, epoch: int, successes: int, failures: int, why: str = "") -> None:
        """Outcomes of calls permitted at `epoch`; ignored if the breaker moved on since."""
        if not self.policy.enabled or epoch != self.epoch or successes + failures == 0:
            return
        if failures and why:
            self.last_failure = why
        if self._state is BreakerState.CLOSED:
            self._add_to_window(successes, failures)
            if len(self._window) >= self.policy.minimum_calls and self._rate() >= self.policy.failure_rate_threshold:
                self._tripped = (self._rate(), len(self._window))
                self._move(BreakerState.OPEN)
        elif self._state is BreakerState.HALF_OPEN:
            self._trial_outcomes.extend([False] * successes + [True] * failures)
            if len(self._trial_outcomes) >= self._trials_sent:
                rate = 100.0 * sum(self._trial_outcomes) / len(self._trial_outcomes)
                self._tripped = (rate, len(self._trial_outcomes))
                self._move(BreakerState.OPEN if rate >= self.policy.failure_rate_threshold else BreakerState.CLOSED)

    def retry_after_s(self) -> float:
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.open_s - self._clock())

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        if state is BreakerState.HALF_OPEN:
            calls = len(self._trial_outcomes)
            rate = 100.0 * sum(self._trial_outcomes) / calls if calls else None
        elif state is BreakerState.OPEN:
            rate, calls = self._tripped
        else:
            calls = len(self._window)
            rate = self._rate() if calls >= self.policy.minimum_calls else None
        return BreakerSnapshot(
            stage=self.stage,
            state=state,
            failure_rate=round(rate, 1) if rate is not None else None,
            calls=calls,
            retry_after_s=round(self.retry_after_s(), 3),
            opened=self.opened,
            refused=self.refused,
        )

    def refusal(self) -> CircuitOpen:
        """The error a refused call answers with: what failed, and when trials resume."""
        last = f"; last failure: {self.last_failure}" if self.last_failure else ""
        return CircuitOpen(
            f"{self.stage} circuit {self.state.value}: calls refused, trial calls in {self.retry_after_s():.1f} s{last}"
        )

    def _rate(self) -> float:
        return 100.0 * self._failures / len(self._window) if self._window else 0.0

    def _add_to_window(self, successes: int, failures: int) -> None:
        for failed in [True] * failures + [False] * successes:
            if len(self._window) == self._window.maxlen and self._window[0]:
                self._failures -= 1
            self._window.append(failed)
            self._failures += failed

    def _move(self, state: BreakerState) -> None:
        self._state = state
        self.epoch += 1
        self._trials_sent = 0
        self._trial_outcomes = []
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
            self.opened += 1
        self._window.clear()
        self._failures = 0
        self._on_change(state)
