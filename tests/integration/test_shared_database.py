"""Two systems, each its own namespace, running at once on one ledger database (PostgreSQL, as a
cluster's jobs share the head node's; and one SQLite file, as on one machine): replicas killed in
both, one restock meanwhile. They share the workshop and the order ids, and nothing else."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from loguru import logger

from actors.intake.samples import generate_orders
from actors.intake.sources import SourceSpec
from actors.ledger import LedgerSpec, open_ledger
from actors.models import STAGES, OrderStatus, StageName, StageStatus
from actors.models.runs import RunState
from orchestration import cli
from orchestration.output import read_outcomes
from tests.integration.chaos import STOCK, Killer, audit

pytestmark = pytest.mark.slow

ORDERS_A, ORDERS_B = 600, 300
SETTINGS = {
    "time_scale": 0.0,
    "material": {"replicas": 2, **STOCK},
    "packaging": {"replicas": 2},
    "quality": {"defect_rate": 0.05},
    "artifacts": False,
}


def _orders_of_b(tmp_path):
    """Shop B's backlog: orders of its own, under ids shop A never uses (order ids are the workshop's)."""
    path = tmp_path / "shop-b.jsonl"
    originals = 3  # the three sample orders' certified stones are A's (its source begins with them)
    orders = [
        order.model_copy(update={"order_id": f"J3{i:07d}"})
        for i, order in enumerate(list(generate_orders(ORDERS_B + originals, seed=99))[originals:])
    ]
    path.write_text("".join(order.model_dump_json() + "\n" for order in orders), encoding="utf-8")
    return SourceSpec(path=path), {order.order_id for order in orders}


@pytest.mark.restarts_actors
def test_two_systems_on_one_database_at_once_share_the_workshop_and_nothing_else(
    start_system, store, tmp_path, closing, capsys
):
    location = store.get("location") or str(tmp_path / "shared.sqlite3")
    tag = uuid.uuid4().hex[:6]
    a = start_system(namespace=f"shop-a-{tag}", out_dir=str(tmp_path / "a"), ledger={"location": location}, **SETTINGS)
    b = start_system(namespace=f"shop-b-{tag}", out_dir=str(tmp_path / "b"), ledger={"location": location}, **SETTINGS)
    source_b, ids_b = _orders_of_b(tmp_path)
    ids_a = {order.order_id for order in generate_orders(ORDERS_A)}
    replicas = dict.fromkeys(STAGES, 1) | {StageName.MATERIAL: 2, StageName.PACKAGING: 2}
    killers = [Killer(s.settings.namespace, replicas, every_s=0.4, max_down=1, seed=i) for i, s in enumerate((a, b))]
    results: dict[str, object] = {}

    def run(name: str, system, source) -> None:
        results[name] = system.run(source, out_dir=system.settings.out_dir, keep_outcomes=True)

    threads = [
        threading.Thread(target=run, args=("a", a, SourceSpec(count=ORDERS_A))),
        threading.Thread(target=run, args=("b", b, source_b)),
    ]
    started = time.perf_counter()
    for thread in [*threads, *killers]:
        thread.start()
    operator = closing(open_ledger(LedgerSpec.from_location(location)))
    time.sleep(1.0)  # the runs are under way: an operator's restock lands in the middle of both
    restocked = operator.restock("jade/A", 40, "delivered mid-run")
    for thread in threads:
        thread.join(timeout=240)
    for killer in killers:
        killer.stop.set()
        killer.join()
    elapsed = time.perf_counter() - started
    assert set(results) == {"a", "b"}, "a run did not finish"
    kills = [sum(killer.kills.values()) for killer in killers]
    assert all(count >= 3 for count in kills), kills  # replicas of both systems were really killed

    # Each run: every one of its orders has exactly one outcome, and nothing the other did parked it.
    for name, ids in (("a", ids_a), ("b", ids_b)):
        result = results[name]
        assert result.summary.lost == 0 and result.summary.dead_lettered == 0, result.summary
        assert sorted(o.order_id for o in result.outcomes) == sorted(ids)
        assert {o.status for o in result.outcomes} <= {OrderStatus.COMPLETED, OrderStatus.FAILED}
        # Its files hold its own orders only: the shared ledger holds both runs'.
        out = (a if name == "a" else b).settings.out_dir
        assert sorted(o.order_id for o in read_outcomes(out / "outcomes.jsonl")) == sorted(ids)
        assert json.loads((out / "summary.json").read_text())["orders_total"] == len(ids)
    # One workshop: stock conserved across both runs (the restock counted), certificates held once,
    # serials and tracking numbers never issued twice; each system's replicas' counters add up.
    ledger = closing(open_ledger(LedgerSpec.from_location(location)))
    assert ledger.stock_changes()["jade/A"] >= 40 and restocked <= ledger.stock_changes()["jade/A"]
    counts = audit([a, b], ledger, ORDERS_A + ORDERS_B)
    tracking = [
        e.result.output.tracking_number
        for e in ledger.effects_of(StageName.LOGISTICS)
        if e.result and e.result.status is StageStatus.OK
    ]
    assert len(tracking) == len(set(tracking)) >= counts["completed"]
    # The runs, as the ledger holds them; then A's command again for its first orders, a run of its
    # own answered from the ledger, and all three as `jewelry-fanout runs` lists them.
    runs = {run.namespace: run for run in ledger.runs()}
    for system, total in ((a, ORDERS_A), (b, ORDERS_B)):
        run = runs[system.settings.namespace]
        assert run.state is RunState.ENDED and run.ending == "completed" and run.admitted == total
        assert sum(run.by_status.values()) == total and run.pending == 0
    again = a.run(SourceSpec(count=5), out_dir=a.settings.out_dir)
    assert again.summary.from_ledger == 5 and len(read_outcomes(a.settings.out_dir / "outcomes.jsonl")) == 5
    capsys.readouterr()
    assert cli.main(["runs", "--ledger", location, "--json"]) == cli.EXIT_OK
    listed = [r for r in json.loads(capsys.readouterr().out) if r["namespace"].endswith(tag)]
    assert sorted((r["namespace"], r["admitted"], r["state"], r["pending"]) for r in listed) == sorted(
        [
            (a.settings.namespace, ORDERS_A, "ended", 0),
            (b.settings.namespace, ORDERS_B, "ended", 0),
            (a.settings.namespace, 5, "ended", 0),
        ]
    )
    assert listed[-1]["admitted"] == 5 and sum(listed[-1]["by_status"].values()) == 5  # listed by start
    assert cli.main(["runs", "--ledger", location]) == cli.EXIT_OK
    table = capsys.readouterr().out
    assert a.settings.namespace in table and b.settings.namespace in table and "ended" in table
    logger.info(
        "two systems on one {} ledger: {} + {} orders, kills {} and {}, {} completed, {} failed, 0 dead-lettered, "
        "{:.1f} s",
        "postgresql" if store else "sqlite",
        ORDERS_A,
        ORDERS_B,
        *kills,
        counts["completed"],
        counts["failed"],
        elapsed,
    )
