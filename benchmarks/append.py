"""Append throughput: the ledger's full append path against plain eventsourcing appends.

*Ours* is the public ``LedgerStore.append(drafts)``: it validates each draft, builds the
envelope, canonicalises it (RFC 8785), hashes it, chains it onto its stream, inserts it
through eventsourcing's recorder and appends its leaf and new subtree nodes to the Merkle
log, all in one durable transaction.

Two peers append the same events with eventsourcing alone, on the same engine with the
same durability, interleaved with ours (alternating which goes first):

* *app* is how an application appends with eventsourcing: one aggregate per task, each
  act an aggregate event carrying the same envelope fields, saved with
  ``Application.save`` (the library's mapper and JSON transcoder encode the events,
  its recorder inserts them). This is the peer of the issue's target: ours >= 0.7x app on
  SQLite. PostgreSQL is reported without a target.
* *raw* is the floor: eventsourcing's recorder inserting ``StoredEvent`` rows whose
  bytes were encoded before the clock started, i.e. no per-event work at all.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)
from psycopg import sql

from benchmarks.common import (
    RESULTS,
    batches,
    median,
    print_table,
    sample_drafts,
    write_result,
)
from ledger.events import Event, EventDraft, build_envelope
from ledger.postgres_store import PostgresLedgerStore
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import LedgerStore

BATCH_SIZES = (1, 10, 100)
SQLITE_TARGET_RATIO = 0.7
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Scratch databases, named per process so that two runs on one server cannot collide.
LEDGER_DATABASE = f"bench_ledger_{os.getpid()}"
PLAIN_DATABASE = f"bench_plain_{os.getpid()}"
APP_DATABASE = f"bench_app_{os.getpid()}"


class TaskRecord(Aggregate):
    """Plain eventsourcing's model of a task: created by its first act, then one event per act."""

    @event("Created")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.acts = 1

    @event("Recorded")
    def record(self, envelope: dict[str, Any]) -> None:
        self.acts += 1


class PlainApplication(Application):
    """An eventsourcing application doing nothing but saving task records."""


@dataclass
class Contenders:
    """The systems under test on one backend, and how to describe the backend."""

    ours: LedgerStore
    plain: ApplicationRecorder
    app: PlainApplication
    settings: dict[str, Any]


def app_run(app: PlainApplication, envelopes: Sequence[dict[str, Any]], batch: int) -> None:
    """Append ``envelopes`` as an eventsourcing application would, ``batch`` per save."""
    tasks: dict[str, TaskRecord] = {}
    for chunk in batches(envelopes, batch):
        touched: dict[int, TaskRecord] = {}
        for envelope in chunk:
            task = tasks.get(envelope["stream_id"])
            if task is None:
                task = tasks[envelope["stream_id"]] = TaskRecord(envelope)
            else:
                task.record(envelope)
            touched[id(task)] = task
        app.save(*touched.values())


def _durable(app: PlainApplication) -> PlainApplication:
    """Give the application's SQLite connections the pragmas the ledger's have."""
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    if isinstance(datastore, SQLiteDatastore):
        name = datastore.pool.db_name
        datastore.pool.close()
        datastore.pool = _DurablePool(db_name=name, lock_timeout=30)
    return app


def events_per_run(batch: int) -> int:
    """Events per timed run: 1,000 / 3,000 / 10,000 for batches of 1 / 10 / 100 (~1 s each)."""
    return min(10_000, max(1_000, 300 * batch))


def plain_events(drafts: Sequence[EventDraft]) -> tuple[list[StoredEvent], list[dict[str, Any]]]:
    """The rows plain eventsourcing would store for ``drafts``: the same canonical envelopes.

    Chained exactly as the ledger chains them, so the bytes match what ours writes (except
    for the server time) and the plain side pays for none of that work in the timed part.
    """
    server_time = datetime.now(UTC)
    heads: dict[Any, tuple[int, bytes | None]] = {}
    stored: list[StoredEvent] = []
    envelopes: list[dict[str, Any]] = []
    for draft in drafts:
        sequence, prev = heads.get(draft.stream_id, (0, None))
        assert draft.event_id is not None
        envelope = build_envelope(
            draft,
            sequence=sequence + 1,
            prev=prev,
            server_time=server_time,
            event_id=draft.event_id,
        )
        event = Event.from_envelope(envelope)
        envelopes.append(envelope)
        heads[draft.stream_id] = (sequence + 1, event.hash)
        stored.append(
            StoredEvent(
                originator_id=draft.stream_id,
                originator_version=sequence + 1,
                topic=draft.type,
                state=event.canonical,
            )
        )
    return stored, envelopes


