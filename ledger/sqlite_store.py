"""The embedded backend: one SQLite file, through eventsourcing's SQLite recorder.

Writes run in ``BEGIN IMMEDIATE`` transactions (the writer lock is taken before the first
read, so the head and tree size read are the ones the commit extends) with WAL and
``synchronous=FULL``: an acknowledged event has been fsynced.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTransaction,
)

from ledger import log_writer, schema
from ledger.errors import ConstraintViolation, StoreUnavailable
from ledger.events import Event
from ledger.store import BuildEvents, LedgerStore, Row

BUSY_TIMEOUT_SECONDS = 30


class _DurableConnectionPool(SQLiteConnectionPool):
    """eventsourcing's pool, with every connection made fully durable."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        return connection


class _ImmediateTransaction(SQLiteTransaction):
    """A write transaction that takes SQLite's writer lock before its first statement."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class _SQLiteWrite:
    """The :class:`~ledger.log_writer.Transaction` of one SQLite write."""

    def __init__(self, cursor: SQLiteCursor, recorder: LedgerSQLiteRecorder) -> None:
        self._cursor = cursor
        self._recorder = recorder

    def query(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        self._cursor.execute(sql, params)
        return list(self._cursor.fetchall())

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._cursor.executemany(sql, rows)

    def insert_events(self, events: Sequence[Event]) -> None:
        # The aggregate recorder's executemany insert: notification ids are not needed,
        # since the log's leaf index is the ledger's order.
        SQLiteAggregateRecorder._insert_events(
            self._recorder,
            self._cursor,
            [
                StoredEvent(
                    originator_id=e.stream_id,
                    originator_version=e.sequence,
                    topic=e.type,
                    state=e.canonical,
                )
                for e in events
            ],
        )


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's application recorder plus the ledger's log tables and guards."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *schema.sqlite_statements()]


class SQLiteLedgerStore(LedgerStore):
    """A :class:`LedgerStore` in one SQLite file."""

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.datastore = SQLiteDatastore(str(self.path), lock_timeout=BUSY_TIMEOUT_SECONDS)
        self.datastore.pool.close()
        self.datastore.pool = _DurableConnectionPool(
            db_name=str(self.path), lock_timeout=BUSY_TIMEOUT_SECONDS
        )
        self.recorder = LedgerSQLiteRecorder(self.datastore)
        try:
            self.recorder.create_table()
        except PersistenceError as exc:
            raise StoreUnavailable(f"cannot open the ledger database {self.path}: {exc}") from exc
        self._writer = log_writer.LogWriter(self._stream_key)

    @property
    def backend(self) -> str:
        return "sqlite"

    def _stream_key(self, stream_id: UUID) -> Any:
        return stream_id.hex

    def _stream_id(self, stored: Any) -> UUID:
        return UUID(str(stored))

    def _write(self, build: BuildEvents) -> tuple[int, list[Event]]:
        with self._writer.lock:
            try:
                with (
                    self.datastore.get_connection(commit=True) as connection,
                    _ImmediateTransaction(connection, commit=True) as cursor,
                ):
                    written = self._writer.write(_SQLiteWrite(cursor, self.recorder), build)
            except IntegrityError as exc:
                self._writer.forget()
                raise ConstraintViolation(f"the ledger database refused the rows: {exc}") from exc
            except PersistenceError as exc:
                self._writer.forget()
                raise StoreUnavailable(f"the ledger database refused the write: {exc}") from exc
            except BaseException:
                self._writer.forget()
                raise
            self._writer.committed(written)
        return written.first, written.events

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self.datastore.get_connection(commit=False) as connection:
                cursor = connection.cursor()
                cursor.execute(sql, params)
                rows: list[Row] = cursor.fetchall()
                return rows
        except (PersistenceError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot read the ledger database: {exc}") from exc

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.execute(sql, params)
        except IntegrityError as exc:
            raise ConstraintViolation(f"the ledger database refused the row: {exc}") from exc
        except PersistenceError as exc:
            raise StoreUnavailable(f"the ledger database refused the write: {exc}") from exc

    def claim_meta(self, key: str, value: str) -> str:
        self._execute("INSERT OR IGNORE INTO ledger_meta (key, value) VALUES (?, ?)", [key, value])
        stored = self.meta(key)
        assert stored is not None
        return stored

    def close(self) -> None:
        self.datastore.close()
