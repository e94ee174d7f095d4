"""Shared fixtures: stores on both backends, a PostgreSQL schema per test, ledgers in tmp dirs.

PostgreSQL tests use ``EVIDENCE_LEDGER_TEST_DATABASE_URL`` (default: the ``test`` database
on 127.0.0.1:5432 as user postgres). Each test gets its own schema, dropped afterwards.
Without a reachable server they are skipped with the reason; with ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledger.app import Ledger
from ledger.settings import Settings
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import LedgerStore

TEST_DATABASE_URL = os.environ.get(
    "EVIDENCE_LEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_pg_unreachable: str | None = None
_pg_checked = False


def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` when it can (checked once)."""
    global _pg_checked, _pg_unreachable
    if not _pg_checked:
        _pg_checked = True
        try:
            with psycopg.connect(TEST_DATABASE_URL, connect_timeout=3) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            _pg_unreachable = f"PostgreSQL at {TEST_DATABASE_URL} is unreachable: {exc}".strip()
    return _pg_unreachable


def require_postgres() -> None:
    reason = postgres_unreachable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
    pytest.skip(f"{reason}; set EVIDENCE_LEDGER_TEST_DATABASE_URL or start PostgreSQL")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL naming a fresh, empty schema in the test database."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in TEST_DATABASE_URL else "?"
    try:
        yield f"{TEST_DATABASE_URL}{separator}schema={schema}"
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        remove_lock_files(f"{TEST_DATABASE_URL}{separator}schema={schema}")


def remove_lock_files(url: str) -> None:
    """Remove the API workers' lock files (the append turn, the projection follower's
    lease) of the PostgreSQL ledger at ``url`` (a scratch schema or database being
    dropped), so test runs leave none behind."""
    from api.routes_events import postgres_lock_file

    for purpose in ("append", "projection"):
        lock = postgres_lock_file(url, purpose)
        if lock is not None:
            lock.unlink(missing_ok=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test once per backend."""
    if request.param == "postgres":
        require_postgres()
    return str(request.param)


StoreFactory = Callable[[], LedgerStore]


@pytest.fixture
def store_factory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StoreFactory]:
    """Opens (and later closes) stores on one database of the current backend."""
    opened: list[LedgerStore] = []
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")

        def make() -> LedgerStore:
            from ledger.postgres_store import PostgresLedgerStore

            opened.append(PostgresLedgerStore(url))
            return opened[-1]

    else:

        def make() -> LedgerStore:
            opened.append(SQLiteLedgerStore(tmp_path / "ledger.sqlite3"))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> LedgerStore:
    return store_factory()


@pytest.fixture
def ledger_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a whole ledger (key, local TSA) on the current backend."""
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    return Settings(data_dir=tmp_path / "data", database_url=url, seal_interval=0.05)


@pytest.fixture
def ledger(ledger_settings: Settings) -> Iterator[Ledger]:
    with Ledger.open(ledger_settings) as opened:
        yield opened
