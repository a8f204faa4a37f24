"""Shared helpers: sample orders built from the original design's data, and the tiers' markers."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.intake.samples import ORIGINAL_ORDERS
from actors.models import JewelryOrder

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ is marked `integration`, whatever its module says, so that
    `pytest -m "not integration"` is the Ray-free quick loop. (A `pytestmark` in a conftest.py does
    nothing: pytest reads it from test modules only.)"""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _postgres_ledgers_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every PostgreSQL ledger a test opens in this process (its own readers, its stage replicas', a
    system's) is closed when the test ends, on this thread, after its other fixtures.

    Tests drop many of them unclosed. A connection pool left to the garbage collector could be collected
    on one of its own worker threads, which cannot join itself: pytest warned of it in most suite runs."""
    from actors.ledger.postgres import PostgresLedger

    opened: list[PostgresLedger] = []
    init = PostgresLedger.__init__

    def opening(self: PostgresLedger, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(PostgresLedger, "__init__", opening)
    yield
    for ledger in opened:
        ledger.close()  # a no-op for those already closed


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL server for the session (started on first use, on loopback)."""
    from tests.postgres_server import PostgresServer

    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the session's server, for one test."""
    return postgres_server.new_database()


def order_dict(index: int = 0, **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ORIGINAL_ORDERS[index])
    raw.update(changes)
    return raw


def make_order(index: int = 0, **changes: Any) -> JewelryOrder:
    return JewelryOrder.model_validate(order_dict(index, **changes))


@pytest.fixture
def ring() -> JewelryOrder:
    return make_order(0)


@pytest.fixture
def jade_bangle() -> JewelryOrder:
    return make_order(1)


@pytest.fixture
def necklace() -> JewelryOrder:
    return make_order(2)
