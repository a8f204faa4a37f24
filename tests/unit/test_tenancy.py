"""Several systems on one store: each keeps its replicas' state to itself (by its namespace), all of
them share the workshop and the order ids, and each run records the orders it admitted."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing as closing_connection
from datetime import UTC, datetime

import psycopg
import pytest

from actors.errors import LedgerMismatch
from actors.intake.samples import generate_orders
from actors.ledger import LedgerSpec, open_ledger
from actors.models import STAGES, OrderOutcome, StageName, StageStatus
from actors.models.runs import STALE_AFTER_S, RunState
from actors.stages import STAGE_CLASSES, STAGE_CONFIGS, ReplicaContext
from tests.unit.conftest import Backend

A, B = "shop-a", "shop-b"


def _material(backend: Backend, namespace: str, closing):
    return closing(
        STAGE_CLASSES[StageName.MATERIAL](
            STAGE_CONFIGS[StageName.MATERIAL](), backend.context("material-0", namespace=namespace)
        )
    )


def test_two_systems_never_fence_or_resume_each_others_replicas_and_share_the_workshop(backend, closing):
    """Two systems' `material-0` on one store: each commits (neither is fenced off by the other), a
    restart of one comes back with its own state, and both take from one stock and one register."""
    orders = list(generate_orders(12, seed=21))
    a, b = _material(backend, A, closing), _material(backend, B, closing)
    stocked = backend.open().stock_changes()
    done_a = [a.process(order) for order in orders[:8]]
    done_b = [b.process(order) for order in orders[8:]]
    late_a = a.process(orders[2].model_copy(update={"order_id": "J2026001"}))  # a after b: not Superseded
    assert all(r.status is StageStatus.OK for r in [*done_a, *done_b, late_a]), [r.reason for r in done_a + done_b]
    assert a.snapshot().state["orders_reserved"] == 9 and b.snapshot().state["orders_reserved"] == 4

    again_a, again_b = _material(backend, A, closing), _material(backend, B, closing)  # restarts: their own state
    assert again_a.snapshot().state["orders_reserved"] == 9 and again_b.snapshot().state["orders_reserved"] == 4
    reader = backend.open()
    taken = {lot: stocked[lot] - left for lot, left in reader.inventory().items()}
    assert sum(taken.values()) > 0 and set(reader.certificates_held().values()) <= {o.order_id for o in orders}
    # The order ids are the workshop's: b asked about an order a did gets a's record, not a second effect.
    repeat = b.process(orders[0])
    assert repeat.replayed and repeat.replica == "material-0" and again_b.snapshot().state["orders_reserved"] == 4


def test_a_restarted_replica_fences_only_its_own_systems_older_incarnation(backend, closing):
    zombie_a = _material(backend, A, closing)
    other_b = _material(backend, B, closing)
    _material(backend, A, closing)  # a's replica again, elsewhere: the newer incarnation
    orders = list(generate_orders(4, seed=5))
    fenced = zombie_a.process(orders[0])
    assert fenced.status is StageStatus.ERROR and "Superseded" in fenced.reason
    assert other_b.process(orders[1]).status is StageStatus.OK  # b's is no one's zombie


def _outcome(order, now) -> OrderOutcome:
    results = [
        STAGE_CLASSES[s](STAGE_CONFIGS[s](), ReplicaContext(f"{s}-0", time_scale=0)).process(order) for s in STAGES
    ]
    return OrderOutcome.from_results(order, results, now, now)


def test_a_run_records_what_it_admitted_and_its_outcome_lines_are_its_own(spec, closing):
    a = closing(open_ledger(spec.model_copy(update={"namespace": A})))
    b = closing(open_ledger(spec.model_copy(update={"namespace": B})))
    now = datetime.now(UTC)
    orders = list(generate_orders(6, seed=3))
    a.begin_run("run-a", "orders.jsonl")
    b.begin_run("run-b", "generated(seed=3)")
    a.admit("run-a", [o.order_id for o in orders[:4]])
    b.admit("run-b", [o.order_id for o in orders[3:]])  # orders[3] in both: b answers it from the ledger
    a.record_outcomes([(_outcome(o, now), []) for o in orders[:4]])
    b.record_outcomes([(_outcome(o, now), []) for o in orders[4:5]])  # orders[5] still in flight
    b.heartbeat("run-b")
    a.end_run("run-a", "completed")

    def ids(lines):
        return [json.loads(line)["order_id"] for line in lines]

    assert ids(a.run_outcome_lines("run-a")) == [o.order_id for o in orders[:4]]
    assert ids(b.run_outcome_lines("run-b")) == [orders[3].order_id, orders[4].order_id]
    runs = {run.run_id: run for run in a.runs()}
    assert (
        runs["run-a"].namespace == A and runs["run-a"].state is RunState.ENDED and runs["run-a"].ending == "completed"
    )
    assert runs["run-a"].by_status == {"completed": 4} and runs["run-a"].pending == 0
    assert runs["run-b"].namespace == B and runs["run-b"].state is RunState.GOING
    assert (runs["run-b"].admitted, runs["run-b"].pending, runs["run-b"].by_status) == (3, 1, {"completed": 2})


def test_a_run_whose_driver_stopped_stamping_it_is_abandoned(spec, closing, monkeypatch):
    ledger = closing(open_ledger(spec))
    ledger.begin_run("killed", "orders.jsonl")
    later = time.time() + STALE_AFTER_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    (run,) = ledger.runs()
    assert run.state is RunState.ABANDONED and run.ended_at is None


def test_each_system_binds_its_own_business_settings(spec, closing):
    a = closing(open_ledger(spec.model_copy(update={"namespace": A})))
    b = closing(open_ledger(spec.model_copy(update={"namespace": B})))
    a.bind({"quality": {"defect_rate": 0.0}})
    b.bind({"quality": {"defect_rate": 0.1}})  # another shop, other rules: its own binding
    with pytest.raises(LedgerMismatch, match="quality"):
        closing(open_ledger(spec.model_copy(update={"namespace": A}))).bind({"quality": {"defect_rate": 0.1}})


# What schema 2 looked like: replica state and effects keyed by the replica's name alone, no runs.
SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE effects (
    stage TEXT NOT NULL, order_id TEXT NOT NULL, replica TEXT NOT NULL, status TEXT,
    result TEXT, compensated INTEGER NOT NULL DEFAULT 0, compensation TEXT, recorded_at {real} NOT NULL,
    PRIMARY KEY (stage, order_id)
);
CREATE INDEX effects_by_replica ON effects (replica);
CREATE TABLE checkpoints (
    replica TEXT PRIMARY KEY, stage TEXT NOT NULL, state TEXT, generation INTEGER NOT NULL, updated_at {real} NOT NULL
)
"""
ROWS_2 = [
    ("INSERT INTO meta VALUES ('schema_version', '2')", ()),
    ("INSERT INTO meta VALUES ('stage_setup', '{{}}')", ()),
    ("INSERT INTO checkpoints VALUES ('packaging-0', 'packaging', {mark}, 3, 0)", ("state",)),
    ("INSERT INTO effects VALUES ('packaging', 'J2025001', 'packaging-0', 'ok', {mark}, 0, NULL, 0)", ("result",)),
]


