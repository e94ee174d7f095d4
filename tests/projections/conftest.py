"""Stores with a controllable clock on each backend, and projections over them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import LedgerStore
from projections import TaskProjection
from tests.projections import Clock

OpenStore = Callable[[], LedgerStore]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_store(
    backend: str, tmp_path: Path, clock: Clock, request: pytest.FixtureRequest
) -> Iterator[OpenStore]:
    """Opens stores (closed afterwards) on one database of the current backend."""
    opened: list[LedgerStore] = []
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None

    def make() -> LedgerStore:
        if url is not None:
            from ledger.postgres_store import PostgresLedgerStore

            opened.append(PostgresLedgerStore(url, clock=clock))
        else:
            opened.append(SQLiteLedgerStore(tmp_path / "ledger.sqlite3", clock=clock))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> LedgerStore:
    return open_store()


@pytest.fixture
def projection(store: LedgerStore) -> Iterator[TaskProjection]:
    with TaskProjection(store) as opened:
        yield opened
