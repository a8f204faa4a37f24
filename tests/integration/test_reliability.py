"""Tests that really break things: replicas killed at random, the Dispatcher killed, the driver
SIGKILLed and the run resumed, a dead-lettered order replayed. Real Ray, real processes, real ledger.

After each, the same audit: every accepted order has one outcome, stock is conserved exactly,
serials and tracking numbers are unique, and no stage recorded an effect for an order twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
import ray
import ray._private.state  # the GCS actor table, for the Killer
from loguru import logger

from actors.errors import RunIncomplete
from actors.intake.sources import SourceSpec
from actors.ledger import LedgerSpec, SqlLedger, open_ledger
from actors.models import STAGES, OrderStatus, StageName
from orchestration import cli
from orchestration.output import read_outcomes
from tests.integration.chaos import STOCK, DatabaseDisruptor, Killer, audit
from tests.support import wait_until

pytestmark = pytest.mark.slow


def test_a_postgresql_server_crashed_and_restarted_three_times_during_2000_orders_loses_nothing(
    ledger_of, start_system, postgres_server, postgres_url
):
    """Each restart is a crash (`pg_ctl stop -m immediate`: no checkpoint, recovery on start) while
    every actor has transactions in flight: they are retried within the budget, the ones whose commit
    answer was lost find their effect recorded, and the run never notices beyond a pause."""
    orders = 2000
    system = start_system(
        time_scale=0.0, material=STOCK, quality={"defect_rate": 0.05}, ledger={"location": postgres_url}
    )
    restarts: list[int] = []

    def crash_every_500(progress, tally) -> None:
        if len(restarts) < 3 and tally.terminal >= 500 * (len(restarts) + 1):
            postgres_server.restart("immediate")
            restarts.append(tally.terminal)

    started = time.perf_counter()
    result = system.run(SourceSpec(count=orders), keep_outcomes=True, on_progress=crash_every_500)
    elapsed = time.perf_counter() - started
    assert len(restarts) == 3, restarts
    assert (result.summary.lost, result.summary.unfinished) == (0, 0) and len(result.outcomes) == orders
    counts = audit(system, ledger_of(system), orders)
    assert counts["failed"] > 0  # QC rejects were compensated across the crashes too
    logger.info(
        "postgresql restarts: {} orders, server crashed at {}, lost 0, duplicated {}, {:.1f} s",
        orders,
        restarts,
        counts["duplicated"],
        elapsed,
    )


def test_a_database_down_past_the_retry_budget_stops_the_run_with_the_reason_and_the_same_run_finishes_it(
    ledger_of, start_system, postgres_server, postgres_url
):
    """PostgreSQL crashes mid-run and stays down for longer than the store's retry budget (3 s here, 60 s by
    default). The run ends rather than hangs, says why, and loses nothing: each order has a committed
    outcome or is reported unfinished or was never read. Once the server is back, the same run
    finishes them all, each stage's work done once."""
    orders = 400
    system = start_system(
        time_scale=0.002,
        material=STOCK,
        quality={"defect_rate": 0.05},
        max_in_flight=20,
        ledger={"location": postgres_url, "retry_s": 3.0},
    )
    crashed = threading.Event()

    def crash_after_100(progress, tally) -> None:
        if not crashed.is_set() and tally.terminal >= 100:
            postgres_server.stop("immediate")
            crashed.set()

    try:
        first = system.run(SourceSpec(count=orders), keep_outcomes=True, on_progress=crash_after_100)
    finally:
        if crashed.is_set():
            postgres_server.start()
    assert crashed.is_set()
    summary = first.summary
    assert summary.lost == 0 and summary.unfinished == len(first.lost) > 0, summary
    assert all(
        order.resumable and order.reason.startswith("LedgerUnavailable: ledger postgresql://postgres:***@")
        for order in first.lost
    ), first.lost[:3]
    assert "the ledger is unreachable" in first.source_error and "run the same command again" in first.source_error
    with pytest.raises(RunIncomplete, match="not recorded in the ledger, so not lost"):
        first.raise_if_incomplete()
    told = {o.order_id for o in first.outcomes}
    assert 100 <= len(told) < orders and told.isdisjoint(o.order_id for o in first.lost)
    assert set(ledger_of(system).outcomes(sorted(told))) == told  # every answer given was committed first

    second = system.run(SourceSpec(count=orders), keep_outcomes=True)
    assert (second.summary.lost, second.summary.unfinished, second.source_error) == (0, 0, None), second.lost[:3]
    assert len(second.outcomes) == orders and second.summary.from_ledger == len(told)
    audit(system, ledger_of(system), orders)


