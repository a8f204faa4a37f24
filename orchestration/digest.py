"""What the driver reads of an outcome to tally a run, decoded straight from its JSON line.

The driver receives every outcome as the JSON line the Dispatcher made from a validated
`OrderOutcome` (`EncodedOutcome`), and writes that line to `outcomes.jsonl` as it is. To count
the run it needs a few fields: validating the whole outcome again (its order and six stage outputs)
was most of the driver's CPU per order at zero wait. msgspec decodes just these fields, typed, and
skips the rest; the full model is decoded only for a caller that keeps the outcomes.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from actors.models import EncodedOutcome, OrderStatus, StageName, StageStatus


class ResultDigest(msgspec.Struct, frozen=True):
    status: StageStatus
    replica: str
    started_at: datetime
    finished_at: datetime
    reason: str | None = None

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000.0


class OutcomeDigest(msgspec.Struct, frozen=True):
    order_id: str
    status: OrderStatus
    latency_ms: float
    reason: str | None = None
    failed_stages: tuple[StageName, ...] = ()
    results: dict[StageName, ResultDigest] = msgspec.field(default_factory=dict)
    from_ledger: bool = False


_decoder = msgspec.json.Decoder(OutcomeDigest)


def digest(outcome: EncodedOutcome) -> OutcomeDigest:
    return _decoder.decode(outcome.json)
