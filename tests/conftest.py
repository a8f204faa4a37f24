"""Shared helpers: sample orders built from the original design's data, and the tiers' markers."""

from __future__ import annotations

import compileall
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from actors.intake.samples import ORIGINAL_ORDERS
from actors.models import JewelryOrder

REPO = Path(__file__).resolve().parents[1]
INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    """Our packages' bytecode written once, before any test starts a process that imports them.

    With PYTHONDONTWRITEBYTECODE set (as on CI machines and this one) Python never caches what it
    compiles, so every Ray worker the suite starts, several hundred, and every CLI or job driver,
    compiled each of our modules from source again: about a tenth of a worker's start-up CPU.
    Reading a `.pyc` is allowed either way; `compileall` writes them whatever the variable says and
    skips those that are up to date."""
    for package in ("actors", "orchestration", "tests"):
        compileall.compile_dir(REPO / package, quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ is marked `integration`, whatever its module says, so that
    `pytest -m "not integration"` is the Ray-free quick loop. (A `pytestmark` in a conftest.py does
    nothing: pytest reads it from test modules only.)"""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@pytest.fixture
def closing() -> Iterator[Callable[[C], C]]:
    """Registers what a test opens that holds store connections (a ledger, a stage replica, a
    Dispatcher, a Producer) to be closed when the test ends, on the test's own thread.

    A PostgreSQL connection pool left to the garbage collector can be collected on one of its own
    worker threads, which cannot join itself (pytest warns of it): so nothing is left to it."""
    opened: list[Closable] = []

    def register(thing: C) -> C:
        opened.append(thing)
        return thing

    yield register
    for thing in reversed(opened):
        thing.close()


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
