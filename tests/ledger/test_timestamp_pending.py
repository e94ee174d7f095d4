"""Timestamp passes read only the checkpoints above the size known to be timestamped.

The timestamp thread runs a pass every 0.25 s. Reading the waiting checkpoints from the
first one on cost 16 ms on SQLite and 72 ms on PostgreSQL per pass with 300,000
checkpoints (about three and a half days of a busy log sealing every second), growing
with the log's history; read from a bound, it costs what lies above the bound.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.app import Ledger
from ledger.local_tsa import LocalTimestampAuthority
from ledger.postgres_store import PostgresLedgerStore
from ledger.sealer import Sealer
from ledger.settings import Settings
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import UNTIMESTAMPED, LedgerStore, StoredCheckpoint, StoredTimestamp
from ledger.timestamping import TimestampClient
from tests.factories import draft
from tests.pg_plans import generic_plan, schema_connection, whole_scans


def _checkpoint(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(
        tree_size=size,
        root_hash=bytes(32),
        note=f"made up {size}\n",
        previous_size=None,
        consistency_proof=(),
        signed_at="2026-12-07T00:00:00Z",
    )


def _stamp(size: int) -> StoredTimestamp:
    return StoredTimestamp(size, b"\x30\x00", "2026-12-07T00:00:00Z", "http://tsa/", "tsa")


def test_waiting_checkpoints_are_those_above_the_size_given(store: LedgerStore) -> None:
    for size in range(1, 11):
        store.insert_checkpoint(_checkpoint(size))
    for size in (1, 2, 3, 5, 6, 9):
        store.insert_timestamp(_stamp(size))

    def waiting(**kw: int) -> list[int]:
        return [c.tree_size for c in store.untimestamped_checkpoints(**kw)]

    assert waiting() == [4, 7, 8, 10]
    assert waiting(after=0) == [4, 7, 8, 10]
    assert waiting(after=4) == [7, 8, 10]
    assert waiting(after=7) == [8, 10]
    assert waiting(after=3, limit=2) == [4, 7]
    assert waiting(after=10) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Reads:
    """The store's waiting-checkpoint reads, recorded: the ``after`` of each."""

    def __init__(self, store: LedgerStore) -> None:
        self.afters: list[int] = []
        self._read = store.untimestamped_checkpoints

    def __call__(self, limit: int = 100, after: int = 0) -> list[StoredCheckpoint]:
        self.afters.append(after)
        return self._read(limit, after=after)


@pytest.fixture
def stamping(tmp_path: Path) -> Iterator[tuple[Ledger, Sealer, _Reads]]:
    authority = LocalTimestampAuthority.load_or_create(tmp_path / "tsa")
    port = _free_port()
    with (
        Ledger.open(Settings(data_dir=tmp_path / "d")) as ledger,
        authority.serve(port=port),
    ):
        client = TimestampClient(
            [f"http://127.0.0.1:{port}/"], [authority.root_certificate], timeout=5
        )
        sealer = Sealer(ledger.store, ledger.key, client)
        reads = _Reads(ledger.store)
        ledger.store.untimestamped_checkpoints = reads  # type: ignore[method-assign]
        yield ledger, sealer, reads


def test_each_pass_reads_above_what_earlier_passes_timestamped(
    stamping: tuple[Ledger, Sealer, _Reads],
) -> None:
    ledger, sealer, reads = stamping
    ledger.append([draft() for _ in range(3)])
    assert sealer.seal() is not None
    assert sealer.timestamp_pending() == 1  # the first pass looks from the start
    ledger.append([draft(), draft()])
    assert sealer.seal() is not None
    assert sealer.timestamp_pending() == 1
    assert sealer.timestamp_pending() == 0
    ledger.append([draft()])
    assert sealer.seal() is not None
    ledger.append([draft()])
    assert sealer.seal() is not None
    # A pass that stops at its limit knows only what it stamped.
    assert sealer.timestamp_pending(limit=1) == 1
    assert sealer.timestamp_pending() == 1
    assert reads.afters == [0, 3, 5, 5, 6]
    assert sorted(ledger.store.timestamps()) == [3, 5, 6, 7]
    assert ledger.store.untimestamped_checkpoints() == []


def test_a_pass_looks_from_the_start_again_after_a_while(
    stamping: tuple[Ledger, Sealer, _Reads],
) -> None:
    ledger, sealer, reads = stamping
    ledger.append([draft() for _ in range(3)])
    assert sealer.seal() is not None
    assert sealer.timestamp_pending() == 1
    assert sealer.timestamp_pending() == 0
    sealer._full_scan_at = time.monotonic()  # FULL_SCAN_SECONDS have passed
    assert sealer.timestamp_pending() == 0
    assert reads.afters == [0, 3, 0]


def test_the_read_uses_the_keys_on_sqlite(tmp_path: Path) -> None:
    SQLiteLedgerStore(tmp_path / "l.sqlite").close()
    with sqlite3.connect(tmp_path / "l.sqlite") as connection:
        plan = [
            row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {UNTIMESTAMPED}", [0, 0, 20])
        ]
    assert any("SEARCH c USING INTEGER PRIMARY KEY (rowid>?)" in step for step in plan), plan
    assert any("SEARCH t USING INTEGER PRIMARY KEY (rowid=?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


@pytest.fixture
def pg_tables(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh schema holding the ledger's tables."""
    PostgresLedgerStore(postgres_url).close()
    with schema_connection(postgres_url) as connection:
        yield connection


@pytest.mark.postgres
def test_the_read_uses_the_keys_on_postgresql_under_a_generic_plan(
    pg_tables: psycopg.Connection[Any],
) -> None:
    size = 300_000
    pg_tables.execute(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, note, previous_size, "
        "consistency_proof, signed_at) SELECT g, '\\x00', 'note', g - 1, '', 'x' "
        "FROM generate_series(1, %s) g",
        [size],
    )
    pg_tables.execute(
        "INSERT INTO ledger_checkpoint_timestamps "
        "(tree_size, response_der, gen_time, tsa_url, tsa_name) "
        "SELECT g, '\\x00', 't', 'u', 'n' FROM generate_series(1, %s) g",
        [size - 3],
    )
    pg_tables.execute("ANALYZE ledger_checkpoints")
    pg_tables.execute("ANALYZE ledger_checkpoint_timestamps")
    plan = generic_plan(pg_tables, "waiting", UNTIMESTAMPED, f"{size - 10}, {size - 10}, 20")
    assert "ledger_checkpoints_pkey" in plan and "ledger_checkpoint_timestamps_pkey" in plan
    assert whole_scans(plan) == [], plan
    # and the statement as it was, for the record: it read both tables whole.
    old = (
        "SELECT c.* FROM ledger_checkpoints c LEFT JOIN ledger_checkpoint_timestamps t "
        "ON t.tree_size = c.tree_size WHERE t.tree_size IS NULL ORDER BY c.tree_size LIMIT ?"
    )
    assert whole_scans(generic_plan(pg_tables, "waiting_before", old, "20"))
