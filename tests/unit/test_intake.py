"""The Producer's parts on their own: the one acceptance rule, the bounded outbox, serve mode's
queue, and the sender that spreads orders over the Dispatcher shards."""

import asyncio
import pickle
import zlib

from actors.dispatch.sharding import shard_of
from actors.intake.accept import Acceptance, Accepted
from actors.intake.outbox import Outbox
from actors.intake.sender import WINDOW_PER_ADMITTED, ShardedSender
from actors.intake.submissions import SubmissionQueue
from actors.ledger import open_ledger
from actors.models import OrderStatus, Priority, RejectedRecord
from tests.conftest import make_order


def test_an_id_accepted_once_is_rejected_the_second_time_from_any_source():
    acceptance = Acceptance(ledger=None)
    assert isinstance(acceptance.accept(make_order(0), "orders.jsonl", 1), Accepted)
    again = acceptance.accept(make_order(0), "submitted.csv", 4, raw={"order_id": "J2025001"})
    assert isinstance(again, RejectedRecord) and again.line == 4 and again.raw == {"order_id": "J2025001"}
    assert again.errors[0].field == "order_id" and "orders.jsonl line 1" in again.errors[0].reason


def test_the_ledger_answers_a_known_order_and_refuses_a_used_id_with_other_details(tmp_path, closing):
    from datetime import UTC, datetime

    from actors.ledger import LedgerSpec
    from actors.models import STAGES, OrderOutcome, StageResult, StageStatus

    ledger = closing(open_ledger(LedgerSpec(path=tmp_path / "ledger.sqlite3"), create=True))
    order, now = make_order(0), datetime.now(UTC)
    declined = [
        StageResult(
            order_id=order.order_id,
            stage=stage,
            status=StageStatus.BUSINESS_FAILURE,
            reason="no",
            started_at=now,
            finished_at=now,
            replica=f"{stage}-0",
            node_id="n",
        )
        for stage in STAGES
    ]
    ledger.record_outcome(OrderOutcome.from_results(order, declined, now, now))
    known = Acceptance(ledger).accept(order, "orders.jsonl", 1)
    assert isinstance(known, Accepted) and known.recorded is not None and known.recorded.status is OrderStatus.FAILED
    other = Acceptance(ledger).accept(make_order(0, customer="Someone Else"), "orders.jsonl", 1)
    assert isinstance(other, RejectedRecord) and "other details" in other.errors[0].reason

    # Looking ahead asks the ledger once for the records to come, and gives the same verdicts.
    records = [make_order(0, customer="Someone Else"), make_order(1), order, make_order(1)]
    one_by_one = Acceptance(ledger)
    expected = [one_by_one.accept(r, "orders.jsonl", n) for n, r in enumerate(records, 1)]
    ahead, queries = Acceptance(ledger), []
    ledger.outcomes = lambda ids, read=ledger.outcomes: (queries.append(list(ids)), read(ids))[1]
    ledger.outcome = None  # no read per record
    ahead.look_ahead(records)
    assert [ahead.accept(r, "orders.jsonl", n) for n, r in enumerate(records, 1)] == expected
    assert queries == [[o.order_id for o in records]]
    assert [type(v).__name__ for v in expected] == ["RejectedRecord", "Accepted", "Accepted", "RejectedRecord"]
    ledger.close()


def test_the_outbox_holds_at_most_its_limit_of_outcomes_until_they_are_taken():
    async def scenario():
        outbox = Outbox(limit=2)
        await outbox.reserve()
        await outbox.reserve()
        third = asyncio.ensure_future(outbox.reserve())
        await asyncio.sleep(0)
        blocked = not third.done()
        outbox.outcome("first")  # type: ignore[arg-type]  # any object stands for an outcome here
        outbox.take(10)
        await asyncio.sleep(0)
        return blocked, third.done()

    assert asyncio.run(scenario()) == (True, True)


def test_submissions_come_out_rush_first_then_in_arrival_order_until_closed():
    async def scenario():
        queue = SubmissionQueue()
        for i, priority in enumerate([Priority.NORMAL, Priority.RUSH, Priority.NORMAL]):
            queue.put(Accepted(make_order(0, order_id=f"J20257{i:02d}", priority=priority), None))
        queue.close()
        return [accepted.order.order_id async for accepted in queue.orders()]

    assert asyncio.run(scenario()) == ["J2025701", "J2025700", "J2025702"]


def test_the_shard_of_an_order_is_a_stable_hash_of_its_id_and_spreads_them():
    ids = [f"J2026{i:04d}" for i in range(4000)]
    assert all(shard_of(order_id, 4) == zlib.crc32(order_id.encode()) % 4 for order_id in ids)  # not salted per process
    counts = [sum(1 for order_id in ids if shard_of(order_id, 4) == shard) for shard in range(4)]
    assert min(counts) > 900 and shard_of("anything", 1) == 0


class _Shard:
    """A Dispatcher shard's handle that holds every call until released, and records the orders."""

    def __init__(self):
        self.process_encoded, self.orders, self.open = self, [], asyncio.Event()

    def remote(self, orders):
        orders = pickle.loads(pickle.dumps(orders))
        self.orders.extend(order.order_id for order in orders)

        async def call():
            await self.open.wait()
            return [f"outcome {order.order_id}" for order in orders]

        return call()


def test_the_sender_routes_each_order_to_its_shard_within_that_shard_s_window():
    async def scenario():
        shards, answered = [_Shard(), _Shard()], []
        sender = ShardedSender(shards, max_in_flight=2, on_answer=lambda order, answer: answered.append(answer))
        orders = [make_order(0, order_id=f"J20258{i:02d}") for i in range(40)]
        sends = [asyncio.ensure_future(sender.send(order)) for order in orders]
        await asyncio.sleep(0.01)
        held = sender.in_flight
        for shard in shards:
            shard.open.set()
        await asyncio.gather(*sends)
        while sender.in_flight:
            await asyncio.sleep(0.001)
        return shards, orders, held, answered

    shards, orders, held, answered = asyncio.run(scenario())
    for index, shard in enumerate(shards):
        assert sorted(shard.orders) == sorted(o.order_id for o in orders if shard_of(o.order_id, 2) == index)
    assert held == 2 * WINDOW_PER_ADMITTED * 2  # each shard's window full, no more
    assert len(answered) == 40
