"""`jewelry-fanout trace`: one order's story read back from a ledger that a real Dispatcher and
real stage replicas wrote (in-process, no Ray), through the CLI as a user runs it."""

import asyncio
import contextlib
import json

import pytest

from actors.dispatch.dispatcher import Dispatcher
from actors.dispatch.retry import RetryPolicy
from actors.ledger import LedgerSpec
from actors.models import STAGES, OrderStatus, StageName
from orchestration.cli import main
from orchestration.settings import load_settings
from tests.conftest import make_order
from tests.fakes import local_stage_handles


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory):
    """A ledger holding the three original orders: J2025001 completed, J2025002 dead-lettered at
    logistics and then replayed to completion, J2025003 as it came out."""
    out = tmp_path_factory.mktemp("traced")
    spec = LedgerSpec(path=out / "ledger.sqlite3")
    settings = load_settings({"out_dir": str(out)})
    from actors.ledger import open_ledger

    with open_ledger(spec, create=True) as ledger:
        ledger.bind(settings.stage_setup())
    retries = {s: RetryPolicy(attempts=2, base_delay_s=0, max_delay_s=0) for s in STAGES}
    opened = contextlib.ExitStack()

    def closing(thing):
        opened.callback(thing.close)
        return thing

    async def scenario():
        logistics_open = asyncio.Event()
        handles = local_stage_handles(spec, {"logistics": logistics_open}, closing=closing)
        dispatcher = closing(Dispatcher(handles, dict.fromkeys(STAGES, 0.05), retry_policies=retries, ledger=spec))
        parked = await dispatcher.process(make_order(1))  # logistics never answers in time: dead letter
        logistics_open.set()
        await dispatcher.replay(parked.order_id)
        await asyncio.gather(dispatcher.process(make_order(0)), dispatcher.process(make_order(2)))

    with opened:
        asyncio.run(scenario())
    return out


def _trace(ledger_dir, order_id, capsys, *flags):
    code = main(["trace", order_id, "--out", str(ledger_dir), *flags])
    return code, capsys.readouterr()


def test_a_completed_order_shows_its_six_stage_calls_as_lanes(ledger_dir, capsys):
    code, out = _trace(ledger_dir, "J2025001", capsys, "--json")
    trace = json.loads(out.out)
    assert code == 0 and trace["status"] == OrderStatus.COMPLETED
    assert [call["stage"] for call in trace["calls"]] == [s.value for s in STAGES]
    assert all(call["replica"] == f"{call['stage']}-0" and call["attempts"] == 1 for call in trace["calls"])
    # In one process the six replicas answer one after another; on Ray they overlap (tests/integration/test_cli.py).
    assert trace["peak_concurrent"] >= 1
    code, out = _trace(ledger_dir, "J2025001", capsys)
    assert code == 0 and "stage calls on one time axis" in out.out and out.out.count("█") >= 6
    for stage in STAGES:
        assert f"{stage}-0" in out.out


def test_a_replayed_dead_letter_tells_the_retries_the_dead_letter_and_the_replay(ledger_dir, capsys):
    code, out = _trace(ledger_dir, "J2025002", capsys, "--json")
    trace = json.loads(out.out)
    assert code == 0 and trace["status"] == OrderStatus.COMPLETED
    logistics = next(call for call in trace["calls"] if call["stage"] == StageName.LOGISTICS)
    assert logistics["replayed"] and logistics["status"] == "ok"
    events = [event["what"] for event in trace["events"]]
    assert events[0] == "admitted by a Dispatcher shard" and events[-1] == "completed"
    assert any(e.startswith("logistics dead-lettered after 2 attempt(s): timed out") for e in events)
    assert any(e.startswith("replayed by the operator: logistics") for e in events)
    assert any(e.endswith("(then order completed)") for e in events)


def test_an_unknown_order_is_a_clear_error_with_exit_2(ledger_dir, capsys):
    code, out = _trace(ledger_dir, "J2099999", capsys)
    assert code == 2 and "the ledger has no order J2099999" in out.err
    code, out = main(["trace", "J2025001", "--out", str(ledger_dir / "nowhere")]), capsys.readouterr()
    assert code == 2 and "does not exist" in out.err


def test_overlap_is_how_long_all_six_ran_at_once_and_peak_the_most_at_one_moment():
    from datetime import UTC, datetime, timedelta

    from orchestration.trace import StageCall, _all_overlap_ms, _peak

    t0 = datetime(2026, 12, 1, tzinfo=UTC)

    def call(start_ms, end_ms):
        return StageCall(
            stage=StageName.DESIGN,
            replica="design-0",
            node_id="n",
            attempts=1,
            started_at=t0 + timedelta(milliseconds=start_ms),
            finished_at=t0 + timedelta(milliseconds=end_ms),
            status="ok",
            reason=None,
            replayed=False,
            compensation=None,
        )

    together = [call(i, 20 + i) for i in range(6)]
    assert _all_overlap_ms(together) == pytest.approx(15.0) and _peak(together) == 6
    one_by_one = [call(10 * i, 10 * i + 10) for i in range(6)]  # each ends as the next starts
    assert _all_overlap_ms(one_by_one) == 0.0 and _peak(one_by_one) == 1