# -- SQLite ------------------------------------------------------------------------------


class _DurablePool(SQLiteConnectionPool):
    """eventsourcing's pool with the pragmas ``ledger.sqlite_store`` sets (WAL is the default)."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        return connection


def plain_sqlite_recorder(path: Path) -> SQLiteApplicationRecorder:
    datastore = SQLiteDatastore(str(path), lock_timeout=30)
    datastore.pool.close()
    datastore.pool = _DurablePool(db_name=str(path), lock_timeout=30)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


@contextmanager
def sqlite_contenders() -> Iterator[Contenders]:
    """Fresh database files on the disk the results live on (``/tmp`` may be in memory)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="append-", dir=RESULTS))
    ours = SQLiteLedgerStore(directory / "ledger.sqlite")
    plain = plain_sqlite_recorder(directory / "plain.sqlite")
    app = _durable(
        PlainApplication(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(directory / "app.sqlite"),
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        )
    )
    probe = sqlite3.connect(directory / "ledger.sqlite")
    journal = probe.execute("PRAGMA journal_mode").fetchone()[0]
    probe.close()
    try:
        yield Contenders(ours, plain, app, {"journal_mode": journal, "synchronous": "FULL"})
    finally:
        ours.close()
        plain.datastore.close()
        app.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- PostgreSQL --------------------------------------------------------------------------


def _with_database(url: str, dbname: str) -> str:
    return urlparse(url)._replace(path=f"/{dbname}").geturl()


def _server_settings(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as connection:
        return {
            name: connection.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        }


def _scratch_databases(base_url: str, *, create: bool) -> None:
    """Drop the scratch databases if they exist and, if asked, create them empty."""
    with psycopg.connect(base_url, autocommit=True) as admin:
        for name in map(sql.Identifier, (LEDGER_DATABASE, PLAIN_DATABASE, APP_DATABASE)):
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            if create:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(name))


@contextmanager
def postgres_contenders(base_url: str) -> Iterator[Contenders]:
    """Two scratch databases on the same server, created empty and dropped afterwards."""
    _scratch_databases(base_url, create=True)
    ours: PostgresLedgerStore | None = None
    plain: PostgresApplicationRecorder | None = None
    app: PlainApplication | None = None
    try:
        ours = PostgresLedgerStore(_with_database(base_url, LEDGER_DATABASE))
        parsed = urlparse(base_url)
        datastore = PostgresDatastore(
            dbname=PLAIN_DATABASE,
            host=parsed.hostname or "localhost",
            port=parsed.port or 5432,
            user=unquote(parsed.username or "postgres"),
            password=unquote(parsed.password or ""),
        )
        plain = PostgresApplicationRecorder(datastore)
        plain.create_table()
        app = PlainApplication(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": APP_DATABASE,
                "POSTGRES_HOST": parsed.hostname or "localhost",
                "POSTGRES_PORT": str(parsed.port or 5432),
                "POSTGRES_USER": unquote(parsed.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            }
        )
        yield Contenders(ours, plain, app, _server_settings(base_url))
    finally:
        if app is not None:
            app.close()
        if ours is not None:
            ours.close()
        if plain is not None:
            plain.datastore.close()
        _scratch_databases(base_url, create=False)


# -- the measurement ---------------------------------------------------------------------


