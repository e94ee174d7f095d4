"""The same events give the same rows on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import LedgerStore
from ledger.workflow import Remind, Revoke
from projections import TaskProjection
from tests.conftest import require_postgres
from tests.projections import Clock, StoredTask, launch
from tests.workflow import INITIATOR
from tests.workflow.test_state_fold_properties import next_move


def _advance(task: StoredTask, round_: int, clock: Clock) -> None:
    pending = task.state.pending
    if task.state.finished or not pending:
        return
    user = pending[round_ % len(pending)]
    move = next_move(task, user, clock.now + timedelta(minutes=1))  # type: ignore[arg-type]
    task.act(user, move)


def drive(store: LedgerStore, clock: Clock) -> None:
    """The same deterministic tasks (fixed task ids, a fixed clock) in ``store``."""
    tasks = [
        launch(store, clock, amount, cross, task_id=uuid.UUID(int=n + 1))
        for n, (amount, cross) in enumerate([("12800.00", False), ("4000", True), ("9000", True)])
    ]
    for round_ in range(14):
        for task in tasks[:2]:
            _advance(task, round_, clock)
        if round_ < 2:
            _advance(tasks[2], round_, clock)
    tasks[2].act(INITIATOR, Remind(tasks[2].state.pending[0]))
    tasks[2].act(INITIATOR, Revoke("changed my mind"))


@pytest.mark.postgres
def test_sqlite_and_postgres_rows_are_equal(tmp_path: Path, postgres_url: str) -> None:
    require_postgres()
    from ledger.postgres_store import PostgresLedgerStore

    makers: list[Callable[[Clock], Any]] = [
        lambda clock: SQLiteLedgerStore(tmp_path / "ledger.sqlite3", clock=clock),
        lambda clock: PostgresLedgerStore(postgres_url, clock=clock),
    ]
    dumps = []
    for make in makers:
        clock = Clock()
        store = make(clock)
        try:
            drive(store, clock)
            with TaskProjection(store, batch=5) as projection:
                projection.catch_up()
                dumps.append(projection.dump())
        finally:
            store.close()
    assert dumps[0] == dumps[1]
    assert sorted(row[1] for row in dumps[0]["proj_tasks"]) == [
        "completed",
        "completed",
        "revoked",
    ]
