"""The KPI facts refresh reads what changed by index on PostgreSQL, whatever its plan.

psycopg prepares a statement run often, and PostgreSQL may then plan it once for any
parameter values (a generic plan), and keep that plan once chosen while the tables grow.
For such a plan the refresh must not read whole tables: with 100,000 tasks the changed-tasks
query took 60-80 ms per refresh, once a second per worker, against under 1 ms by index;
with 300,000 checkpoints the checkpoint read took about 40 ms against 0.3 ms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger.postgres_store import PostgresLedgerStore
from projections import TaskProjection, facts
from tests.pg_plans import fill, generic_plan, schema_connection, whole_scans

pytestmark = pytest.mark.postgres


@pytest.fixture
def tables(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh schema holding the ledger's and the projection's tables."""
    store = PostgresLedgerStore(postgres_url)
    try:
        TaskProjection(store).close()
    finally:
        store.close()
    with schema_connection(postgres_url) as connection:
        yield connection


def test_changed_tasks_are_read_by_index_under_a_generic_plan(
    tables: psycopg.Connection[Any],
) -> None:
    fill(tables, "proj_tasks", 100_000, {"task_id": "'t' || g", "last_leaf_index": "g * 10"})
    fill(
        tables,
        "proj_participants",
        300_000,
        {"task_id": "'t' || (g / 3 + 1)", "pending": "g % 2", "step_index": "g % 3",
         "position": "g % 3"},
    )  # fmt: skip
    for name, statement in [("tasks", facts._CHANGED_TASKS), ("pending", facts._CHANGED_PENDING)]:
        assert statement.count("?") == 2  # a lower and an upper leaf bound
        plan = generic_plan(tables, name, f"{statement} AND 1 = 1", "999000, 1000010")
        assert not whole_scans(plan), plan
        assert "proj_tasks_changed" in plan, plan


def test_checkpoints_are_read_by_index_under_a_generic_plan(
    tables: psycopg.Connection[Any],
) -> None:
    for table in ("ledger_checkpoints", "ledger_checkpoint_timestamps"):
        fill(tables, table, 300_000, {"tree_size": "g * 3"})
    for name, statement in [
        ("checkpoints", facts._CHECKPOINTS_FROM),
        ("stamps", facts._TIMESTAMPS_FROM),
    ]:
        plan = generic_plan(tables, name, statement, f"899990, {facts._NO_END}")
        assert not whole_scans(plan), plan
        assert "Index Cond: ((tree_size >= $1) AND (tree_size < $2))" in plan, plan
