"""Orders accepted over HTTP, through the real Producer and Dispatcher in this process: a Producer that
restarts takes up what was accepted, and every order gets exactly one outcome."""

from __future__ import annotations

import asyncio

from actors.dispatch.dispatcher import Dispatcher
from actors.errors import NotServing
from actors.intake.intake_run import RunPlan
from actors.intake.producer import Producer
from actors.intake.samples import generate_orders
from actors.intake.sources import SourceSpec
from actors.ledger import LedgerSpec, open_ledger
from actors.models import STAGES
from actors.models.submissions import Submission, Verdict
from tests.fakes import DispatcherHandle
from tests.unit.test_pool_dispatcher import _drain, _handles


def submissions(count: int) -> list[Submission]:
    return [
        Submission(client="shop", idempotency_key=f"key-{i}", body_hash=f"hash-{i}", order=order)
        for i, order in enumerate(generate_orders(count, seed=5))
    ]


def test_a_restarted_producer_takes_up_what_was_accepted_over_http_and_each_order_concludes_once(closing, tmp_path):
    spec = LedgerSpec(path=tmp_path / "ledger.sqlite3")
    ledger = closing(open_ledger(spec, create=True))
    plan = RunPlan(run_id="serving", source=SourceSpec(count=0), serve=True)

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), ledger=spec)))
        first = closing(Producer(handle, max_in_flight=4, ledger=spec))
        await first.begin(plan)
        answers = await first.accept_orders(submissions(12))
        repeated = await first.accept_orders(submissions(12))  # a client's retry: the same answers
        assert [a.verdict for a in repeated] == [Verdict.REPEATED] * 12
        assert (await first.describe())["expected_records"] == 12  # a repeat is not another record
        for _ in range(20):  # the first Producer sends what its window holds; the Dispatcher answers nothing yet
            await asyncio.sleep(0)
        second = closing(Producer(handle, max_in_flight=4, ledger=spec))  # the first one "died"
        await second.begin(plan)
        handle.open.set()
        await second.stop()
        return answers, await _drain(second, plan)

    answers, (outcomes, lost) = asyncio.run(scenario())
    assert [answer.verdict for answer in answers] == [Verdict.ACCEPTED] * 12
    assert not lost
    assert sorted(o.order_id for o in outcomes) == sorted(s.order.order_id for s in submissions(12))
    assert ledger.unfinished_accepted() == [] and len(ledger.outcome_counts()) >= 1


def test_a_run_that_is_not_serving_refuses_orders_over_http(closing, tmp_path):
    spec = LedgerSpec(path=tmp_path / "ledger.sqlite3")
    closing(open_ledger(spec, create=True))

    async def scenario():
        handle = DispatcherHandle(closing(Dispatcher(_handles(), dict.fromkeys(STAGES, 5.0), ledger=spec)))
        producer = closing(Producer(handle, max_in_flight=4, ledger=spec))
        await producer.begin(RunPlan(run_id="file", source=SourceSpec(count=1)))
        try:
            await producer.accept_orders(submissions(1))
        except NotServing as error:
            return error
        return None

    assert isinstance(asyncio.run(scenario()), NotServing)
