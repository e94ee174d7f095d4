"""The task state projection: the read model of every task, fed from the log.

:class:`TaskProjection` reads the log in leaf order, in large batches, straight from the
ledger's tables (``ledger_log`` joined with eventsourcing's ``stored_events``), applies each
event to its task's :class:`~ledger.workflow.state.TaskState` held in memory, and at the end
of each batch writes the changed tasks' rows (:func:`~projections.task_rows.rows_for`) and
the new position in one transaction. Rows and position therefore never disagree: after a
crash the projector resumes from the stored position and re-applies the rest.

The rows are a pure function of the fold of each task's stream, so a rebuild from leaf 0
gives exactly the rows incremental catch-up gave, on either backend.
"""

from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import orjson

from ledger.settings import Settings
from ledger.store import LedgerStore
from ledger.workflow.state import TaskState
from projections import schema
from projections.batch import BatchRows
from projections.database import Database, Transaction, database_for
from projections.parallel import PARALLEL_THRESHOLD, catch_up_in_parallel, keep_recent
from projections.scope import Scope
from projections.task_rows import (
    ACT_COLUMNS,
    ANOMALY_COLUMNS,
    DOCUMENT_COLUMNS,
    PARTICIPANT_COLUMNS,
    PENDING_SEPARATOR,
    TASK_COLUMNS,
    act_row,
    apply_safely,
    micros,
    rows_for,
)

NAME = "tasks"
#: The ``proj_positions`` row holding the tables' schema version (not a log position).
_SCHEMA = "schema-version"
DEFAULT_BATCH = 50_000
DEFAULT_CACHE = 200_000

Row = dict[str, Any]


class ProjectionError(Exception):
    """The log cannot be projected as stored (a leaf without its event, a gap)."""


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_INSERTS = (
    _insert("proj_tasks", TASK_COLUMNS),
    _insert("proj_participants", PARTICIPANT_COLUMNS),
    _insert("proj_documents", DOCUMENT_COLUMNS),
    _insert("proj_anomalies", ANOMALY_COLUMNS),
    _insert("proj_acts", ACT_COLUMNS),
)
_DELETES = tuple(
    f"DELETE FROM {t} WHERE task_id = ?"
    for t in ("proj_tasks", "proj_participants", "proj_documents", "proj_anomalies")
)
_READ_LOG = (
    "SELECT l.leaf_index, l.stream_id, l.sequence, e.state "
    "FROM ledger_log l LEFT JOIN stored_events e "
    "ON e.originator_id = l.stream_id AND e.originator_version = l.sequence "
    "WHERE l.leaf_index >= ? ORDER BY l.leaf_index LIMIT ?"
)
_READ_STREAM = (
    "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version < ? "
    "ORDER BY originator_version"
)


class _Task:
    """A task held in memory: its state, the leaf that last changed it, whether rows exist."""

    __slots__ = ("last_leaf", "persisted", "state", "task_id")

    def __init__(self, task_id: str, state: TaskState, persisted: bool) -> None:
        self.task_id = task_id
        self.state = state
        self.last_leaf = -1
        self.persisted = persisted


