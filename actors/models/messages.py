"""The messages actors exchange about the work, as opposed to the work itself (orders, results).

They live with the models rather than beside their senders so that a reader of a message (the
driver's report, the supervisor, `status`) imports a type, never the actor that sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from actors.models.breakers import BreakerSnapshot
from actors.models.results import EncodedOutcome, RejectedRecord, StageName, StageSnapshot


@dataclass(frozen=True)
class PoolMember:
    """One replica of a stage, as the supervisor tells the Dispatchers about it: its name, its slot,
    the actor now under that name (a replacement has the same name and a new handle), and whether
    it is being drained (it finishes what it has and takes nothing new). `epoch` counts the
    supervisor's replacements in the slot: a shard that found the member dead takes calls to it again
    when the epoch moves, even when the actor is the same one (a shard that took a live replacement
    for dead is told so)."""

    name: str
    index: int
    handle: Any
    draining: bool = False
    epoch: int = 0


@dataclass(frozen=True)
class PoolMembers:
    """Every replica of one stage, as of `version`: the supervisor's one truth about the pool, pushed
    to every Dispatcher shard. A shard applies a list only if it is newer than the one it has, so a
    late push never undoes a later one, and a restarted shard (version 0) is brought up to date."""

    stage: StageName
    version: int
    members: tuple[PoolMember, ...]


class ReplicaLoad(BaseModel):
    """One replica as one Dispatcher shard sees it: what it is doing and has done for that shard."""

    model_config = ConfigDict(frozen=True)

    replica: str
    index: int  # its slot in the pool, from its name (`production-2`)
    node_id: str | None
    ongoing: int
    calls: int  # order attempts sent to it (an order's retry is another), not batch calls
    errors: int
    # What an order's attempt took as the shard saw it: its wait for a batch, the call, the answer.
    mean_latency_ms: float
    # The replica's own time per order (its results' timings, smoothed): what the stage costs.
    per_order_ms: float | None = None
    batch_calls: int = 0  # batch calls sent to it
    orders_sent: int = 0  # orders those batch calls carried
    alive: bool = True
    draining: bool = False  # being scaled away: finishes what it has, takes nothing new
    queued: int = 0  # orders waiting in the shard for this replica (see actors/dispatch/batching.py)
    calls_in_flight: int = 0  # batch calls sent to it and not answered yet

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented form for a computed property
    @property
    def mean_batch(self) -> float | None:
        """Orders per batch call, on average; None before the first call."""
        return round(self.orders_sent / self.batch_calls, 2) if self.batch_calls else None


class DispatcherStats(BaseModel):
    """One Dispatcher shard's state: what `status`, the supervisor and the autoscaler read."""

    model_config = ConfigDict(frozen=True)

    shard: int = 0
    in_flight: int
    waiting: int
    orders_done: int  # concluded by this incarnation: a restarted shard counts from 0 (the ledger has every outcome)
    by_status: dict[str, int]
    stages: dict[StageName, list[ReplicaLoad]]
    members_version: int = 0  # the latest member list the supervisor pushed that this shard applied
    cpu_s: float = 0.0  # the shard's process CPU time so far (all its threads): its cost per order, measured
    breakers: list[BreakerSnapshot] = []  # each stage's circuit breaker in this shard


class LostOrder(BaseModel):
    """An accepted order whose Dispatcher call itself failed, so it is reported. Without a ledger its
    fate is unknown: lost. With one it is `resumable`: unfinished, not lost, since an order without
    a recorded outcome is done by the next run of the same command (and one whose commit's answer
    was lost is answered from the ledger)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    reason: str
    resumable: bool = False


class SubmitReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    accepted: int
    rejected: list[RejectedRecord]


class ProducerProgress(BaseModel):
    """What the driver collects on each poll, and where the run stands."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    outcomes: list[EncodedOutcome]  # decoded by the driver, which reads them
    rejects: list[RejectedRecord]
    lost: list[LostOrder]
    expected_records: int
    read: int
    accepted: int
    in_flight: int
    finished: bool
    serving: bool = False
    source_error: str | None = None
    not_started: int | None = None  # records left unread by a stop (an interrupt); None: read to the end
    scheduled: int = 0  # scheduled orders waiting for their time (the ledger keeps them for a later run)


class ScalingEvent(BaseModel):
    """One decision of the supervisor to resize a pool."""

    model_config = ConfigDict(frozen=True)

    at_s: float  # time.monotonic() of the decision
    stage: StageName
    replicas_before: int
    replicas_after: int


class SystemStatus(BaseModel):
    """A running system as `status` shows it: every Dispatcher shard, the Producer of the run in
    progress (None between runs), every live replica's snapshot, and the pools' scaling decisions."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    dispatchers: list[DispatcherStats]
    producer: dict[str, object] | None
    snapshots: dict[StageName, list[StageSnapshot]]
    scaling_events: list[ScalingEvent] = []

    @property
    def orders_done(self) -> int:
        return sum(shard.orders_done for shard in self.dispatchers)

    def replica_counts(self) -> dict[StageName, int]:
        """Replicas taking orders now, by stage, as the first shard sees them."""
        return {
            stage: sum(1 for load in loads if load.alive and not load.draining)
            for stage, loads in self.dispatchers[0].stages.items()
        }
