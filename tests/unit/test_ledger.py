"""The ledger and what it gives the stages: state that survives a restart, one effect per
(stage, order) across replicas, compensation after a restart, and outcomes with dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from actors.errors import ClaimRefused, ConfigurationError, LedgerUnavailable
from actors.intake.samples import generate_orders
from actors.ledger import CANCELLED_BEFORE_RUN, Claim, LedgerMismatch, LedgerSpec, SqliteLedger, open_ledger
from actors.models import STAGES, DeadLetter, OrderOutcome, OrderStatus, StageName, StageResult, StageStatus
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from tests.conftest import make_order
from tests.unit.conftest import Backend


def _replica(stage: StageName, where: LedgerSpec | Backend, index: int = 0, count: int = 1, **config: Any):
    """A stage replica on a store: a ledger it opens itself (SQL stores), or any backend of the contract."""
    name = f"{stage.value}-{index}"
    if isinstance(where, LedgerSpec):
        context = ReplicaContext(name, index=index, replica_count=count, time_scale=0, ledger=where)
    else:
        context = where.context(name, index, count)
    return STAGE_CLASSES[stage](STAGE_CONFIGS[stage](**config), context)


@pytest.fixture
def replica(closing):
    """`_replica`, closed (its store connection) when the test ends."""

    def build(stage: StageName, where: LedgerSpec | Backend, index: int = 0, count: int = 1, **config: Any):
        return closing(_replica(stage, where, index, count, **config))

    return build


def _comparable(snapshot) -> dict[str, Any]:
    data = snapshot.model_dump(exclude={"node_id", "busy_s"})
    data["state"].pop("designs_cached", None)  # the design cache is a cache: it starts empty again
    return data


@pytest.mark.parametrize("stage", STAGES)
def test_a_restarted_replica_comes_back_with_its_state_and_answers_repeats_from_the_ledger(stage, backend, replica):
    config = {"defect_rate": 0.2} if stage is StageName.QUALITY else {}
    orders = list(generate_orders(40, seed=7))
    first = replica(stage, backend, **config)
    for order in orders:
        first.process(order)
    for order in orders[:5]:
        first.compensate(order.order_id)
    before = first.snapshot()

    restarted = replica(stage, backend, **config)  # what Ray does: the same replica, __init__ again
    assert _comparable(restarted.snapshot()) == _comparable(before)
    again = restarted.process(orders[-1])
    assert again.replayed and again.output == first.process(orders[-1]).output
    assert restarted.snapshot().ok == before.ok  # the repeat did no work


def test_state_after_a_restart_is_not_the_initial_state(backend, ring, replica):
    fresh = replica(StageName.MATERIAL, backend).snapshot().state["workshop_left"]
    replica(StageName.MATERIAL, backend).process(ring)
    assert replica(StageName.MATERIAL, backend).snapshot().state["workshop_left"] != fresh


def test_a_retry_on_another_replica_returns_the_effect_the_first_one_recorded(backend, ring, replica):
    a = replica(StageName.PACKAGING, backend, index=0, count=2)
    b = replica(StageName.PACKAGING, backend, index=1, count=2)
    first = a.process(ring)
    retried = b.process(ring)
    assert retried.replayed and retried.replica == "packaging-0"
    assert retried.output.certificate_serial == first.output.certificate_serial
    assert b.snapshot().state["serials_issued"] == 0  # b issued nothing


def test_after_a_restart_compensation_leaves_stock_as_if_the_order_never_came(backend, ring, replica):
    ledger = backend.open()
    replica(StageName.MATERIAL, backend)
    initial = ledger.inventory()
    assert replica(StageName.MATERIAL, backend).process(ring).status is StageStatus.OK
    restarted = replica(StageName.MATERIAL, backend)
    assert ledger.certificates_held() == {"GIA 2141438167": ring.order_id}
    assert "freed certificate" in restarted.compensate(ring.order_id)
    again = replica(StageName.MATERIAL, backend)
    assert ledger.inventory() == initial == ledger.stock_changes() and ledger.certificates_held() == {}
    assert again.compensate(ring.order_id).startswith("released")  # the recorded answer, not a second undo
    assert ledger.inventory() == initial


def test_a_certificate_held_before_a_restart_is_still_held_after_it(backend, ring, replica):
    replica(StageName.MATERIAL, backend).process(ring)
    twin = make_order(0, order_id="J2025777")  # the same certified stone
    result = replica(StageName.MATERIAL, backend).process(twin)
    assert result.status is StageStatus.BUSINESS_FAILURE and "already reserved by order" in result.reason


def _recorded(order_id: str, stage: StageName = StageName.MATERIAL) -> StageResult:
    now = datetime.now(UTC)
    return StageResult(
        order_id=order_id,
        stage=stage,
        status=StageStatus.OK,
        started_at=now,
        finished_at=now,
        replica=f"{stage.value}-0",
        node_id="test",
    )


def test_two_orders_of_one_batch_cannot_hold_the_same_certificate(backend):
    """The journal itself refuses it, whatever the stage above it decided: the batch commits nothing
    (no effect, no hold, no stock taken, no state), and the batch without the second order commits."""
    journal = backend.open()
    journal.take_over("material-0", StageName.MATERIAL)
    journal.seed_stock({"metal/AU750": 10})
    held = Claim(takes={"metal/AU750": 1}, holds=("GIA 1000000099",))
    batch = [_recorded("J2025001"), _recorded("J2025002")]
    with pytest.raises(ClaimRefused, match="GIA 1000000099"):
        journal.record_effects("material-0", StageName.MATERIAL, batch, {"n": 2}, {r.order_id: held for r in batch})
    reader = backend.open()
    assert reader.effects(StageName.MATERIAL, ["J2025001", "J2025002"]) == {}
    assert reader.certificates_held() == {} and reader.inventory() == {"metal/AU750": 10}
    assert reader.checkpoint_of("material-0") is None
    journal.record_effects("material-0", StageName.MATERIAL, batch[:1], {"n": 1}, {"J2025001": held})
    assert reader.certificates_held() == {"GIA 1000000099": "J2025001"} and reader.inventory() == {"metal/AU750": 9}
    assert reader.checkpoint_of("material-0") == {"n": 1}


def test_production_gives_back_bench_time_exactly_after_a_restart(backend, ring, necklace, replica):
    shop = replica(StageName.PRODUCTION, backend)
    shop.process(ring)
    before = shop.snapshot().state
    shop.process(necklace)
    restarted = replica(StageName.PRODUCTION, backend)
    assert restarted.compensate(necklace.order_id).startswith("freed ")
    after = restarted.snapshot().state
    assert after["makespan_minutes"] == before["makespan_minutes"]
    assert after["labour_minutes"] == before["labour_minutes"] and after["orders_cancelled"] == 1


def test_a_voided_serial_is_never_issued_again_even_after_a_restart(backend, ring, necklace, replica):
    packing = replica(StageName.PACKAGING, backend)
    voided = packing.process(ring).output.certificate_serial
    packing.compensate(ring.order_id)
    restarted = replica(StageName.PACKAGING, backend)
    assert restarted.process(necklace).output.certificate_serial != voided
    assert restarted.snapshot().state["serials_voided"] == 1


def test_a_compensation_that_arrives_first_stops_the_call_behind_it(backend, ring, replica):
    logistics = replica(StageName.LOGISTICS, backend)
    assert logistics.compensate(ring.order_id) is None
    late = logistics.process(ring)
    assert late.status is StageStatus.ERROR and late.reason == CANCELLED_BEFORE_RUN
    assert logistics.snapshot().state["tracking_numbers_issued"] == 0


def test_a_failed_commit_leaves_memory_as_the_ledger_has_it(backend, ring, necklace, monkeypatch, replica):
    packing = replica(StageName.PACKAGING, backend)
    packing.process(ring)
    before = packing.snapshot().state

    def disk_full(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(packing.store, "record_effects", disk_full)
    result = packing.process(necklace)
    assert result.status is StageStatus.ERROR and "disk full" in result.reason
    assert packing.snapshot().state == before
    monkeypatch.undo()
    # The serial drawn for the batch that did not commit is skipped (a gap), never issued twice.
    assert packing.process(necklace).output.certificate_serial.endswith("00000003")


def test_a_failure_part_way_through_a_batch_leaves_memory_as_the_ledger_has_it(
    backend, ring, necklace, jade_bangle, monkeypatch, replica
):
    """The store went down between two orders of a batch (here while deciding the second order's
    claim): the first had already booked a bench, in memory only. Before anything else reads or
    changes the replica, memory is back at the last commit."""
    production = replica(StageName.PRODUCTION, backend)
    production.process(ring)
    before = production.snapshot().state
    claim, claims_decided = production.claim, []

    def down_on_the_second_order(output):
        claims_decided.append(output)
        if len(claims_decided) == 2:
            raise LedgerUnavailable("ledger unreachable for 1 s or more")
        return claim(output)

    monkeypatch.setattr(production, "claim", down_on_the_second_order)
    with pytest.raises(LedgerUnavailable):
        production.process_batch([necklace, jade_bangle])
    monkeypatch.undo()
    assert production.snapshot().state == before
    again = production.process_batch([necklace, jade_bangle])
    assert [r.status for r in again] == [StageStatus.OK, StageStatus.OK]
    assert production.snapshot().state["orders_scheduled"] == before["orders_scheduled"] + 2


def test_a_batch_reads_its_recorded_effects_in_one_read(backend, ring, necklace, jade_bangle, monkeypatch, replica):
    packing = replica(StageName.PACKAGING, backend)
    first = packing.process_batch([ring, necklace])
    found = packing.store.effects(StageName.PACKAGING, [ring.order_id, jade_bangle.order_id, necklace.order_id])
    assert sorted(found) == sorted([ring.order_id, necklace.order_id])
    assert found[ring.order_id].result == first[0]
    reads, effects = [], packing.store.effects

    def counted(stage, order_ids):
        reads.append(list(order_ids))
        return effects(stage, order_ids)

    def per_order(*_):
        raise AssertionError("a read per order")

    monkeypatch.setattr(packing.store, "effects", counted)
    monkeypatch.setattr(packing.store, "effect", per_order)
    again = packing.process_batch([necklace, jade_bangle, ring])
    assert reads == [[necklace.order_id, jade_bangle.order_id, ring.order_id]]
    assert [r.replayed for r in again] == [True, False, True] and again[0].model_copy(
        update={"replayed": False}
    ) == first[1]


def _racing(first, second, order):
    """Make `second` process `order` just before `first` commits its next batch (once)."""
    record, raced = first.store.record_effects, []

    def second_first(*args, **kwargs):
        if not raced:
            raced.append(second.process(order))
        return record(*args, **kwargs)

    first.store.record_effects = second_first
    return raced


def test_a_batch_whose_stock_went_meanwhile_is_refused_whole_and_decided_again(backend, replica):
    """Replica a decides four jade orders from its snapshot (6 pieces), replica b takes four before a
    commits: a's batch is refused whole (its takes are summed per row, spread over 4 rows on
    PostgreSQL), and decided again order by order from the store: 2 sell, 2 are out of stock."""
    backend = backend.with_stock_slots(4)
    jade = {"jade_pieces": {"A": 6, "B": 0, "C": 0}}
    a, b = (replica(StageName.MATERIAL, backend, index=i, count=2, **jade) for i in range(2))
    raced = _racing(a, b, make_order(1, order_id="J2025700"))
    b.process_batch([make_order(1, order_id=f"J202570{i}") for i in range(1, 4)])  # b: 3 now, 1 racing
    late = a.process_batch([make_order(1, order_id=f"J202571{i}") for i in range(4)])
    assert raced[0].status is StageStatus.OK
    assert [r.status for r in late].count(StageStatus.OK) == 2
    assert all("jade/A needs 1 pcs, 0 pcs left" in r.reason for r in late if r.status is not StageStatus.OK)
    ledger = backend.open()
    assert ledger.inventory()["jade/A"] == 0 and ledger.stock_changes()["jade/A"] == 6
    ok = [e for e in ledger.effects_of(StageName.MATERIAL) if e.result.status is StageStatus.OK]
    assert len(ok) == 6 and len(ledger.effects_of(StageName.MATERIAL)) == 8


def test_a_certificate_taken_meanwhile_refuses_the_batch_and_the_order_is_declined_naming_the_holder(backend, replica):
    a, b = (replica(StageName.MATERIAL, backend, index=i, count=2) for i in range(2))
    raced = _racing(a, b, make_order(0, order_id="J2025800"))
    late = a.process_batch([make_order(0, order_id="J2025801"), make_order(1, order_id="J2025802")])
    assert raced[0].status is StageStatus.OK
    assert late[0].status is StageStatus.BUSINESS_FAILURE
    assert "GIA 2141438167 already reserved by order J2025800" in late[0].reason
    assert late[1].status is StageStatus.OK
    assert backend.open().certificates_held() == {"GIA 2141438167": "J2025800"}


def test_the_stock_is_read_once_per_batch_but_a_shortage_only_from_the_store_now(backend, monkeypatch, replica):
    """A batch decides from one read of the stock, not one per order; a shortage in that snapshot is
    read again before an order is declined, so a piece delivered after the snapshot is sold."""
    material = replica(StageName.MATERIAL, backend, jade_pieces={"A": 0, "B": 0, "C": 0})
    elsewhere = backend.open()  # an operator's restock, through a connection of its own
    snapshots, rereads = [], []
    inventory, available = material.store.inventory, material.store.available

    def snapshot() -> dict[str, int]:
        snapshots.append(dict(found := inventory()))
        elsewhere.restock("jade/A", 1, "delivered after the snapshot")
        return found

    monkeypatch.setattr(material.store, "inventory", snapshot)
    monkeypatch.setattr(material.store, "available", lambda lots: (rereads.append(list(lots)), available(lots))[1])
    results = material.process_batch([make_order(1, order_id=f"J202590{i}") for i in range(3)])
    assert len(snapshots) == 1 and snapshots[0]["jade/A"] == 0  # one read for the batch
    assert [r.status for r in results] == [StageStatus.OK, StageStatus.BUSINESS_FAILURE, StageStatus.BUSINESS_FAILURE]
    assert rereads == [["jade/A"]] * 3  # each shortage the snapshot showed was read again
    assert elsewhere.inventory()["jade/A"] == 0


def test_a_batch_looks_up_its_certificates_in_one_read_and_declines_only_from_a_fresh_one(
    backend, monkeypatch, replica
):
    def certified(order_id: str, number: str):
        stone = {
            "kind": "diamond",
            "carat": 0.5,
            "colour": "G",
            "clarity": "VS1",
            "certificate": {"lab": "GIA", "number": number},
        }
        return make_order(0, order_id=order_id, gemstones=[stone])

    material, other = (replica(StageName.MATERIAL, backend, index=i, count=2) for i in range(2))
    assert other.process(certified("J2025960", "1000000001")).status is StageStatus.OK
    store, reads = material.store, {"holders": 0, "holder": 0}
    holders, holder = store.holders, store.holder
    monkeypatch.setattr(store, "holders", lambda c: (reads.__setitem__("holders", reads["holders"] + 1), holders(c))[1])
    monkeypatch.setattr(store, "holder", lambda c: (reads.__setitem__("holder", reads["holder"] + 1), holder(c))[1])
    batch = [certified(f"J202597{i}", f"100000001{i}") for i in range(5)] + [certified("J2025979", "1000000001")]
    results = material.process_batch(batch)
    assert [r.status for r in results] == [StageStatus.OK] * 5 + [StageStatus.BUSINESS_FAILURE]
    assert "GIA 1000000001 already reserved by order J2025960" in results[-1].reason
    assert reads == {"holders": 1, "holder": 1}  # one read for the batch; the held one read again, fresh


@pytest.mark.parametrize("slots", [1, 4])
def test_on_postgresql_a_batch_is_one_statement_and_writes_what_the_general_transaction_writes(
    postgres_server, monkeypatch, slots, replica, closing
):
    """The one-statement shortcut (`_record_at_once`, `_outcomes_at_once`) against the general
    transaction, on the same orders: the same effects, stock, certificates, checkpoints, outcomes and
    dead-letter resolutions. Scarce stock, so some orders decline; a certified stone sold twice."""
    from actors.ledger.postgres import PostgresLedger

    orders = list(generate_orders(40, seed=9)) + [make_order(0, order_id=f"J202599{i}") for i in range(2)]
    now = datetime.now(UTC)
    at_once, outcomes_at_once = PostgresLedger._record_at_once, PostgresLedger._outcomes_at_once

    def workshop(shortcut: bool) -> dict[str, Any]:
        spec = LedgerSpec(url=postgres_server.new_database(), stock_slots=slots)
        open_ledger(spec, create=True).close()
        taken: list[bool] = []
        monkeypatch.setattr(
            PostgresLedger,
            "_record_at_once",
            lambda self, *a: shortcut and (taken.append(done := at_once(self, *a)) or done),
        )
        monkeypatch.setattr(
            PostgresLedger, "_outcomes_at_once", lambda self, *a: shortcut and outcomes_at_once(self, *a)
        )
        stages = {
            s: replica(s, spec, **({"stock_multiplier": 0.05} if s is StageName.MATERIAL else {})) for s in STAGES
        }
        results = {
            s: [r for i in range(0, len(orders), 7) for r in stages[s].process_batch(orders[i : i + 7])] for s in STAGES
        }
        ledger = closing(open_ledger(spec))
        parked = [
            DeadLetter(
                order_id=orders[0].order_id,
                stage=StageName.LOGISTICS,
                error="down",
                attempts=3,
                order=orders[0],
                recorded_at=now,
            )
        ]
        concluded = [
            OrderOutcome.from_results(o, [results[s][n] for s in STAGES], now, now) for n, o in enumerate(orders)
        ]
        ledger.record_outcomes([(concluded[0].model_copy(update={"status": OrderStatus.DEAD_LETTERED}), parked)])
        ledger.record_outcomes([(outcome, []) for outcome in concluded])
        if shortcut:
            assert taken and all(taken[:3])  # the ordinary batches went in one statement each
        effects = {
            (s, e.order_id): (e.result.status, e.result.output, e.compensated)
            for s in STAGES
            for e in ledger.effects_of(s)
        }
        return {
            "effects": effects,
            "inventory": ledger.inventory(),
            "held": ledger.certificates_held(),
            "checkpoints": {
                s: {k: v for k, v in ledger.checkpoint_of(f"{s.value}-0").items() if k != "busy_s"} for s in STAGES
            },
            "outcomes": ledger.outcome_counts(),
            "letters": [(d.order_id, d.resolution) for d in ledger.dead_letters(open_only=False)],
        }

    general, shortcut = workshop(False), workshop(True)
    statuses = [status for status, _, _ in general["effects"].values()]
    assert StageStatus.OK in statuses and StageStatus.BUSINESS_FAILURE in statuses
    assert shortcut == general


def test_the_ledger_refuses_another_stage_setup_and_a_missing_file(tmp_path, spec, closing):
    ledger = closing(open_ledger(spec))
    ledger.bind({"material": {"replicas": 1}})
    ledger.bind({"material": {"replicas": 1}})  # the same setup resumes
    with pytest.raises(LedgerMismatch, match="material"):
        ledger.bind({"material": {"replicas": 2}})
    with pytest.raises(FileNotFoundError, match="does not exist on this node"):
        SqliteLedger(tmp_path / "elsewhere.sqlite3")


def test_ledger_locations():
    assert LedgerSpec.from_location("sqlite:////tmp/l.sqlite3").path.as_posix() == "/tmp/l.sqlite3"
    assert LedgerSpec.from_location("postgresql://app:secret@db/jewelry").is_postgres
    assert str(LedgerSpec.from_location("postgresql://app:secret@db/jewelry")) == "postgresql://app:***@db/jewelry"
    with pytest.raises(ConfigurationError, match="expected a file path"):
        LedgerSpec.from_location("mysql://db")


def test_outcomes_and_dead_letters(spec, ring, closing):
    ledger = closing(open_ledger(spec))
    now = datetime.now(UTC)
    results = [
        STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)).process(ring) for s in STAGES
    ]
    outcome = OrderOutcome.from_results(ring, results, now, now)
    parked = outcome.model_copy(update={"status": OrderStatus.DEAD_LETTERED, "reason": "logistics: down"})
    letter = DeadLetter(
        order_id=ring.order_id, stage=StageName.LOGISTICS, error="down", attempts=3, order=ring, recorded_at=now
    )
    ledger.record_outcome(parked, [letter])
    assert [d.stage for d in ledger.dead_letters(ring.order_id)] == [StageName.LOGISTICS]
    assert ledger.outcome(ring.order_id).status is OrderStatus.DEAD_LETTERED
    done = parked.model_copy(update={"status": OrderStatus.COMPLETED})
    ledger.record_outcome(done)
    assert ledger.dead_letters(ring.order_id) == []
    assert ledger.dead_letters(ring.order_id, open_only=False)[0].resolution == "order completed"
    assert ledger.outcome_counts() == {"completed": 1} and len(list(ledger.outcome_lines())) == 1


def test_an_older_incarnation_still_running_cannot_overwrite_the_newer_ones_state(backend, ring, necklace, replica):
    zombie = replica(StageName.MATERIAL, backend)  # e.g. a SIGKILLed driver's replica, not yet reaped
    successor = replica(StageName.MATERIAL, backend)  # the resumed run's replica under the same name
    late = zombie.process(ring)
    assert late.status is StageStatus.ERROR and "Superseded" in late.reason
    assert successor.process(necklace).status is StageStatus.OK
    assert replica(StageName.MATERIAL, backend).snapshot().state["orders_reserved"] == 1
    ledger = backend.open()
    assert [e.order_id for e in ledger.effects_of(StageName.MATERIAL)] == [necklace.order_id]


def test_a_terminal_outcome_is_final(spec, ring, closing):
    ledger = closing(open_ledger(spec))
    now = datetime.now(UTC)
    results = [
        STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)).process(ring) for s in STAGES
    ]
    completed = OrderOutcome.from_results(ring, results, now, now)
    ledger.record_outcome(completed)
    ledger.record_outcome(completed.model_copy(update={"status": OrderStatus.DEAD_LETTERED, "reason": "late"}))
    assert ledger.outcome(ring.order_id) == completed


def test_concurrent_writers_queue_for_the_lock_and_all_commit(backend, replica):
    import threading

    orders = list(generate_orders(200, seed=5))
    errors: list[BaseException] = []

    def packer(index: int) -> None:
        try:
            packer = replica(StageName.PACKAGING, backend, index=index, count=4)
            for order in orders[index::4]:
                assert packer.process(order).status is StageStatus.OK
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=packer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(backend.open().effects_of(StageName.PACKAGING)) == 200


def test_outcomes_concluded_in_one_loop_turn_share_one_commit_and_each_waits_for_it(spec, closing):
    import asyncio

    from actors.ledger import OutcomeGroupCommit

    ledger = closing(open_ledger(spec))
    now = datetime.now(UTC)
    orders = list(generate_orders(12, seed=3))
    outcomes = [
        OrderOutcome.from_results(
            order,
            [
                STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)).process(order)
                for s in STAGES
            ],
            now,
            now,
        )
        for order in orders
    ]
    commits: list[int] = []
    record_outcomes = ledger.record_outcomes
    ledger.record_outcomes = lambda group, lines: (commits.append(len(group)), record_outcomes(group, lines))[1]

    async def conclude(batch: list[OrderOutcome]) -> bool:
        await writer.record([(outcome, []) for outcome in batch], [outcome.model_dump_json() for outcome in batch])
        return all(ledger.outcome(o.order_id) == o for o in batch)  # committed before the caller is told

    async def run() -> list[bool]:
        # Three batches conclude in one loop turn, then one more alone.
        first = await asyncio.gather(conclude(outcomes[:4]), conclude(outcomes[4:9]), conclude(outcomes[9:10]))
        second = await asyncio.gather(conclude(outcomes[10:]))
        return first + second

    writer = OutcomeGroupCommit(ledger)
    assert asyncio.run(run()) == [True] * 4
    assert commits == [10, 2]
    assert ledger.outcome_counts() == {"completed": 12}


def test_a_failed_group_commit_fails_every_order_of_the_group(spec, ring, closing):
    import asyncio

    from actors.ledger import OutcomeGroupCommit

    ledger = closing(open_ledger(spec))

    def broken(group, lines):
        raise OSError("disk full")

    ledger.record_outcomes = broken
    now = datetime.now(UTC)
    outcome = OrderOutcome.from_results(
        ring,
        [STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)).process(ring) for s in STAGES],
        now,
        now,
    )
    writer = OutcomeGroupCommit(ledger)

    async def run():
        return await asyncio.gather(
            writer.record([(outcome, [])], ["{}"]), writer.record([(outcome, [])], ["{}"]), return_exceptions=True
        )

    assert [type(e) for e in asyncio.run(run())] == [OSError, OSError]
