"""Reading PostgreSQL's plans of the ledger's statements, as a generic plan would run them.

psycopg prepares a statement run often, and PostgreSQL may then plan it once for any
parameter values (a generic plan) and keep that plan while the tables grow. Tests here
force such a plan and check that it reads by index, not whole tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql


@contextmanager
def schema_connection(url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the database of ``url`` (``…?schema=name``), its search
    path set to that schema."""
    base, schema = re.fullmatch(r"(.*)[?&]schema=([^&]*)", url).groups()  # type: ignore[union-attr]
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        yield connection


def numbered(statement: str) -> str:
    """``?`` placeholders as ``$1``, ``$2``, ... for PREPARE."""
    count = iter(range(1, 100))
    return re.sub(r"\?", lambda _: f"${next(count)}", statement)


def generic_plan(
    connection: psycopg.Connection[Any], name: str, statement: str, values: str
) -> str:
    connection.execute("SET plan_cache_mode = force_generic_plan")
    connection.execute(f"PREPARE {name} AS {numbered(statement)}")
    return "\n".join(row[0] for row in connection.execute(f"EXPLAIN EXECUTE {name}({values})"))


def whole_scans(plan: str) -> list[str]:
    """The plan's scans that read a whole table or index: those with no index condition."""
    lines = plan.splitlines()
    return [
        line.strip()
        for i, line in enumerate(lines)
        if " Scan " in line and not (i + 1 < len(lines) and "Index Cond" in lines[i + 1])
    ]


def fill(
    connection: psycopg.Connection[Any], table: str, rows: int, special: dict[str, str]
) -> None:
    """``rows`` rows of made-up values, ``special`` giving some columns' expressions."""
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
        elif kind == "bytea":
            values.append("'\\x00'::bytea")
        else:
            values.append("'x' || g")
    connection.execute(
        sql.SQL("INSERT INTO {} SELECT {} FROM generate_series(1, {}) g").format(
            sql.Identifier(table), sql.SQL(", ".join(values)), sql.Literal(rows)
        )
    )
    connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
