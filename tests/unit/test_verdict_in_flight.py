"""What a Dispatcher shard decides without calling anything: the verdict on an order's results,
which stages a replay redoes, and one run per order id in flight."""

import asyncio
from datetime import UTC, datetime

import pytest

from actors.dispatch.in_flight import OrdersInFlight
from actors.dispatch.verdict import stages_to_replay, verdict
from actors.errors import LedgerUnavailable, ReplayRefused
from actors.models import STAGES, OrderOutcome, OrderStatus, Priority, StageName, StageResult, StageStatus
from tests.conftest import make_order

NOW = datetime.now(UTC)


def _outcome(reason: str = "why", **failed: StageStatus) -> OrderOutcome:
    order = make_order(0)
    results = [
        StageResult(
            order_id=order.order_id,
            stage=stage,
            status=failed.get(stage.value, StageStatus.OK),
            reason=None if stage.value not in failed else reason,
            started_at=NOW,
            finished_at=NOW,
            replica=f"{stage}-0",
            node_id="n",
            output=None,
        )
        for stage in STAGES
    ]
    return OrderOutcome.from_results(order, results, NOW, NOW)


def test_errors_alone_park_a_ledgered_order_and_anything_else_fails_it():
    parked, letters = verdict(_outcome(logistics=StageStatus.ERROR), ledgered=True)
    assert parked.status is OrderStatus.DEAD_LETTERED and [d.stage for d in letters] == [StageName.LOGISTICS]
    failed, none = verdict(_outcome(logistics=StageStatus.ERROR), ledgered=False)  # nowhere to park it
    assert failed.status is OrderStatus.FAILED and none == []
    mixed, none = verdict(_outcome(logistics=StageStatus.ERROR, material=StageStatus.BUSINESS_FAILURE), ledgered=True)
    assert mixed.status is OrderStatus.FAILED and none == []
    given_up, none = verdict(parked, ledgered=True, give_up=True)
    assert given_up.status is OrderStatus.FAILED and given_up.reason.startswith("abandoned after dead letter")


@pytest.mark.parametrize(
    "reason",
    ["ledger: LedgerUnavailable: ledger sqlite:///x: gone", "LedgerUnavailable: ledger sqlite:///x: gone"],
    ids=["its-write", "its-call"],
)
def test_an_order_a_stage_could_not_record_for_want_of_the_store_is_not_concluded(reason):
    """Dead-lettering it would be wrong: had the store come back before the outcome was written, the
    order would be parked though nothing but the store failed. Unfinished, it runs again."""
    with pytest.raises(LedgerUnavailable, match=r"^ledger sqlite:///x: gone$"):
        verdict(_outcome(reason, design=StageStatus.ERROR), ledgered=True)
    parked, _ = verdict(_outcome("ledger: IntegrityError: no", design=StageStatus.ERROR), ledgered=True)
    assert parked.status is OrderStatus.DEAD_LETTERED  # any other write error is the stage's


def test_a_replay_redoes_only_dead_lettered_stages_and_refuses_anything_else():
    parked, _ = verdict(_outcome(logistics=StageStatus.ERROR, quality=StageStatus.ERROR), ledgered=True)
    assert stages_to_replay(parked.order_id, parked, None) == [StageName.QUALITY, StageName.LOGISTICS]
    assert stages_to_replay(parked.order_id, parked, StageName.LOGISTICS) == [StageName.LOGISTICS]
    with pytest.raises(ReplayRefused, match="no dead letter for material"):
        stages_to_replay(parked.order_id, parked, StageName.MATERIAL)
    with pytest.raises(ReplayRefused, match="not in the ledger"):
        stages_to_replay("J1", None, None)
    with pytest.raises(ReplayRefused, match="nothing to replay"):
        stages_to_replay(parked.order_id, _outcome(), None)


def test_a_repeat_joins_the_run_in_flight_and_only_the_admitted_count_as_in_flight():
    async def scenario():
        orders = OrdersInFlight(capacity=1)
        first, second = make_order(0), make_order(1, priority=Priority.NORMAL)
        for order in (first, second):
            orders.register(order.order_id)
        joined = orders.joined(first.order_id)
        assert orders.admit_now(2) == 1  # one place: the first is let in, the second waits
        waiting_for_second = asyncio.ensure_future(orders.admit(second.priority))
        await asyncio.sleep(0)
        counts = (orders.admitted, orders.waiting)
        orders.settle(first.order_id, "the outcome")  # type: ignore[arg-type]  # any object stands for an outcome
        await waiting_for_second  # the first's place passed on
        idle = orders.settle(second.order_id, RuntimeError("failed"))
        return counts, await joined, idle

    counts, joined, idle = asyncio.run(scenario())
    assert counts == (1, 1) and joined == "the outcome" and idle