def _rate(count: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def measure(
    contenders: Contenders, batch: int, rounds: int, random_event_ids: bool = False
) -> dict[str, Any]:
    """Interleaved timed runs of ours and both peers on the same events; one warm-up round."""
    count = events_per_run(batch)
    drafts = sample_drafts(count * (rounds + 1), random_event_ids=random_event_ids)
    stored, envelopes = plain_events(drafts)
    size_before = contenders.ours.tree_size()
    rates: dict[str, list[float]] = {"ours": [], "app": [], "raw": []}
    for round_ in range(rounds + 1):
        part = slice(round_ * count, (round_ + 1) * count)

        def run_ours(events: Sequence[EventDraft] = drafts[part]) -> None:
            for chunk in batches(events, batch):
                contenders.ours.append(chunk)

        def run_app(events: Sequence[dict[str, Any]] = envelopes[part]) -> None:
            app_run(contenders.app, events, batch)

        def run_raw(events: Sequence[StoredEvent] = stored[part]) -> None:
            for chunk in batches(events, batch):
                contenders.plain.insert_events(chunk)

        order = [("ours", run_ours), ("app", run_app), ("raw", run_raw)]
        order = order[round_ % 3 :] + order[: round_ % 3]
        for name, run in order:
            rate = _rate(count, run)
            if round_:  # round 0 warms connections, caches and statement plans
                rates[name].append(rate)
    appended = contenders.ours.tree_size() - size_before
    assert appended == len(drafts), f"the log grew by {appended}, not {len(drafts)}"
    ours, app, raw = (median(rates[k]) for k in ("ours", "app", "raw"))
    return {
        "batch": batch,
        "events_per_run": count,
        "rounds": rounds,
        **{f"{k}_rates": [round(r, 1) for r in v] for k, v in rates.items()},
        "ours_median": round(ours, 1),
        "app_median": round(app, 1),
        "raw_median": round(raw, 1),
        "ratio": round(ours / app, 3),
        "ratio_to_raw": round(ours / raw, 3),
    }


def profile_ours(contenders: Contenders, batch: int, top: int) -> None:
    """cProfile one run of ours, to show where the time goes."""
    drafts = sample_drafts(events_per_run(batch))
    profiler = cProfile.Profile()
    profiler.enable()
    for chunk in batches(drafts, batch):
        contenders.ours.append(chunk)
    profiler.disable()
    print(f"\nprofile of ours, batch {batch} ({len(drafts)} events), by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def run(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {}
    rows: list[list[Any]] = []
    backends: list[tuple[str, Callable[[], Any]]] = [("sqlite", sqlite_contenders)]
    if not args.skip_postgres:
        backends.append(("postgres", lambda: postgres_contenders(args.postgres_url)))
    for backend, open_contenders in backends:
        with ExitStack() as stack:
            try:
                contenders = stack.enter_context(open_contenders())
            except (psycopg.Error, OSError) as exc:
                print(f"{backend}: skipped, cannot set up: {exc}")
                results[backend] = {"skipped": str(exc)}
                continue
            print(f"{backend}: {contenders.settings}", flush=True)
            measured = []
            for batch in args.batch:
                row = measure(contenders, batch, args.rounds, args.random_event_ids)
                if backend == "sqlite":
                    row["target_ratio"] = SQLITE_TARGET_RATIO
                    row["target_met"] = row["ratio"] >= SQLITE_TARGET_RATIO
                measured.append(row)
                met = "-" if "target_met" not in row else ("yes" if row["target_met"] else "NO")
                rows.append(
                    [
                        backend,
                        batch,
                        row["events_per_run"],
                        row["ours_median"],
                        row["app_median"],
                        row["ratio"],
                        met,
                        row["raw_median"],
                        row["ratio_to_raw"],
                    ]
                )
                print(
                    f"  batch {batch}: ours {row['ours_median']:,.0f}/s, "
                    f"app {row['app_median']:,.0f}/s (ratio {row['ratio']:.2f}), "
                    f"raw {row['raw_median']:,.0f}/s (ratio {row['ratio_to_raw']:.2f})",
                    flush=True,
                )
            if args.profile and backend == "sqlite":
                for batch in args.batch:
                    profile_ours(contenders, batch, args.profile)
            results[backend] = {"settings": contenders.settings, "rows": measured}
    print()
    print_table(
        [
            "backend",
            "batch",
            "events/run",
            "ours ev/s",
            "app ev/s",
            "ours/app",
            ">=0.7x",
            "raw ev/s",
            "ours/raw",
        ],
        rows,
    )
    path = write_result(
        "append",
        {
            "batch_sizes": list(args.batch),
            "event_ids": "random UUIDv4" if args.random_event_ids else "UUIDv7",
            "backends": results,
        },
    )
    print(f"\nresult written to {path}")
    return 0
