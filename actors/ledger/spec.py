"""Where the ledger is, in a form that travels to every actor (a connection does not pickle).

A location is a file path or an `sqlite:///` URL (the embedded store, one machine), or a
`postgresql://` URL (the cluster store, any number of machines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from actors.errors import ConfigurationError
from actors.ledger.journal import StageJournal
from actors.ledger.memory import MemoryJournal
from actors.ledger.sql import DEFAULT_NAMESPACE, SqlLedger

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class LedgerSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path | None = None
    url: str | None = None
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    stock_slots: int = Field(default=1, ge=1, le=64, description="rows per lot (PostgreSQL): spreads a hot lot")
    retry_s: float = Field(default=60.0, gt=0, description="PostgreSQL: how long a transaction is retried")
    namespace: str = Field(
        default=DEFAULT_NAMESPACE, min_length=1, description="the system whose replicas' state this connection keeps"
    )

    @classmethod
    def from_location(
        cls,
        location: str,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        stock_slots: int = 1,
        retry_s: float = 60.0,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> LedgerSpec:
        options = {"synchronous": synchronous, "stock_slots": stock_slots, "retry_s": retry_s, "namespace": namespace}
        if location.startswith(POSTGRES_SCHEMES):
            return cls(url=location, **options)
        if "://" in location and not location.startswith("sqlite:///"):
            raise ConfigurationError(
                f"ledger {location!r}: expected a file path, an sqlite:/// URL or a postgresql:// URL"
            )
        path = Path(location.removeprefix("sqlite://")).expanduser().resolve()
        return cls(path=path, **options)

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    def __str__(self) -> str:
        if self.url is not None:
            from actors.ledger.postgres import redacted

            return redacted(self.url)
        return str(self.path)


def open_ledger(spec: LedgerSpec, create: bool = False) -> SqlLedger:
    """A connection to the ledger, working for the spec's namespace. `create` is for a run's driver: it
    creates the schema of a new store, and upgrades an older one in place."""
    if spec.url is not None:
        from actors.ledger.postgres import (
            PostgresLedger,  # psycopg only where a cluster store is used
        )

        return PostgresLedger(
            spec.url, create=create, stock_slots=spec.stock_slots, retry_s=spec.retry_s, namespace=spec.namespace
        )
    from actors.ledger.sqlite import SqliteLedger

    assert spec.path is not None
    return SqliteLedger(spec.path, create=create, synchronous=spec.synchronous, namespace=spec.namespace)


def open_journal(spec: LedgerSpec | None) -> StageJournal:
    """A stage replica's journal: the shared ledger, or memory for a run without one."""
    return MemoryJournal() if spec is None else open_ledger(spec)
