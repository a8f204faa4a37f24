"""Orders sent over HTTP, as the HTTP front door hands them to the Producer, and what it answers.

The front door validates each body and hashes it; the Producer decides, under the client's
idempotency key, whether the order is new (accepted and recorded with its answer in one
transaction), a repeat (the recorded answer again), a conflict, or refused for now (its queue is
full). Compact frozen records: they cross one actor call per request.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from actors.models.order import JewelryOrder
from actors.models.results import FieldError


class Submission(BaseModel):
    """One valid order, under the key its client sent it with."""

    model_config = ConfigDict(frozen=True)

    client: str  # who sent it: a digest of its API key, never the key
    idempotency_key: str
    body_hash: str  # of the body as sent (an order id the front door generated is not part of it)
    order: JewelryOrder


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # new: recorded, and queued for the run
    REPEATED = "repeated"  # the key's first request was accepted: the same answer again
    KEY_REUSED = "key_reused"  # the key was used with another body
    IN_PROGRESS = "in_progress"  # the key's first request is still being accepted
    REJECTED = "rejected"  # the acceptance rule refused the order (its id is taken, say)
    BUSY = "busy"  # the run's queue is full: try again later
    RATE_LIMITED = "rate_limited"  # the client is over its rate limit: try again later
    STAGE_OPEN = "stage_open"  # a stage's circuit breaker is open: try again once it may close


class SubmissionAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    order_id: str
    status: str = "accepted"  # the order's status when it was accepted
    errors: tuple[FieldError, ...] = ()  # why it was rejected
    retry_after_s: float | None = None  # when busy, rate-limited or a stage is open
    stages: tuple[str, ...] = ()  # the stages whose breaker is open


class StoredRequest(BaseModel):
    """What the ledger keeps of a key's first accepted request."""

    model_config = ConfigDict(frozen=True)

    body_hash: str
    order_id: str
    status: str


class StageEffect(BaseModel):
    """A stage's result for an order as its replica recorded it, with when."""

    model_config = ConfigDict(frozen=True)

    stage: str
    status: str | None
    result: str | None  # the StageResult's JSON
    recorded_at: float


class OrderProgress(BaseModel):
    """Where an order stands, read from the ledger alone (so any front door replica can answer)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    accepted_at: float | None  # when it was accepted over HTTP (None: it came from a file or the generator)
    effects: tuple[StageEffect, ...]  # in the order they were recorded
    outcome_status: str | None
    outcome: str | None  # the OrderOutcome's JSON line, as outcomes.jsonl holds it
    not_before: float | None = None  # a scheduled order: when it is due
    admitted_at: float | None = None  # ... and when it was admitted (None: still waiting)

    @property
    def status(self) -> str:
        if self.outcome_status is not None:
            return self.outcome_status
        if self.effects:
            return "running"
        return "scheduled" if self.not_before is not None and self.admitted_at is None else "accepted"
