"""Unit tests run the plain classes in this process: starting Ray here is a mistake."""

import pytest
import ray

from actors.ledger import LedgerSpec, open_ledger


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", forbidden)


@pytest.fixture
def spec(tmp_path) -> LedgerSpec:
    """A new, empty ledger, created as the driver creates it before any actor opens it."""
    spec = LedgerSpec(path=tmp_path / "ledger.sqlite3")
    open_ledger(spec, create=True).close()
    return spec
