"""Scheduled orders (`not_before`): the ledger's rules on both stores (never admitted early, admitted
once, admission and cancellation exclude each other), the run's timer on an injected clock, and the
whole way through a real Producer and Dispatcher in this process, across a Producer restart."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.dispatch.dispatcher import Dispatcher
from actors.intake.accept import Accepted
from actors.intake.intake_run import RunPlan
from actors.intake.producer import Producer
from actors.intake.schedule import Schedule
from actors.intake.sources import SourceSpec
from actors.ledger import open_ledger
from actors.ledger.schedule import Cancelled
from actors.models import STAGES, JewelryOrder, OrderOutcome, OrderStatus
from tests.conftest import make_order, order_dict
from tests.fakes import DispatcherHandle, ManualClock
from tests.unit.test_pool_dispatcher import _drain, _handles


def _scheduled(index: int, order_id: str, due: datetime) -> JewelryOrder:
    return make_order(index % 3, order_id=order_id, not_before=due.isoformat())


def test_a_scheduled_order_needs_a_timezone_and_admitted_at_is_the_systems_to_set():
    with pytest.raises(ValidationError, match="not_before needs a timezone"):
        make_order(0, not_before="2030-01-20T09:00:00")
    with pytest.raises(ValidationError, match="only a scheduled order"):
        make_order(0, admitted_at="2030-01-20T09:00:00+00:00")
    assert (
        make_order(0, not_before="2030-01-20T09:00:00+08:00").due_ts == datetime(2030, 1, 20, 1, tzinfo=UTC).timestamp()
    )


def test_the_ledger_never_admits_early_admits_once_and_admission_and_cancellation_exclude_each_other(spec, closing):
    ledger = closing(open_ledger(spec))
    now = time.time()
    a, b, c = (_scheduled(i, f"J20300{i:02d}", datetime.fromtimestamp(now + 60, UTC)) for i in range(3))
    ledger.schedule("run-1", [(o.order_id, now + 60, o.model_dump_json()) for o in (a, b, c)])
    ledger.schedule("run-2", [(a.order_id, now + 999, a.model_dump_json())])  # kept once: the first stays

    early = ledger.admit_scheduled(a.order_id, now + 59)
    assert (
        early is not None and early.admitted_at is None and early.cancelled_at is None and early.not_before == now + 60
    )
    assert ledger.admit_scheduled(a.order_id, now + 61).admitted_at == now + 61
    assert ledger.admit_scheduled(a.order_id, now + 70).admitted_at == now + 61  # once: the first time stays

    def cancelled(found):
        return "cancelled", f'{{"order_id":"{found.order_id}"}}'

    assert ledger.cancel_scheduled(a.order_id, cancelled) is Cancelled.STARTED
    assert ledger.cancel_scheduled(b.order_id, cancelled) is Cancelled.CANCELLED
    assert ledger.cancel_scheduled(b.order_id, cancelled) is Cancelled.ALREADY
    assert ledger.cancel_scheduled("J2099999", cancelled) is Cancelled.UNKNOWN
    late = ledger.admit_scheduled(b.order_id, now + 61)
    assert late.admitted_at is None and late.cancelled_at is not None  # cancelled: never admitted
    assert ledger.outcome_counts() == {"cancelled": 1}  # recorded with the cancellation, in its transaction

    assert [s.order_id for s in ledger.waiting_scheduled()] == [c.order_id]
    more = [_scheduled(i, f"J20301{i:02d}", datetime.fromtimestamp(now + 10 * i, UTC)) for i in range(1, 6)]
    ledger.schedule("run-1", [(o.order_id, o.due_ts, o.model_dump_json()) for o in more])
    first = ledger.waiting_scheduled(limit=2)
    rest = ledger.waiting_scheduled(limit=10, after=(first[-1].not_before, first[-1].order_id))
    assert [s.order_id for s in first + rest] == [o.order_id for o in more] + [c.order_id]  # soonest first


def test_the_timer_releases_each_order_when_it_is_due_in_due_order_and_never_before():
    clock = ManualClock(1000.0)

    async def scenario():
        released: list[tuple[str, float]] = []

        async def release(accepted: Accepted) -> None:
            released.append((accepted.order.order_id, clock.now))

        schedule = Schedule(release, clock=clock)
        for i, due_in in enumerate([30, 10, 20]):
            due = datetime.fromtimestamp(1000 + due_in, UTC)
            schedule.hold(Accepted(_scheduled(i, f"J20302{i:02d}", due), None))
        schedule.hold(Accepted(_scheduled(0, "J2030299", datetime.fromtimestamp(1015, UTC)), None))
        assert schedule.drop("J2030299") and not schedule.drop("J2030299")
        seen = []
        for now in (1005, 1010, 1019.9, 1025, 1031):
            clock.now = now
            schedule.poke()
            for _ in range(5):
                await asyncio.sleep(0)
            seen.append(len(released))
        await schedule.drained()
        await schedule.stop()
        return released, seen, len(schedule)

    released, seen, left = asyncio.run(scenario())
    assert seen == [0, 1, 1, 2, 3]
    assert [order_id for order_id, _ in released] == ["J2030201", "J2030202", "J2030200"]
    assert all(at >= 1000 + due for (_, at), due in zip(released, [10, 20, 30], strict=True))
    assert left == 0


def test_a_scheduled_order_waits_survives_a_producer_restart_and_is_admitted_once_when_due(closing, spec):
    ledger = closing(open_ledger(spec))
    plan = RunPlan(run_id="serving", source=SourceSpec(count=0), serve=True)
    due = datetime.now(UTC) + timedelta(seconds=1.0)
    rows = [("submitted", order_dict(0, order_id="J2030300", not_before=due.isoformat()), None)]
    rows.append(("submitted", order_dict(1, order_id="J2030301"), None))  # not scheduled: goes at once
    rows.append(("submitted", order_dict(2, order_id="J2030302", not_before=due.isoformat()), None))

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), ledger=spec)))
        handle.open.set()
        first = closing(Producer(handle, max_in_flight=4, ledger=spec))
        await first.begin(plan)
        receipt = await first.submit([(i + 1, raw, problem) for i, (_, raw, problem) in enumerate(rows)], "shop")
        assert receipt.accepted == 3
        for _ in range(50):
            await asyncio.sleep(0.01)
        held = (await first.describe())["scheduled"]
        sent_early = [o.order_id for batch in handle.batches for o in batch]
        cancelled = await first.cancel_order("J2030302")
        await first.stop()  # the run stops before the order is due; a new one takes it up from the ledger
        second = closing(Producer(handle, max_in_flight=4, ledger=spec))
        await second.begin(plan)
        await asyncio.sleep(0.1)  # it takes the run up
        assert (await second.describe())["scheduled"]["waiting"] == 1
        deadline = time.monotonic() + 10
        while (await second.describe())["scheduled"]["waiting"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await second.stop()
        outcomes, lost = await _drain(second, plan)
        sent = [o.order_id for batch in handle.batches for o in batch]
        return held, sent_early, cancelled, [OrderOutcome.model_validate_json(o.json) for o in outcomes], lost, sent

    held, sent_early, cancelled, outcomes, lost, sent = asyncio.run(scenario())
    assert held["waiting"] == 2 and sent_early == ["J2030301"]  # neither scheduled order went early
    assert cancelled is Cancelled.CANCELLED
    assert not lost
    done = {o.order_id: o for o in outcomes}
    scheduled = done["J2030300"]
    assert scheduled.status is OrderStatus.COMPLETED
    assert scheduled.due_at == due and scheduled.admitted_at >= due and scheduled.started_at >= due
    assert sent.count("J2030300") == 1 and "J2030302" not in sent  # started once; the cancelled one never
    assert ledger.outcome("J2030302").status is OrderStatus.CANCELLED  # never started
    assert ledger.scheduled_states(["J2030300"])["J2030300"].admitted_at == pytest.approx(
        scheduled.admitted_at.timestamp(), abs=1e-5
    )
    assert ledger.waiting_scheduled() == []


def test_a_file_schedules_an_order_with_a_not_before_column_and_a_bad_one_is_named(tmp_path):
    from actors.intake.sources import read_records
    from actors.models import RejectedRecord

    lines = Path("examples/orders.csv").read_text().splitlines()
    path = tmp_path / "preorders.csv"
    path.write_text(
        "\n".join([lines[0] + ",not_before", lines[1] + ",2031-03-20T09:00:00+08:00", lines[2] + ",the 20th"]) + "\n"
    )
    scheduled, bad = read_records(SourceSpec(path=path))
    assert scheduled.not_before == datetime(2031, 3, 20, 1, tzinfo=UTC)
    assert isinstance(bad, RejectedRecord) and bad.errors[0].field == "not_before"


def test_a_file_run_ends_once_its_scheduled_order_was_admitted_when_due(closing, spec, tmp_path):
    due = datetime.now(UTC) + timedelta(seconds=0.8)
    source = tmp_path / "preorders.jsonl"
    rows = [order_dict(0, order_id="J2030400", not_before=due.isoformat()), order_dict(1, order_id="J2030401")]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    plan = RunPlan(run_id="file", source=SourceSpec(path=source))

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), ledger=spec)))
        handle.open.set()
        producer = closing(Producer(handle, max_in_flight=4, ledger=spec))
        assert await producer.begin(plan) == 2
        outcomes, lost = await _drain(producer, plan)
        return [OrderOutcome.model_validate_json(o.json) for o in outcomes], lost

    outcomes, lost = asyncio.run(scenario())
    assert not lost and {o.order_id: o.status for o in outcomes} == {
        "J2030400": OrderStatus.COMPLETED,
        "J2030401": OrderStatus.COMPLETED,
    }
    scheduled = next(o for o in outcomes if o.order_id == "J2030400")
    assert scheduled.admitted_at >= due and scheduled.due_at == due
    assert next(o for o in outcomes if o.order_id == "J2030401").admitted_at is None  # not scheduled


def test_a_release_that_fails_keeps_the_order_held_and_tries_again():
    clock = ManualClock(2000.0)

    async def scenario():
        tries: list[float] = []

        async def release(accepted: Accepted) -> None:
            tries.append(clock.now)
            if len(tries) == 1:
                raise ConnectionError("ledger out of reach")

        schedule = Schedule(release, clock=clock)
        schedule.hold(Accepted(_scheduled(0, "J2030500", datetime.fromtimestamp(1999, UTC)), None))
        for _ in range(5):
            await asyncio.sleep(0)
        held_after_failure = len(schedule)
        clock.now += 1.0
        schedule.poke()
        await schedule.drained()
        await schedule.stop()
        return tries, held_after_failure

    tries, held = asyncio.run(scenario())
    assert held == 1 and tries == [2000.0, 2001.0]
