"""When a stage pool should grow or shrink: Ray Serve's autoscaling model, as a plain class.

Each tick the pool's ongoing orders (waiting in the Dispatcher for one of its replicas, or in a call
to one) are sampled. Over the look-back window their mean, divided by the target per replica, is the
replica count the pool wants (within min and max). A change is made only once the pool has wanted
more replicas for `upscale_delay_s`, or fewer for `downscale_delay_s`, without a break: bursts
shorter than the delay move nothing, and a pool does not flap between two sizes.

Wanting fewer is counted from when the window's mean first asked for fewer, or from when every
sample since has on its own, whichever is earlier. When the load stops, the mean lags it by up to
a window; the samples do not, so the pool shrinks one downscale delay after the load stopped, not a
window later. A single busy sample breaks that run, so bursts still hold the pool up.

The autoscaler ticks every so often, so a change due between two ticks would otherwise be made up
to a tick late, and a drain takes a moment more: `decide` takes how long a change made now takes
to be in place (`tick_s`: the autoscaler gives it the tick plus the drain's budget) and makes the
change early enough that the pool is at its new size when the delay ends.

Every pool can scale, material and packaging included: stock, certificates and numbers live in
the shared store, so a replica scaled away takes none of them with it. What a replica keeps of its
own (benches, caches, statistics) is checkpointed in the ledger, which is why autoscaling needs one
(see the settings).
"""

from __future__ import annotations

import math
from collections import deque

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AutoscalingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(ge=1, le=100)
    target_ongoing_per_replica: float = Field(default=4.0, gt=0, description="orders waiting or running per replica")
    upscale_delay_s: float = Field(default=2.0, ge=0)
    downscale_delay_s: float = Field(default=10.0, ge=0)
    look_back_s: float = Field(default=3.0, gt=0, description="window the ongoing orders are averaged over")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        return self


class AutoscalingPolicy:
    """Feed it `decide(now, ongoing, current, tick_s)` on every tick; it answers the replica count to have."""

    def __init__(self, config: AutoscalingConfig) -> None:
        self.config = config
        self._samples: deque[tuple[float, float]] = deque()
        self._wanting: int | None = None  # the direction wanted (+1 / -1), and since when
        self._since = 0.0
        self._quiet_since: float | None = None  # every sample since then alone asked for fewer

    def desired(self, now: float) -> int:
        """The count the look-back window asks for, before any delay."""
        mean = sum(n for _, n in self._samples) / len(self._samples) if self._samples else 0.0
        return self._count_for(mean)

    def _count_for(self, ongoing: float) -> int:
        wanted = math.ceil(ongoing / self.config.target_ongoing_per_replica - 1e-9)
        return min(self.config.max_replicas, max(self.config.min_replicas, wanted))

    def decide(self, now: float, ongoing: float, current: int, tick_s: float = 0.0) -> int:
        """`tick_s`: how long a change decided now takes to be in place (see the module's docstring)."""
        self._samples.append((now, ongoing))
        while self._samples and self._samples[0][0] < now - self.config.look_back_s:
            self._samples.popleft()
        if self._count_for(ongoing) >= current:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now
        wanted = self.desired(now)
        direction = (wanted > current) - (wanted < current)
        if direction == 0:
            self._wanting = None
            return current
        if self._wanting != direction:
            self._wanting, self._since = direction, now
        since = self._since
        if direction < 0 and self._quiet_since is not None:
            since = min(since, self._quiet_since)
        delay = self.config.upscale_delay_s if direction > 0 else self.config.downscale_delay_s
        if now + tick_s - since < delay - 1e-9:  # the next tick would still be in time
            return current
        self._wanting = self._quiet_since = None
        return wanted
