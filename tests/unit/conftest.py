"""Unit tests run the plain classes in this process: starting Ray here is a mistake."""

import pytest
import ray

from actors.ledger import LedgerSpec, open_ledger


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", forbidden)


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request, tmp_path) -> LedgerSpec:
    """A new, empty ledger on each store, created as the driver creates it before any actor opens it.
    The PostgreSQL one is a real server (tests/postgres_server.py)."""
    if request.param == "sqlite":
        spec = LedgerSpec(path=tmp_path / "ledger.sqlite3")
    else:
        spec = LedgerSpec(url=request.getfixturevalue("postgres_url"))
    open_ledger(spec, create=True).close()
    return spec  # the ledgers the test opens on it are closed for it (tests/conftest.py)
