"""Catching up a long way (a cold start) with one fold process per core.

Tasks are independent, so the fold splits by task: worker ``i`` of ``n`` folds the tasks
whose id's last byte is ``i`` modulo ``n`` (:func:`partition_sql`). Each worker reads only
its own leaves of a batch (the database filters them), decodes and applies them, and sends
back the rows of the tasks it changed and one act row per event, sorted and marshalled.
The parent writes each batch — every worker's rows and the new position — in one
transaction, in primary-key order, exactly as a single projector would; so the stored
rows and position never disagree and a crash resumes from the last written batch. While
the parent writes batch ``k``, the workers fold batch ``k + 1``.

Batches are fixed leaf ranges below the tree size read at the start, so all workers see
the same leaves; events appended meanwhile are left to the next catch-up.
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
import queue
import traceback
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from ledger.store import LedgerStore
from ledger.workflow.state import TaskState
from projections.batch import BatchRows
from projections.database import database_for
from projections.task_rows import act_row, apply_safely, rows_for

#: Below this many leaves behind, a single process catches up (no start-up cost).
PARALLEL_THRESHOLD = 100_000
#: How many batches a worker may fold ahead of the one being written.
AHEAD = 2
#: Seconds to wait for a worker's batch before checking the workers are alive.
_POLL_SECONDS = 1.0

#: A worker reads only the leaves of its own tasks: ``{part}`` is the backend's SQL for a
#: task's partition number (:func:`partition_sql`).
_READ_RANGE = (
    "SELECT l.leaf_index, l.stream_id, l.sequence, e.state "
    "FROM ledger_log l LEFT JOIN stored_events e "
    "ON e.originator_id = l.stream_id AND e.originator_version = l.sequence "
    "WHERE l.leaf_index >= ? AND l.leaf_index < ? AND {part} = ? ORDER BY l.leaf_index"
)
_COUNT_RANGE = "SELECT count(*) FROM ledger_log WHERE leaf_index >= ? AND leaf_index < ?"
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


def partition_sql(backend: str, workers: int) -> str:
    """SQL giving the fold worker (``0 .. workers - 1``) of the task of ``ledger_log l``.

    The last byte of the task id, so the database skips the other workers' events: on
    SQLite the id is stored as 32 hex digits, on PostgreSQL as a ``uuid``. Task ids are
    UUIDs whose last byte is random (versions 4, 5 and 7), so the shares are even.
    """
    if backend == "sqlite":
        digits = "'0123456789abcdef'"
        low = f"(instr({digits}, substr(l.stream_id, 32, 1)) - 1)"
        if 16 % workers == 0:
            # The byte modulo a divisor of 16 is its last hex digit modulo the same: one
            # digit to decode per leaf rather than two (about a seventh of the read's CPU time).
            return f"({low} % {int(workers)})"
        byte = f"((instr({digits}, substr(l.stream_id, 31, 1)) - 1) * 16 + {low})"
        return f"({byte} % {int(workers)})"
    return f"mod(get_byte(uuid_send(l.stream_id), 15), {int(workers)})"


def keep_recent(held: OrderedDict[Any, Any], changed: Iterable[Any], size: int) -> None:
    """Move the ``changed`` keys to the end of ``held``, then drop the oldest beyond ``size``."""
    for key in changed:
        held.move_to_end(key)
    while len(held) > size:
        held.popitem(last=False)


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
    cache: int,
    ranges: Any,
    results: Any,
) -> None:
    """Fold this worker's share of each range it is given; send back its rows.

    Up to ``cache`` tasks stay in memory, least recently changed out first, as in the
    projection itself; a task met again after that is folded afresh from its stream.
    """
    gc.disable()
    store = None
    try:
        store = _open(where)
        db = database_for(store)
        held: OrderedDict[Any, _Held] = OrderedDict()
        loads = orjson.loads
        read = _READ_RANGE.format(part=partition_sql(db.backend, workers))
        while True:
            job = ranges.get()
            if job is None:
                break
            index, start, end = job
            (count,) = db.query(_COUNT_RANGE, [start, end])[0]
            if count != end - start:
                raise RuntimeError(f"the log has {count} leaves in [{start}, {end})")
            changed: dict[Any, _Held] = {}
            acts: list[tuple[Any, ...]] = []
            for leaf, key, sequence, state_bytes in db.query(read, [start, end, number]):
                if state_bytes is None:
                    raise RuntimeError(f"the log's leaf {leaf} has no stored event")
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
            batch = BatchRows()
            batch.acts = acts
            for task in changed.values():
                rows = rows_for(task.task_id, task.state, task.last_leaf)
                batch.add(task.task_id, task.persisted, rows)
                task.persisted = True
            keep_recent(held, changed, cache)
            batch.sort()
            # marshal, not pickle: about 8x faster to write for these plain tuples.
            results.put(("rows", number, index, marshal.dumps(batch.dump())))
        db.close()
    except BaseException:
        results.put(("error", number, -1, traceback.format_exc()))
    finally:
        if store is not None:
            store.close()


def catch_up_in_parallel(projection: Any, workers: int) -> int:
    """Bring ``projection`` (a TaskProjection) to the current head with ``workers`` folds."""
    from projections.tasks import ProjectionError

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
            args=(
                location(projection.store),
                i,
                workers,
                projection.cache_size,
                inboxes[i],
                results,
            ),
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
    waiting: dict[int, list[bytes]] = {}
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
            for payload in parts:
                # From our own fold process over a private queue, never from outside.
                batch.extend(BatchRows.load(marshal.loads(payload)))  # noqa: S302
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
        projection._position = projection.stored_position()
    return applied
