"""What the crash tests share: a thread that kills replicas at random, one that disrupts the
PostgreSQL server, and the audit every one of them ends with (one outcome per order, stock conserved
exactly, serials and tracking numbers unique, no effect recorded twice)."""

from __future__ import annotations

import random
import threading
from collections import Counter

import ray
import ray._private.state  # the GCS actor table, for the Killer

from actors.ledger import SqlLedger
from actors.models import STAGES, OrderStatus, StageName, StageStatus
from orchestration.system import FanoutSystem
from tests.postgres_server import PostgresServer

STOCK = {"stock_multiplier": 10}


def _units(reservation) -> int:
    return int(reservation.quantity) if reservation.unit == "pcs" else round(reservation.quantity * 1000)


def audit(systems: FanoutSystem | list[FanoutSystem], ledger: SqlLedger, expected_orders: int) -> dict[str, int]:
    """The invariants every crash test ends with, over every order in the ledger and every system
    that shares it (their replicas' counters summed); returns the counts it checked."""
    outcomes = [ledger.outcome(line.split('"order_id":"', 1)[1].split('"', 1)[0]) for line in ledger.outcome_lines()]
    ids = [o.order_id for o in outcomes]
    assert len(ids) == len(set(ids)) == expected_orders, "every accepted order has exactly one outcome"
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {OrderStatus.COMPLETED, OrderStatus.FAILED}, statuses
    completed = [o for o in outcomes if o.status is OrderStatus.COMPLETED]

    # Stock: initial = left + reserved, and what is reserved is exactly what completed orders hold.
    held: Counter = Counter()
    for outcome in completed:
        for reservation in outcome.results[StageName.MATERIAL].output.reservations:
            held[reservation.item] += _units(reservation)
    # The one workshop: what was ever stocked = what is left + what completed orders hold.
    for outcome in completed:  # and a box for each completed order, by product
        held[f"box/{outcome.order.product_type}"] += 1
    stocked, left = ledger.stock_changes(), ledger.inventory()
    assert min(left.values()) >= 0
    for lot in stocked:
        assert stocked[lot] == left[lot] + held[lot], (lot, stocked[lot], left[lot], held[lot])
    certified = {c for o in completed for c in o.results[StageName.MATERIAL].output.certificates_verified}
    assert set(ledger.certificates_held()) == certified
    snapshots: dict[StageName, list] = {stage: [] for stage in STAGES}
    for system in systems if isinstance(systems, list) else [systems]:
        for stage, taken in system.status().snapshots.items():
            snapshots[stage].extend(taken)

    # One effect per (stage, order): the ledger's key, and every replica's counters agree with it.
    for stage in STAGES:
        effects = ledger.effects_of(stage)
        standing = [e for e in effects if e.result and e.result.status is StageStatus.OK and not e.compensated]
        ok_recorded = sum(1 for e in effects if e.result and e.result.status is StageStatus.OK)
        assert sum(s.ok for s in snapshots[stage]) == ok_recorded, stage
        if stage is not StageName.QUALITY and stage is not StageName.DESIGN:
            assert len(standing) == len(completed), stage
    state = {stage: [s.state for s in snapshots[stage]] for stage in STAGES}
    assert sum(s["orders_reserved"] for s in state[StageName.MATERIAL]) == len(completed)
    assert sum(s["orders_scheduled"] for s in state[StageName.PRODUCTION]) == len(completed)
    assert sum(s["serials_issued"] - s["serials_voided"] for s in state[StageName.PACKAGING]) == len(completed)
    assert sum(s["tracking_numbers_issued"] - s["waybills_voided"] for s in state[StageName.LOGISTICS]) == len(
        completed
    )

    # Numbers are never issued twice, voided or not.
    serials = [
        e.result.output.certificate_serial
        for e in ledger.effects_of(StageName.PACKAGING)
        if e.result and e.result.status is StageStatus.OK
    ]
    tracking = [
        e.result.output.tracking_number
        for e in ledger.effects_of(StageName.LOGISTICS)
        if e.result and e.result.status is StageStatus.OK
    ]
    assert len(serials) == len(set(serials)) and len(tracking) == len(set(tracking))
    voided = ledger.voided_numbers("certificate_serial")
    assert voided.isdisjoint(
        int(o.results[StageName.PACKAGING].output.certificate_serial.rsplit("-", 1)[1]) for o in completed
    )
    return {
        "orders": len(ids),
        "completed": len(completed),
        "failed": statuses[OrderStatus.FAILED],
        "duplicated": len(ids) - len(set(ids)),
    }


class Killer(threading.Thread):
    """Every `every_s` (randomised ±50%), kills a random running stage replica, unless `max_down`
    of them are still restarting; Ray restarts it.

    A restart needs a new worker process, most of its CPU spent importing Ray, so two cores bring
    back only a replica or two a second, fewer while orders run. Killing every 0.3 s whatever the
    state asked for more restarts than that: replicas were down nearly all the time, most kills hit
    actors that had not come back yet, and the test's time was set by the restart queue, up to its
    timeout as the machine got busier. With at most `max_down` replicas restarting, every kill hits
    a replica doing work, and the kills come as fast as the machine can take them back.
    """

    def __init__(
        self, namespace: str, replicas: dict[StageName, int], every_s: float, max_down: int = 2, seed: int = 7
    ) -> None:
        super().__init__(daemon=True)
        self.max_down = max_down
        self.names = [f"{stage}-{i}" for stage, n in replicas.items() for i in range(n)]
        self.namespace, self.every_s, self.rng = namespace, every_s, random.Random(seed)
        # An actor keeps its id across restarts; ids tell our replicas from other namespaces' namesakes.
        self.ids = {ray.get_actor(name, namespace=namespace)._actor_id.hex(): name for name in self.names}
        self.kills: Counter = Counter()
        self.skipped = 0
        self.stop = threading.Event()

    def alive(self) -> list[str]:
        # The GCS's actor table (what `ray list actors` reads; the session's Ray runs without a dashboard).
        table = ray._private.state.actors(actor_state_name="ALIVE")
        return sorted(self.ids[actor_id] for actor_id in table if actor_id in self.ids)

    def run(self) -> None:
        while not self.stop.wait(self.every_s * self.rng.uniform(0.5, 1.5)):
            alive = self.alive()
            if len(self.names) - len(alive) >= self.max_down:
                self.skipped += 1
                continue
            name = self.rng.choice(alive)
            ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=False)
            self.kills[name] += 1


class DatabaseDisruptor(threading.Thread):
    """On a PostgreSQL ledger: every `every_s`, terminate every connection to the run's database
    (`pg_terminate_backend`, what an operator or a failover does), and once, on the second tick,
    crash and restart the server (`pg_ctl stop -m immediate`: no checkpoint, recovery on start)."""

    def __init__(self, server: PostgresServer, database: str, every_s: float = 2.5) -> None:
        super().__init__(daemon=True)
        self.server, self.database, self.every_s = server, database, every_s
        self.terminated, self.restarts = 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self.stop.wait(self.every_s):
            tick += 1
            if tick == 2:
                self.server.restart("immediate")
                self.restarts += 1
                continue
            found = self.server.psql(
                f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = '{self.database}' AND pid <> pg_backend_pid()"
            )
            self.terminated += int(found.strip() or 0)
