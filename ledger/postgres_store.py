"""The production backend: PostgreSQL through psycopg and eventsourcing's PostgreSQL recorder.

Every append takes eventsourcing's ``EXCLUSIVE`` lock on ``stored_events`` first, so
appends from any number of workers and hosts are serialised: leaf indices follow commit
order without gaps, while readers (proofs, checkpoints) are never blocked.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import psycopg
import psycopg.rows
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier

from ledger import log_writer, schema, sql_rows
from ledger.errors import (
    ConfigurationError,
    ConstraintViolation,
    SealerLockLost,
    StoreUnavailable,
)
from ledger.events import Event
from ledger.sealer import SealerLock
from ledger.store import BuildEvents, LedgerStore, Row, StoredCheckpoint, checkpoint_row

# Any fixed 64-bit number: serialises concurrent first starts creating the schema.
_SCHEMA_LOCK_KEY = 0x45564C4544474552

# The sealer lock uses PostgreSQL's two-key form (int4, int4), a key space apart from the
# one-key (bigint) form of the schema lock: this fixed class, and the schema's own key.
SEALER_LOCK_CLASS = 0x45564C53


_SELECT_HEADS = SQL(
    "SELECT h.originator_id, h.originator_version, h.state FROM unnest(%s::uuid[]) AS k(id) "
    "CROSS JOIN LATERAL (SELECT originator_id, originator_version, state FROM stored_events "
    "WHERE originator_id = k.id ORDER BY originator_version DESC LIMIT 1) AS h"
)


_INSERT_EVENTS = (
    "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
    "VALUES (?, ?, ?, ?)"
)


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


def _parse_url(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError(f"not a PostgreSQL URL: scheme {parsed.scheme!r}")
    dbname = unquote(parsed.path.lstrip("/"))
    if not dbname:
        raise ConfigurationError("the PostgreSQL URL names no database")
    options = parse_qs(parsed.query)
    return {
        "dbname": dbname,
        "host": parsed.hostname or "localhost",
        "port": parsed.port or 5432,
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password or ""),
        "schema": options.get("schema", [""])[0],
    }


def ledger_location(url: str) -> str:
    """Which ledger ``url`` names, without its credentials: ``host:port/dbname/schema``."""
    parts = _parse_url(url)
    return f"{parts['host']}:{parts['port']}/{parts['dbname']}/{parts['schema']}"


def datastore_from_url(url: str, *, pool_size: int = 4) -> PostgresDatastore:
    """A datastore for ``postgresql://user:password@host:port/dbname?schema=name``."""
    return _LedgerPostgresDatastore(
        **_parse_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_timeout=10.0,
        lock_timeout=30,
    )


