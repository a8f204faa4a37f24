"""The embedded ledger: one SQLite file in WAL mode, shared by every actor on one machine.

Write discipline: each writer owns its rows. The Dispatcher alone writes outcomes and dead
letters; each stage replica writes its own effects and its own checkpoint, always together in
one short `BEGIN IMMEDIATE` transaction, committed before the call returns. WAL lets readers
(the Producer, `status`) run beside the writer. A writer that finds the lock taken retries after
a fraction of a millisecond (`_Transaction`): SQLite's own busy handler sleeps 1, 2, 5, 10 ms...,
which with seven writing actors cost more throughput than the writes themselves.

`synchronous=NORMAL` (the default) survives any process crash, which is what Ray actors do; a
power cut can lose the last transactions, so a machine where that matters sets FULL.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.errors import FanoutError
from actors.ledger.journal import DuplicateEffect, RecordedEffect, Superseded
from actors.models import DeadLetter, JewelryOrder, OrderOutcome, OrderStatus, StageName, StageResult

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_MS = 60_000
LOCK_RETRY_FIRST_S, LOCK_RETRY_MAX_S = 0.0001, 0.002
# Checkpointing the WAL into the database syncs the disk; doing it every 40 MB rather than SQLite's
# default 4 MB keeps that pause off most commits.
WAL_CHECKPOINT_PAGES = 10_000
EFFECT_COLUMNS = "order_id, replica, result, compensated, compensation"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effects (
    stage TEXT NOT NULL, order_id TEXT NOT NULL, replica TEXT NOT NULL, status TEXT,
    result TEXT, compensated INTEGER NOT NULL DEFAULT 0, compensation TEXT, recorded_at REAL NOT NULL,
    PRIMARY KEY (stage, order_id)
);
CREATE INDEX IF NOT EXISTS effects_by_replica ON effects (replica);
CREATE TABLE IF NOT EXISTS checkpoints (
    replica TEXT PRIMARY KEY, stage TEXT NOT NULL, state TEXT, generation INTEGER NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    order_id TEXT PRIMARY KEY, status TEXT NOT NULL, outcome TEXT NOT NULL, recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL,
    attempts INTEGER NOT NULL, order_json TEXT NOT NULL, recorded_at REAL NOT NULL,
    resolved_at REAL, resolution TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_order ON dead_letters (order_id);
"""


class LedgerMismatch(FanoutError):
    """The ledger was written by a run whose stages were set up differently."""


