"""Many rows in one PostgreSQL statement give the same table as one statement per row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from ledger import sql_rows
from tests.conftest import TEST_DATABASE_URL

_TYPES = {"t": {"a": "bigint", "b": "text", "c": "bytea", "d": "uuid"}}


def test_an_insert_takes_one_array_per_placeholder_and_keeps_literals_and_its_tail() -> None:
    statement = sql_rows.rewrite(
        "INSERT INTO t (a, b, c) VALUES (?, ?, 'done') ON CONFLICT (a) DO NOTHING", _TYPES.get
    )
    assert statement == (
        "INSERT INTO t (a, b, c) SELECT u.c0, u.c1, 'done' "
        "FROM unnest(%b::bigint[], %b::text[]) AS u(c0, c1) ON CONFLICT (a) DO NOTHING"
    )


def test_a_one_key_delete_takes_an_array() -> None:
    assert sql_rows.rewrite("DELETE FROM t WHERE d = ?", _TYPES.get) == (
        "DELETE FROM t WHERE d = ANY(%b::uuid[])"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE t SET b = ? WHERE a = ?",
        "DELETE FROM t WHERE a = ? AND b = ?",
        "INSERT INTO t (a) SELECT x FROM unnest(?) AS x",
        "INSERT INTO t (a, b) VALUES (?, lower(?))",
        "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET b = ?",
    ],
)
def test_other_statements_are_left_to_one_statement_per_row(statement: str) -> None:
    assert sql_rows.rewrite(statement, _TYPES.get) is None


@pytest.fixture
def pg_cursor() -> Iterator[psycopg.Cursor[Any]]:
    from tests.conftest import require_postgres

    require_postgres()
    schema = f"rows_{uuid4().hex[:12]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            connection.execute(
                "CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT NOT NULL, c BYTEA, d UUID)"
            )
            yield connection.cursor()
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _table(cursor: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
    return cursor.execute("SELECT a, b, c, d FROM t ORDER BY a").fetchall()


@pytest.mark.postgres
def test_rows_as_arrays_store_what_one_statement_per_row_stores(
    pg_cursor: psycopg.Cursor[Any],
) -> None:
    rows = [(i, f"行 {i}", bytes([i % 256]) * 3, uuid4()) for i in range(30)]
    rows[3] = (3, "", None, None)  # NULLs, and an empty string
    rows[4] = (2**40, "x", b"", None)  # a bigint, and empty bytes
    sql_rows.execute_rows(pg_cursor, "INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?)", rows)
    assert _table(pg_cursor) == sorted(rows)

    sql_rows.execute_rows(
        pg_cursor,
        "INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?) ON CONFLICT (a) DO NOTHING",
        [(5, "changed", None, None), (30, "new", None, None)],
    )
    assert _table(pg_cursor) == sorted([*rows, (30, "new", None, None)])

    sql_rows.execute_rows(pg_cursor, "DELETE FROM t WHERE a = ?", [(i,) for i in range(0, 31, 2)])
    assert [r[0] for r in _table(pg_cursor)] == [*range(1, 30, 2), 2**40]

    # A column of nothing but NULLs still has its type.
    sql_rows.execute_rows(
        pg_cursor, "INSERT INTO t (a, b, d) VALUES (?, ?, ?)", [(40, "a", None), (41, "b", None)]
    )
    assert _table(pg_cursor)[-3:-1] == [(40, "a", None, None), (41, "b", None, None)]


@pytest.mark.postgres
def test_one_refused_row_refuses_them_all(pg_cursor: psycopg.Cursor[Any]) -> None:
    sql_rows.execute_rows(pg_cursor, "INSERT INTO t (a, b) VALUES (?, ?)", [(1, "one")])
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql_rows.execute_rows(
            pg_cursor, "INSERT INTO t (a, b) VALUES (?, ?)", [(2, "two"), (1, "again")]
        )
    with pytest.raises(psycopg.errors.NotNullViolation):
        sql_rows.execute_rows(
            pg_cursor, "INSERT INTO t (a, b) VALUES (?, ?)", [(3, "three"), (4, None)]
        )
    assert _table(pg_cursor) == [(1, "one", None, None)]
