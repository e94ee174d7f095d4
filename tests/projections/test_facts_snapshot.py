"""KPI facts saved to disk: a restarted cache starts from them, and only where they are right."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rich.console import Console

from ledger.store import LedgerStore
from ledger.workflow import Approve
from projections import TaskProjection, facts, kpi_export
from projections.database import Database
from projections.facts import Facts, FactsCache
from projections.facts_snapshot import SnapshotStore
from tests.projections import Clock, launch
from tests.workflow import DEPT_HEAD, FINANCE, LEGAL


class _Recording:
    """A projection database that remembers the parameters of every act query."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.backend = db.backend
        self.act_reads: list[Sequence[Any]] = []

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if "FROM proj_acts" in sql:
            self.act_reads.append(list(params))
        return self._db.query(sql, params)

    def transaction(self, **options: Any) -> Any:
        return self._db.transaction(**options)


@pytest.fixture(autouse=True)
def small_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots of scopes of a few acts, as soon as asked (the defaults suit real logs)."""
    monkeypatch.setattr(facts, "SNAPSHOT_MIN_ACTS", 3)
    monkeypatch.setattr(facts, "SNAPSHOT_MIN_SECONDS", 0.0)


def _same(a: Facts, b: Facts) -> None:
    assert a.tasks.sort("task_id").equals(b.tasks.sort("task_id"))
    assert a.acts.equals(b.acts)
    assert a.pending.sort("task_id", "user_id").equals(b.pending.sort("task_id", "user_id"))


def _seeded(store: LedgerStore, clock: Clock, projection: TaskProjection) -> list[Any]:
    tasks = [launch(store, clock) for _ in range(3)]
    projection.catch_up()
    return tasks


def _saved(projection: TaskProjection, snapshots: SnapshotStore) -> FactsCache:
    """A cache over ``snapshots``, caught up and saved."""
    cache = FactsCache(projection._db, snapshots=snapshots)
    cache.refresh(projection.position)
    assert cache.save_snapshot(closing=True)
    return cache


def test_a_restarted_cache_starts_from_the_snapshot_and_reads_only_what_follows(
    store: LedgerStore, clock: Clock, projection: TaskProjection, tmp_path: Path
) -> None:
    tasks = _seeded(store, clock, projection)
    snapshots = SnapshotStore(tmp_path / "facts", store.root)
    before = FactsCache(projection._db, snapshots=snapshots)
    before.refresh(projection.position)
    taken = projection.position
    assert before.save_snapshot(closing=True)
    assert not before.save_snapshot(closing=True)  # nothing new since
    # Meanwhile the log moves on: a task changes, so its row and pending people change.
    tasks[0].act(DEPT_HEAD, Approve())
    projection.catch_up()
    recording = _Recording(projection._db)
    after = FactsCache(recording, snapshots=SnapshotStore(tmp_path / "facts", store.root))
    restarted = after.refresh(projection.position)
    assert after.started_from == taken
    # Only the acts after the snapshot were read from the database.
    assert recording.act_reads == [[taken, projection.position]]
    _same(restarted, FactsCache(projection._db).refresh(projection.position))
    changed = restarted.tasks.filter(pl.col("task_id") == str(tasks[0].task_id))
    assert changed["current_step"].to_list() == ["finance_legal"]
    assert changed["created_leaf"].to_list() == [0]
    waiting = restarted.pending.filter(pl.col("task_id") == str(tasks[0].task_id))
    assert sorted(waiting["user_id"].to_list()) == sorted([FINANCE, LEGAL])


def test_a_snapshot_of_another_log_is_not_used(
    store: LedgerStore, clock: Clock, projection: TaskProjection, tmp_path: Path
) -> None:
    _seeded(store, clock, projection)
    cache = _saved(projection, SnapshotStore(tmp_path / "f", store.root))
    # The same files, judged against a log whose root at that size is another.
    other = SnapshotStore(tmp_path / "f", lambda size: b"\x00" * 32)
    assert other.load() is None
    fresh = FactsCache(projection._db, snapshots=other)
    _same(fresh.refresh(projection.position), cache.refresh(projection.position))
    assert fresh.started_from is None


def test_a_snapshot_ahead_of_the_projection_is_not_used(
    store: LedgerStore, clock: Clock, projection: TaskProjection, tmp_path: Path
) -> None:
    _seeded(store, clock, projection)
    _saved(projection, SnapshotStore(tmp_path / "f", store.root))
    behind = FactsCache(projection._db, snapshots=SnapshotStore(tmp_path / "f", store.root))
    assert behind.refresh(projection.position - 1).acts.height == projection.position - 1
    assert behind.started_from is None


@pytest.mark.parametrize("damage", ["torn file", "missing file", "other schema", "other rows"])
def test_a_damaged_or_outdated_snapshot_is_ignored(
    store: LedgerStore,
    clock: Clock,
    projection: TaskProjection,
    tmp_path: Path,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _seeded(store, clock, projection)
    snapshots = SnapshotStore(tmp_path / "f", store.root)
    expected = _saved(projection, snapshots).refresh(projection.position)
    (path,) = (tmp_path / "f").glob("snap-*")
    assert snapshots.load() is not None
    manifest = json.loads((path / "manifest.json").read_text())
    if damage == "torn file":
        data = (path / "acts.parquet").read_bytes()
        (path / "acts.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "missing file":
        (path / "tasks.parquet").unlink()
    elif damage == "other schema":
        manifest["projection_schema"] += 1
    else:
        manifest["rows"]["acts"] += 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="projections.facts_snapshot"):
        assert snapshots.load() is None
    assert path.name in caplog.text
    fresh = FactsCache(projection._db, snapshots=snapshots)
    _same(fresh.refresh(projection.position), expected)
    assert fresh.started_from is None


def test_snapshots_are_due_for_large_scopes_not_too_often(
    store: LedgerStore,
    clock: Clock,
    projection: TaskProjection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(facts, "SNAPSHOT_MIN_ACTS", 5)
    monkeypatch.setattr(facts, "SNAPSHOT_MIN_SECONDS", 3600.0)
    task = launch(store, clock)  # two acts: a small scope, never saved
    projection.catch_up()
    cache = FactsCache(projection._db, snapshots=SnapshotStore(tmp_path / "f", store.root))
    cache.refresh(projection.position)
    assert not cache.save_snapshot(closing=True)
    _seeded(store, clock, projection)  # eight acts now
    cache.refresh(projection.position)
    # While serving, not within the hour since the cache was made...
    assert not cache.save_snapshot()
    monkeypatch.setattr(facts, "SNAPSHOT_MIN_SECONDS", 0.0)
    assert cache.save_snapshot()
    # ... and not before as many new acts again.
    task.act(DEPT_HEAD, Approve())
    projection.catch_up()
    cache.refresh(projection.position)
    assert not cache.save_snapshot()
    assert cache.save_snapshot(closing=True)  # closing: anything new


def test_a_newer_snapshot_replaces_the_older(
    store: LedgerStore, clock: Clock, projection: TaskProjection, tmp_path: Path
) -> None:
    task = _seeded(store, clock, projection)[0]
    snapshots = SnapshotStore(tmp_path / "f", store.root)
    cache = _saved(projection, snapshots)
    task.act(DEPT_HEAD, Approve())
    projection.catch_up()
    cache.refresh(projection.position)
    assert cache.save_snapshot(closing=True)
    assert [p.name.split("-")[1] for p in (tmp_path / "f").iterdir()] == [str(projection.position)]
    loaded = snapshots.load()
    assert loaded is not None and loaded.position == projection.position


def test_a_save_cut_short_long_ago_is_cleared_away(
    store: LedgerStore, clock: Clock, projection: TaskProjection, tmp_path: Path
) -> None:
    _seeded(store, clock, projection)
    directory = tmp_path / "f"
    abandoned, current = directory / ".tmp-3-aaaaaaaaaaaa", directory / ".tmp-6-bbbbbbbbbbbb"
    for path in (abandoned, current):
        path.mkdir(parents=True)
        (path / "acts.parquet").write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))
    _saved(projection, SnapshotStore(directory, store.root))
    # The old leftover is gone; one that may still be being written is left alone.
    assert not abandoned.exists() and current.exists()
    assert SnapshotStore(directory, store.root).load() is not None


def test_the_kpi_command_starts_from_the_facts_its_last_run_saved(
    store: LedgerStore,
    clock: Clock,
    projection: TaskProjection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seeded(store, clock, projection)
    made: list[FactsCache] = []

    class Remembered(FactsCache):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(kpi_export, "FactsCache", Remembered)

    def run() -> Any:
        console = Console(file=io.StringIO(), width=200)
        kpi_export.run_kpi_command(
            store, console, since=None, until=None, template=None, department=None,
            tenant=None, output="json", out=None, snapshots=tmp_path / "kpi-facts",
        )  # fmt: skip
        return json.loads(console.file.getvalue())  # type: ignore[attr-defined]

    first = run()
    assert made[-1].started_from is None
    assert list((tmp_path / "kpi-facts" / "all").glob("snap-*/manifest.json"))
    second = run()
    assert made[-1].started_from == store.tree_size()
    assert second == first and second["tasks"]["total"] == 3


def test_a_snapshot_that_cannot_be_written_costs_the_kpi_command_nothing_but_a_warning(
    store: LedgerStore,
    clock: Clock,
    projection: TaskProjection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _seeded(store, clock, projection)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    console = Console(file=io.StringIO(), width=200)
    with caplog.at_level(logging.WARNING, logger="projections.kpi_export"):
        kpi_export.run_kpi_command(
            store, console, since=None, until=None, template=None, department=None,
            tenant=None, output="json", out=None, snapshots=blocked / "kpi-facts",
        )  # fmt: skip
    assert json.loads(console.file.getvalue())["tasks"]["total"] == 3  # type: ignore[attr-defined]
    assert "KPI facts snapshot not saved" in caplog.text
