"""The projector's own access to the ledger database, one small adapter per backend.

Both take ``?`` placeholders and return plain tuples. Writes run in one transaction that
first locks the projection's position row (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
``SELECT ... FOR UPDATE``), so two projectors of one database never interleave batches.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from ledger import sql_rows, sqlite_params
from ledger.store import LedgerStore

sqlite_params.install()

BUSY_TIMEOUT_MS = 30_000
# Any fixed 64-bit number: serialises concurrent creation of the projection tables.
_SCHEMA_LOCK_KEY = 0x50524F4A54534B53


class Transaction(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database(Protocol):
    backend: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def transaction(self, *, lock_schema: bool = False) -> Any: ...

    def stream_key(self, stream_id: UUID) -> Any: ...

    def task_id(self, stored: Any) -> str: ...

    def close(self) -> None: ...


class _SQLiteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._connection.execute(sql, params)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, rows)


class SQLiteDatabase:
    """One connection of the projector's own to the ledger's SQLite file.

    Its commits use ``synchronous=NORMAL`` (WAL): the projection is a read model, a crash
    can at most lose its last batches, never half of one, and they are re-applied from the
    stored position.
    """

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("PRAGMA cache_size=-65536")
        self._lock = threading.Lock()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self, *, lock_schema: bool = False) -> Iterator[Transaction]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTransaction(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def stream_key(self, stream_id: UUID) -> Any:
        return stream_id.hex

    def task_id(self, stored: Any) -> str:
        return str(UUID(hex=str(stored)))

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class _PostgresTransaction:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql_rows.pg(sql), params)
        return list(self._cursor.fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql_rows.pg(sql), params)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        sql_rows.execute_rows(self._cursor, sql, rows)


class PostgresDatabase:
    """The store's own connection pool (its search path is the store's schema)."""

    backend = "postgres"

    def __init__(self, datastore: Any) -> None:
        self._datastore = datastore

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg.rows

        with self._datastore.get_connection() as connection:
            cursor = connection.cursor(row_factory=psycopg.rows.tuple_row)
            return list(cursor.execute(sql_rows.pg(sql), params).fetchall())

    @contextmanager
    def transaction(self, *, lock_schema: bool = False) -> Iterator[Transaction]:
        import psycopg.rows

        with (
            self._datastore.get_connection() as connection,
            connection.transaction(),
            connection.cursor(row_factory=psycopg.rows.tuple_row) as cursor,
        ):
            if lock_schema:
                cursor.execute(b"SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK_KEY])
            yield _PostgresTransaction(cursor)

    def stream_key(self, stream_id: UUID) -> Any:
        return stream_id

    def task_id(self, stored: Any) -> str:
        return str(stored if isinstance(stored, UUID) else UUID(str(stored)))

    def close(self) -> None:
        """The pool belongs to the store."""


def database_for(store: LedgerStore) -> SQLiteDatabase | PostgresDatabase:
    """The projector's access to ``store``'s database."""
    if store.backend == "sqlite":
        from ledger.sqlite_store import SQLiteLedgerStore

        assert isinstance(store, SQLiteLedgerStore)
        return SQLiteDatabase(store.path)
    from ledger.postgres_store import PostgresLedgerStore

    assert isinstance(store, PostgresLedgerStore)
    return PostgresDatabase(store.datastore)
