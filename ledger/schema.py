"""Tables the ledger keeps beside eventsourcing's ``stored_events``, for both backends.

``stored_events`` (eventsourcing's own table) holds each event's canonical bytes keyed by
stream and sequence. The tables here hold the Merkle log: one row per leaf (with its hash),
one row per complete subtree above the leaves, the signed checkpoints, their timestamp
tokens and a little metadata. Every one of them is append-only: :data:`GUARDED_TABLES` are
refused UPDATE and DELETE.
"""

from __future__ import annotations

EVENTS_TABLE = "stored_events"
GUARDED_TABLES = (
    EVENTS_TABLE,
    "ledger_log",
    "ledger_nodes",
    "ledger_checkpoints",
    "ledger_checkpoint_timestamps",
    "ledger_meta",
)

_TABLES = """
CREATE TABLE IF NOT EXISTS ledger_log (
    leaf_index {int} PRIMARY KEY,
    event_id {uuid} NOT NULL UNIQUE,
    stream_id {stream} NOT NULL,
    sequence {int} NOT NULL,
    leaf_hash {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_nodes (
    node_id {int} PRIMARY KEY,
    hash {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    tree_size {int} PRIMARY KEY,
    root_hash {blob} NOT NULL,
    note TEXT NOT NULL,
    previous_size {int},
    consistency_proof {blob} NOT NULL,
    signed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_checkpoint_timestamps (
    tree_size {int} PRIMARY KEY,
    response_der {blob} NOT NULL,
    gen_time TEXT NOT NULL,
    tsa_url TEXT NOT NULL,
    tsa_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""


# SQLite's INSERT OR REPLACE deletes a clashing row without firing DELETE triggers (unless
# the writer's own connection enables recursive_triggers), so the tables holding evidence
# get a trigger refusing an insert that clashes with a stored row's key. The log's leaf
# and node rows go without: the audit rebuilds and compares every one of them, and a
# probe per row on the append path would cost about a tenth of its time.
_SQLITE_UNIQUE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    EVENTS_TABLE: (("originator_id", "originator_version"),),
    "ledger_log": (),
    "ledger_nodes": (),
    "ledger_checkpoints": (("tree_size",),),
    "ledger_checkpoint_timestamps": (("tree_size",),),
    "ledger_meta": (("key",),),
}


def sqlite_statements() -> list[str]:
    """DDL for SQLite: integer keys are rowid aliases, stream ids are hex like eventsourcing's."""
    tables = _TABLES.format(int="INTEGER", blob="BLOB", stream="TEXT", uuid="BLOB")
    statements = [s.strip() for s in tables.split(";") if s.strip()]
    for table in GUARDED_TABLES:
        for action in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} "
                f"BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )
        # ledger_meta is claimed with INSERT OR IGNORE: a clash there is ignored, not refused.
        outcome = (
            "IGNORE"
            if table == "ledger_meta"
            else f"ABORT, '{table} is append-only: REPLACE refused'"
        )
        for number, columns in enumerate(_SQLITE_UNIQUE_KEYS[table]):
            match = " AND ".join(f"{c} = NEW.{c}" for c in columns)
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace_{number} "
                f"BEFORE INSERT ON {table} WHEN EXISTS (SELECT 1 FROM {table} WHERE {match}) "
                f"BEGIN SELECT RAISE({outcome}); END"
            )
    return statements


def postgres_statements(schema: str) -> list[str]:
    """DDL for PostgreSQL, including the triggers that refuse UPDATE, DELETE and TRUNCATE."""
    tables = _TABLES.format(int="BIGINT", blob="BYTEA", stream="UUID", uuid="UUID")
    statements = [
        s.strip().replace("CREATE TABLE IF NOT EXISTS ", f'CREATE TABLE IF NOT EXISTS "{schema}".')
        for s in tables.split(";")
        if s.strip()
    ]
    statements.append(
        f'CREATE OR REPLACE FUNCTION "{schema}".ledger_refuse_change() RETURNS trigger '
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP "
        "USING ERRCODE = 'insufficient_privilege'; "
        "END $$"
    )
    for table in GUARDED_TABLES:
        for suffix, event in (("row", "UPDATE OR DELETE"), ("truncate", "TRUNCATE")):
            level = "FOR EACH ROW" if suffix == "row" else "FOR EACH STATEMENT"
            statements.append(
                f"CREATE OR REPLACE TRIGGER {table}_append_only_{suffix} BEFORE {event} "
                f'ON "{schema}".{table} {level} '
                f'EXECUTE FUNCTION "{schema}".ledger_refuse_change()'
            )
    return statements
