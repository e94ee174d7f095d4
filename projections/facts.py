"""The typed facts the KPI and compliance views are computed from, as polars frames.

:class:`Facts` holds five frames with fixed schemas (below). :func:`load_facts` reads them
from the projection tables (``proj_tasks``, ``proj_acts``, ``proj_participants``) and the
ledger's checkpoint and audit tables, restricted to one tenant's tasks when asked; the
views in :mod:`projections.kpis` and :mod:`projections.compliance` never decode event JSON.

Times are integers, microseconds since the Unix epoch (UTC), as in the tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from projections.database import Database
from projections.scope import Scope

if TYPE_CHECKING:
    from projections.facts_snapshot import SnapshotStore

#: A scope with fewer acts than this loads from the database in a moment: no snapshots.
SNAPSHOT_MIN_ACTS = 20_000
#: The most chunks a frame of the facts is left in before it is merged into one.
MAX_CHUNKS = 64
#: While serving, a new snapshot at most this often, and only after this many new acts.
SNAPSHOT_MIN_SECONDS = 60.0

TASK_SCHEMA: dict[str, Any] = {
    "task_id": pl.Utf8,
    "status": pl.Utf8,
    "title": pl.Utf8,
    "template_id": pl.Utf8,
    "template_name": pl.Utf8,
    "department": pl.Utf8,
    "initiator": pl.Utf8,
    "current_step": pl.Utf8,
    "pending": pl.Utf8,
    "created_at": pl.Int64,
    "submitted_at": pl.Int64,
    "finished_at": pl.Int64,
    "due_at": pl.Int64,
    "returns": pl.Int64,
    "electronic": pl.Int64,
    "anomalies": pl.Int64,
    "created_leaf": pl.Int64,
    "last_leaf_index": pl.Int64,
}
"""One row per task (``proj_tasks``).

