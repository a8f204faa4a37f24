"""A token bucket per API key: `rate_per_s` requests a second, with a burst of the same size.

It lives in the Producer, the one actor every order-taking request reaches whichever front door
replica took it, so the limit holds across all the replicas without a store of its own or another
hop per request. A restarted Producer starts every bucket full: the limit is about fairness between
shops, not an account that must survive. The clock is injected, so it is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FORGET_AFTER = 10_000  # buckets kept at most: past it, the full ones (idle clients) are dropped


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(rate_per_s, 1.0)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)

    def take(self, client: str, cost: float = 1.0) -> float:
        """Spend `cost` of the client's tokens: 0.0 if it may go now, else how long until it may."""
        now = self._clock()
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens >= cost:
            self._buckets[client] = (tokens - cost, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > FORGET_AFTER:
            self._forget_idle(now)
        return (cost - tokens) / self.rate_per_s

    def _forget_idle(self, now: float) -> None:
        for client, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate_per_s >= self.burst:
                del self._buckets[client]
