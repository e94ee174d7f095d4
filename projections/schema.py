"""The task projection's tables, for both backends.

They live beside the ledger's tables (the same SQLite file, the same PostgreSQL schema) but
are ordinary mutable read-model tables, not evidence: no guard triggers, and they can be
dropped and rebuilt from the log at any time. Types are chosen so that both backends hold
the same values: text ids, integer flags (0/1) and integer times (microseconds since the
Unix epoch, UTC).
"""

from __future__ import annotations

PROJECTION_TABLES = (
    "proj_tasks",
    "proj_participants",
    "proj_documents",
    "proj_anomalies",
    "proj_acts",
    "proj_positions",
)

#: Bumped whenever a table's columns change: a projector that finds another version in
#: ``proj_positions`` drops the read-model tables and rebuilds them from the log.
SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS proj_tasks (
    task_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    template_id TEXT,
    template_version {int},
    template_name TEXT,
    initiator TEXT,
    current_step TEXT,
    current_step_index {int},
    pending TEXT NOT NULL,
    pending_count {int} NOT NULL,
    created_at {time},
    submitted_at {time},
    finished_at {time},
    deadline {time},
    due_at {time},
    wake_at {time},
    steps {int} NOT NULL,
    steps_done {int} NOT NULL,
    signatures {int} NOT NULL,
    comments {int} NOT NULL,
    verifications {int} NOT NULL,
    anomalies {int} NOT NULL,
    last_sequence {int} NOT NULL,
    last_leaf_index {time} NOT NULL,
    department TEXT,
    returns {int} NOT NULL,
    electronic {int} NOT NULL
){without_rowid};
CREATE INDEX IF NOT EXISTS proj_tasks_wake_at ON proj_tasks (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS proj_tasks_status ON proj_tasks (status, task_id);
CREATE INDEX IF NOT EXISTS proj_tasks_initiator ON proj_tasks (initiator, task_id);
CREATE INDEX IF NOT EXISTS proj_tasks_changed ON proj_tasks (last_leaf_index);
CREATE TABLE IF NOT EXISTS proj_participants (
    task_id TEXT NOT NULL,
    step_index {int} NOT NULL,
    position {int} NOT NULL,
    step_key TEXT NOT NULL,
    step_title TEXT NOT NULL,
    role TEXT NOT NULL,
    mode TEXT NOT NULL,
    visit {int} NOT NULL,
    step_active {int} NOT NULL,
    step_done {int} NOT NULL,
    step_started_at {time},
    step_due_at {time},
    user_id TEXT NOT NULL,
    act TEXT,
    acted_at {time},
    viewed_at {time},
    read_at {time},
    reminders {int} NOT NULL,
    reminded_at {time},
    pending {int} NOT NULL,
    PRIMARY KEY (task_id, step_index, position)
){without_rowid};
CREATE INDEX IF NOT EXISTS proj_participants_pending ON proj_participants (user_id, task_id)
    WHERE pending = 1;
CREATE TABLE IF NOT EXISTS proj_documents (
    task_id TEXT NOT NULL,
    position {int} NOT NULL,
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size {time} NOT NULL,
    revisions {int} NOT NULL,
    current_sha256 TEXT NOT NULL,
    PRIMARY KEY (task_id, position)
){without_rowid};
CREATE TABLE IF NOT EXISTS proj_anomalies (
    task_id TEXT NOT NULL,
    position {int} NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (task_id, position)
){without_rowid};
CREATE TABLE IF NOT EXISTS proj_acts (
    leaf_index {time} PRIMARY KEY,
    task_id TEXT NOT NULL,
    sequence {int} NOT NULL,
    type TEXT NOT NULL,
    at {time} NOT NULL,
    actor_id TEXT NOT NULL,
    system {int} NOT NULL,
    step_index {int},
    step_key TEXT,
    pending_since {time},
    ip TEXT,
    connection_ip TEXT,
    device_id TEXT,
    platform TEXT,
    user_agent TEXT,
    mobile {int} NOT NULL,
    required_factors TEXT NOT NULL,
    missing_factors TEXT NOT NULL,
    in_turn {int} NOT NULL,
    self_act {int} NOT NULL,
    deadline {time},
    anomaly TEXT
){without_rowid};
CREATE TABLE IF NOT EXISTS proj_positions (
    name TEXT PRIMARY KEY,
    position {time} NOT NULL
)
"""


def statements(backend: str) -> list[str]:
    """DDL for ``"sqlite"`` or ``"postgres"`` (unqualified names: the search path's schema)."""
    if backend == "sqlite":
        # WITHOUT ROWID: the rows live in their primary key's b-tree, one insert per row
        # rather than two (the rowid table and the key's index).
        ddl = _DDL.format(int="INTEGER", time="INTEGER", without_rowid=" WITHOUT ROWID")
    else:
        ddl = _DDL.format(int="INTEGER", time="BIGINT", without_rowid="")
    return [s.strip() for s in ddl.split(";") if s.strip()]
