"""A tenant's task list and KPI facts read what they return, not every task it owns.

Both once kept a tenant's tasks with ``task_id IN (SELECT stream_id FROM api_streams WHERE
tenant_id = ?)``, which read all of the tenant's task ids for every statement: on SQLite,
with 100,000 tasks, 25-45 ms a page of the task list and about 70 ms for each of the KPI
refresh's three statements (once a second per worker and tenant). The statements the API
runs are recorded here and their plans read: on SQLite as planned, on PostgreSQL as a
generic plan over a large made-up tenant.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from psycopg import sql

from projections.database import PostgresDatabase, SQLiteDatabase
from tests.api.conftest import ApiWorld, create_task
from tests.pg_plans import fill, generic_plan, schema_connection, whole_scans

Recorded = list[tuple[str, list[Any]]]


def _record(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    seen: Recorded = []
    for cls in (SQLiteDatabase, PostgresDatabase):

        def query(
            self: Any, statement: str, params: Any = (), _query: Any = cls.query
        ) -> list[tuple[Any, ...]]:
            seen.append((statement, list(params)))
            return _query(self, statement, params)  # type: ignore[no-any-return]

        monkeypatch.setattr(cls, "query", query)
    return seen


def _tenant_reads(api: ApiWorld, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """The statements naming the tenants' ownership table, as the API ran them."""
    for _ in range(3):
        create_task(api, api.a)
    seen = _record(monkeypatch)
    app = api.a.auth("app")
    first = api.client.get("/v1/tasks", params={"limit": 2}, headers=app)
    assert first.status_code == 200, first.text
    assert len(first.json()["tasks"]) == 2 and first.json()["next"]
    rest = api.client.get(
        "/v1/tasks", params={"limit": 2, "after": first.json()["next"]}, headers=app
    )
    assert rest.status_code == 200 and len(rest.json()["tasks"]) == 1
    pages = first.json()["tasks"] + rest.json()["tasks"]
    assert [t["task_id"] for t in pages] == sorted(t["task_id"] for t in pages)
    status = pages[0]["status"]
    filtered = api.client.get("/v1/tasks", params={"status": status}, headers=app)
    assert filtered.status_code == 200
    assert [t["task_id"] for t in filtered.json()["tasks"]] == [t["task_id"] for t in pages]
    none = api.client.get("/v1/tasks", params={"status": "revoked"}, headers=app)
    assert none.status_code == 200 and none.json()["tasks"] == []
    views = api.client.get("/v1/kpis", headers=api.a.auth("compliance"))
    assert views.status_code == 200, views.text
    owned = [(s, p) for s, p in seen if "api_streams" in s]
    tables = {t for s, _ in owned for t in ("proj_acts", "proj_participants") if t in s}
    assert tables == {"proj_acts", "proj_participants"}, "no KPI refresh read"
    assert any("LIMIT" in s and "proj_tasks" in s for s, _ in owned), "no task list read"
    return owned


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_on_sqlite_a_tenants_reads_walk_keys(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = _tenant_reads(api, monkeypatch)
    path = api.ledger.store.path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as connection:
        for statement, params in owned:
            plan = [r[-1] for r in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            assert not any("LIST SUBQUERY" in step for step in plan), (statement, plan)
            assert not any(step.startswith("SCAN") for step in plan), (statement, plan)
            assert any("api_streams" in step and "SEARCH" in step for step in plan), plan


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_on_postgresql_a_tenants_reads_walk_keys_under_a_generic_plan(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = _tenant_reads(api, monkeypatch)
    url = api.ledger.settings.database_url
    assert url is not None
    with schema_connection(url) as connection:
        tenant = sql.Literal(api.a.tenant_id).as_string(connection)
        # One tenant with 100,000 tasks and 300,000 acts, so a plan that reads a whole
        # tenant or table costs what it would in use.
        fill(connection, "api_streams", 100_000, {"tenant_id": tenant})
        fill(connection, "proj_tasks", 100_000, {"last_leaf_index": "g * 3"})
        fill(
            connection,
            "proj_acts",
            300_000,
            {"leaf_index": "g + 1000000", "task_id": "'x' || (g / 3)"},
        )
        fill(
            connection, "proj_participants", 300_000, {"task_id": "'x' || (g / 3)", "pending": "1"}
        )
        for number, (statement, params) in enumerate(owned):
            values = ", ".join(sql.Literal(v).as_string(connection) for v in params)
            plan = generic_plan(connection, f"read_{number}", statement, values)
            if "LIMIT" in statement and "> ?" not in statement:
                # A first page starts at the first task; its limit stops the read.
                assert plan.lstrip().startswith("Limit"), plan
                continue
            assert whole_scans(plan) == [], (statement, plan)
