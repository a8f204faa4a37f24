"""What a stage module implements, and what it is given: its settings, its replica's context, and
the hooks the shared base calls (`handle`, `undo`, `state`, `checkpoint`/`restore`, and what an
effect takes from the shared workshop). Nothing here runs an order: `actors/stages/base.py` does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from actors.clock import SYSTEM_CLOCK, Clock
from actors.ledger import Claim, LedgerSpec, StageJournal
from actors.models import JewelryOrder, StageName, StageOutput, StageResult


class StageConfig(BaseModel):
    """Settings every stage has; each stage extends it with its own business settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: float = Field(
        ge=0, description="time per order at this stage (own work topped up by a simulated wait), before time_scale"
    )


ConfigT = TypeVar("ConfigT", bound=StageConfig)


@dataclass(frozen=True)
class ReplicaContext:
    """Who this replica is among its pool, and the run-wide knobs it needs."""

    replica: str
    index: int = 0
    replica_count: int = 1
    time_scale: float = 1.0
    artifacts_dir: Path | None = None
    log_level: str | None = None
    ledger: LedgerSpec | None = None
    clock: Clock = SYSTEM_CLOCK  # what the stage's cadence and its results' times are read from
    journal: StageJournal | None = None  # a store given in-process (tests); otherwise opened from `ledger`


class StageContract(ABC, Generic[ConfigT]):
    """The business side of a stage: what it does to an order and what state it keeps."""

    name: ClassVar[StageName]

    def initial_stock(self) -> dict[str, int]:
        """Lots this stage draws from, with what the workshop starts with (once per ledger)."""
        return {}

    def certificates(self, order: JewelryOrder) -> Collection[str]:
        """The certificates deciding this order asks the workshop about (`holder`): looked up for
        the whole batch in one read."""
        return ()

    def claim(self, output: StageOutput) -> Claim | None:
        """What an effect takes from the shared workshop (committed with it, given back by its
        compensation); a function of the recorded output, so that it holds after a restart too."""
        return None

    @abstractmethod
    def handle(self, order: JewelryOrder) -> StageOutput:
        """Do this stage's work for one order; raise `BusinessFailure` to decline it."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """This stage's business state as plain data (stock left, serials issued, ...)."""

    @abstractmethod
    def checkpoint(self) -> dict[str, Any]:
        """The state to persist after each effect, as JSON-able data. Keep it small: what grows
        with orders belongs in the effect records, which the journal keeps per order."""

    @abstractmethod
    def restore(self, saved: dict[str, Any]) -> None:
        """Take back the state `checkpoint` returned."""

    def remember(self, result: StageResult) -> None:
        """Rebuild a per-order memo from a standing effect after a restart (most stages keep none)."""

    def undo(self, order_id: str, output: StageOutput) -> str | None:
        """Reverse this stage's side effects for a failed order; say what was undone, or None
        when the stage changed nothing that needs undoing (a design stays in the cache)."""
        return None
