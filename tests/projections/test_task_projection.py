"""The task projection against a fold of the stored events, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest

from ledger.store import LedgerStore
from ledger.workflow import (
    SYSTEM_ACTOR,
    AddSigner,
    Approve,
    Comment,
    EventDraftData,
    Expire,
    ReadToEnd,
    Reject,
    Remind,
    Return,
    Revoke,
    Sign,
    Transfer,
    VerifyIdentity,
    View,
)
from ledger.workflow.schedule import next_wakeup
from projections import TaskProjection, micros
from projections.database import database_for
from projections.parallel import partition_sql
from projections.schema import PROJECTION_TABLES
from tests.projections import Clock, StoredTask, launch, oracle
from tests.projections.conftest import OpenStore
from tests.workflow import CFO, DEPT_HEAD, DOC, FINANCE, INITIATOR, LEGAL, REV


class Boom(Exception):
    """A failure injected in the middle of a batch's transaction."""


def realistic_tasks(store: LedgerStore, clock: Clock) -> list[StoredTask]:
    """Tasks in every status, their acts interleaved in the log."""
    done = launch(store, clock)
    rejected = launch(store, clock, amount="4000")
    returned = launch(store, clock)
    revoked = launch(store, clock, cross_border=True)
    waiting = launch(store, clock)
    expired = launch(store, clock, amount="4000")
    done.act(DEPT_HEAD, View(DOC))
    rejected.act(DEPT_HEAD, Approve())
    done.act(DEPT_HEAD, Approve("同意"))
    returned.act(DEPT_HEAD, Approve())
    waiting.act(DEPT_HEAD, AddSigner("u-deputy", "after"))
    rejected.act(FINANCE, Reject("budget exhausted"))
    done.act(FINANCE, Approve())
    returned.act(FINANCE, Return("head", "wrong cost centre"))
    done.act(LEGAL, Comment("clause 7 ok"))
    revoked.act(INITIATOR, Revoke("duplicate"))
    done.act(LEGAL, Approve())
    returned.act(DEPT_HEAD, Approve())
    returned.act(LEGAL, Transfer("u-deputy", "on leave"))
    done.act(CFO, VerifyIdentity("password", "sso", "passed"))
    done.act(CFO, Approve())
    done.act(INITIATOR, Remind("ext-supplier"))
    done.act("ext-supplier", ReadToEnd(DOC))
    done.act("ext-supplier", VerifyIdentity("sms_otp", "sms", "passed", "gw-1"))
    done.act("ext-supplier", Sign(DOC, REV))
    waiting.act(DEPT_HEAD, Approve())
    expired.act(DEPT_HEAD, Approve())
    expired.act(SYSTEM_ACTOR, Expire(), gap=timedelta(hours=49))
    return [done, rejected, returned, revoked, waiting, expired]


