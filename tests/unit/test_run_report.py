"""What a run reports about orders it could not finish: lost without a ledger, unfinished with one."""

from __future__ import annotations

import pytest

from actors.errors import RunIncomplete
from actors.models.messages import LostOrder
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
