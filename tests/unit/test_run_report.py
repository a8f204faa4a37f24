"""What a run reports about orders it could not finish: lost without a ledger, unfinished with one."""

from __future__ import annotations

import pytest
from rich.console import Console

from actors.errors import RunIncomplete
from actors.models import StageName
from actors.models.messages import DispatcherStats, LostOrder, ReplicaLoad, SystemStatus
from orchestration.render import merged_loads, render_status
from orchestration.report import RunTally
from orchestration.system import RunResult

DOWN = "LedgerUnavailable: ledger postgresql://app:***@db/jewelry unreachable for 60 s or more"


def _summary(*lost: LostOrder):
    tally = RunTally()
    for order in lost:
        tally.add_lost(order)
    return tally.summary(1.0, None, {}, {})


def test_orders_a_ledger_run_could_not_record_are_unfinished_not_lost():
    summary = _summary(
        LostOrder(order_id="J1", reason=DOWN, resumable=True), LostOrder(order_id="J2", reason=DOWN, resumable=True)
    )
    assert (summary.lost, summary.unfinished, summary.orders_total) == (0, 2, 2)
    assert summary.failure_reasons == {f"unfinished: {DOWN[:60]}": 2}
    result = RunResult(lost=[LostOrder(order_id="J1", reason=DOWN, resumable=True)], summary=summary)
    with pytest.raises(
        RunIncomplete, match=r"not recorded in the ledger, so not lost: run the same command again .*J1"
    ):
        result.raise_if_incomplete()


def test_an_order_without_a_ledger_whose_call_failed_is_lost():
    summary = _summary(LostOrder(order_id="J1", reason="RayActorError: the dispatcher died"))
    assert (summary.lost, summary.unfinished) == (1, 0)
    result = RunResult(
        lost=[
            LostOrder(order_id="J1", reason="RayActorError: the dispatcher died"),
            LostOrder(order_id="J2", reason=DOWN, resumable=True),
        ],
        summary=summary,
    )
    with pytest.raises(RunIncomplete, match=r"2 accepted order\(s\) never reached .* first: J1: RayActorError"):
        result.raise_if_incomplete()


def test_status_shows_a_replicas_time_per_order_and_mean_batch_apart_from_what_an_order_waited():
    """A 25 ms stage with a backlog: an order's attempt took a second (its wait for a batch included),
    which a reader took for the stage's time; `status` shows both, and the mean batch, over the shards."""

    def shard(index: int, calls: int, batches: int, per_order_ms: float) -> DispatcherStats:
        load = ReplicaLoad(
            replica="production-0",
            index=0,
            node_id="n",
            ongoing=0,
            calls=calls,
            errors=0,
            mean_latency_ms=1001.0,
            per_order_ms=per_order_ms,
            batch_calls=batches,
            orders_sent=calls,
        )
        return DispatcherStats(
            shard=index, in_flight=0, waiting=0, orders_done=0, by_status={}, stages={StageName.PRODUCTION: [load]}
        )

    shards = [shard(0, 400, 10, 25.0), shard(1, 200, 10, 25.2)]
    merged = merged_loads(shards)[StageName.PRODUCTION][0]
    assert (merged.calls, merged.batch_calls, merged.mean_batch, merged.per_order_ms) == (600, 20, 30.0, 25.1)
    assert merged.model_dump()["mean_batch"] == 30.0  # in `status --json` too
    console = Console(record=True, width=200)
    render_status(console, SystemStatus(namespace="x", dispatchers=shards, producer=None, snapshots={}))
    text = console.export_text()
    assert "ms/order" in text and "mean batch" in text and "wait+call ms" in text
    row = next(line for line in text.splitlines() if "production-0" in line)
    assert "25.10" in row and "30.0" in row and "1001.0" in row


def test_the_driver_s_digest_of_an_outcome_line_tallies_exactly_as_the_whole_outcome():
    """The driver tallies from a few fields of each outcome's JSON line (orchestration/digest.py):
    counts, latencies, per-stage times and load, and failure reasons come out the same."""
    import asyncio

    from actors.dispatch.dispatcher import Dispatcher
    from actors.intake.samples import generate_orders
    from actors.models import STAGES, EncodedOutcome
    from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
    from orchestration.digest import digest
    from tests.fakes import LocalHandle

    config = {s: STAGE_CONFIGS[s]() for s in STAGES}
    config[StageName.MATERIAL] = STAGE_CONFIGS[StageName.MATERIAL](stock_multiplier=0.05)  # some run out: failures
    handles = {
        s: {f"{s}-0": LocalHandle(STAGE_CLASSES[s](config[s], ReplicaContext(f"{s}-0", time_scale=0)))} for s in STAGES
    }

    async def run():
        dispatcher = Dispatcher(handles, dict.fromkeys(STAGES, 5.0))
        return await dispatcher.process_encoded(list(generate_orders(300, seed=31)))

    encoded = asyncio.run(run())
    again = EncodedOutcome.of(encoded[0].decoded().model_copy(update={"from_ledger": True}))
    whole, digested = RunTally(), RunTally()
    for outcome in [*encoded, again]:
        whole.add_outcome(outcome.decoded())
        digested.add_outcome(digest(outcome))
    assert whole.summary(1.0, None, {}, {}) == digested.summary(1.0, None, {}, {})
    summary = digested.summary(1.0, None, {}, {})
    assert summary.failed > 0 and summary.completed > 0 and summary.from_ledger == 1  # every branch was tallied


def test_status_names_a_stage_whose_breaker_is_open_in_any_shard_and_the_scheduled_orders_waiting():
    from actors.models.breakers import BreakerSnapshot, BreakerState

    def shard(index: int, state: BreakerState) -> DispatcherStats:
        snap = BreakerSnapshot(
            stage="logistics", state=state, failure_rate=100.0, calls=20, retry_after_s=7.04, opened=1, refused=3
        )
        closed = BreakerSnapshot(
            stage="quality", state=BreakerState.CLOSED, failure_rate=None, calls=4, retry_after_s=0, opened=0, refused=0
        )
        return DispatcherStats(
            shard=index, in_flight=0, waiting=9, orders_done=0, by_status={}, stages={}, breakers=[closed, snap]
        )

    producer = {
        "read": 3,
        "expected_records": 3,
        "source": "http",
        "accepted": 3,
        "serving": True,
        "scheduled": {"waiting": 2, "next_due": "2031-03-01T09:00:00+00:00"},
    }
    console = Console(record=True, width=200)
    render_status(
        console,
        SystemStatus(
            namespace="x",
            dispatchers=[shard(0, BreakerState.CLOSED), shard(1, BreakerState.OPEN)],
            producer=producer,
            snapshots={},
        ),
    )
    text = console.export_text()
    assert "circuit breakers: logistics OPEN (100% of 20 calls failed, trial calls in 7.0 s; 3 refused)" in text
    assert "quality" not in text.split("circuit breakers:")[1].splitlines()[0]
    assert "scheduled: 2 waiting for their time, next due 2031-03-01T09:00:00+00:00" in text
    console = Console(record=True, width=200)
    render_status(
        console, SystemStatus(namespace="x", dispatchers=[shard(0, BreakerState.CLOSED)], producer=None, snapshots={})
    )
    assert "circuit breakers: all closed" in console.export_text()
