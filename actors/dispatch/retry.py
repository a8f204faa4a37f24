"""How a stage call is retried: attempts, and exponential backoff with full jitter.

Ray retries actor calls with no delay at all (ray-project/ray #28015), so the delay comes from
here. Only errors are retried; a business failure is an answer and is never asked again.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=3, ge=1, description="total attempts, the first included")
    base_delay_s: float = Field(default=0.1, ge=0)
    max_delay_s: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetryPolicy:
        if self.max_delay_s < self.base_delay_s:
            raise ValueError("max_delay_s must be at least base_delay_s")
        return self

    def delay_s(self, failed_attempts: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(n-1))] after the n-th failed attempt."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))
        return rng.uniform(0, ceiling)
