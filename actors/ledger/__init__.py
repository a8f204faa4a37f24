"""The durable ledger: what every stage did to every order, each replica's state, each order's outcome.

Ray restarts actors with empty memory; the ledger is what makes a restart invisible. Actors get a
picklable `LedgerSpec` and open their own connection with `open_ledger`; a run without a ledger
gets `MemoryJournal`, which keeps the same promises only for as long as the process lives. The
ledger also holds the one workshop every replica shares (stock, certificates, numbers): see
actors/ledger/claims.py.
"""

from actors.errors import ClaimRefused, DuplicateEffect, LedgerMismatch, Superseded
from actors.ledger.claims import Claim, PendingClaims, WorkshopView
from actors.ledger.group_commit import OutcomeGroupCommit
from actors.ledger.journal import CANCELLED_BEFORE_RUN, RecordedEffect, StageJournal
from actors.ledger.memory import MemoryJournal
from actors.ledger.spec import LedgerSpec, open_journal, open_ledger
from actors.ledger.sql import PROBE_EVERY_S, SqlLedger
from actors.ledger.sqlite import SqliteLedger

__all__ = [
    "CANCELLED_BEFORE_RUN",
    "PROBE_EVERY_S",
    "Claim",
    "ClaimRefused",
    "DuplicateEffect",
    "LedgerMismatch",
    "LedgerSpec",
    "MemoryJournal",
    "OutcomeGroupCommit",
    "PendingClaims",
    "RecordedEffect",
    "SqlLedger",
    "SqliteLedger",
    "StageJournal",
    "Superseded",
    "WorkshopView",
    "open_journal",
    "open_ledger",
]