def _schema_2(spec: LedgerSpec) -> None:
    """Write a ledger as the version before runs did."""
    values = {
        "state": json.dumps({"counts": {"ok": 1}, "stage": {"issued": 1}}),
        "result": STAGE_CLASSES[StageName.PACKAGING](
            STAGE_CONFIGS[StageName.PACKAGING](), ReplicaContext("packaging-0", time_scale=0)
        )
        .process(next(iter(generate_orders(1))))
        .model_dump_json(),
    }
    if spec.path is not None:
        with closing_connection(sqlite3.connect(spec.path)) as db, db:
            db.executescript(SCHEMA_2.format(real="REAL"))
            for statement, names in ROWS_2:
                db.execute(statement.format(mark="?"), [values[name] for name in names])
        return
    with psycopg.connect(spec.url, autocommit=True) as db:
        for statement in SCHEMA_2.format(real="DOUBLE PRECISION").split(";"):
            db.execute(statement)
        for statement, names in ROWS_2:
            db.execute(statement.format(mark="%s"), [values[name] for name in names])


def test_a_ledger_of_the_version_before_runs_is_upgraded_by_a_runs_driver_and_explained_to_a_reader(
    tmp_path, request, closing
):
    for kind in ("sqlite", "postgresql"):
        if kind == "sqlite":
            spec = LedgerSpec(path=tmp_path / "old.sqlite3", namespace="old-shop")
        else:
            server = request.getfixturevalue("postgres_server")
            spec = LedgerSpec(url=server.new_database(), namespace="old-shop")
        _schema_2(spec)
        with pytest.raises(LedgerMismatch, match=r"run `jewelry-fanout run` on it once .* upgraded in place"):
            open_ledger(spec)  # a reader (trace, an actor) is told what to do, and changes nothing
        upgraded = closing(open_ledger(spec, create=True))  # what a run's driver does
        assert upgraded.checkpoint_of("packaging-0") == {"counts": {"ok": 1}, "stage": {"issued": 1}}
        assert [r.order_id for r in upgraded.live_effects("packaging-0")] == ["J2025001"]
        upgraded.bind({})  # the old binding is the adopting system's now
        other = closing(open_ledger(spec.model_copy(update={"namespace": "new-shop"})))
        assert other.checkpoint_of("packaging-0") is None and list(other.live_effects("packaging-0")) == []
        upgraded.begin_run("first", "orders.jsonl")
        assert [run.run_id for run in other.runs()] == ["first"], kind
