"""The pass-through adapters bind exactly what Python's sqlite3 module would bind."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from ledger import sqlite_params


@pytest.fixture
def registry() -> Iterator[dict[object, object]]:
    """The module's adapter registry, restored after the test."""
    saved = dict(sqlite3.adapters)
    try:
        yield sqlite3.adapters
    finally:
        sqlite3.adapters.clear()
        sqlite3.adapters.update(saved)


def _bound(values: tuple[object, ...]) -> list[tuple[object, str]]:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE TABLE t (v)")
        connection.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
        return connection.execute("SELECT v, typeof(v) FROM t ORDER BY rowid").fetchall()
    finally:
        connection.close()


class _Blob(bytes):
    """A bytes subclass: not adapted by the pass-through adapter, bound as before."""


VALUES = (None, b"", bytes(range(256)), _Blob(b"sub"), 0, -1, 2**62, "", "陈小明", 0.5)


def test_installed_adapters_bind_the_same_values_as_none(registry: dict[object, object]) -> None:
    for kind in (type(None), bytes):
        registry.pop((kind, sqlite3.PrepareProtocol), None)
    without = _bound(VALUES)
    sqlite_params.install()
    assert (type(None), sqlite3.PrepareProtocol) in registry
    assert (bytes, sqlite3.PrepareProtocol) in registry
    with_them = _bound(VALUES)
    assert with_them == without
    assert with_them[:3] == [(None, "null"), (b"", "blob"), (bytes(range(256)), "blob")]


def test_an_adapter_the_program_registered_is_kept(registry: dict[object, object]) -> None:
    def as_text(value: bytes) -> str:
        return value.hex()

    sqlite3.register_adapter(bytes, as_text)
    sqlite_params.install()
    assert registry[(bytes, sqlite3.PrepareProtocol)] is as_text
    assert _bound((b"\x01\x02",)) == [("0102", "text")]


def test_the_stores_install_them_on_import() -> None:
    import ledger.sqlite_store  # noqa: F401
    import projections.database  # noqa: F401

    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    assert (bytes, sqlite3.PrepareProtocol) in sqlite3.adapters
