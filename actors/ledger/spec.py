"""Where the ledger is, in a form that travels to every actor (a connection does not pickle).

A location is a file path or an `sqlite:///` URL; `postgresql://` is reserved for the cluster
store that multi-machine deployments need, and is refused with that explanation until it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from actors.errors import ConfigurationError
from actors.ledger.journal import StageJournal
from actors.ledger.memory import MemoryJournal
from actors.ledger.sqlite import SqliteLedger


class LedgerSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    @classmethod
    def from_location(cls, location: str, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> LedgerSpec:
        if location.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                "a PostgreSQL ledger is not available yet; on one machine use an SQLite path, "
                "on a multi-machine cluster run with --no-ledger until it is"
            )
        if "://" in location and not location.startswith("sqlite:///"):
            raise ConfigurationError(f"ledger {location!r}: expected a file path or an sqlite:/// URL")
        path = Path(location.removeprefix("sqlite://")).expanduser().resolve()
        return cls(path=path, synchronous=synchronous)


def open_ledger(spec: LedgerSpec, create: bool = False) -> SqliteLedger:
    return SqliteLedger(spec.path, create=create, synchronous=spec.synchronous)


def open_journal(spec: LedgerSpec | None) -> StageJournal:
    """A stage replica's journal: the shared ledger, or memory for a run without one."""
    return MemoryJournal() if spec is None else open_ledger(spec)
