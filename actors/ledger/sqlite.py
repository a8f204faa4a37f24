"""The embedded ledger: one SQLite file in WAL mode, shared by every actor on one machine.

WAL lets readers (the Producer, `status`) run beside the writer. A writer takes the lock up front
(`BEGIN IMMEDIATE`), so two writers queue instead of deadlocking, and one that finds it taken
retries after a fraction of a millisecond: SQLite's own busy handler sleeps 1, 2, 5, 10 ms..., which
with seven writing actors cost more throughput than the writes themselves.

`synchronous=NORMAL` (the default) survives any process crash, which is what Ray actors do; a
power cut can lose the last transactions, so a machine where that matters sets FULL.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from actors.errors import FanoutError, LedgerMismatch
from actors.ledger.sql import DEFAULT_NAMESPACE, Connection, SqlLedger

__all__ = ["LedgerMismatch", "SqliteLedger"]

BUSY_TIMEOUT_MS = 60_000
LOCK_RETRY_FIRST_S, LOCK_RETRY_MAX_S = 0.0001, 0.002
# Checkpointing the WAL into the database syncs the disk; doing it every 40 MB rather than SQLite's
# default 4 MB keeps that pause off most commits.
WAL_CHECKPOINT_PAGES = 10_000
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effects (
    stage TEXT NOT NULL, order_id TEXT NOT NULL, replica TEXT NOT NULL, status TEXT,
    result TEXT, compensated INTEGER NOT NULL DEFAULT 0, compensation TEXT, recorded_at REAL NOT NULL,
    namespace TEXT NOT NULL DEFAULT '', PRIMARY KEY (stage, order_id)
);
CREATE INDEX IF NOT EXISTS effects_by_replica ON effects (namespace, replica);
CREATE TABLE IF NOT EXISTS checkpoints (
    replica TEXT NOT NULL, stage TEXT NOT NULL, state TEXT, generation INTEGER NOT NULL, updated_at REAL NOT NULL,
    namespace TEXT NOT NULL, PRIMARY KEY (namespace, replica)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, source TEXT NOT NULL, started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL, ended_at REAL, ending TEXT
);
CREATE TABLE IF NOT EXISTS run_orders (
    run_id TEXT NOT NULL, order_id TEXT NOT NULL, admitted_at REAL NOT NULL, PRIMARY KEY (run_id, order_id)
);
CREATE TABLE IF NOT EXISTS outcomes (
    order_id TEXT PRIMARY KEY, status TEXT NOT NULL, outcome TEXT NOT NULL, recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL,
    attempts INTEGER NOT NULL, order_json TEXT NOT NULL, recorded_at REAL NOT NULL,
    resolved_at REAL, resolution TEXT, UNIQUE (order_id, stage, recorded_at)
);
CREATE INDEX IF NOT EXISTS dead_letters_by_order ON dead_letters (order_id);
CREATE TABLE IF NOT EXISTS inventory (
    lot TEXT NOT NULL, slot INTEGER NOT NULL, quantity INTEGER NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (lot, slot)
);
CREATE TABLE IF NOT EXISTS stock_changes (
    id INTEGER PRIMARY KEY, lot TEXT NOT NULL, delta INTEGER NOT NULL, reason TEXT NOT NULL, recorded_at REAL NOT NULL,
    change_id TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS certificate_holds (
    certificate TEXT PRIMARY KEY, order_id TEXT NOT NULL, held_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, next_value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS voided_numbers (
    sequence TEXT NOT NULL, number INTEGER NOT NULL, order_id TEXT NOT NULL, voided_at REAL NOT NULL,
    PRIMARY KEY (sequence, number)
);
CREATE TABLE IF NOT EXISTS http_requests (
    client TEXT NOT NULL, idempotency_key TEXT NOT NULL, body_hash TEXT NOT NULL, order_id TEXT NOT NULL,
    answer TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (client, idempotency_key)
);
CREATE INDEX IF NOT EXISTS http_requests_by_age ON http_requests (created_at);
CREATE TABLE IF NOT EXISTS accepted_orders (
    order_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, run_id TEXT NOT NULL, order_json TEXT NOT NULL,
    accepted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS accepted_orders_by_namespace ON accepted_orders (namespace, accepted_at);
CREATE TABLE IF NOT EXISTS scheduled_orders (
    order_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, run_id TEXT NOT NULL, not_before REAL NOT NULL,
    order_json TEXT NOT NULL, scheduled_at REAL NOT NULL, admitted_at REAL, cancelled_at REAL
);
CREATE INDEX IF NOT EXISTS scheduled_orders_by_due ON scheduled_orders (namespace, not_before);
"""


# Schema 2 kept a replica's state and effects by its name alone (see SqlLedger.upgrade_from_2).
UPGRADE_FROM_2 = """
ALTER TABLE effects ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
UPDATE effects SET namespace = ?;
DROP INDEX IF EXISTS effects_by_replica;
CREATE TABLE checkpoints_v3 (
    replica TEXT NOT NULL, stage TEXT NOT NULL, state TEXT, generation INTEGER NOT NULL, updated_at REAL NOT NULL,
    namespace TEXT NOT NULL, PRIMARY KEY (namespace, replica)
);
INSERT INTO checkpoints_v3 SELECT replica, stage, state, generation, updated_at, ? FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v3 RENAME TO checkpoints
"""


class SqliteLedger(SqlLedger):
    schema = SCHEMA
    upgrade_from_2 = UPGRADE_FROM_2

    def __init__(
        self,
        path: Path,
        *,
        create: bool = False,
        synchronous: str = "NORMAL",
        stock_slots: int = 1,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        # One writer at a time holds the whole file, so spreading a lot over rows would buy nothing.
        super().__init__(stock_slots=1, namespace=namespace)
        self.path = path
        self.location = str(path)
        if not create and not path.exists():
            # Never create an empty ledger by accident: on another machine that would mean a
            # replica starting from an empty workshop, silently.
            raise FileNotFoundError(
                f"ledger {path} does not exist on this node; an SQLite ledger needs every actor on one machine "
                f"(on a cluster across machines, use a postgresql:// ledger)"
            )
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        # Actors call from more than one thread (snapshots run beside calls); one transaction at a time.
        self._lock = threading.RLock()
        try:
            if self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise FanoutError(f"ledger {path}: the file system does not support SQLite WAL mode")
            self._db.execute(f"PRAGMA synchronous = {synchronous}")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            self._prepare(create)
        except BaseException:
            self._db.close()
            raise

    def _lock_schema(self, db: Connection) -> None:
        """Nothing to do: a write transaction (`BEGIN IMMEDIATE`) holds the whole file."""

    def _has_table(self, db: Connection, table: str) -> bool:
        return (
            db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None
        )

    def _write(self, body: Callable[[Connection], T]) -> T:
        with self._lock:
            self._begin()
            try:
                value = body(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return value

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _is_duplicate(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error)

    def close(self) -> None:
        self._db.close()

    def _begin(self) -> None:
        """`BEGIN IMMEDIATE`; while another writer holds the lock, retry soon (transactions here last
        tens of microseconds)."""
        delay, deadline = LOCK_RETRY_FIRST_S, time.monotonic() + BUSY_TIMEOUT_MS / 1000
        self._db.execute("PRAGMA busy_timeout = 0")  # this wait is ours; other statements keep SQLite's
        try:
            while True:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() > deadline:
                        raise
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, LOCK_RETRY_MAX_S)
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
