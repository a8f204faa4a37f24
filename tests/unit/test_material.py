import pytest

from actors.ledger import MemoryJournal
from actors.models import StageStatus
from actors.models.styles import metal_allowance_g
from actors.stages import MaterialConfig, MaterialVerification, ReplicaContext
from tests.conftest import make_order


def _store(journal=None, replica="material-0", **config) -> MaterialVerification:
    context = ReplicaContext(replica, time_scale=0, journal=journal or MemoryJournal())
    return MaterialVerification(MaterialConfig(**config), context)


def _reserved(store) -> dict[str, int]:
    """What the workshop's stock changes less what it holds: what live orders have reserved."""
    left, stocked = store.store.inventory(), store.store.stock_changes()
    return {lot: stocked[lot] - left[lot] for lot in stocked if stocked[lot] != left[lot]}


def test_reserves_metal_stone_and_certificate_once(ring):
    store = _store()
    result = store.process(ring)
    assert result.status is StageStatus.OK
    reserved = {r.item: r.quantity for r in result.output.reservations}
    assert reserved["metal/AU750"] == pytest.approx(metal_allowance_g(ring), abs=0.001)
    assert reserved["gem/diamond/G-J/VS"] == 0.5
    assert result.output.certificates_verified == ("GIA 2141438167",)
    assert _reserved(store)["metal/AU750"] == round(metal_allowance_g(ring) * 1000)
    assert store.store.certificates_held() == {"GIA 2141438167": ring.order_id}
    store.process(ring)  # repeated: no second reservation
    assert store.snapshot().state["orders_reserved"] == 1
    assert _reserved(store) == {"metal/AU750": round(metal_allowance_g(ring) * 1000), "gem/diamond/G-J/VS": 500}


def test_jade_is_reserved_by_the_piece(jade_bangle):
    store = _store()
    assert store.process(jade_bangle).output.reservations[0].item == "jade/A"
    assert _reserved(store)["jade/A"] == 1


def test_out_of_stock_is_a_business_failure_that_reserves_nothing(ring):
    store = _store(gem_stock_ct={"diamond/G-J/VS": 0.4})
    result = store.process(ring)
    assert result.status is StageStatus.BUSINESS_FAILURE
    assert "out of stock: gem/diamond/G-J/VS needs 0.500 ct, 0.400 ct left" in result.reason
    assert _reserved(store) == {} and store.store.certificates_held() == {}


def test_stock_never_goes_negative_and_is_conserved_exactly():
    store = _store(metal_stock_g={"AU750": 20.0})
    orders = [make_order(0, order_id=f"J20259{i:02d}", gemstones=[]) for i in range(10)]
    results = [store.process(o) for o in orders]
    statuses = [r.status for r in results]
    assert StageStatus.BUSINESS_FAILURE in statuses and StageStatus.OK in statuses
    assert min(store.store.inventory().values()) >= 0
    held = sum(round(r.output.reservations[0].quantity * 1000) for r in results if r.status is StageStatus.OK)
    assert _reserved(store) == {"metal/AU750": held}


def test_a_certificate_cannot_be_reserved_by_two_orders(ring):
    store = _store()
    store.process(ring)
    second = store.process(make_order(0, order_id="J2025077"))
    assert second.status is StageStatus.BUSINESS_FAILURE
    assert "GIA 2141438167 already reserved by order J2025001" in second.reason


def test_a_laboratory_the_workshop_does_not_accept_is_declined(ring):
    store = _store(accepted_labs=frozenset({"IGI"}))
    assert "not accepted" in store.process(ring).reason


def test_replicas_share_one_workshop_so_one_stone_is_sold_once_and_all_the_stock_is_usable(ring):
    """The partitioned workshop sold a certified stone once per replica and said "out of stock"
    while another replica held the piece; replicas of one store sell it once and use it all."""
    journal = MemoryJournal()
    config = {"jade_pieces": {"A": 5, "B": 0, "C": 0}}
    stores = [_store(journal, f"material-{i}", **config) for i in range(3)]
    stone = [stores[i % 3].process(make_order(0, order_id=f"J20253{i:02d}")) for i in range(6)]
    assert [r.status for r in stone].count(StageStatus.OK) == 1
    jade = [stores[i % 3].process(make_order(1, order_id=f"J20254{i:02d}")) for i in range(6)]
    assert [r.status for r in jade].count(StageStatus.OK) == 5  # wherever the orders landed
    assert "jade/A needs 1 pcs, 0 pcs left" in jade[-1].reason


def test_stock_is_set_up_once_per_ledger_and_restocking_adds_to_it():
    journal = MemoryJournal()
    first = _store(journal, jade_pieces={"A": 2, "B": 0, "C": 0})
    first.process(make_order(1, order_id="J2025501"))
    _store(journal, replica="material-1", jade_pieces={"A": 2, "B": 0, "C": 0})  # a second replica: no new stock
    assert journal.inventory()["jade/A"] == 1
    assert journal.restock("jade/A", 3, "delivery") == 4 and journal.stock_changes()["jade/A"] == 5


@pytest.mark.parametrize("replicas", [2, 4])
def test_the_same_orders_give_the_same_answers_with_one_replica_or_several(replicas):
    """Scarce stock (a fifth of the default) and the sample orders' certified stones: which orders
    complete, and why the others fail, does not depend on how many replicas share the workshop."""
    from actors.intake.samples import generate_orders

    orders = list(generate_orders(300, seed=11)) + [make_order(0, order_id=f"J20258{i:02d}") for i in range(5)]

    def answers(count: int) -> list[tuple[str, str, str | None]]:
        journal = MemoryJournal()
        stores = [_store(journal, f"material-{i}", stock_multiplier=0.2) for i in range(count)]
        return [(o.order_id, (r := stores[n % count].process(o)).status.value, r.reason) for n, o in enumerate(orders)]

    alone = answers(1)
    assert {status for _, status, _ in alone} == {"ok", "business_failure"}  # scarce: some really ran out
    assert answers(replicas) == alone


def test_a_claim_another_replica_won_meanwhile_is_refused_and_decided_again(jade_bangle):
    """Replica a decides from the store, replica b takes the last piece before a commits: a's commit
    is refused, nothing of it is recorded, and a decides again from the store: out of stock."""
    journal = MemoryJournal()
    a, b = (_store(journal, f"material-{i}", jade_pieces={"A": 1, "B": 0, "C": 0}) for i in range(2))
    record = journal.record_effects
    raced = []

    def b_first(replica, *args, **kwargs):
        if replica == "material-0" and not raced:
            raced.append(b.process(make_order(1, order_id="J2025602")))
        return record(replica, *args, **kwargs)

    journal.record_effects = b_first
    late = a.process(make_order(1, order_id="J2025601"))
    assert raced[0].status is StageStatus.OK
    assert late.status is StageStatus.BUSINESS_FAILURE and "jade/A needs 1 pcs, 0 pcs left" in late.reason
    assert journal.inventory()["jade/A"] == 0 and a.snapshot().state["orders_reserved"] == 0
    assert journal.effect(a.name, "J2025601").result.status is StageStatus.BUSINESS_FAILURE  # only the decline
