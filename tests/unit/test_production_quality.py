from collections import Counter

import pytest

from actors.models import StageStatus
from actors.stages import Production, ProductionConfig, QualityConfig, QualityInspection, ReplicaContext
from tests.conftest import make_order


def test_orders_are_booked_on_the_earliest_free_benches(ring, necklace):
    floor = Production(
        ProductionConfig(casting_benches=2, setting_benches=1), ReplicaContext("production-0", time_scale=0)
    )
    a = floor.process(ring).output
    b = floor.process(necklace).output
    c = floor.process(make_order(0, order_id="J2025070", gemstones=[])).output
    assert a.casting_bench != b.casting_bench and a.start_minute == b.start_minute == 0
    assert c.start_minute > 0  # both casting benches were busy
    assert a.setting_bench is not None and b.setting_bench is None  # the necklace has no stones
    assert a.finish_minute == pytest.approx(a.labour_minutes)
    state = floor.snapshot().state
    assert state["orders_scheduled"] == 3
    assert all(0 < u <= 1 for u in state["bench_utilisation"].values())
    assert state["metal_loss_g"] == pytest.approx(
        a.metal_loss_g + b.metal_loss_g + c.metal_loss_g, abs=2e-3
    )  # three roundings


def test_jade_is_carved_with_no_casting_loss(jade_bangle):
    floor = Production(ProductionConfig(), ReplicaContext("production-0", time_scale=0))
    output = floor.process(jade_bangle).output
    assert output.metal_loss_g == 0 and output.labour_minutes == ProductionConfig().carving_minutes


def _inspect(defect_rate, orders, seed=2025):
    qc = QualityInspection(QualityConfig(defect_rate=defect_rate, seed=seed), ReplicaContext("quality-0", time_scale=0))
    return qc, [qc.process(o) for o in orders]


ORDERS = [make_order(i % 3, order_id=f"J2026{i:04d}") for i in range(300)]


def test_with_no_defect_rate_everything_passes_above_its_standard():
    qc, results = _inspect(0.0, ORDERS)
    assert all(r.status is StageStatus.OK for r in results)
    assert all(r.output.measured_fineness >= r.output.standard_fineness for r in results if r.output.standard_fineness)
    assert qc.snapshot().state["by_material"]["AU750"] == {"pass": 100, "fail": 0}


def test_every_defect_is_a_business_failure_with_its_reason():
    _, results = _inspect(1.0, ORDERS)
    assert all(r.status is StageStatus.BUSINESS_FAILURE for r in results)
    kinds = Counter(r.reason.split(":")[1].split()[0] for r in results)
    assert {"fineness", "stone", "size"} <= set(kinds)
    assert all(r.output.verdict == "fail" and r.output.defects for r in results)


def test_verdicts_are_deterministic_per_order_id_and_follow_the_rate():
    _, first = _inspect(0.2, ORDERS)
    _, second = _inspect(0.2, list(reversed(ORDERS)))
    verdicts = {r.order_id: r.status for r in first}
    assert verdicts == {r.order_id: r.status for r in second}
    failed = sum(s is StageStatus.BUSINESS_FAILURE for s in verdicts.values())
    assert 30 <= failed <= 90  # 20% of 300, within sampling noise
