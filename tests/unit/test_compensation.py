"""Compensation: each stage undoes exactly what it did for an order, once, and reuses nothing."""

from pathlib import Path

from actors.models import StageStatus
from actors.stages import (
    Logistics,
    LogisticsConfig,
    MaterialConfig,
    MaterialVerification,
    Packaging,
    PackagingConfig,
    Production,
    ProductionConfig,
    QualityConfig,
    QualityInspection,
    ReplicaContext,
)
from tests.conftest import make_order


def _ctx(name, tmp_path=None):
    return ReplicaContext(name, time_scale=0, artifacts_dir=tmp_path)


def test_material_release_leaves_stock_as_if_the_order_never_came(ring):
    store = MaterialVerification(MaterialConfig(), _ctx("material-0"))
    before = store.store.inventory()
    store.process(ring)
    done = store.compensate(ring.order_id)
    assert "released metal/AU750" in done and "freed certificate GIA 2141438167" in done
    assert store.store.inventory() == before and store.store.certificates_held() == {}
    # The stone is free again for another order.
    assert store.process(make_order(0, order_id="J2025088")).status is StageStatus.OK


def test_compensation_is_idempotent_and_a_no_op_where_nothing_was_done(ring):
    store = MaterialVerification(MaterialConfig(gem_stock_ct={}), _ctx("material-0"))
    assert store.process(ring).status is StageStatus.BUSINESS_FAILURE
    assert store.compensate(ring.order_id) is None  # declined: nothing was reserved
    assert store.compensate("J2025999") is None  # never seen
    ok = make_order(2)
    store.process(ok)
    first = store.compensate(ok.order_id)
    assert first and store.compensate(ok.order_id) == first
    assert store.store.inventory() == store.store.stock_changes()
    assert store.snapshot().compensations == 1


def test_production_frees_the_bench_time(ring, necklace):
    floor = Production(ProductionConfig(casting_benches=1, setting_benches=1), _ctx("production-0"))
    floor.process(ring)
    last = floor.process(necklace).output
    done = floor.compensate(necklace.order_id)
    assert "production-0/cast-0" in done
    state = floor.snapshot().state
    assert state["orders_scheduled"] == 1 and state["orders_cancelled"] == 1
    # The bench is free again from where the cancelled booking started.
    again = floor.process(make_order(2, order_id="J2025089")).output
    assert again.start_minute == last.start_minute


def test_packaging_voids_the_serial_never_reuses_it_and_returns_the_box(tmp_path, ring):
    packing = Packaging(PackagingConfig(), _ctx("packaging-0", tmp_path))
    first = packing.process(ring).output
    boxes = packing.snapshot().state["workshop_boxes_left"]["ring"]
    assert "voided certificate JF-00000001" in packing.compensate(ring.order_id)
    assert packing.snapshot().state["workshop_boxes_left"]["ring"] == boxes + 1
    assert packing.store.voided_numbers("certificate_serial") == {1}
    assert Path(first.certificate_path).read_text(encoding="utf-8").startswith("VOID")
    second = packing.process(make_order(0, order_id="J2025090")).output
    assert second.certificate_serial != first.certificate_serial
    assert packing.snapshot().state["serials_voided"] == 1


def test_logistics_voids_the_waybill_and_never_reissues_the_number(ring):
    logistics = Logistics(LogisticsConfig(), _ctx("logistics-0"))
    first = logistics.process(ring).output
    assert first.tracking_number in logistics.compensate(ring.order_id)
    second = logistics.process(make_order(0, order_id="J2025091")).output
    assert second.tracking_number != first.tracking_number
    state = logistics.snapshot().state
    assert state["waybills_voided"] == 1 and state["insured_total"] == str(second.insured_value)
    assert logistics.store.voided_numbers("tracking") == {int(first.tracking_number[2:10])}


def test_stages_without_side_effects_have_nothing_to_undo(ring):
    qc = QualityInspection(QualityConfig(), _ctx("quality-0"))
    qc.process(ring)
    assert qc.compensate(ring.order_id) is None
