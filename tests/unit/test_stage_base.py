"""The shared base: idempotency, error wrapping, business failures as results, counters."""

from typing import Any

from actors.errors import BusinessFailure
from actors.models import JewelryOrder, LogisticsOutput, StageName, StageStatus
from actors.runtime import current_node_id
from actors.stages.base import Stage
from actors.stages.contract import ReplicaContext, StageConfig
from tests.conftest import make_order


class CountingStage(Stage[StageConfig]):
    """A stage whose side effect is a counter, and whose behaviour the test scripts."""

    name = StageName.LOGISTICS

    def __init__(self, script: list[str]) -> None:
        super().__init__(StageConfig(duration_s=0), ReplicaContext("logistics-7", index=7, time_scale=0))
        self.script = script
        self.effects = 0
        self.resume()

    def handle(self, order: JewelryOrder) -> LogisticsOutput:
        step = self.script.pop(0)
        if step == "crash":
            raise RuntimeError("printer jammed")
        if step == "decline":
            raise BusinessFailure("no carrier serves this address")
        self.effects += 1
        return LogisticsOutput(
            carrier="SF Express",
            service="s",
            zone="domestic",
            tracking_number="EE000000019CN",
            insured_value=order.declared_value,
            insurance_premium=order.declared_value,
            estimated_delivery=order.created_at.date(),
        )

    def state(self) -> dict[str, Any]:
        return {"effects": self.effects}

    def checkpoint(self) -> dict[str, Any]:
        return {"effects": self.effects}

    def restore(self, saved: dict[str, Any]) -> None:
        self.effects = saved["effects"]


def test_a_repeated_call_returns_the_first_result_without_repeating_the_side_effect():
    stage, order = CountingStage(["ok", "ok"]), make_order(0)
    first = stage.process(order)
    second = stage.process(order)
    assert stage.effects == 1
    assert second.replayed and not first.replayed
    assert second.model_dump(exclude={"replayed"}) == first.model_dump(exclude={"replayed"})
    snap = stage.snapshot()
    assert (snap.calls, snap.ok, snap.replays, snap.state) == (2, 1, 1, {"effects": 1})
    assert snap.replica == "logistics-7"


def test_an_exception_becomes_an_error_result_and_a_retry_really_retries():
    stage, order = CountingStage(["crash", "ok"]), make_order(0)
    failed = stage.process(order)
    assert failed.status is StageStatus.ERROR
    assert failed.reason == "RuntimeError: printer jammed"
    retried = stage.process(order)
    assert retried.status is StageStatus.OK and not retried.replayed and stage.effects == 1
    assert stage.snapshot().errors == 1


def test_a_business_failure_is_a_result_and_is_remembered():
    stage, order = CountingStage(["decline"]), make_order(0)
    result = stage.process(order)
    assert result.status is StageStatus.BUSINESS_FAILURE
    assert result.reason == "no carrier serves this address"
    assert stage.process(order).replayed  # a decline is an answer: asking again gives the same answer
    assert stage.snapshot().business_failures == 1


def test_results_say_who_did_the_work_and_when():
    result = CountingStage(["ok"]).process(make_order(0))
    assert result.replica == "logistics-7" and result.node_id == current_node_id()
    assert result.started_at <= result.finished_at and result.attempts == 1
