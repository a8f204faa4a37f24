import pytest

from actors.models import StageStatus
from actors.models.styles import metal_allowance_g
from actors.stages import MaterialConfig, MaterialVerification, ReplicaContext
from tests.conftest import make_order


def _store(**config) -> MaterialVerification:
    return MaterialVerification(MaterialConfig(**config), ReplicaContext("material-0", time_scale=0))


def _conserved(state) -> bool:
    return all(state["initial"][k] == state["left"][k] + state["reserved"].get(k, 0) for k in state["initial"])


def test_reserves_metal_stone_and_certificate_once(ring):
    store = _store()
    result = store.process(ring)
    assert result.status is StageStatus.OK
    reserved = {r.item: r.quantity for r in result.output.reservations}
    assert reserved["metal/AU750"] == pytest.approx(metal_allowance_g(ring), abs=0.001)
    assert reserved["gem/diamond/G-J/VS"] == 0.5
    assert result.output.certificates_verified == ("GIA 2141438167",)
    state = store.snapshot().state
    assert state["initial"]["metal/AU750"] - state["left"]["metal/AU750"] == round(metal_allowance_g(ring) * 1000)
    store.process(ring)  # repeated: no second reservation
    assert store.snapshot().state["orders_reserved"] == 1 and _conserved(store.snapshot().state)


def test_jade_is_reserved_by_the_piece(jade_bangle):
    store = _store()
    assert store.process(jade_bangle).output.reservations[0].item == "jade/A"
    assert store.snapshot().state["reserved"] == {"jade/A": 1}


def test_out_of_stock_is_a_business_failure_that_reserves_nothing(ring):
    store = _store(gem_stock_ct={"diamond/G-J/VS": 0.4})
    result = store.process(ring)
    assert result.status is StageStatus.BUSINESS_FAILURE
    assert "out of stock: gem/diamond/G-J/VS needs 0.500 ct, 0.400 ct left" in result.reason
    state = store.snapshot().state
    assert state["reserved"] == {} and state["left"] == state["initial"]


def test_stock_never_goes_negative_and_is_conserved_exactly():
    store = _store(metal_stock_g={"AU750": 20.0})
    orders = [make_order(0, order_id=f"J20259{i:02d}", gemstones=[]) for i in range(10)]
    statuses = [store.process(o).status for o in orders]
    state = store.snapshot().state
    assert StageStatus.BUSINESS_FAILURE in statuses and StageStatus.OK in statuses
    assert min(state["left"].values()) >= 0
    assert _conserved(state)


def test_a_certificate_cannot_be_reserved_by_two_orders(ring):
    store = _store()
    store.process(ring)
    second = store.process(make_order(0, order_id="J2025077"))
    assert second.status is StageStatus.BUSINESS_FAILURE
    assert "GIA 2141438167 already reserved by order J2025001" in second.reason


def test_a_laboratory_the_workshop_does_not_accept_is_declined(ring):
    store = _store(accepted_labs=frozenset({"IGI"}))
    assert "not accepted" in store.process(ring).reason


def test_each_replica_holds_its_share_of_the_stock():
    config = MaterialConfig(metal_stock_g={"AU750": 1000.0}, gem_stock_ct={}, jade_pieces={})
    stores = [MaterialVerification(config, ReplicaContext(f"material-{i}", index=i, replica_count=4)) for i in range(4)]
    total = sum(s.snapshot().state["initial"]["metal/AU750"] for s in stores)
    assert total == 1_000_000  # milligrams: nothing created or lost by splitting
