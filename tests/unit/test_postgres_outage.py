"""The PostgreSQL store when its server is down for longer than the retry budget: it says so, fails
fast while the server stays down, and is back within about a second once the server is."""

from __future__ import annotations

import time

import pytest

from actors.errors import LedgerUnavailable
from actors.ledger.postgres import PROBE_EVERY_S, PostgresLedger
from tests.support import wait_until


def _answers(ledger: PostgresLedger) -> bool:
    try:
        ledger.outcome_counts()
        return True
    except LedgerUnavailable:
        return False


def test_a_server_down_past_the_budget_is_reported_then_fails_fast_and_is_found_again(postgres_server, postgres_url):
    ledger = PostgresLedger(postgres_url, create=True, retry_s=1.0)
    try:
        assert ledger.outcome_counts() == {}
        postgres_server.stop("immediate")
        try:
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable, match=r"postgresql://postgres:\*\*\*@.* unreachable for 1 s"):
                ledger.outcome_counts()
            assert 1.0 <= time.monotonic() - started < 5.0  # the budget, spent retrying
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable):
                ledger.outcome("J2025001")
            assert time.monotonic() - started < 0.1  # the breaker is open: no second budget spent
        finally:
            postgres_server.start()
        back = time.monotonic()
        wait_until(lambda: _answers(ledger), timeout_s=10, interval_s=0.05, what="the store to find the server again")
        assert time.monotonic() - back < PROBE_EVERY_S + 2.0
        assert ledger.outcome_counts() == {}
    finally:
        ledger.close()


def test_a_new_run_retries_afresh_instead_of_failing_at_once(postgres_server, postgres_url):
    """Right after the server is back, the breaker would still fail calls at once for up to
    PROBE_EVERY_S; a run started then (its user started it because the store is back) must not."""
    ledger = PostgresLedger(postgres_url, create=True, retry_s=1.0, probe_every_s=60.0)
    try:
        postgres_server.stop("immediate")
        try:
            with pytest.raises(LedgerUnavailable):
                ledger.outcome_counts()
        finally:
            postgres_server.start()
        with pytest.raises(LedgerUnavailable):
            ledger.outcome_counts()  # the breaker is still open
        ledger.retry_afresh()
        assert ledger.outcome_counts() == {}
    finally:
        ledger.close()


def test_a_store_another_process_found_down_probes_once_instead_of_spending_its_own_budget(
    postgres_server, postgres_url
):
    """Each process of a run has its own store and budget; told by a peer that the store is down
    (a stage's answer, the Dispatcher's, the Producer's), it probes once. Told wrongly, the probe
    finds the store and nothing fails."""
    ledger = PostgresLedger(postgres_url, create=True, retry_s=5.0, probe_every_s=60.0)
    try:
        ledger.found_down_elsewhere("ledger ... unreachable for 5 s or more (said a stage)")
        assert ledger.outcome_counts() == {}  # it is up: the probe found it, and the store is up again
        assert ledger.outcome_counts() == {}
        postgres_server.stop("immediate")
        try:
            ledger.found_down_elsewhere("ledger ... unreachable for 5 s or more (said the Dispatcher)")
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable, match="unreachable"):
                ledger.outcome_counts()
            assert time.monotonic() - started < 2.0  # one probe, not a 5 s budget
            ledger.found_down_elsewhere("said another")  # already down: its own breaker decides
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable, match="unreachable"):
                ledger.outcome_counts()
            assert time.monotonic() - started < 0.1
        finally:
            postgres_server.start()
    finally:
        ledger.close()
