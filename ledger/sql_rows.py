"""Many rows in one PostgreSQL statement, their values sent as binary arrays.

psycopg's ``executemany`` sends its rows in one round trip, but the server still binds
and executes one statement per row, and psycopg's text dumping of arrays and composite
values is pure Python. :func:`execute_rows` instead sends each column as one binary array
(dumped by psycopg's C code) into a statement of a fixed text, prepared once:

* ``INSERT INTO t (a, b) VALUES (?, ?) [tail]`` becomes
  ``INSERT INTO t (a, b) SELECT u.c0, u.c1 FROM unnest($1::T[], $2::T[]) AS u(c0, c1) [tail]``;
* ``DELETE FROM t WHERE k = ?`` becomes ``DELETE FROM t WHERE k = ANY($1::T[])``.

The arrays are cast to the columns' own types, read once per table from PostgreSQL's
catalogue. Same rows, same outcome: a refused row refuses the whole statement, and with
it the transaction, as it would one statement per row.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol

_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^()]*)\)\s*VALUES\s*\(([^()]*)\)(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+(\w+)\s+WHERE\s+(\w+)\s*=\s*\?\s*$", re.IGNORECASE)
_COLUMN_TYPES = (
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped"
)


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = None) -> Any: ...

    def executemany(self, query: Any, params_seq: Any) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Plans:
    """The rewritten statements, and the column types they cast to, per process.

    Keyed by table name: the ledger creates each of its tables from one definition, in
    whichever schema it lives.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}
        self._statements: dict[str, str | None] = {}

    def statement(self, cursor: Cursor, sql: str) -> str | None:
        if sql not in self._statements:
            found = rewrite(sql, lambda table: self._column_types(cursor, table))
            with self._lock:
                self._statements[sql] = found
        return self._statements[sql]

    def _column_types(self, cursor: Cursor, table: str) -> dict[str, str]:
        if table not in self._types:
            cursor.execute(_COLUMN_TYPES, [table])
            rows = [tuple(r.values()) if isinstance(r, dict) else r for r in cursor.fetchall()]
            if not rows:
                raise LookupError(f"no table {table!r} on the search path")
            with self._lock:
                self._types[table] = {str(name): str(kind) for name, kind in rows}
        return self._types[table]


_PLANS = _Plans()


def rewrite(sql: str, column_types: Any) -> str | None:
    """``sql`` (``?`` placeholders) for arrays of rows, or ``None`` if it is neither a
    one-row ``INSERT ... VALUES`` nor a one-key ``DELETE``. ``column_types(table)`` gives
    each column's type name."""
    insert = _INSERT.match(sql)
    if insert is not None:
        table, columns_text, values_text, tail = insert.groups()
        columns = [c.strip() for c in columns_text.split(",")]
        values = [v.strip() for v in values_text.split(",")]
        if len(columns) != len(values) or "?" in tail:
            return None
        types = column_types(table)
        arrays: list[str] = []
        selected: list[str] = []
        for column, value in zip(columns, values, strict=True):
            if value == "?":
                selected.append(f"u.c{len(arrays)}")
                arrays.append(f"%b::{types[column]}[]")
            else:
                selected.append(value)
        names = ", ".join(f"c{i}" for i in range(len(arrays)))
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(selected)} "
            f"FROM unnest({', '.join(arrays)}) AS u({names}){tail}"
        )
    delete = _DELETE.match(sql)
    if delete is not None:
        table, column = delete.groups()
        return f"DELETE FROM {table} WHERE {column} = ANY(%b::{column_types(table)[column]}[])"
    return None


def execute_rows(cursor: Cursor, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``sql`` (``?`` placeholders) once per row of ``rows``: one statement if
    :func:`rewrite` knows it, else psycopg's ``executemany``."""
    if not rows:
        return
    if len(rows) == 1:
        cursor.execute(pg(sql), rows[0])
        return
    statement = _PLANS.statement(cursor, sql)
    if statement is None:
        cursor.executemany(pg(sql), rows)
        return
    cursor.execute(statement.encode(), [list(column) for column in zip(*rows, strict=True)])


def pg(sql: str) -> bytes:
    """``sql`` with ``?`` placeholders in psycopg's ``%s`` form, encoded."""
    return sql.replace("?", "%s").encode()
