"""The whole fan-out on a real local Ray: Producer -> Dispatcher -> six stage pools."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
import ray
from ray.exceptions import RayActorError

from actors.intake.sender import WINDOW_PER_ADMITTED
from actors.intake.sources import SourceSpec
from actors.ledger import open_ledger
from actors.models import STAGES, OrderStatus, StageName, StageStatus
from actors.stages.logistics import is_valid_tracking_number
from orchestration.output import read_outcomes
from orchestration.trace import trace_outcome
from tests.conftest import order_dict


def _max_overlap(outcomes) -> int:
    events = sorted([(o.started_at, 1) for o in outcomes] + [(o.finished_at, -1) for o in outcomes])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_200_orders_complete_with_each_stage_called_once_per_order(start_system):
    system = start_system(time_scale=0.002)
    result = system.run(SourceSpec(count=200), out_dir=system.settings.out_dir, keep_outcomes=True)
    summary = result.summary
    assert (summary.completed, summary.failed, summary.rejected, summary.lost) == (200, 0, 0, 0)

    outcomes = read_outcomes(result.files.outcomes_path)
    assert len(outcomes) == 200 and len({o.order_id for o in outcomes}) == 200
    assert all(set(o.results) == set(STAGES) for o in outcomes)
    # Each stage result says where and when it ran: this node, the stage's one replica, inside its order's time.
    node = ray.get_runtime_context().get_node_id()
    for outcome in result.outcomes:
        for stage, stage_result in outcome.results.items():
            assert stage_result.node_id == node and stage_result.replica == f"{stage}-0"
            assert outcome.started_at <= stage_result.started_at <= stage_result.finished_at <= outcome.finished_at
            assert isinstance(stage_result.started_at, datetime)
    for stage, snapshots in system.status().snapshots.items():
        (snapshot,) = snapshots
        assert (snapshot.calls, snapshot.ok, snapshot.replays) == (200, 200, 0), stage
    # Many orders were in the workshop at once, not one after another.
    assert _max_overlap(outcomes) >= 20
    # Artifacts beside the outcomes: a mesh per distinct design, a certificate per order.
    out = result.files.directory
    assert len(list((out / "certificates").glob("*.txt"))) == 200
    assert (
        len(list((out / "designs").glob("*.stl")))
        == system.status().snapshots[StageName.DESIGN][0].state["designs_cached"]
    )


def test_bad_records_are_rejected_with_line_and_field_and_the_good_ones_complete(start_system, tmp_path):
    lines = [
        json.dumps(order_dict(0)),
        '{"order_id": "J2025004", "product_type": ',
        json.dumps(order_dict(1)),
        json.dumps(order_dict(2, order_id="J2025005", size=-3)),
        json.dumps(order_dict(2)),
        json.dumps(order_dict(0)),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    system = start_system()
    result = system.run(SourceSpec(path=path), out_dir=system.settings.out_dir)
    assert (result.summary.completed, result.summary.rejected, result.summary.orders_total) == (3, 3, 6)
    rejects = [json.loads(line) for line in result.files.rejects_path.read_text().splitlines()]
    assert [(r["line"], r["errors"][0]["field"]) for r in rejects] == [(2, "<json>"), (4, "size"), (6, "order_id")]
    assert rejects[1]["order_id"] == "J2025005" and "mixed.jsonl line 4 (order J2025005): size" in rejects[1]["message"]
    assert {o.order_id for o in read_outcomes(result.files.outcomes_path)} == {"J2025001", "J2025002", "J2025003"}


def test_a_failing_stage_fails_the_order_keeps_the_siblings_and_compensates_them(start_system, closing):
    system = start_system(quality={"defect_rate": 1.0})
    result = system.run(SourceSpec(count=30), keep_outcomes=True)
    assert result.summary.failed == 30 and result.summary.completed == 0
    for outcome in result.outcomes:
        assert outcome.failed_stages == (StageName.QUALITY,)
        assert outcome.reason.startswith("quality: QC rejected")
        siblings = [r for s, r in outcome.results.items() if s is not StageName.QUALITY]
        assert all(r.status is StageStatus.OK and r.output is not None for r in siblings)
        assert set(outcome.compensations) == {
            StageName.MATERIAL,
            StageName.PRODUCTION,
            StageName.PACKAGING,
            StageName.LOGISTICS,
        }
    snapshots = system.status().snapshots
    ledger = closing(open_ledger(system.settings.ledger_spec()))
    assert ledger.inventory() == ledger.stock_changes() and ledger.certificates_held() == {}  # all given back
    (packaging,) = snapshots[StageName.PACKAGING]
    assert packaging.state["serials_voided"] == packaging.state["serials_issued"] == 30
    assert len(ledger.voided_numbers("certificate_serial")) == len(ledger.voided_numbers("tracking")) == 30
    (logistics,) = snapshots[StageName.LOGISTICS]
    assert logistics.state["waybills_voided"] == 30 and logistics.state["insured_total"] == "0.00"


@pytest.mark.parametrize("ledger", [True, False], ids=["ledger", "no-ledger"])
def test_a_stage_timeout_is_an_error_with_its_reason(start_system, ledger):
    # Production really takes 0.4 s per order here; its timeout is 0.1 s and it has no retries.
    # With a ledger the order is dead-lettered (held for replay); without one it fails and is compensated.
    system = start_system(
        time_scale=0.2,
        production={"timeout_s": 0.1, "retry": {"attempts": 1}},
        max_in_flight=5,
        ledger={"enabled": ledger},
    )
    result = system.run(SourceSpec(count=5), keep_outcomes=True)
    assert (result.summary.dead_lettered, result.summary.failed) == ((5, 0) if ledger else (0, 5))
    for outcome in result.outcomes:
        production = outcome.results[StageName.PRODUCTION]
        assert production.status is StageStatus.ERROR and production.reason == "timed out after 0.1 s"
        assert outcome.results[StageName.LOGISTICS].status is StageStatus.OK
        assert bool(outcome.compensations) is not ledger


def test_retries_rescue_timed_out_calls_without_repeating_their_work(start_system):
    # 0.4 s of production per order against a 0.3 s timeout: the first attempt times out, the
    # retry reaches the same replica, which answers from its record of the finished first call.
    retry = {"attempts": 8, "base_delay_s": 0.2, "max_delay_s": 0.4}
    system = start_system(time_scale=0.2, production={"timeout_s": 0.3, "retry": retry}, max_in_flight=2)
    result = system.run(SourceSpec(count=4), keep_outcomes=True)
    assert result.summary.completed == 4
    production = [o.results[StageName.PRODUCTION] for o in result.outcomes]
    assert all(r.attempts > 1 for r in production)
    (snapshot,) = system.status().snapshots[StageName.PRODUCTION]
    assert snapshot.ok == 4 and snapshot.state["orders_scheduled"] == 4  # the work was done once per order
    assert snapshot.replays >= 1
    # The six stages of an order work at the same time: here a call takes 100-400 ms and the six are
    # sent within a few, so every order's trace shows calls side by side, and the first order all six.
    traces = [trace_outcome(outcome) for outcome in result.outcomes]
    assert all(trace.peak_concurrent >= 2 for trace in traces), [t.peak_concurrent for t in traces]
    assert max(trace.all_six_overlap_ms for trace in traces) > 0


def test_three_replicas_of_a_stage_share_its_calls(start_system):
    system = start_system(time_scale=0.005, production={"replicas": 3})
    result = system.run(SourceSpec(count=150), keep_outcomes=True)
    calls = Counter(o.results[StageName.PRODUCTION].replica for o in result.outcomes)
    assert set(calls) == {"production-0", "production-1", "production-2"}
    assert min(calls.values()) >= 30  # least-loaded routing keeps them near 50 each
    snapshot_calls = {s.replica: s.calls for s in system.status().snapshots[StageName.PRODUCTION]}
    assert snapshot_calls == dict(calls)


def test_stock_never_goes_negative_and_is_conserved(start_system, closing):
    system = start_system(material={"replicas": 2, "stock_multiplier": 0.01})
    result = system.run(SourceSpec(count=300), keep_outcomes=True)
    out_of_stock = [o for o in result.outcomes if "out of stock" in (o.reason or "")]
    assert out_of_stock, "the small stock should have run out for some orders"
    reserved_by_outcomes: Counter = Counter()
    for outcome in result.outcomes:  # failed orders were compensated: only completed ones hold stock
        material = outcome.results[StageName.MATERIAL]
        if outcome.status is OrderStatus.COMPLETED:
            for item in material.output.reservations:
                reserved_by_outcomes[item.item] += round(item.quantity * (1 if item.unit == "pcs" else 1000))
    ledger = closing(open_ledger(system.settings.ledger_spec()))
    stocked, left = ledger.stock_changes(), ledger.inventory()
    assert min(left.values()) >= 0
    reserved = {lot: stocked[lot] - left[lot] for lot in stocked if not lot.startswith("box/")}
    assert +Counter(reserved) == +reserved_by_outcomes


def test_replicas_are_workers_of_one_workshop_so_scaling_changes_no_answer(start_system, store, tmp_path, closing):
    """Three material replicas: a certified stone is sold once, and every jade piece can be sold,
    wherever the orders land (the partitioned workshop sold the stone three times, and refused a
    jade order while another replica held the piece)."""
    stone = [order_dict(0, order_id=f"J2026{i:03d}") for i in range(40)]  # one GIA-certified diamond
    jade = [order_dict(1, order_id=f"J2027{i:03d}") for i in range(5)]  # five A-grade pieces in stock
    path = tmp_path / "contended.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in stone + jade), encoding="utf-8")
    system = start_system(material={"replicas": 3, "jade_pieces": {"A": 5, "B": 0, "C": 0}}, ledger=store)
    result = system.run(SourceSpec(path=path), keep_outcomes=True)
    by_id = {o.order_id: o for o in result.outcomes}
    sold = [i for i in by_id if i.startswith("J2026") and by_id[i].status is OrderStatus.COMPLETED]
    assert len(sold) == 1
    assert all(by_id[o["order_id"]].status is OrderStatus.COMPLETED for o in jade)
    assert len({o.results[StageName.MATERIAL].replica for o in result.outcomes}) >= 2  # really shared out
    ledger = closing(open_ledger(system.settings.ledger_spec()))
    assert ledger.certificates_held() == {"GIA 2141438167": sold[0]} and ledger.inventory()["jade/A"] == 0


def test_one_two_or_four_material_replicas_complete_the_same_orders(start_system, tmp_path):
    """How many replicas a stage has changes how fast the workshop goes, never what it answers: the
    same 36 orders give the same completed set with material x1, x2 and x4. Grade A jade is stocked to
    the piece and every piece sells; grade B is not stocked and every B order fails out of stock; QC
    rejects the same orders each time (its verdict is a function of the order id)."""
    orders = [
        order_dict(1, order_id=f"J2028{i:03d}", jade_grade=grade)
        for i, grade in enumerate(["A"] * 12 + ["B"] * 12 + ["C"] * 12)
    ]
    path = tmp_path / "jade.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in orders), encoding="utf-8")
    completed, replicas_used = {}, {}
    for replicas in (1, 2, 4):
        system = start_system(
            material={"replicas": replicas, "jade_pieces": {"A": 12, "B": 0, "C": 12}},
            quality={"defect_rate": 0.2},
            out_dir=str(tmp_path / f"material-x{replicas}"),
        )
        result = system.run(SourceSpec(path=path), keep_outcomes=True)
        assert result.summary.orders_total == 36 and result.summary.lost == result.summary.from_ledger == 0
        completed[replicas] = {o.order_id for o in result.outcomes if o.status is OrderStatus.COMPLETED}
        replicas_used[replicas] = {o.results[StageName.MATERIAL].replica for o in result.outcomes}
        for outcome in result.outcomes:
            if outcome.order.jade_grade == "B":  # out of stock in the whole workshop, and only then
                assert outcome.results[StageName.MATERIAL].status is StageStatus.BUSINESS_FAILURE, outcome.order_id
            else:
                assert outcome.results[StageName.MATERIAL].status is StageStatus.OK, outcome.order_id
        start_system.done(system)  # the next pool size renews it: only the replicas it adds are started
    assert completed[1] == completed[2] == completed[4]
    assert 0 < len(completed[1]) < 24  # QC rejected some of the 24 stocked orders, and the rest completed
    assert len(replicas_used[4]) >= 3  # the orders really were shared out


def test_pending_calls_stay_bounded_when_a_stage_saturates(start_system):
    # Production is the bottleneck (20 ms per order, one replica): orders pile up for it, but only in
    # the Dispatcher's own queues: at most `max_in_flight` admitted, at most the Producer's window in
    # all, and never more than `max_outstanding` batch calls waiting at the replica.
    system = start_system(time_scale=0.01, max_in_flight=40, batching={"max_batch": 8, "max_outstanding": 2})
    samples = []
    result = system.run(
        SourceSpec(count=300), on_progress=lambda *_: samples.append(system.status(snapshots=False).dispatchers[0])
    )
    assert result.summary.completed == 300 and len(samples) > 10
    for stats in samples:
        assert stats.in_flight <= 40 and stats.in_flight + stats.waiting <= WINDOW_PER_ADMITTED * 40
        for loads in stats.stages.values():
            assert sum(load.ongoing for load in loads) <= 40
            assert all(load.calls_in_flight <= 2 for load in loads)
    assert max(load.queued for stats in samples for load in stats.stages[StageName.PRODUCTION]) > 10  # it saturated


def test_serials_and_tracking_numbers_are_unique_across_a_run_and_the_actors_are_named(start_system):
    system = start_system(packaging={"replicas": 2}, logistics={"replicas": 2}, design={"replicas": 2})
    namespace = system.settings.namespace
    for name in (
        "dispatcher-0",
        "material-0",
        "design-0",
        "design-1",
        "production-0",
        "quality-0",
        "packaging-0",
        "packaging-1",
        "logistics-0",
        "logistics-1",
    ):
        assert ray.get_actor(name, namespace=namespace) is not None
    result = system.run(SourceSpec(count=400), keep_outcomes=True)
    serials = [o.results[StageName.PACKAGING].output.certificate_serial for o in result.outcomes]
    tracking = [o.results[StageName.LOGISTICS].output.tracking_number for o in result.outcomes]
    assert len(set(serials)) == len(serials) == 400
    assert len(set(tracking)) == len(tracking) == 400
    assert all(is_valid_tracking_number(t) for t in tracking)
    assert len({o.results[StageName.PACKAGING].replica for o in result.outcomes}) == 2  # both replicas issued some
    system.shutdown()  # and the names are gone with the actors (the run's Producer went at its end)
    for name in ("producer", "dispatcher-0", "design-1", "logistics-1"):
        with pytest.raises(ValueError):
            ray.get_actor(name, namespace=namespace)


@pytest.mark.parametrize("ledger", [False, True], ids=["no-ledger", "ledger"])
def test_a_replica_killed_for_good_is_routed_around_and_no_order_is_lost(start_system, ledger):
    """Without a ledger the dead replica stays dead and its calls go to the other one; with a ledger
    the driver also replaces it under its name, and the replacement carries on its numbering."""
    system = start_system(time_scale=0.01, logistics={"replicas": 2}, ledger={"enabled": ledger})
    victim = ray.get_actor("logistics-1", namespace=system.settings.namespace)
    killed_at = []

    def kill_once(progress, tally):
        if not killed_at and tally.terminal >= 30:
            killed_at.append(kill_for_good(victim))

    # Material (1 s x 0.01 an order, one replica) paces the run: the 370 orders left after the kill take
    # about 3.7 s, time for the driver to notice and for the replacement's new worker process to start.
    # Calls sent to the killed actor fail late, seconds after the replacement took its name; the
    # Dispatcher once took those for the replacement's death and the driver replaced it again and
    # again (see `_about_current` in actors/dispatch/dispatcher.py).
    result = system.run(SourceSpec(count=400), keep_outcomes=True, on_progress=kill_once)
    assert killed_at and result.summary.completed == 400 and result.summary.lost == 0
    late = [o.results[StageName.LOGISTICS] for o in result.outcomes if o.finished_at > killed_at[0]]
    assert any(r.attempts > 1 for r in late)  # the call that found the replica dead was retried on the other
    loads = {load.replica: load for load in system.status(snapshots=False).dispatchers[0].stages[StageName.LOGISTICS]}
    tracking = [o.results[StageName.LOGISTICS].output.tracking_number for o in result.outcomes]
    assert len(set(tracking)) == 400
    if not ledger:
        assert late and all(r.replica == "logistics-0" for r in late if r.started_at > killed_at[0])
        assert not loads["logistics-1"].alive and loads["logistics-0"].alive
        return
    assert loads["logistics-1"].alive  # replaced
    by_victim = sorted(
        (r.started_at, r.output.tracking_number)
        for o in result.outcomes
        if (r := o.results[StageName.LOGISTICS]).replica == "logistics-1"
    )
    before = [number for started, number in by_victim if started < killed_at[0]]
    after = [number for started, number in by_victim if started > killed_at[0] + timedelta(seconds=0.5)]
    assert before and after and min(after) > max(before)  # numbering went on from the checkpoint


def kill_for_good(actor) -> datetime:
    """Kill the actor and return once it is gone. `ray.kill` only asks: a call may still start on
    the actor for a moment after it returns, so the time it returns is not the time of death."""
    ray.kill(actor, no_restart=True)
    for _ in range(500):
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=10)
        except RayActorError:
            return datetime.now().astimezone()
        time.sleep(0.01)
    raise AssertionError(f"{actor} still answers after ray.kill")
