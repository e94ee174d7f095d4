"""The production backend: PostgreSQL through psycopg and eventsourcing's PostgreSQL recorder.

Every append takes eventsourcing's ``EXCLUSIVE`` lock on ``stored_events`` first, so
appends from any number of workers and hosts are serialised: leaf indices follow commit
order without gaps, while readers (proofs, checkpoints) are never blocked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import psycopg
import psycopg.rows
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg.sql import SQL, Identifier

from ledger import log_writer, schema
from ledger.errors import ConfigurationError, ConstraintViolation, StoreUnavailable
from ledger.events import Event
from ledger.store import BuildEvents, LedgerStore, Row

# Any fixed 64-bit number: serialises concurrent first starts creating the schema.
_SCHEMA_LOCK_KEY = 0x45564C4544474552


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _LedgerPostgresDatastore(PostgresDatastore):
    """eventsourcing's datastore, with each connection's search path set to the schema.

    The ledger's own statements name tables unqualified, so one database can hold
    several ledgers in separate schemas.
    """

    def after_connect_func(self) -> Callable[[psycopg.Connection[Any]], None]:
        configure = super().after_connect_func()
        statement = SQL("SET search_path TO {0}").format(Identifier(self.schema))

        def after_connect(connection: psycopg.Connection[Any]) -> None:
            configure(connection)
            connection.execute(statement)

        return after_connect


def datastore_from_url(url: str, *, pool_size: int = 4) -> PostgresDatastore:
    """A datastore for ``postgresql://user:password@host:port/dbname?schema=name``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError(f"not a PostgreSQL URL: scheme {parsed.scheme!r}")
    dbname = unquote(parsed.path.lstrip("/"))
    if not dbname:
        raise ConfigurationError("the PostgreSQL URL names no database")
    options = parse_qs(parsed.query)
    return _LedgerPostgresDatastore(
        dbname=dbname,
        host=parsed.hostname or "localhost",
        port=parsed.port or 5432,
        user=unquote(parsed.username or "postgres"),
        password=unquote(parsed.password or ""),
        schema=options.get("schema", [""])[0],
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_timeout=10.0,
        lock_timeout=30,
    )


class _PostgresWrite:
    """The :class:`~ledger.log_writer.Transaction` of one PostgreSQL write."""

    def __init__(self, cursor: psycopg.Cursor[Any], recorder: LedgerPostgresRecorder) -> None:
        self._cursor = cursor
        self._recorder = recorder

    def query(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        self._cursor.execute(_pg(sql), params)
        return [tuple(row.values()) for row in self._cursor.fetchall()]

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._cursor.executemany(_pg(sql), rows)

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self._cursor.execute(_pg(sql), params)

    def insert_events(self, events: Sequence[Event]) -> None:
        # eventsourcing's unnest() insert, without its own table lock (already held).
        PostgresAggregateRecorder._insert_stored_events(
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


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """eventsourcing's application recorder; the ledger adds its tables beside it."""


class PostgresLedgerStore(LedgerStore):
    """A :class:`LedgerStore` in one PostgreSQL database (or schema)."""

    def __init__(self, url: str, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(clock)
        self.url = url
        self.datastore = datastore_from_url(url)
        try:
            self.recorder = LedgerPostgresRecorder(self.datastore)
            self._create_tables()
        except PersistenceError as exc:
            self.datastore.close()
            raise StoreUnavailable(f"cannot open the PostgreSQL ledger: {exc}") from exc
        self._writer = log_writer.LogWriter(self._stream_key, self._event_key)

    def _create_tables(self) -> None:
        """Create the tables, one process at a time: concurrent ``CREATE ... IF NOT EXISTS``
        can fail in PostgreSQL's catalog ("tuple concurrently updated"), so a session
        advisory lock, held on its own connection, covers eventsourcing's tables and ours."""
        with self.datastore.get_connection() as holder:
            holder.execute(SQL("SELECT pg_advisory_lock(%s)"), [_SCHEMA_LOCK_KEY])
            try:
                self.recorder.create_table()
                with self.datastore.transaction(commit=True) as cursor:
                    for statement in schema.postgres_statements(self.datastore.schema):
                        cursor.execute(statement.encode(), prepare=False)
            finally:
                holder.execute(SQL("SELECT pg_advisory_unlock(%s)"), [_SCHEMA_LOCK_KEY])

    @property
    def backend(self) -> str:
        return "postgres"

    def _stream_key(self, stream_id: UUID) -> Any:
        return stream_id

    def _stream_id(self, stored: Any) -> UUID:
        return stored if isinstance(stored, UUID) else UUID(str(stored))

    def _event_key(self, event_id: UUID) -> Any:
        return event_id

    def _event_id(self, stored: Any) -> UUID:
        return stored if isinstance(stored, UUID) else UUID(str(stored))

    def _write_transaction(
        self, build: BuildEvents, also: log_writer.AlsoWrite | None = None
    ) -> log_writer.Written:
        with (
            self.datastore.get_connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            self.recorder._lock_table(cursor)
            return self._writer.write(_PostgresWrite(cursor, self.recorder), build, also)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self.datastore.get_connection() as connection:
                return list(connection.execute(_pg(sql).encode(), params).fetchall())
        except PersistenceError as exc:
            raise StoreUnavailable(f"cannot read the ledger database: {exc}") from exc

    def _tuples(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            with self.datastore.get_connection() as connection:
                cursor = connection.cursor(row_factory=psycopg.rows.tuple_row)
                return list(cursor.execute(_pg(sql).encode(), params).fetchall())
        except PersistenceError as exc:
            raise StoreUnavailable(f"cannot read the ledger database: {exc}") from exc

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.execute(_pg(sql).encode(), params)
        except IntegrityError as exc:
            raise ConstraintViolation(f"the ledger database refused the row: {exc}") from exc
        except PersistenceError as exc:
            raise StoreUnavailable(f"the ledger database refused the write: {exc}") from exc

    def claim_meta(self, key: str, value: str) -> str:
        self._execute(
            "INSERT INTO ledger_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            [key, value],
        )
        stored = self.meta(key)
        assert stored is not None
        return stored

    def close(self) -> None:
        self.datastore.close()
