"""Unit tests run the plain classes in this process: starting Ray here is a mistake."""

import gc
from collections.abc import Iterator

import pytest
import ray

from actors.ledger import LedgerSpec, open_ledger


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", forbidden)


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request, tmp_path) -> Iterator[LedgerSpec]:
    """A new, empty ledger on each store, created as the driver creates it before any actor opens it.
    The PostgreSQL one is a real server (tests/postgres_server.py)."""
    if request.param == "sqlite":
        spec = LedgerSpec(path=tmp_path / "ledger.sqlite3")
    else:
        spec = LedgerSpec(url=request.getfixturevalue("postgres_url"))
    open_ledger(spec, create=True).close()
    yield spec
    # The stage replicas a test builds open their own ledgers and are simply dropped. Collected here,
    # on the main thread, a PostgreSQL connection pool stops its workers cleanly; collected later by
    # chance on one of its own worker threads, it cannot join that thread and pytest warns.
    if request.param == "postgresql":
        gc.collect()
