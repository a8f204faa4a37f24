"""The ledger's meaning, written once for both SQL stores: every query, every transaction's content.

A store (`SqliteLedger`, `PostgresLedger`) supplies its schema, how a transaction is run and
retried (`_write`), and how a read is run (`_read`). Statements use `?` placeholders; the
PostgreSQL store translates them.

Write discipline: the Dispatcher alone writes outcomes and dead letters; each stage replica writes
its own effects, their claims on the shared workshop, and its own checkpoint, always together in
one short transaction, committed before the call returns; the driver writes its runs, and the
Producer which orders each run admitted, with what it accepted over HTTP (`RequestLedger`) and the
orders scheduled for later (`ScheduleLedger`), whose outcome it writes when it cancels one.

Several systems may share one database. A system is its namespace: what is kept per replica (its
checkpoint, its fence, the effects it made) is keyed by (namespace, replica), so two systems never
fence or resume each other's replicas. The workshop (stock, certificates, number counters) and the
order ids are shared, as they are between the replicas of one system. A transaction body may run more than
once (a store retries serialization failures and lost connections), so each is written to be
harmless when repeated: an effect already recorded raises `DuplicateEffect`, a compensation
already recorded changes nothing.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, Self, TypeVar

from actors.errors import ClaimRefused, DuplicateEffect, LedgerMismatch, Superseded
from actors.ledger.claims import Claim
from actors.ledger.journal import RecordedEffect
from actors.ledger.requests import RequestLedger
from actors.ledger.schedule import ScheduleLedger
from actors.models import (
    DeadLetter,
    JewelryOrder,
    OrderOutcome,
    OrderStatus,
    StageName,
    StageResult,
)
from actors.models.runs import STALE_AFTER_S, RunRecord, RunState

SCHEMA_VERSION = "3"
# The schema before runs and namespaces: upgraded in place by the driver of a run (see `_check_schema`).
UPGRADABLE_FROM = "2"
DEFAULT_NAMESPACE = "jewelry-fanout"
# A store found down answers every call at once with `LedgerUnavailable` for this long before it tries
# again; a caller retrying sooner learns nothing new.
PROBE_EVERY_S = 1.0
EFFECT_COLUMNS = "order_id, replica, result, compensated, compensation"
# Numbers are leased from the counter row in blocks (hi/lo): one short transaction per block, not per
# number. What a replica has not used of its block when it stops is a gap, never a reissue.
NUMBER_BLOCK = 50
T = TypeVar("T")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Any = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: list[Any], /) -> Cursor:
        """Run a statement once per row (in one round trip where the store can); `rowcount` is the
        rows it changed in all."""


class SqlLedger(RequestLedger, ScheduleLedger, ABC):
    """Effects, checkpoints, outcomes and dead letters, and the shared workshop, on an SQL store."""

    location: str
    # Row locks are taken in this order (and lots in name order) so two batches never deadlock.
    lock_rows = ""

    def __init__(self, stock_slots: int = 1, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.namespace = namespace  # the system this connection works for (see the module docstring)
        self._generation: dict[str, int] = {}  # replica -> the incarnation this connection writes as
        self._slots = stock_slots
        self._blocks: dict[str, tuple[int, int]] = {}  # sequence -> [next, end) leased by this process
        self._blocks_lock = threading.Lock()

    # -- what a store supplies -------------------------------------------------------------------

    @abstractmethod
    def _write(self, body: Callable[[Connection], T]) -> T:
        """Run `body` in one transaction, committed when it returns, rolled back when it raises."""

    @abstractmethod
    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        """Rows of one query, outside any write transaction."""

    @abstractmethod
    def _is_duplicate(self, error: Exception) -> bool:
        """Whether an error is a unique-key violation (an effect recorded already)."""

    outcome_order = "rowid"

    def retry_afresh(self) -> None:
        """Forget that the store was found down, so that the next transaction gets the whole retry
        budget instead of failing at once. A new run starts so: its user started it because the
        store is back. (Only a store with a breaker has anything to forget.)"""
        return

    def found_down_elsewhere(self, reason: str) -> None:
        """Another process of the run spent its retry budget on this store: take it to be down, so
        that this process's next transaction tries once (a probe) instead of spending a budget of
        its own. Each process spending its budget in turn, one after the other as the outage
        reached it (stage replicas, then the Dispatcher, the Producer, the driver), ended a run
        several budgets after the store went down instead of one. (Only a store with a breaker has
        anything to note.)"""
        return

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections; closing twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- set-up ------------------------------------------------------------------------------------

    schema: str  # the store's CREATE ... IF NOT EXISTS statements, separated by ";"
    # Its statements that bring a schema-2 ledger to this schema: replica state and effects keyed by
    # namespace too (what is there goes to this connection's namespace: one system wrote it). A "?"
    # in a statement is that namespace.
    upgrade_from_2: str

    @abstractmethod
    def _has_table(self, db: Connection, table: str) -> bool: ...

    @abstractmethod
    def _lock_schema(self, db: Connection) -> None:
        """Make two drivers creating or upgrading the schema at once take turns (where the write
        transaction does not already)."""

    def _prepare(self, create: bool) -> None:
        """Create the schema (a new store) or upgrade an older one in place, when this connection is a
        run's driver (`create`); then check it, as every connection does."""

        def body(db: Connection) -> None:
            if create:
                self._lock_schema(db)
                if self._has_table(db, "meta") and self._version(db) == UPGRADABLE_FROM:
                    for statement in _statements(self.upgrade_from_2):
                        db.execute(statement, (self.namespace,) if "?" in statement else ())
                    db.execute("UPDATE meta SET key = ? WHERE key = 'stage_setup'", (f"stage_setup:{self.namespace}",))
                    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
                for statement in _statements(self.schema):
                    db.execute(statement)
            self._check_schema(db)

        self._write(body)

    @staticmethod
    def _version(db: Connection) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return str(row[0]) if row else None

    def _check_schema(self, db: Connection) -> None:
        db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", (SCHEMA_VERSION,))
        found = self._version(db)
        if found == UPGRADABLE_FROM:
            raise LedgerMismatch(
                f"ledger {self.location} was written by an earlier version (schema {found}, before runs were "
                f"recorded); run `jewelry-fanout run` on it once (the same --out or --ledger) and it is upgraded "
                f"in place, its replicas' state given to that run's namespace"
            )
        if found != SCHEMA_VERSION:
            raise LedgerMismatch(
                f"ledger {self.location} has schema {found}; this version needs {SCHEMA_VERSION}: "
                f"finish it with the version that wrote it, or start a new ledger"
            )

    def bind(self, stage_setup: dict[str, Any]) -> None:
        """Tie the ledger to the stages' business settings: resuming with others would mean answers
        that no single set of settings gives. (Replica counts may change: replicas share the workshop.)"""
        wanted = json.dumps(stage_setup, sort_keys=True, default=str)
        key = f"stage_setup:{self.namespace}"  # each system's own: another may run other business rules

        def body(db: Connection) -> str:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT DO NOTHING", (key, wanted))
            return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

        found = self._write(body)
        if found != wanted:
            before, now = json.loads(found), json.loads(wanted)
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise LedgerMismatch(
                f"ledger {self.location} was written with other settings for {', '.join(changed)}; resume with "
                f"the same stage settings or start a new ledger"
            )

    # -- stage journal -------------------------------------------------------------------------------

    def take_over(self, replica: str, stage: StageName) -> dict[str, Any] | None:
        def body(db: Connection) -> tuple[Any, int]:
            row = db.execute(
                "SELECT state, generation FROM checkpoints WHERE namespace = ? AND replica = ?",
                (self.namespace, replica),
            ).fetchone()
            generation = row[1] + 1 if row else 1
            db.execute(
                "INSERT INTO checkpoints (namespace, replica, stage, state, generation, updated_at) "
                "VALUES (?,?,?,NULL,?,?) ON CONFLICT (namespace, replica) DO UPDATE SET "
                "generation = excluded.generation",
                (self.namespace, replica, stage.value, generation, time.time()),
            )
            return row, generation

        row, generation = self._write(body)
        self._generation[replica] = generation
        return json.loads(row[0]) if row and row[0] else None

    def checkpoint_of(self, replica: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT state FROM checkpoints WHERE namespace = ? AND replica = ?", (self.namespace, replica)
        )
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def effect(self, stage: StageName, order_id: str) -> RecordedEffect | None:
        rows = self._read(
            f"SELECT {EFFECT_COLUMNS} FROM effects WHERE stage = ? AND order_id = ?", (stage.value, order_id)
        )
        return _effect(stage, *rows[0]) if rows else None

    def effects(self, stage: StageName, order_ids: Sequence[str]) -> dict[str, RecordedEffect]:
        if not order_ids:
            return {}
        rows = self._read(
            f"SELECT {EFFECT_COLUMNS} FROM effects WHERE stage = ? AND order_id IN ({_marks(len(order_ids))})",
            (stage.value, *order_ids),
        )
        return {row[0]: _effect(stage, *row) for row in rows}

    def record_effects(
        self,
        replica: str,
        stage: StageName,
        results: list[StageResult],
        checkpoint: dict[str, Any],
        claims: Mapping[str, Claim] | None = None,
    ) -> None:
        now = time.time()
        rows = [
            (r.stage.value, r.order_id, r.replica, r.status.value, r.model_dump_json(), now, self.namespace)
            for r in results
        ]
        if self._record_at_once(replica, stage, rows, checkpoint, claims or {}, now):
            return

        def body(db: Connection) -> None:
            try:
                db.executemany(
                    "INSERT INTO effects (stage, order_id, replica, status, result, recorded_at, namespace) "
                    "VALUES (?,?,?,?,?,?,?)",
                    rows,
                )
            except Exception as error:
                if self._is_duplicate(error):
                    raise DuplicateEffect(f"{stage}: an effect of this batch was recorded already: {error}") from error
                raise
            if claims:
                self._grant(db, claims, now)
            self._put_checkpoint(db, replica, stage, checkpoint)

        self._write(body)

    def _record_at_once(
        self,
        replica: str,
        stage: StageName,
        rows: list[tuple[Any, ...]],
        checkpoint: dict[str, Any],
        claims: Mapping[str, Claim],
        now: float,
    ) -> bool:
        """A store's shortcut for `record_effects`: write the batch in one statement when nothing about
        it is unusual, and say whether it did; when it did not, the general transaction runs and says
        why (an effect recorded already, a claim refused, a newer incarnation)."""
        return False

    def record_compensation(
        self,
        stage: StageName,
        order_id: str,
        replica: str,
        done: str | None,
        checkpoint: dict[str, Any],
        release: Claim | None = None,
    ) -> None:
        now = time.time()

        def body(db: Connection) -> None:
            undone = db.execute(
                "UPDATE effects SET compensated = 1, compensation = ? WHERE stage = ? AND order_id = ? "
                "AND compensated = 0",
                (done, stage.value, order_id),
            ).rowcount
            if undone == 0:  # a tombstone (never ran), or a repeat of a compensation already committed
                db.execute(
                    "INSERT INTO effects (stage, order_id, replica, compensated, compensation, recorded_at, namespace) "
                    "VALUES (?,?,?,1,?,?,?) ON CONFLICT DO NOTHING",
                    (stage.value, order_id, replica, done, now, self.namespace),
                )
            elif release is not None:
                self._release(db, order_id, release, now)
            self._put_checkpoint(db, replica, stage, checkpoint)

        self._write(body)

    def live_effects(self, replica: str) -> Iterator[StageResult]:
        rows = self._read(
            "SELECT result FROM effects WHERE namespace = ? AND replica = ? AND status = 'ok' AND compensated = 0",
            (self.namespace, replica),
        )
        for (result,) in rows:
            yield StageResult.model_validate_json(result)

    def effects_of(self, stage: StageName) -> list[RecordedEffect]:
        """Every recorded effect of a stage (audits and tests: uniqueness of serials, conservation)."""
        rows = self._read(f"SELECT {EFFECT_COLUMNS} FROM effects WHERE stage = ?", (stage.value,))
        return [_effect(stage, *row) for row in rows]

    # -- the shared workshop ---------------------------------------------------------------------

    def available(self, lots: Collection[str]) -> dict[str, int]:
        wanted = list(lots)
        if not wanted:
            return {}
        rows = self._read(
            f"SELECT lot, SUM(quantity) FROM inventory WHERE lot IN ({_marks(len(wanted))}) GROUP BY lot", wanted
        )
        found = {lot: int(quantity) for lot, quantity in rows}
        return {lot: found.get(lot, 0) for lot in wanted}

    def holder(self, certificate: str) -> str | None:
        rows = self._read("SELECT order_id FROM certificate_holds WHERE certificate = ?", (certificate,))
        return rows[0][0] if rows else None

    def holders(self, certificates: Collection[str]) -> dict[str, str]:
        wanted = list(certificates)
        if not wanted:
            return {}
        return dict(self._read(_holders_sql(len(wanted)), wanted))

    def next_number(self, sequence: str) -> int:
        with self._blocks_lock:
            start, end = self._blocks.get(sequence, (0, 0))
            if start >= end:
                start = self._write(lambda db: self._lease(db, sequence))
                end = start + NUMBER_BLOCK
            self._blocks[sequence] = (start + 1, end)
            return start

    def seed_stock(self, stock: Mapping[str, int]) -> None:
        now = time.time()

        def body(db: Connection) -> None:
            for lot, quantity in sorted(stock.items()):
                self._add(db, lot, quantity, "initial stock", now, split=True, change_id=f"initial:{lot}")

        self._write(body)

    def restock(self, lot: str, quantity: int, reason: str) -> int:
        if quantity <= 0:
            raise ValueError(f"restock {lot}: the quantity must be positive, got {quantity}")
        now, change_id = time.time(), uuid.uuid4().hex  # one id per change: a retried commit adds it once
        self._write(lambda db: self._add(db, lot, quantity, reason, now, split=False, change_id=change_id))
        return self.available([lot])[lot]

    def inventory(self) -> dict[str, int]:
        rows = self._read("SELECT lot, SUM(quantity) FROM inventory GROUP BY lot ORDER BY lot")
        return {lot: int(quantity) for lot, quantity in rows}

    def stock_changes(self) -> dict[str, int]:
        rows = self._read("SELECT lot, SUM(delta) FROM stock_changes GROUP BY lot ORDER BY lot")
        return {lot: int(delta) for lot, delta in rows}

    def certificates_held(self) -> dict[str, str]:
        return dict(self._read("SELECT certificate, order_id FROM certificate_holds"))

    def voided_numbers(self, sequence: str) -> set[int]:
        return {row[0] for row in self._read("SELECT number FROM voided_numbers WHERE sequence = ?", (sequence,))}

    def _grant(self, db: Connection, claims: Mapping[str, Claim], now: float) -> None:
        """Apply a batch's claims, or refuse the batch. Takes are summed per (lot, slot) first, so a
        batch of fifty orders of one lot is one update, not fifty round trips with the row locked;
        rows are locked in (lot, slot) order, so two batches never deadlock. The certificates go in
        with one statement; fewer rows than certificates means one is held by another order."""
        wanted, takers = self._takes(claims)
        for (lot, slot), quantity in wanted.items():
            self._take(db, takers[lot], lot, slot, quantity)
        holds = [(certificate, order_id, now) for order_id, claim in claims.items() for certificate in claim.holds]
        if holds and db.executemany(
            "INSERT INTO certificate_holds VALUES (?,?,?) ON CONFLICT DO NOTHING", holds
        ).rowcount < len(holds):
            held = dict(db.execute(_holders_sql(len(holds)), [c for c, _, _ in holds]).fetchall())
            refused = [(o, c) for c, o, _ in holds if held.get(c) not in (None, o)] or [(holds[0][1], holds[0][0])]
            order_id, certificate = refused[0]
            holder = f"order {held[certificate]}" if certificate in held else "another order"
            raise ClaimRefused(order_id, f"certificate {certificate} is held by {holder}")

    def _takes(self, claims: Mapping[str, Claim]) -> tuple[dict[tuple[str, int], int], dict[str, list[str]]]:
        """A batch's takes summed per (lot, slot), in lock order; and per lot, the orders taking from it
        (named in a refusal)."""
        wanted: dict[tuple[str, int], int] = {}
        takers: dict[str, list[str]] = {}
        for order_id, claim in claims.items():
            for lot, quantity in claim.takes.items():
                if quantity:
                    key = (lot, self._slot(order_id))
                    wanted[key] = wanted.get(key, 0) + quantity
                    takers.setdefault(lot, []).append(order_id)
        return dict(sorted(wanted.items())), takers

    def _take(self, db: Connection, takers: list[str], lot: str, slot: int, quantity: int) -> None:
        """Take from one slot what the batch's orders of that slot need; if it is short, take it from
        all of the lot's slots together (the slotted counter: exact, and contended only when a lot
        runs low)."""
        taken = db.execute(
            "UPDATE inventory SET quantity = quantity - ? WHERE lot = ? AND slot = ? AND quantity >= ?",
            (quantity, lot, slot, quantity),
        ).rowcount
        if taken:
            return
        slots = db.execute(
            f"SELECT slot, quantity FROM inventory WHERE lot = ? ORDER BY slot{self.lock_rows}", (lot,)
        ).fetchall()
        if sum(q for _, q in slots) < quantity:
            who = takers[0] if len(takers) == 1 else f"{takers[0]} (one of {len(takers)} in the batch)"
            raise ClaimRefused(who, f"{lot} has less than {quantity} left")
        rest = quantity
        for other, held in slots:
            part = min(held, rest)
            if part:
                db.execute(
                    "UPDATE inventory SET quantity = quantity - ? WHERE lot = ? AND slot = ?", (part, lot, other)
                )
                rest -= part
            if not rest:
                return

    def _release(self, db: Connection, order_id: str, claim: Claim, now: float) -> None:
        for lot, quantity in sorted(claim.takes.items()):
            db.execute(
                "INSERT INTO inventory VALUES (?,?,?) ON CONFLICT (lot, slot) DO UPDATE SET "
                "quantity = inventory.quantity + excluded.quantity",
                (lot, self._slot(order_id), quantity),
            )
        for certificate in claim.holds:
            db.execute("DELETE FROM certificate_holds WHERE certificate = ? AND order_id = ?", (certificate, order_id))
        for sequence, number in claim.numbers:
            db.execute(
                "INSERT INTO voided_numbers VALUES (?,?,?,?) ON CONFLICT DO NOTHING", (sequence, number, order_id, now)
            )

    def _add(
        self, db: Connection, lot: str, quantity: int, reason: str, now: float, split: bool, change_id: str
    ) -> None:
        """Record a stock change once (by its id) and add it to the lot, its slots created as needed."""
        recorded = db.execute(
            "INSERT INTO stock_changes (lot, delta, reason, recorded_at, change_id) "
            "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (lot, quantity, reason, now, change_id),
        )
        if not recorded.rowcount:
            return
        parts = [quantity // self._slots + (quantity % self._slots if i == 0 else 0) for i in range(self._slots)]
        for slot, part in enumerate(parts if split else [quantity]):
            db.execute(
                "INSERT INTO inventory VALUES (?,?,?) ON CONFLICT (lot, slot) DO UPDATE SET "
                "quantity = inventory.quantity + excluded.quantity",
                (lot, slot, part),
            )

    def _lease(self, db: Connection, sequence: str) -> int:
        db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT DO NOTHING", (sequence,))
        end = db.execute(
            "UPDATE counters SET next_value = next_value + ? WHERE name = ? RETURNING next_value",
            (NUMBER_BLOCK, sequence),
        ).fetchone()[0]
        return int(end) - NUMBER_BLOCK

    def _slot(self, order_id: str) -> int:
        return zlib.crc32(order_id.encode()) % self._slots if self._slots > 1 else 0

    # -- outcomes and dead letters (written by the Dispatcher alone) -------------------------------

    def outcome(self, order_id: str) -> OrderOutcome | None:
        rows = self._read("SELECT outcome FROM outcomes WHERE order_id = ?", (order_id,))
        return OrderOutcome.model_validate_json(rows[0][0]) if rows else None

    def outcomes(self, order_ids: list[str]) -> dict[str, OrderOutcome]:
        """`outcome` for several orders in one query: those recorded, by order id."""
        rows = self._read(f"SELECT outcome FROM outcomes WHERE order_id IN ({_marks(len(order_ids))})", order_ids)
        found = (OrderOutcome.model_validate_json(row[0]) for row in rows)
        return {outcome.order_id: outcome for outcome in found}

    def record_outcome(self, outcome: OrderOutcome, dead_letters: Sequence[DeadLetter] = ()) -> None:
        """The order's one outcome (replacing a dead-lettered one after a replay), with its new dead
        letters; an outcome that is no longer dead-lettered resolves the order's open dead letters."""
        self.record_outcomes([(outcome, list(dead_letters))])

    def record_outcomes(
        self, outcomes: list[tuple[OrderOutcome, list[DeadLetter]]], lines: Sequence[str] | None = None
    ) -> None:
        """`record_outcome` for several orders in one transaction (the Dispatcher's group commit);
        `lines`, each outcome's JSON if the caller has made it already (it crosses the wire too)."""
        now = time.time()
        if lines is None:
            lines = [o.model_dump_json(exclude={"from_ledger"}) for o, _ in outcomes]
        rows = [(o.order_id, o.status.value, line, now) for (o, _), line in zip(outcomes, lines, strict=True)]
        letters = [
            (
                letter.order_id,
                letter.stage.value,
                letter.error,
                letter.attempts,
                letter.order.model_dump_json(),
                letter.recorded_at.timestamp(),
            )
            for _, dead_letters in outcomes
            for letter in dead_letters
        ]
        if not letters and self._outcomes_at_once(rows, now):
            return
        resolved = [
            (now, f"order {o.status.value}", o.order_id)
            for o, _ in outcomes
            if o.status is not OrderStatus.DEAD_LETTERED
        ]

        # Three statements for the whole group, each run once per row in one round trip (a pipeline on
        # PostgreSQL): at zero wait, a round trip per outcome was most of what the commit cost.
        def body(db: Connection) -> None:
            db.executemany(
                # Only a dead-lettered outcome is ever replaced (by its replay): a terminal one is final,
                # whatever a Dispatcher that outlived its driver may still try to write.
                "INSERT INTO outcomes (order_id, status, outcome, recorded_at) VALUES (?,?,?,?) "
                "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, outcome = excluded.outcome, "
                "recorded_at = excluded.recorded_at WHERE outcomes.status = 'dead_lettered'",
                rows,
            )
            if resolved:
                db.executemany(
                    "UPDATE dead_letters SET resolved_at = ?, resolution = ? WHERE order_id = ? "
                    "AND resolved_at IS NULL",
                    resolved,
                )
            if letters:
                db.executemany(
                    "INSERT INTO dead_letters (order_id, stage, error, attempts, order_json, recorded_at) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    letters,
                )

        self._write(body)

    def _outcomes_at_once(self, rows: list[tuple[str, str, str, float]], now: float) -> bool:
        """A store's shortcut for `record_outcomes` without dead letters, like `_record_at_once`."""
        return False

    def dead_letters(self, order_id: str | None = None, open_only: bool = True) -> list[DeadLetter]:
        query = (
            "SELECT order_id, stage, error, attempts, order_json, recorded_at, resolved_at, resolution "
            "FROM dead_letters"
        )
        clauses, params = [], []
        if order_id is not None:
            clauses.append("order_id = ?")
            params.append(order_id)
        if open_only:
            clauses.append("resolved_at IS NULL")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        letters = []
        for oid, stage, error, attempts, order_json, recorded, resolved, resolution in self._read(
            query + " ORDER BY id", params
        ):
            letters.append(
                DeadLetter(
                    order_id=oid,
                    stage=StageName(stage),
                    error=error,
                    attempts=attempts,
                    order=JewelryOrder.model_validate_json(order_json),
                    recorded_at=_utc(recorded),
                    resolved_at=_utc(resolved) if resolved else None,
                    resolution=resolution,
                )
            )
        return letters

    def outcome_counts(self) -> dict[str, int]:
        return {status: int(n) for status, n in self._read("SELECT status, COUNT(*) FROM outcomes GROUP BY status")}

    def outcome_lines(self) -> Iterator[str]:
        """Every outcome as one JSON line, in the order they were first recorded (every run's: see
        `run_outcome_lines` for one run's)."""
        for (outcome,) in self._read(f"SELECT outcome FROM outcomes ORDER BY {self.outcome_order}"):
            yield outcome

    # -- runs: the driver writes its runs, the Producer which orders each run admitted -------------

    def begin_run(self, run_id: str, source: str) -> None:
        now = time.time()
        self._write(
            lambda db: db.execute(
                "INSERT INTO runs (run_id, namespace, source, started_at, heartbeat_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT DO NOTHING",
                (run_id, self.namespace, source, now, now),
            )
        )

    def heartbeat(self, run_id: str) -> None:
        """The run's driver is alive (see `actors.models.runs.STALE_AFTER_S`)."""
        self._write(lambda db: db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id)))

    def end_run(self, run_id: str, ending: str) -> None:
        now = time.time()
        ended = "UPDATE runs SET ended_at = ?, heartbeat_at = ?, ending = ? WHERE run_id = ?"
        self._write(lambda db: db.execute(ended, (now, now, ending, run_id)))

    def admit(self, run_id: str, order_ids: Collection[str]) -> None:
        """Record that the run admitted these orders (before they are sent or answered): its files
        then hold exactly them. Once per batch of orders, in one round trip."""
        if order_ids:
            now = time.time()
            rows = [(run_id, order_id, now) for order_id in order_ids]
            self._write(
                lambda db: db.executemany(
                    "INSERT INTO run_orders (run_id, order_id, admitted_at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                    rows,
                )
            )

    def run_outcome_lines(self, run_id: str) -> Iterator[str]:
        """The outcomes of the orders the run admitted, one JSON line each, in the order they were first
        recorded: what its outcomes.jsonl holds, answers from the ledger included."""
        rows = self._read(
            f"SELECT o.outcome FROM run_orders r JOIN outcomes o ON o.order_id = r.order_id "
            f"WHERE r.run_id = ? ORDER BY o.{self.outcome_order}",
            (run_id,),
        )
        for (outcome,) in rows:
            yield outcome

    def runs(self) -> list[RunRecord]:
        """Every run recorded in the store, of every system, the oldest first."""
        counts: dict[str, dict[str, int]] = {}
        for run_id, status, count in self._read(
            "SELECT r.run_id, o.status, COUNT(*) FROM run_orders r LEFT JOIN outcomes o ON o.order_id = r.order_id "
            "GROUP BY r.run_id, o.status"
        ):
            counts.setdefault(run_id, {})[status or ""] = int(count)
        now = time.time()
        found = []
        for run_id, namespace, source, started, beat, ended, ending in self._read(
            "SELECT run_id, namespace, source, started_at, heartbeat_at, ended_at, ending FROM runs ORDER BY started_at"
        ):
            by_status = counts.get(run_id, {})
            state = RunState.ENDED if ended is not None else RunState.GOING
            if ended is None and now - beat > STALE_AFTER_S:
                state = RunState.ABANDONED
            found.append(
                RunRecord(
                    run_id=run_id,
                    namespace=namespace,
                    source=source,
                    started_at=_utc(started),
                    heartbeat_at=_utc(beat),
                    ended_at=_utc(ended) if ended is not None else None,
                    ending=ending,
                    admitted=sum(by_status.values()),
                    by_status={status: n for status, n in sorted(by_status.items()) if status},
                    state=state,
                )
            )
        return found

    # -- helpers -------------------------------------------------------------------------------------

    def _put_checkpoint(self, db: Connection, replica: str, stage: StageName, checkpoint: dict[str, Any]) -> None:
        """Write the checkpoint only as the incarnation that claimed it; rolls the transaction back otherwise."""
        generation = self._generation.get(replica)
        if generation is None:
            raise Superseded(f"{replica}: this connection never claimed the replica")
        updated = db.execute(
            "UPDATE checkpoints SET state = ?, updated_at = ? WHERE namespace = ? AND replica = ? AND generation = ?",
            (json.dumps(checkpoint), time.time(), self.namespace, replica, generation),
        ).rowcount
        if updated != 1:
            raise Superseded(f"{replica}: a newer incarnation has taken over; this one ({generation}) stops writing")


def _holders_sql(count: int) -> str:
    """The query of who holds `count` certificates: (certificate, order id) for the held ones."""
    return f"SELECT certificate, order_id FROM certificate_holds WHERE certificate IN ({_marks(count)})"


def _marks(count: int) -> str:
    """The placeholders of an `IN (...)` list of `count` values."""
    return ",".join("?" * count)


def _effect(
    stage: StageName, order_id: str, replica: str, result: str | None, compensated: int, compensation: str | None
) -> RecordedEffect:
    """A row of `EFFECT_COLUMNS` as a `RecordedEffect` (no result: a tombstone)."""
    parsed = StageResult.model_validate_json(result) if result else None
    return RecordedEffect(stage, order_id, replica, parsed, bool(compensated), compensation)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _statements(script: str) -> list[str]:
    """A store's SQL script, one statement each (none of ours holds a ";" inside a literal)."""
    return [statement for statement in script.split(";") if statement.strip()]
