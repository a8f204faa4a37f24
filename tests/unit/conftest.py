"""Unit tests run the plain classes in this process: starting Ray here is a mistake."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray

from actors.ledger import LedgerSpec, StageJournal, open_ledger
from actors.ledger.memory import MemoryJournal, MemoryStore
from actors.ledger.sql import DEFAULT_NAMESPACE
from actors.stages import ReplicaContext


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", forbidden)


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request, tmp_path) -> LedgerSpec:
    """A new, empty ledger on each SQL store, created as the driver creates it before any actor opens
    it. The PostgreSQL one is a real server (tests/postgres_server.py)."""
    return _new_ledger(request.param, request, tmp_path)


def _new_ledger(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> LedgerSpec:
    if kind == "sqlite":
        spec = LedgerSpec(path=tmp_path / "ledger.sqlite3")
    else:
        spec = LedgerSpec(url=request.getfixturevalue("postgres_url"))
    open_ledger(spec, create=True).close()
    return spec


@dataclass
class Backend:
    """A stage journal's store as the contract tests use it, whichever it is: each replica (and each
    incarnation of one) opens its own connection, as actors do, and `open` gives one more for the
    test's own reads and writes (an audit, an operator's restock)."""

    kind: str
    spec: LedgerSpec | None = None
    memory: MemoryStore = field(default_factory=MemoryStore)
    opened: list[StageJournal] = field(default_factory=list)

    def open(self, namespace: str = DEFAULT_NAMESPACE) -> Any:
        """A new connection, working for the system `namespace`."""
        journal: StageJournal
        if self.spec is None:
            journal = MemoryJournal(self.memory, namespace)
        else:
            journal = open_ledger(self.spec.model_copy(update={"namespace": namespace}))
        self.opened.append(journal)
        return journal

    def context(
        self, replica: str, index: int = 0, count: int = 1, namespace: str = DEFAULT_NAMESPACE
    ) -> ReplicaContext:
        return ReplicaContext(replica, index=index, replica_count=count, time_scale=0, journal=self.open(namespace))

    def with_stock_slots(self, slots: int) -> Backend:
        """The same store with each lot spread over `slots` rows where the store has rows (PostgreSQL)."""
        spec = self.spec.model_copy(update={"stock_slots": slots}) if self.spec is not None else None
        return Backend(self.kind, spec, self.memory, self.opened)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request, tmp_path) -> Iterator[Backend]:
    """Every store a stage journals in, for the contract every one of them keeps: memory (runs without
    a ledger, and unit tests), SQLite and a real PostgreSQL server. Connections are closed at the end."""
    if request.param == "memory":
        found = Backend("memory")
    else:
        found = Backend(request.param, _new_ledger(request.param, request, tmp_path))
    yield found
    for journal in found.opened:
        journal.close()