class _PostgresWrite:
    """The :class:`~ledger.log_writer.Transaction` of one PostgreSQL write."""

    def __init__(self, cursor: psycopg.Cursor[Any], size: int, pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._size = size
        self._pipeline = pipeline
        self._refused = False
        """A statement raised what refused it (or one sent before it): the pipeline holds
        nothing more to confirm, and the transaction only rolls back."""

    @contextlib.contextmanager
    def _statement(self) -> Iterator[None]:
        # In pipeline mode an error can come back with any later statement, as psycopg
        # reads what has arrived while it sends.
        try:
            yield
        except psycopg.Error:
            self._refused = True
            raise

    def size(self) -> int:
        return self._size

    def confirm(self) -> None:
        if not self._refused:
            with self._statement():
                self._pipeline.sync()

    def _read(self, sql: str | SQL, params: Sequence[Any]) -> list[Sequence[Any]]:
        with self._statement():
            self._cursor.execute(sql, params)
            return [tuple(row.values()) for row in self._cursor.fetchall()]

    def query(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return self._read(_pg(sql), params)

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._statement():
            sql_rows.execute_rows(self._cursor, sql, rows)

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        with self._statement():
            self._cursor.execute(_pg(sql), params)

    def heads(self, stream_keys: Sequence[Any]) -> list[Sequence[Any]]:
        # One statement, one backward index probe per stream (as SELECT_HEAD does), planned
        # the same whatever the table's statistics say.
        return self._read(_SELECT_HEADS, [list(stream_keys)])

    def insert_events(self, events: Sequence[Event]) -> None:
        # The rows eventsourcing's own insert writes (without its table lock: already held),
        # sent as arrays (see ledger.sql_rows), not as an array of composite values.
        with self._statement():
            sql_rows.execute_rows(
                self._cursor,
                _INSERT_EVENTS,
                [(e.stream_id, e.sequence, e.type, e.canonical) for e in events],
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
        self._writer = log_writer.LogWriter(self._stream_key, self._event_key, self._stream_id)
        self._lock_and_size = SQL("; ").join(
            [*self.recorder.lock_table_statements, SQL(log_writer.SELECT_SIZE)]
        )

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
            # eventsourcing's lock statements and the size, in one round trip (the simple
            # query protocol runs several statements; the last one's rows are the size).
            cursor.execute(self._lock_and_size, prepare=False)
            for _ in self.recorder.lock_table_statements:
                cursor.nextset()
            size = log_writer.size_from([tuple(r.values()) for r in cursor.fetchall()])
            # The rest in pipeline mode: statements whose rows are not needed (the inserts)
            # go out without waiting for their answers; reading rows, or the end of the
            # block, waits for everything sent before (and raises any error it met).
            with connection.pipeline() as pipeline:
                return self._writer.write(_PostgresWrite(cursor, size, pipeline), build, also)

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


def sealer_lock_key(schema: str) -> tuple[int, int]:
    """The advisory lock key of the sealer of the ledger in ``schema`` (``""``: public).

    Advisory locks are per database, so each schema's ledger gets its own second key, a
    digest of the schema name (31 bits, so it reads the same as an ``oid`` in ``pg_locks``).
    """
    digest = hashlib.sha256(schema.encode()).digest()
    return SEALER_LOCK_CLASS, int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


_HOLDS_SEALER_LOCK = SQL(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid() AND granted AND classid = %s::oid AND objid = %s::oid "
    "AND objsubid = 2 AND database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()))"
)
_INSERT_CHECKPOINT = SQL(
    "INSERT INTO ledger_checkpoints "
    "(tree_size, root_hash, note, previous_size, consistency_proof, signed_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)


class PostgresSealerLock(SealerLock):
    """The sealer election on PostgreSQL: a session-level ``pg_try_advisory_lock``.

    The lock is held by one dedicated connection. PostgreSQL releases it when that session
    ends: the holder closes it, its process dies (the server sees the socket close at
    once), or its host stops answering (the server's TCP keepalives, set here to give up
    after about :attr:`keepalive_seconds`). The holder confirms the lock in ``pg_locks``
    before each signature and inserts each checkpoint on the lock's own connection, in a
    transaction that checks the lock again, so a checkpoint is stored only by a session
    that holds the lock at that moment. Client side, ``tcp_user_timeout`` bounds how long
    a holder cut off from the server can wait on the connection before it counts the lock
    as lost.
    """

    keepalive_seconds = 10

    def __init__(self, url: str) -> None:
        options = _parse_url(url)
        self._schema = options.pop("schema")
        self._conninfo = options
        self.key = sealer_lock_key(self._schema)
        self._connection: psycopg.Connection[Any] | None = None
        self._held = False
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock's session, if connected (for operators and tests)."""
        connection = self._connection
        return None if connection is None or connection.closed else connection.info.backend_pid

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(
            **self._conninfo,
            autocommit=True,
            connect_timeout=5,
            application_name="evidence-ledger sealer",
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=self.keepalive_seconds * 1000,
        )
        try:
            # The server's side of the same: a holder whose host vanished loses the lock.
            connection.execute("SET tcp_keepalives_idle = 5")
            connection.execute("SET tcp_keepalives_interval = 2")
            connection.execute("SET tcp_keepalives_count = 3")
            connection.execute(f"SET tcp_user_timeout = {self.keepalive_seconds * 1000}")
            if self._schema:
                connection.execute(SQL("SET search_path TO {0}").format(Identifier(self._schema)))
        except BaseException:
            connection.close()
            raise
        return connection

    def _drop(self) -> None:
        self._held = False
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _holds(self, connection: psycopg.Connection[Any]) -> bool:
        row = connection.execute(_HOLDS_SEALER_LOCK, self.key).fetchone()
        return bool(row and row[0])

    def acquire(self) -> bool:
        with self._mutex:
            try:
                if self._connection is None or self._connection.closed:
                    self._drop()
                    self._connection = self._connect()
                connection = self._connection
                if self._held and self._holds(connection):
                    return True
                row = connection.execute(
                    SQL("SELECT pg_try_advisory_lock(%s, %s)"), self.key
                ).fetchone()
                self._held = bool(row and row[0])
                return self._held
            except psycopg.Error:
                self._drop()  # a lost session holds nothing; the next call reconnects
                return False

    def publish(self, checkpoint: StoredCheckpoint) -> None:
        with self._mutex:
            connection = self._connection
            if not self._held or connection is None or connection.closed:
                self._drop()
                raise SealerLockLost("this process does not hold the sealer lock")
            try:
                with connection.transaction():
                    if not self._holds(connection):
                        raise SealerLockLost("the sealer lock is no longer held by this session")
                    connection.execute(_INSERT_CHECKPOINT, checkpoint_row(checkpoint))
            except psycopg.errors.UniqueViolation as exc:
                raise ConstraintViolation(f"the ledger database refused the row: {exc}") from exc
            except SealerLockLost:
                self._drop()
                raise
            except psycopg.Error as exc:
                # The commit's fate may be unknown; the next holder reads what is stored.
                self._drop()
                raise SealerLockLost(f"the sealer lock's connection failed: {exc}") from exc

    def release(self) -> None:
        with self._mutex:
            if self._held and self._connection is not None and not self._connection.closed:
                # Closing the session below releases the lock anyway.
                with contextlib.suppress(psycopg.Error):
                    self._connection.execute(SQL("SELECT pg_advisory_unlock(%s, %s)"), self.key)
            self._drop()