def _driver(out: Path, namespace: str, orders: int, ledger: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = [
        sys.executable,
        "-m",
        "orchestration",
        "run",
        "--orders",
        str(orders),
        "--time-scale",
        "0.002",
        "--out",
        str(out),
        "--ledger",
        ledger,
        "--no-artifacts",
        "--log-level",
        "WARNING",
        "--set",
        f"namespace={namespace}",
        "--set",
        "material.stock_multiplier=10",
        "--set",
        "quality.defect_rate=0.05",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_sigkilled_driver_resumes_on_its_ledger_without_reprocessing(ledger_of, start_system, store, tmp_path):
    out, orders, namespace = tmp_path / "run", 800, f"crash-{os.getpid()}"
    location = store.get("location") or str(out / "ledger.sqlite3")
    driver = _driver(out, namespace, orders, location)

    _wait_for_outcomes(driver, location, 300, "before the driver is killed")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _wait_until_still(location, driver.pid)
    with closing(_open(location)) as ledger:
        finished_before = {o: ledger.outcome(o) for o in _ids(ledger)}
        in_flight = [e.order_id for e in ledger.effects_of(StageName.MATERIAL) if e.order_id not in finished_before]
    assert 300 <= len(finished_before) < orders

    # The same job again (the same namespace: its replicas resume the crashed ones' counters), on the
    # same ledger, with more replicas than wrote it (it ran one of each): replicas are workers of one
    # workshop, so a ledger resumes under any replica counts.
    system = start_system(
        namespace=namespace,
        time_scale=0.002,
        out_dir=str(out),
        artifacts=False,
        material={"replicas": 2, **STOCK},
        packaging={"replicas": 2},
        production={"replicas": 3},
        quality={"defect_rate": 0.05},
        ledger=store,
    )
    result = system.run(SourceSpec(count=orders), out_dir=out, keep_outcomes=True)
    assert result.summary.from_ledger == len(finished_before)  # nothing reprocessed
    fresh = [o for o in result.outcomes if not o.from_ledger]
    assert len(fresh) == orders - len(finished_before)
    for outcome in result.outcomes:
        if outcome.from_ledger:
            assert outcome == finished_before[outcome.order_id].model_copy(update={"from_ledger": True})
    # Orders in flight at the crash were finished from what their stages had recorded.
    resumed = [o for o in fresh if o.order_id in set(in_flight)]
    assert all(o.results[StageName.MATERIAL].replayed for o in resumed)
    audit(system, ledger_of(system), orders)  # nothing missing
    assert len(read_outcomes(out / "outcomes.jsonl")) == orders
    logger.info(
        "driver SIGKILL: {} done before, {} in flight resumed from recorded effects, {} new",
        len(finished_before),
        len(resumed),
        len(fresh) - len(resumed),
    )


def test_ctrl_c_stops_admitting_lets_the_orders_in_flight_conclude_and_the_same_command_resumes(ray_session, tmp_path):
    """SIGINT to a real `jewelry-fanout run` (its driver on the session's Ray, as a job's is on a
    cluster): it admits nothing more, the orders in flight conclude, outcomes and summary are written,
    it says how many are done and not started, and exits 130. The same command then finishes."""
    out, orders = tmp_path / "run", 800
    namespace = f"interrupt-{os.getpid()}"
    location = str(out / "ledger.sqlite3")
    driver = _driver(out, namespace, orders, location)

    _wait_for_outcomes(driver, location, 200, "before the interrupt")
    interrupted_at = time.monotonic()
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    drained_s = time.monotonic() - interrupted_at
    stderr = stderr.decode()
    assert driver.returncode == cli.EXIT_INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    told = re.search(
        r"interrupted: (\d+) order\(s\) done, (\d+) record\(s\) not started; run the same "
        r"command again to resume",
        stderr,
    )
    assert told, stderr[-3000:]
    done, not_started = map(int, told.groups())
    assert done >= 200 and not_started > 0 and done + not_started == orders  # every admitted order concluded
    with closing(_open(location)) as ledger:
        concluded = set(_ids(ledger))
        touched = {e.order_id for stage in STAGES for e in ledger.effects_of(stage)}
    assert len(concluded) == done and touched <= concluded  # nothing left half-done in flight
    assert len(read_outcomes(out / "outcomes.jsonl")) == done
    assert json.loads((out / "summary.json").read_text())["not_started"] == not_started

    again = _driver(out, namespace, orders, location)
    _, stderr = again.communicate(timeout=180)
    assert again.returncode == cli.EXIT_OK, stderr.decode()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["from_ledger"] == done and summary["not_started"] == 0
    assert summary["completed"] + summary["failed"] == orders and summary["lost"] == 0
    assert len(read_outcomes(out / "outcomes.jsonl")) == orders
    logger.info(
        "interrupt: {} orders done at the interrupt ({} not started), drained and exited in {:.1f} s; resumed: {} new",
        done,
        not_started,
        drained_s,
        orders - done,
    )


def _open(location: str) -> SqlLedger:
    """A driver's ledger (an SQLite path or a PostgreSQL URL), opened as a reader from outside."""
    return open_ledger(LedgerSpec.from_location(location))


class _LedgerCounts:
    """How far a running driver's ledger has got, read from outside several times a second: one
    connection for the whole wait and one `count(*)` statement per look. (Opening the ledger for each
    look, a connection pool on PostgreSQL, and reading every effect back as a model cost the test
    process more CPU than the driver it watched.)"""

    QUERY = (
        "SELECT (SELECT count(*) FROM outcomes), (SELECT count(*) FROM effects), "
        "(SELECT coalesce(sum(compensated), 0) FROM effects)"
    )

    def __init__(self, location: str) -> None:
        self.location = location
        self._connection: sqlite3.Connection | psycopg.Connection | None = None

    def __call__(self) -> tuple[int, int, int] | None:
        """Outcomes, effects, and how many effects are compensated; None while the ledger is not made yet."""
        try:
            if self._connection is None:
                if "://" in self.location:
                    self._connection = psycopg.connect(self.location, autocommit=True)
                elif Path(self.location).exists():
                    self._connection = sqlite3.connect(f"file:{self.location}?mode=ro", uri=True, timeout=5)
                else:
                    return None
            outcomes, effects, compensated = self._connection.execute(self.QUERY).fetchone()
            return int(outcomes), int(effects), int(compensated)
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            return None  # its tables not yet made

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def _wait_for_outcomes(driver: subprocess.Popen, location: str, count: int, when: str) -> None:
    """Until the running driver's ledger holds `count` outcomes; the test fails if the driver ends first."""

    def enough() -> bool:
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
        counts = look()
        return counts is not None and counts[0] >= count

    with closing(_LedgerCounts(location)) as look:
        wait_until(enough, timeout_s=120, interval_s=0.2, what=f"{count} orders done {when}")


def _exited(pid: int) -> bool:
    """Whether a process is gone (a zombie, killed and not yet reaped by its raylet, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_until_still(location: str, driver_pid: int, quiet_s: float = 0.5, timeout_s: float = 60) -> None:
    """The dead driver's actors die a moment after it (Ray marks them dead first, and kills their
    processes after): wait until every actor process of its job has exited, and then nothing has been
    written to the ledger for `quiet_s` (a commit the store had received from a process just killed).
    (A quiet ledger alone needed a long quiet, 3 s, to be sure the actors were not merely between
    writes.)"""
    jobs = {job["JobID"] for job in ray._private.state.jobs() if job["DriverPid"] == driver_pid}
    assert jobs, f"no Ray job for driver process {driver_pid}"

    def actors_gone() -> bool:
        actors = [a for a in ray._private.state.actors().values() if a["JobID"] in jobs]
        return bool(actors) and all(a["State"] == "DEAD" and _exited(a["Pid"]) for a in actors)

    wait_until(actors_gone, timeout_s, interval_s=0.1, what="the dead driver's actor processes to exit")
    last = {"counts": None, "since": time.monotonic()}

    def still() -> bool:
        counts = look()
        if counts != last["counts"]:
            last.update(counts=counts, since=time.monotonic())
        return time.monotonic() - last["since"] >= quiet_s

    with closing(_LedgerCounts(location)) as look:
        wait_until(still, timeout_s, interval_s=0.2, what="the dead driver's actors to stop writing to the ledger")


def _ids(ledger: SqlLedger) -> list[str]:
    return [json.loads(line)["order_id"] for line in ledger.outcome_lines()]


def test_replay_of_a_dead_lettered_stage_completes_its_order(ledger_of, start_system, store):
    # Logistics is down: every call errors (a timeout, no retries), so every order is dead-lettered.
    down = {"duration_s": 1.0, "timeout_s": 0.2, "retry": {"attempts": 1}}
    system = start_system(
        time_scale=1.0,
        logistics=down,
        quality={"duration_s": 0},
        material={"duration_s": 0},
        design={"duration_s": 0},
        production={"duration_s": 0},
        packaging={"duration_s": 0},
        ledger=store,
    )
    result = system.run(SourceSpec(count=3), keep_outcomes=True)
    assert result.summary.dead_lettered == 3
    parked = result.outcomes[0]
    assert parked.status is OrderStatus.DEAD_LETTERED and parked.compensations == {}
    assert [d.stage for d in ledger_of(system).dead_letters(parked.order_id)] == [StageName.LOGISTICS]
    out = system.settings.out_dir
    start_system.done(system)  # parked for a later test: the replay runs in a fresh system of its own

    # The carrier is back: replay one order from the CLI, on the same ledger, in a fresh system.
    namespace = f"replay-{os.getpid()}"
    on_the_ledger = ["--ledger", store["location"]] if store else []
    code = cli.main(
        [
            "replay",
            parked.order_id,
            "--stage",
            "logistics",
            "--out",
            str(out),
            "--json",
            *on_the_ledger,
            "--set",
            f"namespace={namespace}",
            "--set",
            "time_scale=0",
            "--set",
            "log_level=WARNING",
        ]
    )
    assert code == cli.EXIT_OK
    ledger = ledger_of(system)  # read from the settings alone: the system is gone
    done = ledger.outcome(parked.order_id)
    assert done.status is OrderStatus.COMPLETED
    for stage in STAGES:  # the five that had succeeded were not run again: their results are the recorded ones
        if stage is not StageName.LOGISTICS:
            assert done.results[stage] == parked.results[stage]
    assert ledger.dead_letters(parked.order_id) == []
    assert ledger.outcome_counts() == {"completed": 1, "dead_lettered": 2}
    material = [e for e in ledger.effects_of(StageName.MATERIAL) if e.order_id == parked.order_id]
    assert len(material) == 1

    code = cli.main(["replay", parked.order_id, "--out", str(out), *on_the_ledger, "--set", f"namespace={namespace}-2"])
    assert code == cli.EXIT_USAGE  # completed: nothing to replay


def test_a_used_order_id_with_other_details_is_rejected_not_answered_from_the_ledger(start_system):
    system = start_system()
    system.run(SourceSpec(count=10, seed=1))
    again = system.run(SourceSpec(count=10, seed=2), keep_outcomes=True)  # same ids, other orders after the 3 originals
    assert again.summary.from_ledger == 3 and again.summary.rejected == 7
    assert all(r.errors[0].field == "order_id" and "other details" in r.errors[0].reason for r in again.rejects)


# Last in the module: Ray restarts these tests' actors, so they start systems of their own, and the
# systems parked by the tests above (see parked.py) are still there for each other.


@pytest.mark.restarts_actors
def test_random_replica_kills_during_a_run_lose_nothing_and_do_nothing_twice(ledger_of, start_system, store, request):
    """On each store; on PostgreSQL the database is disrupted too: its connections are terminated
    every few seconds and the server crashes and restarts once, while replicas are being killed."""
    replicas = dict.fromkeys(STAGES, 1) | {StageName.MATERIAL: 2, StageName.PRODUCTION: 2, StageName.PACKAGING: 2}
    # Every order in flight waits for whichever of its six calls landed on a replica that is
    # restarting, so the run advances about a window of orders per restart. A window of 400 (not the
    # default 100) and three replicas down at a time give as many kills, denser, in a shorter run,
    # each kill with more calls to re-send.
    system = start_system(
        time_scale=0.0,
        max_in_flight=400,
        material={"replicas": 2, **STOCK},
        production={"replicas": 2},
        packaging={"replicas": 2},
        quality={"defect_rate": 0.05},
        ledger=store,
    )
    killer = Killer(system.settings.namespace, replicas, every_s=0.3, max_down=3)
    disruptor = None
    if store:
        disruptor = DatabaseDisruptor(request.getfixturevalue("postgres_server"), store["location"].rsplit("/", 1)[1])
    orders = 2000  # on both stores: the size the kill test keeps
    started = time.perf_counter()
    for thread in filter(None, (killer, disruptor)):
        thread.start()
    try:
        result = system.run(SourceSpec(count=orders), keep_outcomes=True)
    finally:
        for thread in filter(None, (killer, disruptor)):
            thread.stop.set()
            thread.join()
    elapsed = time.perf_counter() - started
    if disruptor is not None:
        assert disruptor.restarts == 1 and disruptor.terminated >= 10, (disruptor.restarts, disruptor.terminated)
    assert result.summary.lost == 0 and len(result.outcomes) == orders
    counts = audit(system, ledger_of(system), orders)
    kills = sum(killer.kills.values())
    # Kills kept coming throughout: about one a second here alone, fewer when restarts queue on a loaded machine.
    assert kills >= max(20, elapsed / 4), (kills, elapsed, killer.kills)
    assert len({name.rsplit("-", 1)[0] for name in killer.kills}) >= 4, killer.kills  # across the stages
    assert counts["failed"] > 0  # QC rejects were compensated under fire too
    replays = sum(1 for o in result.outcomes for r in o.results.values() if r.replayed)
    logger.info(
        "kill test ({}): {} orders, {} kills {}, {} ticks waiting for restarts, lost 0, duplicated {}, {} "
        "answers from the ledger, {:.1f} s{}",
        "postgresql" if store else "sqlite",
        counts["orders"],
        kills,
        dict(killer.kills),
        killer.skipped,
        counts["duplicated"],
        replays,
        elapsed,
        f", {disruptor.terminated} connections terminated, 1 server restart" if disruptor else "",
    )


@pytest.mark.restarts_actors
def test_killing_a_dispatcher_shard_and_the_producer_mid_run_still_accounts_for_every_order_once(
    ledger_of, start_system, store
):
    """The control plane's actors, killed during one run: a Dispatcher shard twice (its restart
    resumes its orders in flight from the ledger) and the Producer once (its restart re-reads the
    source; what it had already handed over is counted once). On SQLite the run has two shards and
    `dispatcher-0` is the one killed while `dispatcher-1` keeps going; on PostgreSQL it has one,
    so that both counts are covered without a third run."""
    shards = 2 if not store else 1
    system = start_system(
        time_scale=0.0, material=STOCK, quality={"defect_rate": 0.05}, ledger=store, control={"dispatchers": shards}
    )
    namespace = system.settings.namespace
    plan = [(300, "dispatcher-0"), (600, "producer"), (900, "dispatcher-0")]
    kills = []
    # A shard's count of orders it concluded starts again at 0 when it restarts: read before each kill.
    # (At zero wait, by the time the last kill lands the killed shard may have no order left to run.)
    done_before_kills = [0] * shards

    def kill_on_plan(progress, tally):
        if len(kills) < len(plan) and tally.terminal >= plan[len(kills)][0]:
            name = plan[len(kills)][1]
            actor = ray.get_actor(name, namespace=namespace)
            if name.startswith("dispatcher-"):
                stats = ray.get(actor.stats.remote())
                done_before_kills[stats.shard] += stats.orders_done
            ray.kill(actor, no_restart=False)
            kills.append(tally.terminal)

    result = system.run(SourceSpec(count=1200), keep_outcomes=True, on_progress=kill_on_plan)
    assert len(kills) == len(plan), kills
    ids = [o.order_id for o in result.outcomes]
    assert result.summary.lost == 0 and len(ids) == len(set(ids)) == 1200  # the re-reads were counted once
    audit(system, ledger_of(system), 1200)
    done = [
        shard.orders_done + before
        for shard, before in zip(system.status(snapshots=False).dispatchers, done_before_kills, strict=True)
    ]
    assert all(count > 0 for count in done), done  # every shard did its share
