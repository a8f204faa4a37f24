"""Results the actors exchange: one `StageResult` per stage and order, one `OrderOutcome` per order.

A business failure (out of stock, QC reject) is a result with a reason, not an exception: it is
as much an answer as success, and the order's other five results stay next to it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.models.order import JewelryOrder
from actors.models.outputs import StageOutput
from actors.models.wire import JsonPickled


class StageName(StrEnum):
    MATERIAL = "material"
    DESIGN = "design"
    PRODUCTION = "production"
    QUALITY = "quality"
    PACKAGING = "packaging"
    LOGISTICS = "logistics"


STAGES: tuple[StageName, ...] = tuple(StageName)


class StageStatus(StrEnum):
    OK = "ok"
    BUSINESS_FAILURE = "business_failure"
    ERROR = "error"


class OrderStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    # A stage kept erroring after its retries: the order waits, its other stages' work held, for
    # `jewelry-fanout replay` to complete it (or abandon it, which compensates).
    DEAD_LETTERED = "dead_lettered"
    # A scheduled order cancelled before it was due: it never started, no stage did anything.
    CANCELLED = "cancelled"


# Outcomes that concluded without a stage being called: they have no stage results.
WITHOUT_STAGES = (OrderStatus.REJECTED, OrderStatus.CANCELLED)


class StageResult(JsonPickled):
    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    stage: StageName
    status: StageStatus
    output: Annotated[StageOutput, Field(discriminator="stage")] | None = None
    reason: str | None = None
    attempts: int = Field(default=1, ge=1)
    started_at: datetime
    finished_at: datetime
    replica: str
    node_id: str
    replayed: bool = Field(default=False, description="answered from the idempotency record")

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000.0

    @model_validator(mode="after")
    def _reason_when_not_ok(self) -> StageResult:
        if self.status is not StageStatus.OK and not self.reason:
            raise ValueError("a stage result that is not ok must say why")
        return self


class OrderOutcome(JsonPickled):
    """The one terminal record of an order; it keeps every stage's result, failed or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    order: JewelryOrder | None
    status: OrderStatus
    reason: str | None = None
    failed_stages: tuple[StageName, ...] = ()
    results: dict[StageName, StageResult] = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime
    latency_ms: float = Field(ge=0)
    compensations: dict[StageName, str] = Field(
        default_factory=dict, description="for a failed order: what each stage undid, or why it could not"
    )
    from_ledger: bool = Field(default=False, description="reached in an earlier run; read back, not reprocessed")
    due_at: datetime | None = Field(default=None, description="a scheduled order: when it was due (not_before)")
    admitted_at: datetime | None = Field(default=None, description="a scheduled order: when it was admitted")

    @classmethod
    def from_results(
        cls, order: JewelryOrder, results: list[StageResult], started_at: datetime, finished_at: datetime
    ) -> OrderOutcome:
        """Fan-in: the order completes only if all six stages did; otherwise the first reasons win."""
        by_stage = {r.stage: r for r in results}
        failed = tuple(s for s in STAGES if by_stage[s].status is not StageStatus.OK)
        reason = "; ".join(f"{s}: {by_stage[s].reason}" for s in failed) or None
        return cls(
            order_id=order.order_id,
            order=order,
            status=OrderStatus.FAILED if failed else OrderStatus.COMPLETED,
            reason=reason,
            failed_stages=failed,
            results=by_stage,
            started_at=started_at,
            finished_at=finished_at,
            latency_ms=(finished_at - started_at).total_seconds() * 1000.0,
            due_at=order.not_before,
            admitted_at=order.admitted_at,
        )

    @model_validator(mode="after")
    def _complete_fan_in(self) -> OrderOutcome:
        if self.status not in WITHOUT_STAGES and set(self.results) != set(STAGES):
            missing = sorted(set(STAGES) - set(self.results))
            raise ValueError(f"order {self.order_id} has no result from {', '.join(missing)}")
        if self.status is not OrderStatus.COMPLETED and not self.reason:
            raise ValueError(f"order {self.order_id} is {self.status} without a reason")
        return self


class EncodedOutcome:
    """An order's outcome as its JSON (the line `outcomes.jsonl` holds), made once by the Dispatcher:
    the Producer passes it on to the driver as it is, and only the driver, which reads it, decodes it.

    Decoding an outcome (its order and six stage results, validated) is the costliest thing done to
    it after the stages' own work; the Producer needs nothing from it but its order id."""

    __slots__ = ("_json", "_outcome", "order_id")

    def __init__(self, order_id: str, json: str | None = None, outcome: OrderOutcome | None = None) -> None:
        if json is None and outcome is None:
            raise ValueError(f"an encoded outcome of order {order_id} needs its JSON or its outcome")
        self.order_id = order_id
        self._json = json
        self._outcome = outcome  # kept where it was made: the Dispatcher decodes nothing it concluded

    @classmethod
    def of(cls, outcome: OrderOutcome) -> EncodedOutcome:
        return cls(outcome.order_id, outcome=outcome)

    @property
    def json(self) -> str:
        """Made once, on first use: for the ledger's commit and the wire alike."""
        if self._json is None:
            assert self._outcome is not None
            self._json = self._outcome.model_dump_json()
        return self._json

    def decoded(self) -> OrderOutcome:
        if self._outcome is None:
            self._outcome = OrderOutcome.model_validate_json(self.json)
        return self._outcome

    def __reduce__(self) -> tuple[type[EncodedOutcome], tuple[str, str]]:
        return EncodedOutcome, (self.order_id, self.json)

    def __repr__(self) -> str:
        return f"EncodedOutcome({self.order_id!r})"


class DeadLetter(BaseModel):
    """A stage call that exhausted its retries: the error, and the order to replay it with."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    stage: StageName
    error: str
    attempts: int
    order: JewelryOrder
    recorded_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    reason: str


class RejectedRecord(BaseModel):
    """An input record that could not become an order; kept whole so nothing is lost."""

    model_config = ConfigDict(frozen=True)

    source: str
    line: int
    order_id: str | None
    errors: tuple[FieldError, ...]
    raw: Any

    @property
    def message(self) -> str:
        who = f" (order {self.order_id})" if self.order_id else ""
        details = "; ".join(f"{e.field}: {e.reason}" for e in self.errors)
        return f"{self.source} line {self.line}{who}: {details}"


class StageSnapshot(BaseModel):
    """A replica's counters and business state, for tests, the CLI summary and dashboards."""

    model_config = ConfigDict(frozen=True)

    stage: StageName
    replica: str
    node_id: str
    calls: int
    ok: int
    business_failures: int
    errors: int
    replays: int
    compensations: int = 0
    busy_s: float
    state: dict[str, Any]