``pending`` joins the user ids who may act now with newlines (``""`` for nobody);
``due_at`` is the effective deadline (the earlier of the task deadline and the current
step's due time); ``returns`` counts applied ``step.returned`` events; ``electronic`` is 1
for a completed task whose every document carries a signed revision recorded in the log;
``created_leaf`` is the log position of its ``task.created`` event (for ties).
"""

ACT_SCHEMA: dict[str, Any] = {
    "leaf_index": pl.Int64,
    "task_id": pl.Utf8,
    "type": pl.Utf8,
    "at": pl.Int64,
    "actor_id": pl.Utf8,
    "system": pl.Int64,
    "step_index": pl.Int64,
    "step_key": pl.Utf8,
    "pending_since": pl.Int64,
    "ip": pl.Utf8,
    "connection_ip": pl.Utf8,
    "device_id": pl.Utf8,
    "platform": pl.Utf8,
    "user_agent": pl.Utf8,
    "mobile": pl.Int64,
    "required_factors": pl.Utf8,
    "missing_factors": pl.Utf8,
    "in_turn": pl.Int64,
    "self_act": pl.Int64,
    "deadline": pl.Int64,
    "anomaly": pl.Utf8,
}
"""One row per event of a task stream (``proj_acts``), keyed by its log position.

``step_key``/``step_index``: the step the event names (or the current one); ``pending_since``
(acts in turn only): when the actor became due to act; ``required_factors`` and
``missing_factors``: the step's required identity factors and those without a passed check
by the actor within the template's window before the act (comma-separated, ``""`` for none);
``in_turn`` is 0 only for an act by someone not pending in the named step; ``self_act`` is 1
for an approval or signature by the initiator where the route forbids self-approval;
``deadline`` is the effective deadline just before the event; ``anomaly`` is the note the
fold recorded for an event it could not apply; ``system`` is 1 for the scheduler's events.
"""

PENDING_SCHEMA: dict[str, Any] = {
    "task_id": pl.Utf8,
    "step_index": pl.Int64,
    "step_key": pl.Utf8,
    "user_id": pl.Utf8,
    "since": pl.Int64,
}
"""One row per person who may act now on an unfinished task (from ``proj_participants``)."""

CHECKPOINT_SCHEMA: dict[str, Any] = {
    "tree_size": pl.Int64,
    "sealed_at": pl.Int64,
    "timestamped_at": pl.Int64,
}
"""One row per signed checkpoint; ``timestamped_at`` is null while no token is held."""

AUDIT_SCHEMA: dict[str, Any] = {
    "ran_at": pl.Int64,
    "tree_size": pl.Int64,
    "passed": pl.Int64,
    "problem": pl.Utf8,
}
"""One row per recorded ``evidence-ledger audit`` run (``problem``: its first finding)."""

#: Event types that are a participant's act on a step (what waiting times and rules see).
ACT_TYPES = (
    "step.approved",
    "document.signed",
    "step.rejected",
    "step.returned",
    "task.transferred",
    "signer.added",
)


@dataclass(frozen=True)
class Facts:
    """The frames every view reads; see the module's schemas for their columns."""

    tasks: pl.DataFrame
    acts: pl.DataFrame
    pending: pl.DataFrame
    checkpoints: pl.DataFrame
    audits: pl.DataFrame

    @classmethod
    def from_rows(
        cls,
        tasks: Sequence[Sequence[Any]] = (),
        acts: Sequence[Sequence[Any]] = (),
        pending: Sequence[Sequence[Any]] = (),
        checkpoints: Sequence[Sequence[Any]] = (),
        audits: Sequence[Sequence[Any]] = (),
    ) -> Facts:
        """Facts from row tuples in schema column order (tests and loaders)."""
        return cls(
            _frame(tasks, TASK_SCHEMA),
            _frame(acts, ACT_SCHEMA),
            _frame(pending, PENDING_SCHEMA),
            _frame(checkpoints, CHECKPOINT_SCHEMA),
            _frame(audits, AUDIT_SCHEMA),
        )


def _frame(rows: Sequence[Sequence[Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=schema, orient="row")


_TASK_SELECT = (
    "task_id, status, title, template_id, template_name, department, initiator, "
    "current_step, pending, created_at, submitted_at, finished_at, due_at, returns, "
    "electronic, anomalies, last_leaf_index"
)
_ACT_SELECT = ", ".join(ACT_SCHEMA)
#: Checkpoints and their tokens from a tree size on: two range scans, joined here. As one
#: join, PostgreSQL's generic plan read every token to find a few (about 40 ms with 300,000
#: checkpoints); and the upper bound, beyond any log, is there so that it expects a narrow
#: range and reads by index.
_CHECKPOINTS_FROM = (
    "SELECT tree_size, signed_at FROM ledger_checkpoints "
    "WHERE tree_size >= ? AND tree_size < ? ORDER BY tree_size"
)
_TIMESTAMPS_FROM = (
    "SELECT tree_size, gen_time FROM ledger_checkpoint_timestamps "
    "WHERE tree_size >= ? AND tree_size < ?"
)
_NO_END = 2**62
#: The tasks whose rows changed at leaves ``[?, ?)``, and their pending participants. A
#: task changed again at or after the end is read at the next refresh. Both bounds are
#: given: for a lone lower bound PostgreSQL's generic plan expects a third of the tasks
#: and scans every participant row.
_CHANGED_TASKS = (
    f"SELECT {_TASK_SELECT} FROM proj_tasks WHERE last_leaf_index >= ? AND last_leaf_index < ?"
)
_CHANGED_PENDING = (
    "SELECT p.task_id, p.step_index, p.step_key, p.user_id, p.step_started_at "
    "FROM proj_participants p JOIN proj_tasks t ON t.task_id = p.task_id "
    "WHERE p.pending = 1 AND t.last_leaf_index >= ? AND t.last_leaf_index < ?"
)


def _time(text: str | None) -> int | None:
    """An ISO time from a ledger table as microseconds since the epoch."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _query_frame(
    db: Database, sql: str, params: Sequence[Any], schema: dict[str, Any]
) -> pl.DataFrame:
    return _frame(db.query(sql, params), schema)


def _appended(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """``old`` with ``new``'s rows after it, merged into one chunk once in many.

    ``pl.concat`` keeps each part as a chunk of its own, and a refresh adds one to each
    frame about once a second: polars grows slower with the count (the views about five
    times slower over 20,000 chunks, and every concat longer), so a long-running server
    would slow down by the hour. Merging costs one copy every :data:`MAX_CHUNKS` refreshes.
    """
    joined = pl.concat([old, new])
    return joined.rechunk() if max(joined.n_chunks("all"), default=0) > MAX_CHUNKS else joined


class FactsCache:
    """The facts of one scope, kept in memory and brought up to date incrementally.

    Act rows are only ever added, so each refresh reads those after the last leaf seen;
    task rows change, so it reads the tasks changed since, up to the refresh's position
    (``last_leaf_index``), and replaces them; pending participants of changed tasks
    likewise. Checkpoints are read from the oldest still waiting for a token, and audit
    runs whole. A refresh of an unchanged log costs three small queries.

    With ``snapshots``, the first refresh starts from the newest snapshot on disk that is
    right for this log and reads from the database only the rows after it; the owner calls
    :meth:`save_snapshot` now and then, and when closing.
    """

    def __init__(
        self, db: Database, scope: Scope | None = None, snapshots: SnapshotStore | None = None
    ) -> None:
        self._db = db
        self.scope = scope or Scope()
        self._lock = threading.Lock()
        self._position = 0
        self._facts = Facts.from_rows()
        self._created_leaf = pl.DataFrame(schema={"task_id": pl.Utf8, "created_leaf": pl.Int64})
        #: Where this scope's facts are saved between runs (:mod:`projections.facts_snapshot`).
        self._snapshots = snapshots
        self._snapshot_tried = snapshots is None
        #: The log position of the snapshot the facts started from, if they did.
        self.started_from: int | None = None
        self._saving = threading.Lock()
        self._saved_position = 0
        self._saved_acts = 0
        self._saved_at = time.monotonic()
        ensure_audit_runs(db)

    @property
    def position(self) -> int:
        """Leaves of the log reflected (as far as the projection had got at the refresh)."""
        return self._position

    def refresh(self, position: int) -> Facts:
        """The facts as of projection position ``position`` (the projection's, read first)."""
        with self._lock:
            if not self._snapshot_tried:
                self._snapshot_tried = True
                self._start_from_snapshot(position)
            if position > self._position:
                self._advance(self._position, position)
                self._position = position
            self._facts = Facts(
                self._facts.tasks,
                self._facts.acts,
                self._facts.pending,
                self._checkpoints(),
                _query_frame(
                    self._db,
                    "SELECT ran_at, tree_size, passed, problem FROM kpi_audit_runs ORDER BY ran_at",
                    [],
                    AUDIT_SCHEMA,
                ),
            )
            return self._facts

    def _start_from_snapshot(self, position: int) -> None:
        """Take the tasks, acts and pending rows up to a snapshot's position from disk."""
        assert self._snapshots is not None
        found = self._snapshots.load()
        if found is None or self._position != 0 or found.position > position:
            return
        self._facts = Facts(
            found.tasks, found.acts, found.pending, self._facts.checkpoints, self._facts.audits
        )
        self._created_leaf = (
            found.acts.filter(pl.col("type") == "task.created")
            .select("task_id", pl.col("leaf_index").alias("created_leaf"))
            .unique("task_id", keep="first")
        )
        self._position = self._saved_position = found.position
        self._saved_acts = found.acts.height
        self.started_from = found.position

    def save_snapshot(self, *, closing: bool = False) -> bool:
        """Save the facts to disk if that is due; ``True`` if a snapshot was written.

        Due when the scope has at least :data:`SNAPSHOT_MIN_ACTS` acts and, while serving,
        at least as many new ones and :data:`SNAPSHOT_MIN_SECONDS` since the last
        snapshot; when ``closing``, whenever anything is new. The frames are immutable, so
        the files are written outside the cache's lock: requests are not held up.
        """
        from projections.facts_snapshot import Snapshot

        if self._snapshots is None:
            return False
        with self._saving:
            with self._lock:
                facts, position = self._facts, self._position
            acts = facts.acts.height
            new = acts - self._saved_acts
            if acts < SNAPSHOT_MIN_ACTS or position <= self._saved_position or new <= 0:
                return False
            if not closing and (
                new < SNAPSHOT_MIN_ACTS or time.monotonic() - self._saved_at < SNAPSHOT_MIN_SECONDS
            ):
                return False
            self._snapshots.save(Snapshot(position, facts.tasks, facts.acts, facts.pending))
            self._saved_position, self._saved_acts = position, acts
            self._saved_at = time.monotonic()
            return True

    def _checkpoints(self) -> pl.DataFrame:
        """The checkpoints: read again from the oldest still waiting for a token (or the
        first new one); those before it are settled and kept."""
        known = self._facts.checkpoints
        # Column minima and maxima, not Python lists: one checkpoint a second adds up.
        waiting = known.filter(pl.col("timestamped_at").is_null()).get_column("tree_size")
        sizes = known.get_column("tree_size")
        start = 0
        if len(waiting):
            start = int(waiting.min())  # type: ignore[arg-type]
        elif len(sizes):
            start = int(sizes.max()) + 1  # type: ignore[arg-type]
        # Tokens first: a checkpoint stamped in between reads as waiting, and is read again.
        stamped = dict(self._db.query(_TIMESTAMPS_FROM, [start, _NO_END]))
        fresh = _frame(
            [
                (size, _time(sealed), _time(stamped.get(size)))
                for size, sealed in self._db.query(_CHECKPOINTS_FROM, [start, _NO_END])
            ],
            CHECKPOINT_SCHEMA,
        )
        return _appended(known.filter(pl.col("tree_size") < start), fresh)

    def _advance(self, start: int, end: int) -> None:
        where, params = self.scope.where("proj_acts.task_id")
        acts = _query_frame(
            self._db,
            f"SELECT {_ACT_SELECT} FROM proj_acts WHERE leaf_index >= ? AND leaf_index < ? "
            f"AND {where} ORDER BY leaf_index",
            [start, end, *params],
            ACT_SCHEMA,
        )
        # Each task's first task.created, remembered. The known tasks are filtered by the
        # few new or changed ids rather than deduplicated or joined whole: with a million
        # tasks those cost about 150 and 65 ms a refresh, these about 10 ms each.
        created = acts.filter(pl.col("type") == "task.created").select(
            "task_id", pl.col("leaf_index").alias("created_leaf")
        )
        if created.height:
            known = self._created_leaf.filter(
                pl.col("task_id").is_in(created.get_column("task_id").implode())
            ).get_column("task_id")
            first = created.filter(~pl.col("task_id").is_in(known.implode())).unique(
                "task_id", keep="first", maintain_order=True
            )
            self._created_leaf = _appended(self._created_leaf, first)
        where, params = self.scope.where("proj_tasks.task_id")
        changed = _query_frame(
            self._db,
            f"{_CHANGED_TASKS} AND {where}",
            [start, end, *params],
            {k: v for k, v in TASK_SCHEMA.items() if k != "created_leaf"},
        )
        ids = changed.get_column("task_id")
        created_of = self._created_leaf.filter(pl.col("task_id").is_in(ids.implode()))
        changed = changed.join(created_of, on="task_id", how="left").select(list(TASK_SCHEMA))
        t_where, t_params = self.scope.where("t.task_id")
        pending = _query_frame(
            self._db,
            f"{_CHANGED_PENDING} AND {t_where}",
            [start, end, *t_params],
            PENDING_SCHEMA,
        )
        old = self._facts
        self._facts = Facts(
            _appended(old.tasks.filter(~pl.col("task_id").is_in(ids.implode())), changed),
            _appended(old.acts, acts),
            _appended(old.pending.filter(~pl.col("task_id").is_in(ids.implode())), pending),
            old.checkpoints,
            old.audits,
        )


AUDIT_RUNS_DDL = (
    "CREATE TABLE IF NOT EXISTS kpi_audit_runs ("
    "ran_at {time} PRIMARY KEY, tree_size {time} NOT NULL, passed {int} NOT NULL, problem TEXT)"
)


def ensure_audit_runs(db: Database) -> None:
    """The table of recorded audit runs (kept across projection rebuilds)."""
    big = "BIGINT" if db.backend == "postgres" else "INTEGER"
    with db.transaction(lock_schema=True) as tx:
        tx.execute(AUDIT_RUNS_DDL.format(time=big, int="INTEGER"))


def record_audit_run(
    db: Database, ran_at: int, tree_size: int, passed: bool, problem: str | None
) -> None:
    """Remember one ``evidence-ledger audit`` outcome for the compliance views."""
    ensure_audit_runs(db)
    with db.transaction() as tx:
        tx.execute_many(
            "INSERT INTO kpi_audit_runs (ran_at, tree_size, passed, problem) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (ran_at) DO NOTHING",
            [(ran_at, tree_size, 1 if passed else 0, problem)],
        )
