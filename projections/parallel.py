"""Catching up a long way (a cold start) with one fold process per core.

Tasks are independent, so the fold splits by task: worker ``i`` of ``n`` folds the tasks
whose stream key hashes (CRC-32, the same in every process) to ``i``. Each worker reads
every leaf of a batch, decodes and applies only its own, and sends back the rows of the
tasks it changed. The parent writes each batch — every worker's rows and the new position
— in one transaction, in leaf order, exactly as a single projector would; so the stored
rows and position never disagree and a crash resumes from the last written batch. While
the parent writes batch ``k``, the workers fold batch ``k + 1``.

Batches are fixed leaf ranges below the tree size read at the start, so all workers see
the same leaves; events appended meanwhile are left to the next catch-up.
"""

from __future__ import annotations

import gc
import multiprocessing
import queue
import traceback
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from ledger.store import LedgerStore
from ledger.workflow.state import TaskState
from projections.database import database_for
from projections.task_rows import act_row, apply_safely, rows_for

#: Below this many leaves behind, a single process catches up (no start-up cost).
PARALLEL_THRESHOLD = 100_000
#: How many batches a worker may fold ahead of the one being written.
AHEAD = 2
#: Seconds to wait for a worker's batch before checking the workers are alive.
_POLL_SECONDS = 1.0

_READ_RANGE = (
    "SELECT l.leaf_index, l.stream_id, l.sequence, e.state "
    "FROM ledger_log l LEFT JOIN stored_events e "
    "ON e.originator_id = l.stream_id AND e.originator_version = l.sequence "
    "WHERE l.leaf_index >= ? AND l.leaf_index < ? ORDER BY l.leaf_index"
)
_READ_STREAM = (
    "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version < ? "
    "ORDER BY originator_version"
)


def location(store: LedgerStore) -> tuple[str, str]:
    """How a worker process opens the same database: (backend, path or URL)."""
    if store.backend == "sqlite":
        return "sqlite", str(store.path)  # type: ignore[attr-defined]
    return "postgres", str(store.url)  # type: ignore[attr-defined]


def _open(where: tuple[str, str]) -> LedgerStore:
    backend, target = where
    if backend == "sqlite":
        from pathlib import Path

        from ledger.sqlite_store import SQLiteLedgerStore

        return SQLiteLedgerStore(Path(target))
    from ledger.postgres_store import PostgresLedgerStore

    return PostgresLedgerStore(target)


def partition(key: Any, workers: int) -> int:
    return zlib.crc32(str(key).encode()) % workers


class _Held:
    __slots__ = ("last_leaf", "persisted", "state", "task_id")

    def __init__(self, task_id: str, state: TaskState, persisted: bool) -> None:
        self.task_id = task_id
        self.state = state
        self.last_leaf = -1
        self.persisted = persisted


def _worker(
    where: tuple[str, str],
    number: int,
    workers: int,
    ranges: Any,
    results: Any,
) -> None:
    """Fold this worker's share of each range it is given; send back its rows."""
    gc.disable()
    store = None
    try:
        store = _open(where)
        db = database_for(store)
        held: dict[Any, _Held] = {}
        loads = orjson.loads
        while True:
            job = ranges.get()
            if job is None:
                break
            index, start, end = job
            log = db.query(_READ_RANGE, [start, end])
            if len(log) != end - start:
                raise RuntimeError(f"the log has {len(log)} leaves in [{start}, {end})")
            changed: dict[Any, _Held] = {}
            acts: list[tuple[Any, ...]] = []
            expected = start
            for leaf, key, sequence, state_bytes in log:
                if leaf != expected or state_bytes is None:
                    raise RuntimeError(f"the log has no leaf {expected} with its event")
                expected += 1
                if partition(key, workers) != number:
                    continue
                task = held.get(key)
                if task is None or task.state.last_sequence != sequence - 1:
                    state = TaskState()
                    if sequence > 1:
                        for (older,) in db.query(_READ_STREAM, [key, sequence]):
                            state = apply_safely(state, loads(older))
                    task = held[key] = _Held(db.task_id(key), state, sequence > 1)
                before = task.state
                envelope = loads(state_bytes)
                task.state = apply_safely(before, envelope)
                acts.append(act_row(task.task_id, leaf, before, envelope, task.state))
                task.last_leaf = leaf
                changed[key] = task
            rows = []
            for task in changed.values():
                rows.append(
                    (
                        task.task_id,
                        task.persisted,
                        rows_for(task.task_id, task.state, task.last_leaf),
                    )
                )
                task.persisted = True
            results.put(("rows", number, index, (rows, acts)))
        db.close()
    except BaseException:
        results.put(("error", number, -1, traceback.format_exc()))
    finally:
        if store is not None:
            store.close()


def catch_up_in_parallel(projection: Any, workers: int) -> int:
    """Bring ``projection`` (a TaskProjection) to the current head with ``workers`` folds."""
    from projections.tasks import BatchRows, ProjectionError

    start = projection.position
    head = projection.store.tree_size()
    ranges = [
        (n, s, min(s + projection.batch, head))
        for n, s in enumerate(range(start, head, projection.batch))
    ]
    if not ranges:
        return 0
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    inboxes = [context.Queue() for _ in range(workers)]
    processes = [
        context.Process(
            target=_worker,
            args=(location(projection.store), i, workers, inboxes[i], results),
            name=f"projection-fold-{i}",
            daemon=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    sent = 0

    def send_next() -> None:
        nonlocal sent
        if sent < len(ranges):
            for inbox in inboxes:
                inbox.put(ranges[sent])
            sent += 1
            if sent == len(ranges):
                for inbox in inboxes:
                    inbox.put(None)

    for _ in range(AHEAD):
        send_next()
    waiting: dict[int, list[Sequence[Any]]] = {}
    applied = 0
    try:
        for index, begin, end in ranges:
            parts = waiting.pop(index, [])
            while len(parts) < workers:
                try:
                    kind, number, batch_index, payload = results.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if not all(p.is_alive() for p in processes):
                        raise ProjectionError("a projection worker died") from None
                    continue
                if kind == "error":
                    raise ProjectionError(f"projection worker {number} failed:\n{payload}")
                if batch_index == index:
                    parts.append(payload)
                else:
                    waiting.setdefault(batch_index, []).append(payload)
            batch = BatchRows()
            for rows, acts in parts:
                for task_id, persisted, task_rows in rows:
                    batch.add(task_id, persisted, task_rows)
                batch.acts += acts
            if not projection._write_rows(begin, end, batch):
                break  # another projector moved on; the next catch-up starts from there
            projection._position = end
            applied += end - begin
            send_next()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        projection._tasks.clear()  # the states were folded elsewhere
        projection._position = projection._stored_position()
    return applied
