"""A run as the ledger records it: which system ran it, when, and which orders it admitted.

Several systems (each its own Ray namespace) may share one ledger database; a run belongs to one
of them, and its files hold exactly the orders it admitted, those answered from the ledger included.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

# The driver stamps its run this often; a run not stamped for STALE_AFTER_S while it has no end was
# left by a driver that died (SIGKILL, a lost node) and is no longer going.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0


class RunState(StrEnum):
    GOING = "going"
    ENDED = "ended"
    ABANDONED = "abandoned"  # its driver stopped stamping it without ending it: resume with the same command


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    namespace: str
    source: str
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None
    ending: str | None  # how the driver ended it: completed, incomplete, interrupted, ...
    admitted: int
    by_status: dict[str, int]  # admitted orders by their outcome's status now (replays move them)
    state: RunState

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented form for a computed property
    @property
    def pending(self) -> int:
        """Admitted orders with no outcome yet (in flight, or left by a run that stopped)."""
        return self.admitted - sum(self.by_status.values())