def test_rows_equal_the_fold_of_each_stored_stream(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    tasks = realistic_tasks(store, clock)
    assert projection.catch_up() == store.tree_size()
    assert projection.dump() == oracle(store, [t.task_id for t in tasks])
    statuses = [projection.get_task(t.task_id)["status"] for t in tasks]  # type: ignore[index]
    assert statuses == ["completed", "rejected", "in_progress", "revoked", "in_progress", "expired"]


def test_queries_for_the_api_and_the_scheduler(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    done, rejected, returned, revoked, waiting, expired = realistic_tasks(store, clock)
    projection.catch_up()
    row = projection.get_task(waiting.task_id)
    assert row is not None
    assert row["pending"] == ["u-deputy"] and row["current_step"] == "head+1"
    assert row["initiator"] == INITIATOR and row["template_id"] == "purchase"
    assert row["wake_at"] == micros(next_wakeup(waiting.state))
    assert projection.get_task(uuid.uuid4()) is None
    mine = projection.list_tasks(pending_user="u-deputy")
    assert {r["task_id"] for r in mine} == {str(waiting.task_id), str(returned.task_id)}
    assert [r["task_id"] for r in projection.list_tasks(status="completed")] == [str(done.task_id)]
    everyone = projection.list_tasks(initiator=INITIATOR, limit=4)
    rest = projection.list_tasks(initiator=INITIATOR, after=everyone[-1]["task_id"])
    assert len(everyone) == 4 and len(rest) == 2
    assert sorted(r["task_id"] for r in everyone + rest) == sorted(
        str(t.task_id) for t in (done, rejected, returned, revoked, waiting, expired)
    )
    # Due: the unfinished tasks whose wake-up time has come, never a finished one.
    later = clock.now + timedelta(days=30)
    assert set(projection.due(later)) == {str(returned.task_id), str(waiting.task_id)}
    assert projection.due(clock.now - timedelta(days=30)) == []
    people = projection.participants(done.task_id)
    signer = next(p for p in people if p["step_key"] == "sign")
    assert signer["act"] == "signed" and signer["read_at"] is not None
    assert signer["acted_at"] == micros(done.state.finished_at)
    documents = projection.documents(done.task_id)
    assert documents[0]["revisions"] == 1 and documents[0]["current_sha256"] == REV


def test_incremental_catch_up_equals_a_cold_rebuild_and_resumes(
    store: LedgerStore, clock: Clock, open_store: OpenStore
) -> None:
    tasks = realistic_tasks(store, clock)
    size = store.tree_size()
    # In small batches with a tiny cache, tasks are reloaded from the store mid-stream.
    with TaskProjection(store, batch=3, cache=1) as small:
        for _ in range(4):
            small.catch_up(limit=5)
        incremental_position = small.position
        incremental = small.catch_up()
        assert incremental_position + incremental == size
        rows = small.dump()
    with TaskProjection(open_store()) as fresh:
        assert fresh.position == size
        assert fresh.catch_up() == 0  # resumes from the stored position, re-applies nothing
        more = launch(store, clock)
        more.act(DEPT_HEAD, Approve())
        assert fresh.catch_up() == store.tree_size() - size
        assert fresh.rebuild() == store.tree_size()
        assert fresh.dump() == oracle(store, [t.task_id for t in [*tasks, more]])
        assert fresh.dump() != rows  # the new task is there
    with TaskProjection(store) as cold:
        cold.rebuild()
        assert cold.dump() == oracle(store, [t.task_id for t in [*tasks, more]])


def test_a_failed_batch_stores_nothing_and_is_redone(
    store: LedgerStore, clock: Clock, projection: TaskProjection, monkeypatch: Any
) -> None:
    tasks = realistic_tasks(store, clock)
    projection.catch_up(limit=10)
    before = projection.dump()
    original = type(projection._db).transaction

    def failing(self: Any, **kwargs: Any) -> Any:
        class Failing:
            def __enter__(inner) -> Any:
                inner.cm = original(self, **kwargs)
                tx = inner.cm.__enter__()
                real = tx.execute_many

                def execute_many(sql: str, rows: Any) -> None:
                    real(sql, rows)
                    if "proj_participants" in sql:
                        raise Boom

                tx.execute_many = execute_many
                return tx

            def __exit__(inner, *exc: Any) -> Any:
                return inner.cm.__exit__(*exc)

        return Failing()

    monkeypatch.setattr(type(projection._db), "transaction", failing)
    with pytest.raises(Boom):
        projection.catch_up()
    monkeypatch.undo()
    with TaskProjection(store) as again:
        assert again.position == 10
        assert again.dump() == before
        again.catch_up()
        assert again.dump() == oracle(store, [t.task_id for t in tasks])
    projection.catch_up()  # the failed projector forgot its memory and carries on right
    assert projection.dump() == oracle(store, [t.task_id for t in tasks])


def test_two_projectors_racing_agree_with_the_fold_and_skip_what_the_other_stored(
    store: LedgerStore, clock: Clock, open_store: OpenStore
) -> None:
    """Two workers' followers on one database: the one that loses a batch's write goes on
    from the winner's position with its memory kept, and neither folds again what the
    other has stored."""
    tasks = realistic_tasks(store, clock)
    with TaskProjection(store, batch=4) as first, TaskProjection(open_store(), batch=4) as second:
        write = first._write_rows
        raced: list[int] = []

        def second_writes_first(start: int, end: int, batch: Any) -> bool:
            if not raced:  # between the first's fold and its write, the second stores 6
                raced.append(second.catch_up(limit=6))
            return write(start, end, batch)

        first._write_rows = second_writes_first  # type: ignore[method-assign]
        assert first.catch_up(limit=4) == 4  # folded 4, and its write was refused
        assert raced == [6] and first.position == second.position == 6
        assert first.dump() == second.dump()
        first._write_rows = write  # type: ignore[method-assign]

        more = launch(store, clock)
        tasks[4].act(DEPT_HEAD, View(DOC))  # the waiting task, folded by both before
        more.act(DEPT_HEAD, Approve())
        assert first.catch_up(limit=8) == 8  # from the second's position, with its memory
        assert second.catch_up() == store.tree_size() - 14
        assert first.catch_up() == 0  # the second stored the rest: nothing folded again
        assert first.position == second.position == store.tree_size()
        every = [t.task_id for t in [*tasks, more]]
        assert first.dump() == second.dump() == oracle(store, every)
        tasks[4].act(DEPT_HEAD, View(DOC))
        assert first.catch_up() == 1
        assert first.dump() == oracle(store, every)


def test_events_appended_while_catching_up_are_picked_up_next_time(
    store: LedgerStore, clock: Clock, open_store: OpenStore
) -> None:
    writer_store = open_store()
    task_ids: list[uuid.UUID] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            while not stop.is_set() and len(task_ids) < 12:
                task = launch(writer_store, clock)
                task_ids.append(task.task_id)
                task.act(DEPT_HEAD, Approve())
                task.act(FINANCE, Approve())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with TaskProjection(store, batch=4) as projection:
        writer = threading.Thread(target=write)
        writer.start()
        rounds = 0
        while writer.is_alive() and rounds < 500:
            projection.catch_up()
            rounds += 1
        stop.set()
        writer.join()
        assert not errors
        projection.catch_up()
        assert projection.position == store.tree_size()
        assert projection.dump() == oracle(store, task_ids)


def test_unreadable_and_out_of_place_events_become_anomalies(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    task = launch(store, clock)
    task.append([EventDraftData("step.approved", {"step": "cfo"})], "stranger")
    task.append([EventDraftData("task.created", {"title": "again"})], INITIATOR)
    orphan = StoredTask(store, clock)
    orphan.append([EventDraftData("comment.added", {"text": "hello"})], INITIATOR)
    broken = StoredTask(store, clock)
    broken.append([EventDraftData("task.created", {"title": "no route"})], INITIATOR)
    projection.catch_up()
    ids = [task.task_id, orphan.task_id, broken.task_id]
    assert projection.dump() == oracle(store, ids, safe=True)
    row = projection.get_task(task.task_id)
    assert row is not None and row["anomalies"] == 2
    assert projection.get_task(orphan.task_id) is None  # never created: no rows
    assert projection.get_task(broken.task_id) is None


def test_a_long_catch_up_folds_in_worker_processes_and_equals_the_fold(
    store: LedgerStore, clock: Clock
) -> None:
    tasks = realistic_tasks(store, clock)
    more = launch(store, clock)
    more.act(DEPT_HEAD, Approve())
    ids = [t.task_id for t in [*tasks, more]]
    size = store.tree_size()
    # From a cold start, with every task held in memory, and with one only (the others
    # folded again from their streams when met again):
    for cache in (1000, 1):
        with TaskProjection(
            store, batch=4, workers=2, parallel_threshold=1, cache=cache
        ) as parallel:
            assert parallel.rebuild() == size
            assert parallel.dump() == oracle(store, ids)
    # and from part-way, with tasks begun before the workers start:
    with TaskProjection(store, batch=4, workers=1) as serial:
        serial.rebuild()
        with serial._db.transaction() as tx:
            for table in PROJECTION_TABLES[:-1]:
                tx.execute(f"DELETE FROM {table}")
            tx.execute("UPDATE proj_positions SET position = 0 WHERE name = 'tasks'")
        serial._position = 0
        serial._tasks.clear()
        assert serial.catch_up(limit=7) == 7
    with TaskProjection(store, batch=4, workers=2, parallel_threshold=1) as parallel:
        assert parallel.position == 7
        assert parallel.catch_up() == size - 7
        assert parallel.dump() == oracle(store, ids)


def test_fold_workers_each_read_the_tasks_whose_id_ends_in_their_number(
    store: LedgerStore, clock: Clock
) -> None:
    """The database picks each worker's leaves: task id's last byte modulo the workers."""
    tasks = realistic_tasks(store, clock)
    db = database_for(store)
    try:
        for workers in (1, 2, 3, 4):
            sql = (
                "SELECT DISTINCT l.stream_id FROM ledger_log l "
                f"WHERE {partition_sql(db.backend, workers)} = ?"
            )
            shares = [
                {db.task_id(key) for (key,) in db.query(sql, [number])} for number in range(workers)
            ]
            assert set().union(*shares) == {str(t.task_id) for t in tasks}
            for number, share in enumerate(shares):
                assert all(uuid.UUID(task_id).bytes[15] % workers == number for task_id in share)
    finally:
        db.close()


def test_partition_sql_is_the_last_byte_modulo_the_workers_for_every_byte(
    store: LedgerStore,
) -> None:
    """Every last byte, every worker count up to eight: divisors of 16 read one digit."""
    db = database_for(store)
    stream = "CAST(? AS uuid)" if db.backend == "postgres" else "?"
    ids = [uuid.UUID(int=(0x1234 << 64) | byte) for byte in range(256)]
    try:
        for workers in range(1, 9):
            part = partition_sql(db.backend, workers)
            sql = f"SELECT {part} FROM (SELECT {stream} AS stream_id) l"
            got = [db.query(sql, [db.stream_key(i)])[0][0] for i in ids]
            assert got == [i.bytes[15] % workers for i in ids], workers
    finally:
        db.close()
