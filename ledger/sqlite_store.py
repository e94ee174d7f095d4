"""The embedded backend: one SQLite file, through eventsourcing's SQLite recorder.

Writes run in ``BEGIN IMMEDIATE`` transactions (the writer lock is taken before the first
read, so the head and tree size read are the ones the commit extends) with WAL and
``synchronous=FULL``: an acknowledged event has been fsynced.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTransaction,
)

from ledger import log_writer, schema, sqlite_params
from ledger.errors import ConstraintViolation, StoreUnavailable
from ledger.events import Event
from ledger.store import BuildEvents, LedgerStore, Row

sqlite_params.install()

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

    def size(self) -> int:
        return log_writer.size_from(self.query(log_writer.SELECT_SIZE, []))

    def confirm(self) -> None:
        """Each statement has run when it returns."""

    def query(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        self._cursor.execute(sql, params)
        return list(self._cursor.fetchall())

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._cursor.executemany(sql, rows)

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self._cursor.execute(sql, params)

    def heads(self, stream_keys: Sequence[Any]) -> list[Sequence[Any]]:
        # In-process: a statement per stream costs no round trip.
        found: list[Sequence[Any]] = []
        for key in stream_keys:
            self._cursor.execute(log_writer.SELECT_HEAD, [key])
            row = self._cursor.fetchone()
            if row is not None:
                found.append((key, row[0], row[1]))
        return found

    def insert_events(self, events: Sequence[Event]) -> None:
        # eventsourcing's own insert statement, run once for the batch: notification ids
        # are not needed (the log's leaf index is the ledger's order), and the rows are
        # what its recorder would write for these stored events.
        self._cursor.executemany(
            self._recorder.insert_events_statement,
            [(e.stream_id.hex, e.sequence, e.type, e.canonical) for e in events],
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
        self._writer = log_writer.LogWriter(self._stream_key, self._event_key, self._stream_id)
        self._readers = threading.local()
        self._reader_lock = threading.Lock()
        self._reader_connections: list[sqlite3.Connection] = []

    @property
    def backend(self) -> str:
        return "sqlite"

    def _stream_key(self, stream_id: UUID) -> Any:
        return stream_id.hex

    def _stream_id(self, stored: Any) -> UUID:
        return UUID(str(stored))

    def _event_key(self, event_id: UUID) -> Any:
        return event_id.bytes

    def _event_id(self, stored: Any) -> UUID:
        return UUID(bytes=bytes(stored))

    def _write_transaction(
        self, build: BuildEvents, also: log_writer.AlsoWrite | None = None
    ) -> log_writer.Written:
        with (
            self.datastore.get_connection(commit=True) as connection,
            _ImmediateTransaction(connection, commit=True) as cursor,
        ):
            return self._writer.write(_SQLiteWrite(cursor, self.recorder), build, also)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self.datastore.get_connection(commit=False) as connection:
                cursor = connection.cursor()
                cursor.execute(sql, params)
                rows: list[Row] = cursor.fetchall()
                return rows
        except (PersistenceError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot read the ledger database: {exc}") from exc

    def _tuples(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        # Proofs read through one read-only connection per thread, outside the pool: in WAL
        # mode each statement sees a committed snapshot, and the pool's locking would cost
        # more than the read itself.
        connection: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        try:
            if connection is None:
                connection = sqlite3.connect(self.path, check_same_thread=False)
                connection.execute("PRAGMA query_only=1")
                connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
                self._readers.connection = connection
                with self._reader_lock:
                    self._reader_connections.append(connection)
            return connection.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
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
        with self._reader_lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
        self._readers = threading.local()
        self.datastore.close()