class TaskProjection:
    """Task state read model over one ledger database (SQLite file or PostgreSQL schema).

    ``batch`` leaves are applied per transaction; up to ``cache`` tasks are kept in memory
    (least recently used first out). A task not in memory is rebuilt by folding its stored
    stream up to the event at hand.
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        batch: int = DEFAULT_BATCH,
        cache: int = DEFAULT_CACHE,
        owns_store: bool = False,
        workers: int | None = None,
        parallel_threshold: int = PARALLEL_THRESHOLD,
    ) -> None:
        if batch < 1 or cache < 1:
            raise ValueError("batch and cache must be positive")
        #: Fold processes for a long catch-up (:mod:`projections.parallel`); 1 = never.
        self.workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        self.parallel_threshold = parallel_threshold
        self.store = store
        self.batch = batch
        self.cache_size = cache
        self._owns_store = owns_store
        self._db: Database = database_for(store)
        self._tasks: OrderedDict[Any, _Task] = OrderedDict()
        # One catch-up at a time per instance: the follower thread and request threads
        # (which catch up before reading) share the tasks held in memory.
        self._lock = threading.RLock()
        self._create_tables()
        self._position = self.stored_position()

    @classmethod
    def open(cls, settings: Settings, **options: Any) -> TaskProjection:
        """A projection over the store the settings name; closing it closes the store."""
        from ledger.app import open_store

        return cls(open_store(settings), owns_store=True, **options)

    def close(self) -> None:
        self._db.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> TaskProjection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- tables and position -------------------------------------------------------------

    def _create_tables(self) -> None:
        """Create the tables; rebuild them from leaf 0 if they are of another schema version."""
        with self._db.transaction(lock_schema=True) as tx:
            tx.execute(schema.statements(self._db.backend)[-1])  # proj_positions
            found = tx.query("SELECT position FROM proj_positions WHERE name = ?", [_SCHEMA])
            if not found or int(found[0][0]) != schema.SCHEMA_VERSION:
                for table in schema.PROJECTION_TABLES[:-1]:
                    tx.execute(f"DROP TABLE IF EXISTS {table}")
                tx.execute_many(
                    "DELETE FROM proj_positions WHERE name IN (?, ?)", [(NAME, _SCHEMA)]
                )
            for statement in schema.statements(self._db.backend):
                tx.execute(statement)
            tx.execute_many(
                "INSERT INTO proj_positions (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                [(NAME, 0), (_SCHEMA, schema.SCHEMA_VERSION)],
            )

    def stored_position(self) -> int:
        """How many leaves the stored rows reflect, whoever stored them (one read)."""
        rows = self._db.query("SELECT position FROM proj_positions WHERE name = ?", [NAME])
        return int(rows[0][0]) if rows else 0

    @property
    def position(self) -> int:
        """How many leaves of the log the stored rows reflect (the next leaf to apply)."""
        return self._position

    # -- catching up ---------------------------------------------------------------------

    def catch_up(self, limit: int | None = None) -> int:
        """Apply every leaf after the stored position up to the head; return how many.

        The cyclic garbage collector is paused meanwhile: catching up allocates millions of
        short-lived, acyclic objects (envelopes, states, rows), which would set off
        collections walking every task held in memory, about a quarter of the time. Nothing
        here makes reference cycles; the collector runs again once this returns.

        ``limit`` stops after about that many leaves (whole batches). Events appended while
        this runs are picked up by the next call.
        """
        applied = 0
        with self._lock:
            paused = gc.isenabled()
            if paused:
                gc.disable()
            try:
                behind = self.store.tree_size() - self._position if limit is None else 0
                if self.workers > 1 and behind >= self.parallel_threshold:
                    applied += catch_up_in_parallel(self, self.workers)
                while limit is None or applied < limit:
                    size = self.batch if limit is None else min(self.batch, limit - applied)
                    done = self._step(size)
                    if done == 0:
                        break
                    applied += done
            finally:
                if paused:
                    gc.enable()
        return applied

    def rebuild(self) -> int:
        """Drop every row and recompute from leaf 0; return the number of leaves applied."""
        with self._lock:
            return self._rebuild()

    def _rebuild(self) -> int:
        self._tasks.clear()
        with self._db.transaction() as tx:
            self._lock_position(tx)
            for table in schema.PROJECTION_TABLES[:-1]:
                tx.execute(f"DELETE FROM {table}")
            tx.execute_many("UPDATE proj_positions SET position = 0 WHERE name = ?", [(NAME,)])
        self._position = 0
        return self.catch_up()

    def _lock_position(self, tx: Transaction) -> int:
        lock = " FOR UPDATE" if self._db.backend == "postgres" else ""
        rows = tx.query(f"SELECT position FROM proj_positions WHERE name = ?{lock}", [NAME])
        return int(rows[0][0]) if rows else 0

    def _step(self, size: int) -> int:
        """Apply one batch of at most ``size`` leaves and store the result; return its length."""
        stored = self.stored_position()
        if stored > self._position:
            # Another projector (a worker beside this one) has stored these leaves: go on
            # from there rather than fold them again. A task in memory that they changed
            # is folded again from the store when next met: its sequence shows the gap.
            self._position = stored
        start = self._position
        log = self._db.query(_READ_LOG, [start, size])
        if not log:
            return 0
        tasks = self._tasks
        changed: dict[Any, _Task] = {}
        acts: list[tuple[Any, ...]] = []
        loads = orjson.loads
        expected_leaf = start
        try:
            for leaf, key, sequence, state_bytes in log:
                if leaf != expected_leaf:
                    raise ProjectionError(f"the log has no leaf {expected_leaf}")
                if state_bytes is None:
                    raise ProjectionError(f"leaf {leaf} has no stored event")
                expected_leaf += 1
                task = tasks.get(key)
                if task is None or task.state.last_sequence != sequence - 1:
                    task = self._load(key, sequence)
                    tasks[key] = task
                before = task.state
                envelope = loads(state_bytes)
                task.state = apply_safely(before, envelope)
                acts.append(act_row(task.task_id, leaf, before, envelope, task.state))
                task.last_leaf = leaf
                changed[key] = task
            written = self._write(start, expected_leaf, changed.values(), acts)
        except BaseException:
            # Memory may be ahead of the stored rows: forget it, the store is the truth.
            self._tasks.clear()
            raise
        if not written:
            # Another projector stored this batch (or part of it) first: go on from where
            # it left off. The states folded here stay in memory; they are true folds of
            # their streams, and one met again at a leaf it already holds (or beyond a gap)
            # is folded again from the store. A task whose last leaf here is before the
            # stored position has its rows written by the other projector.
            for task in changed.values():
                task.persisted = True
            self._position = self.stored_position()
            keep_recent(tasks, changed, self.cache_size)
            return expected_leaf - start
        self._position = expected_leaf
        # Least recently changed out first: the changed tasks move to the end.
        keep_recent(tasks, changed, self.cache_size)
        return expected_leaf - start

    def _load(self, key: Any, sequence: int) -> _Task:
        """A task not in memory: new if this is its first event, else folded from the store."""
        task_id = self._db.task_id(key)
        state = TaskState()
        if sequence > 1:
            for (state_bytes,) in self._db.query(_READ_STREAM, [key, sequence]):
                state = apply_safely(state, orjson.loads(state_bytes))
        return _Task(task_id, state, persisted=sequence > 1)

    def _write(self, start: int, end: int, changed: Any, acts: list[tuple[Any, ...]]) -> bool:
        """Store the changed tasks' rows, the batch's act rows and the new position at once."""
        batch = BatchRows()
        batch.acts = acts
        for task in changed:
            batch.add(
                task.task_id, task.persisted, rows_for(task.task_id, task.state, task.last_leaf)
            )
        if not self._write_rows(start, end, batch):
            return False
        for task in changed:
            task.persisted = True
        return True

    def _write_rows(self, start: int, end: int, batch: BatchRows) -> bool:
        """Write one batch's rows and move the position from ``start`` to ``end``.

        ``False`` (and nothing written) if the stored position is not ``start``: another
        projector got there first.
        """
        batch.sort()
        with self._db.transaction() as tx:
            if self._lock_position(tx) != start:
                return False
            if batch.stale:
                for delete in _DELETES:
                    tx.execute_many(delete, batch.stale)
            for insert, rows_ in zip(_INSERTS, batch.tables(), strict=True):
                if rows_:
                    tx.execute_many(insert, rows_)
            tx.execute_many("UPDATE proj_positions SET position = ? WHERE name = ?", [(end, NAME)])
        return True

    # -- reading -------------------------------------------------------------------------

    def _dicts(self, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> list[Row]:
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def get_task(self, task_id: UUID | str) -> Row | None:
        """The task's row (times in microseconds since the epoch, UTC), or ``None``."""
        rows = self._db.query(
            f"SELECT {', '.join(TASK_COLUMNS)} FROM proj_tasks WHERE task_id = ?", [str(task_id)]
        )
        if not rows:
            return None
        row = self._dicts(TASK_COLUMNS, rows)[0]
        row["pending"] = row["pending"].split(PENDING_SEPARATOR) if row["pending"] else []
        return row

    def list_tasks(
        self,
        *,
        status: str | None = None,
        initiator: str | None = None,
        pending_user: str | None = None,
        limit: int = 100,
        after: UUID | str | None = None,
        scope: Scope | None = None,
    ) -> list[Row]:
        """Tasks in task id order, filtered; ``after`` (a task id) pages on.

        With an owner's ``scope`` (the API's tenant), the page walks the owner's index of
        task ids from ``after`` and looks each task up, stopping at ``limit``: a page costs
        what it holds (more with a filter few of the owner's tasks pass), not what the
        owner has.
        """
        where: list[str] = []
        params: list[Any] = []
        order = "t.task_id"
        source = "proj_tasks t"
        if scope is not None and scope.owners is not None:
            table, task, owner = scope.owners
            # CROSS JOIN: SQLite keeps the owner's index as the outer loop.
            source = f"{table} o CROSS JOIN proj_tasks t"
            where += [f"o.{owner} = ?", f"t.task_id = o.{task}"]
            params.append(scope.owner)
            order = f"o.{task}"
        if status is not None:
            where.append("t.status = ?")
            params.append(status)
        if initiator is not None:
            where.append("t.initiator = ?")
            params.append(initiator)
        if pending_user is not None:
            where.append(
                "t.task_id IN (SELECT task_id FROM proj_participants "
                "WHERE user_id = ? AND pending = 1)"
            )
            params.append(pending_user)
        if after is not None:
            # On both sides of a join: a merge join then starts both at the cursor.
            for column in dict.fromkeys([order, "t.task_id"]):
                where.append(f"{column} > ?")
                params.append(str(after))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        columns = ", ".join(f"t.{c}" for c in TASK_COLUMNS)
        rows = self._db.query(
            f"SELECT {columns} FROM {source} {clause}ORDER BY {order} LIMIT ?",
            [*params, limit],
        )
        found = self._dicts(TASK_COLUMNS, rows)
        for row in found:
            row["pending"] = row["pending"].split(PENDING_SEPARATOR) if row["pending"] else []
        return found

    def due(self, now: datetime, limit: int = 1000) -> list[str]:
        """Ids of unfinished tasks the scheduler owes something at ``now`` (``wake_at <= now``)."""
        rows = self._db.query(
            "SELECT task_id FROM proj_tasks WHERE wake_at IS NOT NULL AND wake_at <= ? "
            "ORDER BY wake_at, task_id LIMIT ?",
            [micros(now), limit],
        )
        return [str(r[0]) for r in rows]

    def participants(self, task_id: UUID | str) -> list[Row]:
        """Every participant of every step of the task, in step and route order."""
        rows = self._db.query(
            f"SELECT {', '.join(PARTICIPANT_COLUMNS)} FROM proj_participants "
            "WHERE task_id = ? ORDER BY step_index, position",
            [str(task_id)],
        )
        return self._dicts(PARTICIPANT_COLUMNS, rows)

    def documents(self, task_id: UUID | str) -> list[Row]:
        rows = self._db.query(
            f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM proj_documents "
            "WHERE task_id = ? ORDER BY position",
            [str(task_id)],
        )
        return self._dicts(DOCUMENT_COLUMNS, rows)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every projection table, sorted: for comparisons and tests."""
        tables = {
            "proj_tasks": TASK_COLUMNS,
            "proj_participants": PARTICIPANT_COLUMNS,
            "proj_documents": DOCUMENT_COLUMNS,
            "proj_anomalies": ANOMALY_COLUMNS,
            "proj_acts": ACT_COLUMNS,
        }
        return {
            table: sorted(
                tuple(r) for r in self._db.query(f"SELECT {', '.join(columns)} FROM {table}")
            )
            for table, columns in tables.items()
        }
