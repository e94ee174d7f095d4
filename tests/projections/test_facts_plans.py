"""The KPI facts refresh reads changed tasks by index on PostgreSQL, whatever its plan.

psycopg prepares a statement run often, and PostgreSQL may then plan it once for any
parameter values (a generic plan). For such a plan the changed-tasks query must not read
every participant row: with 100,000 tasks that took 60-80 ms per refresh, once a second per
worker, against under 1 ms by index.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.postgres_store import PostgresLedgerStore
from projections import TaskProjection, facts
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.postgres


def _numbered(statement: str) -> str:
    """``?`` placeholders as ``$1``, ``$2``, ... for PREPARE."""
    count = iter(range(1, 100))
    return re.sub(r"\?", lambda _: f"${next(count)}", statement)


def _fill(
    connection: psycopg.Connection[Any], table: str, rows: int, special: dict[str, str]
) -> None:
    columns = connection.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        [table],
    ).fetchall()
    values = []
    for name, kind, nullable in columns:
        if name in special:
            values.append(special[name])
        elif nullable == "YES":
            values.append("NULL")
        elif kind in ("bigint", "integer", "smallint"):
            values.append("g")
        else:
            values.append("'x' || g")
    connection.execute(
        sql.SQL("INSERT INTO {} SELECT {} FROM generate_series(1, {}) g").format(
            sql.Identifier(table), sql.SQL(", ".join(values)), sql.Literal(rows)
        )
    )


def test_changed_tasks_are_read_by_index_under_a_generic_plan(postgres_url: str) -> None:
    schema = postgres_url.rsplit("schema=", 1)[1]
    store = PostgresLedgerStore(postgres_url)
    try:
        TaskProjection(store).close()  # makes the projection tables
    finally:
        store.close()
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        _fill(
            connection, "proj_tasks", 100_000, {"task_id": "'t' || g", "last_leaf_index": "g * 10"}
        )
        _fill(
            connection,
            "proj_participants",
            300_000,
            {"task_id": "'t' || (g / 3 + 1)", "pending": "g % 2", "step_index": "g % 3",
             "position": "g % 3"},
        )  # fmt: skip
        connection.execute("ANALYZE proj_tasks")
        connection.execute("ANALYZE proj_participants")
        connection.execute("SET plan_cache_mode = force_generic_plan")
        for name, statement in [
            ("tasks", facts._CHANGED_TASKS),
            ("pending", facts._CHANGED_PENDING),
        ]:
            connection.execute(f"PREPARE {name} AS {_numbered(statement)} AND 1 = 1")
            assert statement.count("?") == 2  # a lower and an upper leaf bound
            plan = "\n".join(
                row[0] for row in connection.execute(f"EXPLAIN EXECUTE {name}(999000, 1000010)")
            )
            assert "Seq Scan" not in plan, plan
            assert "proj_tasks_changed" in plan, plan