class SqliteLedger:
    def __init__(self, path: Path, *, create: bool = False, synchronous: str = "NORMAL") -> None:
        self.path = path
        if not create and not path.exists():
            # Never create an empty ledger by accident: on another machine that would mean a
            # replica starting from its initial stock, silently.
            raise FileNotFoundError(
                f"ledger {path} does not exist on this node; an SQLite ledger needs every actor on one machine "
                f"(or run with --no-ledger)"
            )
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._generation: dict[str, int] = {}  # replica -> the incarnation this connection writes as
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        if self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise FanoutError(f"ledger {path}: the file system does not support SQLite WAL mode")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        if create:
            self._create_schema()

    # -- set-up ------------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        for statement in filter(str.strip, SCHEMA.split(";")):
            self._db.execute(statement)
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))

    def bind(self, stage_setup: dict[str, Any]) -> None:
        """Tie the ledger to the stages' setup (replica counts, stock): resuming with another setup
        would give replicas a share of stock that does not match their checkpoint."""
        wanted = json.dumps(stage_setup, sort_keys=True, default=str)
        with self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'stage_setup'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('stage_setup', ?)", (wanted,))
                return
        if row[0] != wanted:
            before, now = json.loads(row[0]), json.loads(wanted)
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise LedgerMismatch(
                f"ledger {self.path} was written with other settings for {', '.join(changed)}; resume with the "
                f"same stage settings (replicas, stock, numbering) or start a new ledger"
            )

    # -- stage journal -------------------------------------------------------------------------------

    def claim(self, replica: str, stage: StageName) -> dict[str, Any] | None:
        with self._transaction():
            row = self._db.execute("SELECT state, generation FROM checkpoints WHERE replica = ?", (replica,)).fetchone()
            generation = row[1] + 1 if row else 1
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?,?,NULL,?,?) ON CONFLICT (replica) DO UPDATE SET "
                "generation = excluded.generation",
                (replica, stage.value, generation, time.time()),
            )
        self._generation[replica] = generation
        return json.loads(row[0]) if row and row[0] else None

    def checkpoint_of(self, replica: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT state FROM checkpoints WHERE replica = ?", (replica,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def effect(self, stage: StageName, order_id: str) -> RecordedEffect | None:
        row = self._db.execute(
            f"SELECT {EFFECT_COLUMNS} FROM effects WHERE stage = ? AND order_id = ?", (stage.value, order_id)
        ).fetchone()
        return _effect(stage, *row) if row else None

    def record_effects(
        self, replica: str, stage: StageName, results: list[StageResult], checkpoint: dict[str, Any]
    ) -> None:
        now = time.time()
        rows = [(r.stage.value, r.order_id, r.replica, r.status.value, r.model_dump_json(), now) for r in results]
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO effects (stage, order_id, replica, status, result, recorded_at) VALUES (?,?,?,?,?,?)",
                    rows,
                )
                self._put_checkpoint(replica, stage, checkpoint)
        except sqlite3.IntegrityError as error:
            raise DuplicateEffect(f"{stage}: an effect of this batch was recorded already: {error}") from error

    def record_compensation(
        self, stage: StageName, order_id: str, replica: str, done: str | None, checkpoint: dict[str, Any]
    ) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO effects (stage, order_id, replica, compensated, compensation, recorded_at) "
                "VALUES (?,?,?,1,?,?) ON CONFLICT (stage, order_id) DO UPDATE SET compensated = 1, "
                "compensation = excluded.compensation",
                (stage.value, order_id, replica, done, time.time()),
            )
            self._put_checkpoint(replica, stage, checkpoint)

    def live_effects(self, replica: str) -> Iterator[StageResult]:
        rows = self._db.execute(
            "SELECT result FROM effects WHERE replica = ? AND status = 'ok' AND compensated = 0", (replica,)
        ).fetchall()
        for (result,) in rows:
            yield StageResult.model_validate_json(result)

    def effects_of(self, stage: StageName) -> list[RecordedEffect]:
        """Every recorded effect of a stage (audits and tests: uniqueness of serials, conservation)."""
        rows = self._db.execute(f"SELECT {EFFECT_COLUMNS} FROM effects WHERE stage = ?", (stage.value,)).fetchall()
        return [_effect(stage, *row) for row in rows]

    # -- outcomes and dead letters (written by the Dispatcher alone) -------------------------------

    def outcome(self, order_id: str) -> OrderOutcome | None:
        row = self._db.execute("SELECT outcome FROM outcomes WHERE order_id = ?", (order_id,)).fetchone()
        return OrderOutcome.model_validate_json(row[0]) if row else None

    def outcomes(self, order_ids: list[str]) -> dict[str, OrderOutcome]:
        """`outcome` for several orders in one query: those recorded, by order id."""
        marks = ",".join("?" * len(order_ids))
        rows = self._db.execute(f"SELECT outcome FROM outcomes WHERE order_id IN ({marks})", order_ids).fetchall()
        found = (OrderOutcome.model_validate_json(row[0]) for row in rows)
        return {outcome.order_id: outcome for outcome in found}

    def record_outcome(self, outcome: OrderOutcome, dead_letters: list[DeadLetter] = ()) -> None:
        """The order's one outcome (replacing a dead-lettered one after a replay), with its new dead
        letters; an outcome that is no longer dead-lettered resolves the order's open dead letters."""
        self.record_outcomes([(outcome, list(dead_letters))])

    def record_outcomes(self, outcomes: list[tuple[OrderOutcome, list[DeadLetter]]]) -> None:
        """`record_outcome` for several orders in one transaction (the Dispatcher's group commit)."""
        now = time.time()
        with self._transaction():
            for outcome, dead_letters in outcomes:
                self._db.execute(
                    # Only a dead-lettered outcome is ever replaced (by its replay): a terminal one is final,
                    # whatever a Dispatcher that outlived its driver may still try to write.
                    "INSERT INTO outcomes VALUES (?,?,?,?) ON CONFLICT (order_id) DO UPDATE SET status = "
                    "excluded.status, outcome = excluded.outcome, recorded_at = excluded.recorded_at "
                    "WHERE outcomes.status = 'dead_lettered'",
                    (outcome.order_id, outcome.status.value, outcome.model_dump_json(exclude={"from_ledger"}), now),
                )
                if outcome.status is not OrderStatus.DEAD_LETTERED:
                    self._db.execute(
                        "UPDATE dead_letters SET resolved_at = ?, resolution = ? WHERE order_id = ? AND resolved_at IS NULL",
                        (now, f"order {outcome.status.value}", outcome.order_id),
                    )
                for letter in dead_letters:
                    self._db.execute(
                        "INSERT INTO dead_letters (order_id, stage, error, attempts, order_json, recorded_at) "
                        "VALUES (?,?,?,?,?,?)",
                        (letter.order_id, letter.stage.value, letter.error, letter.attempts,
                         letter.order.model_dump_json(), letter.recorded_at.timestamp()),
                    )

    def dead_letters(self, order_id: str | None = None, open_only: bool = True) -> list[DeadLetter]:
        query = "SELECT order_id, stage, error, attempts, order_json, recorded_at, resolved_at, resolution FROM dead_letters"
        clauses, params = [], []
        if order_id is not None:
            clauses.append("order_id = ?")
            params.append(order_id)
        if open_only:
            clauses.append("resolved_at IS NULL")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        letters = []
        for oid, stage, error, attempts, order_json, recorded, resolved, resolution in self._db.execute(
            query + " ORDER BY id", params
        ):
            letters.append(DeadLetter(
                order_id=oid, stage=StageName(stage), error=error, attempts=attempts,
                order=JewelryOrder.model_validate_json(order_json),
                recorded_at=_utc(recorded), resolved_at=_utc(resolved) if resolved else None, resolution=resolution,
            ))
        return letters

    def outcome_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM outcomes GROUP BY status").fetchall())

    def outcome_lines(self) -> Iterator[str]:
        """Every outcome as one JSON line, in the order they were first recorded."""
        for (outcome,) in self._db.execute("SELECT outcome FROM outcomes ORDER BY rowid"):
            yield outcome

    def close(self) -> None:
        self._db.close()

    # -- helpers -------------------------------------------------------------------------------------

    def _put_checkpoint(self, replica: str, stage: StageName, checkpoint: dict[str, Any]) -> None:
        """Write the checkpoint only as the incarnation that claimed it; rolls the transaction back otherwise."""
        generation = self._generation.get(replica)
        if generation is None:
            raise Superseded(f"{replica}: this connection never claimed the replica")
        updated = self._db.execute(
            "UPDATE checkpoints SET state = ?, updated_at = ? WHERE replica = ? AND generation = ?",
            (json.dumps(checkpoint), time.time(), replica, generation),
        ).rowcount
        if updated != 1:
            raise Superseded(f"{replica}: a newer incarnation has taken over; this one ({generation}) stops writing")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """`BEGIN IMMEDIATE` takes the write lock up front, so two writers queue instead of deadlocking;
    while another writer holds it, retry soon (transactions here last tens of microseconds)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
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

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _effect(
    stage: StageName, order_id: str, replica: str, result: str | None, compensated: int, compensation: str | None
) -> RecordedEffect:
    """A row of `EFFECT_COLUMNS` as a `RecordedEffect` (no result: a tombstone)."""
    parsed = StageResult.model_validate_json(result) if result else None
    return RecordedEffect(stage, order_id, replica, parsed, bool(compensated), compensation)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
