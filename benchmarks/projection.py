"""Projection catch-up from a cold start: the task projection against eventsourcing's follower.

*Ours* is ``projections.TaskProjection.catch_up()`` on a SQLite ledger of N events made of
realistic task streams (six scenarios driven through ``ledger.workflow.decide``: completed
with countersign, CFO password check and an OTP signature; rejected; returned and
transferred; revoked; still in progress; a signer added), interleaved 500 tasks at a time
as a busy log would hold them, and appended through the full append path. The projection
tables start empty: every event is read from the log, decoded, folded into its task's
state, and every task's rows are written, a batch of leaves per transaction.

The peer is how eventsourcing itself follows an application: the same envelopes saved as
aggregate events of an ``Application`` (one aggregate per task), followed by a
``ProcessApplication`` whose policy keeps a view aggregate per task up to date (status,
last act, count of acts), run with the library's ``System`` and ``SingleThreadedRunner`` on
SQLite and timed over ``pull_and_process``. The library records each processed event with
its tracking record in its own transaction (one commit per event). Its pull section is
raised from 10 to 500 notifications, in its favour.

The issue's target: at least 50,000 events/s for ours on SQLite.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import pstats
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System

from benchmarks.common import (
    LEDGER_SOURCES_DIGEST,
    RESULTS,
    print_table,
    publish_sqlite,
    remove_sqlite,
    write_result,
)
from ledger.blobs import BlobRef
from ledger.events import Actor, RequestContext
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.workflow import (
    AddSigner,
    Approve,
    Command,
    Comment,
    Condition,
    Create,
    Directory,
    DirectoryUser,
    EventDraftData,
    ParticipantRef,
    ReadToEnd,
    Reject,
    Remind,
    ReminderPolicy,
    Return,
    Revoke,
    Sign,
    StepSpec,
    Submit,
    TaskState,
    Template,
    Transfer,
    VerifyIdentity,
    View,
    apply,
    decide,
    preview_envelope,
    route,
)
from projections import TaskProjection

TARGET_EVENTS_PER_SECOND = 50_000
DEFAULT_EVENTS = 200_000
INTERLEAVE = 500
APPEND_BATCH = 5_000
PEER_SECTION = 500

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
DOC = "3" * 64
CONTRACT = BlobRef(DOC, 48_213, "application/pdf", "采购合同 supply-contract.pdf")
NAMES = {
    "u-chen": ("陈小明", "procurement"),
    "u-wong": ("王经理", "procurement"),
    "u-lee": ("Li Finance", "finance"),
    "u-ho": ("何律师 Ho", "legal"),
    "u-cheung": ("张CFO", "finance"),
    "u-deputy": ("Deputy Lam", "legal"),
    "ext-supplier": ("Northwind Supplies Ltd", None),
}
CONTEXT = RequestContext(
    ip="203.0.113.9",
    user_agent="Mozilla/5.0 (iPhone) DingTalk/7.6",
    device_id="dev-1",
    platform="ios",
    client_time="2026-11-22T10:00:00+08:00",
    request_id="req-1",
)


# -- the task streams --------------------------------------------------------------------


def _template() -> Template:
    def step(key: str, title: str, role: str, mode: str, *refs: ParticipantRef, **kw: Any) -> Any:
        return StepSpec(key, title, role, mode, refs, **kw)

    return Template(
        id="purchase",
        version=3,
        name="Purchase request 采购申请",
        steps=(
            step("head", "Department head", "approver", "sequential", ParticipantRef(role="head")),
            step(
                "finance_legal",
                "Finance and legal 会签",
                "approver",
                "countersign",
                ParticipantRef(user="u-lee"),
                ParticipantRef(user="u-ho"),
                deadline_hours=48,
            ),
            step(
                "cfo",
                "CFO",
                "approver",
                "sequential",
                ParticipantRef(user="u-cheung"),
                required_factors=("password",),
                condition=Condition("amount", ">", "5000", "HKD"),
            ),
            step(
                "sign",
                "Supplier signs",
                "signer",
                "sequential",
                ParticipantRef(user="ext-supplier"),
                required_factors=("sms_otp",),
            ),
            step("cc", "Archive", "cc", "sequential", ParticipantRef(user="u-archive")),
        ),
        reminder_policy=ReminderPolicy(24, 24, 3),
    )


class _Script:
    """Drives one task through ``decide``, keeping the drafts and who acted."""

    def __init__(self, amount: str) -> None:
        self.state = TaskState()
        self.now = T0
        self.events: list[tuple[EventDraftData, str]] = []
        directory = Directory(
            users={"u-chen": DirectoryUser("陈小明", "Acme HK", "procurement")},
            department_roles={"procurement": {"head": ("u-wong",)}},
        )
        form = {"item": "Laptops", "amount": {"amount": amount, "currency": "HKD"}}
        r = route(_template(), form, "u-chen", directory)
        deadline = T0 + timedelta(days=14)
        self("u-chen", Create(r, "采购申请: laptops", form, deadline, documents=(CONTRACT,)))
        self("u-chen", Submit())

    def __call__(self, actor: str, command: Command) -> _Script:
        self.now += timedelta(minutes=3)
        for draft in decide(self.state, command, actor, self.now):
            sequence = self.state.last_sequence + 1
            self.state = apply(self.state, preview_envelope(draft, actor, sequence, self.now))
            self.events.append((draft, actor))
        return self


def _sign(s: _Script) -> _Script:
    s("ext-supplier", View(DOC))("ext-supplier", ReadToEnd(DOC))
    s("ext-supplier", VerifyIdentity("sms_otp", "sms", "passed", "gw-1"))
    return s("ext-supplier", Sign(DOC, "4" * 64))


def _cfo(s: _Script) -> _Script:
    return s("u-cheung", VerifyIdentity("password", "sso", "passed"))("u-cheung", Approve())


def scenarios() -> list[list[tuple[EventDraftData, str]]]:
    """The event drafts (with their actors) of each kind of task, 6 to 20 events each."""
    completed = _Script("12800.00")("u-wong", View(DOC))("u-wong", Approve("同意"))
    completed("u-lee", View(DOC))("u-lee", Approve())("u-ho", Comment("clause 7 ok"))
    completed("u-ho", Approve())
    _sign(_cfo(completed))
    rejected = _Script("3200.00")("u-wong", Approve())("u-lee", View(DOC))
    rejected("u-lee", Reject("budget exhausted 预算不足"))
    returned = _Script("8800.00")("u-wong", Approve())("u-lee", Return("head", "wrong cost centre"))
    returned("u-wong", Approve())("u-lee", Approve())("u-ho", Transfer("u-deputy", "on leave"))
    returned("u-deputy", Approve())
    _cfo(returned)("u-chen", Remind("ext-supplier"))
    _sign(returned)
    revoked = _Script("4100.00")("u-wong", View(DOC))("u-chen", Comment("wrong vendor"))
    revoked("u-chen", Revoke("duplicate request"))
    waiting = _Script("15000.00")("u-wong", Approve())("u-lee", Approve())
    waiting("u-chen", Remind("u-ho"))("u-ho", View(DOC))
    added = _Script("2500.00")("u-wong", AddSigner("u-deputy", "after"))("u-wong", Approve())
    added("u-deputy", Approve())("u-lee", Approve())
    return [s.events for s in (completed, rejected, returned, revoked, waiting, added)]


def task_drafts(count: int) -> Iterator[list[Any]]:
    """Drafts of about ``count`` events, in append batches, tasks interleaved."""
    kinds = scenarios()
    actors = {
        user: Actor(user, NAMES.get(user, (user, None))[0], "Acme HK", "user")
        for kind in kinds
        for _, user in kind
    }
    made = 0
    pending: list[Any] = []
    number = 0
    while made < count:
        tasks = []
        while len(tasks) < INTERLEAVE and made < count:
            kind = kinds[number % len(kinds)]
            number += 1
            tasks.append((uuid.uuid4(), kind))
            made += len(kind)
        for position in range(max(len(k) for _, k in tasks)):
            for stream, kind in tasks:
                if position < len(kind):
                    draft, user = kind[position]
                    pending.append(draft.to_draft(stream, actors[user], CONTEXT))
            while len(pending) >= APPEND_BATCH:
                yield pending[:APPEND_BATCH]
                pending = pending[APPEND_BATCH:]
    if pending:
        yield pending


def ledger_file(count: int, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """A ledger of about ``count`` task events, built once and cached (while ``ledger/`` is
    unchanged)."""
    path = RESULTS / f"projection-ledger-{count}.sqlite"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists() and not rebuild:
        info = json.loads(info_path.read_text())
        if info.get("ledger_sources") == LEDGER_SOURCES_DIGEST:
            return path, info
        print("  ledger/ changed since the cached ledger was built: rebuilding", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    remove_sqlite(partial)
    clock = [T0]

    def tick() -> datetime:
        clock[0] += timedelta(seconds=2)
        return clock[0]

    store = SQLiteLedgerStore(partial, clock=tick)
    started = time.perf_counter()
    try:
        for batch in task_drafts(count):
            store.append(batch)
        size = store.tree_size()
    finally:
        store.close()
    elapsed = time.perf_counter() - started
    publish_sqlite(partial, path)
    info = {"events": size, "built_seconds": elapsed, "ledger_sources": LEDGER_SOURCES_DIGEST}
    info_path.write_text(json.dumps(info) + "\n")
    return path, info


# -- ours --------------------------------------------------------------------------------


def time_ours(
    ledger: Path, workdir: Path, profile: bool, workers: int | None = None
) -> dict[str, Any]:
    """Copy the ledger (so the projection starts empty and cold) and time a catch-up.

    ``workers=1`` folds in this process alone; the default folds in one process per core
    (up to four), as a cold start does.
    """
    copy = workdir / f"ours-{workers}.sqlite"
    shutil.copyfile(ledger, copy)
    os.sync()  # the copy on disk before the clock starts, not written back during the run
    store = SQLiteLedgerStore(copy)
    try:
        projection = TaskProjection(store, workers=workers)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        applied = projection.catch_up()
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        dump = projection.dump()
        tasks = len(dump["proj_tasks"])
        anomalies = len(dump["proj_anomalies"])
        projection.close()
    finally:
        store.close()
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return {
        "events": applied,
        "seconds": elapsed,
        "events_per_second": applied / elapsed,
        "tasks": tasks,
        "anomalies": anomalies,
        "workers": projection.workers,
    }


def repeat_ours(
    ledger: Path, workdir: Path, profile: bool, workers: int | None, runs: int
) -> dict[str, Any]:
    """:func:`time_ours` ``runs`` times, each in a new process; the median run, with all.

    A new process for each run starts as a server does, with none of the memory an
    earlier run (or the benchmark itself) left behind.
    """
    context = multiprocessing.get_context("spawn")
    results = []
    for _ in range(max(1, runs)):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            results.append(pool.submit(time_ours, ledger, workdir, profile, workers).result())
    results.sort(key=lambda r: r["events_per_second"])
    median = dict(results[len(results) // 2])
    median["runs_events_per_second"] = [r["events_per_second"] for r in results]
    return median


# -- the peer: eventsourcing's own follower ------------------------------------------------


class TaskRecord(Aggregate):
    """The leader's task: created by its first act, then one event per act (the envelope)."""

    @event("Created")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.acts = 1

    @event("Recorded")
    def record(self, envelope: dict[str, Any]) -> None:
        self.acts += 1


class TaskView(Aggregate):
    """The follower's view of one task, kept by its policy."""

    @event("Opened")
    def __init__(self, task_id: str, title: str, initiator: str, at: str) -> None:
        self.task_id = task_id
        self.status = "draft"
        self.last_act = "task.created"
        self.last_actor = initiator
        self.updated_at = at
        self.acts = 1

    @event("Updated")
    def update(self, status: str, act: str, actor: str, at: str) -> None:
        self.status = status
        self.last_act = act
        self.last_actor = actor
        self.updated_at = at
        self.acts += 1

    @staticmethod
    def create_id(task_id: str) -> uuid.UUID:
        return uuid5(NAMESPACE_URL, f"/task-views/{task_id}")


_STATUS_BY_TYPE = {
    "task.submitted": "in_progress",
    "document.signed": "partially_signed",
    "step.rejected": "rejected",
    "task.revoked": "revoked",
    "task.expired": "expired",
    "task.completed": "completed",
}


class TaskLog(Application[uuid.UUID]):
    """The leader: an application saving the task envelopes as aggregate events."""

    log_section_size = PEER_SECTION


class TaskBoard(ProcessApplication[uuid.UUID]):
    """The follower: one view aggregate per task, updated by its policy per event."""

    pull_section_size = PEER_SECTION

    @singledispatchmethod
    def policy(
        self,
        domain_event: DomainEventProtocol[uuid.UUID],
        processing_event: ProcessingEvent[uuid.UUID],
    ) -> None:
        envelope: dict[str, Any] = domain_event.envelope  # type: ignore[attr-defined]
        task_id = envelope["stream_id"]
        if isinstance(domain_event, TaskRecord.Created):  # type: ignore[attr-defined]
            view = TaskView(
                task_id,
                envelope["data"].get("title", ""),
                envelope["actor"]["id"],
                envelope["server_time"],
            )
        else:
            view = self.repository.get(TaskView.create_id(task_id))
            status = _STATUS_BY_TYPE.get(envelope["type"], view.status)
            view.update(status, envelope["type"], envelope["actor"]["id"], envelope["server_time"])
        processing_event.collect_events(view)


def _peer_env(leader: Path, follower: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "TASKLOG_SQLITE_DBNAME": str(leader),
        "TASKBOARD_SQLITE_DBNAME": str(follower),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


def peer_leader(ledger: Path, count: int, rebuild: bool) -> Path:
    """The leader's database holding the ledger's first ``count`` envelopes (cached)."""
    path = RESULTS / f"projection-peer-{count}.sqlite"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists() and not rebuild:
        info = json.loads(info_path.read_text())
        if info.get("ledger") == ledger.name and info.get("events") == count:
            return path
    partial = path.with_suffix(".partial")
    remove_sqlite(partial)
    env = _peer_env(partial, partial.with_suffix(".unused"))
    app = TaskLog(env=env)
    tasks: dict[str, TaskRecord] = {}
    connection = sqlite3.connect(ledger)
    try:
        cursor = connection.execute(
            "SELECT e.state FROM ledger_log l JOIN stored_events e ON e.originator_id = "
            "l.stream_id AND e.originator_version = l.sequence ORDER BY l.leaf_index LIMIT ?",
            [count],
        )
        touched: dict[int, TaskRecord] = {}
        for (state,) in cursor:
            envelope = json.loads(state)
            task = tasks.get(envelope["stream_id"])
            if task is None:
                task = tasks[envelope["stream_id"]] = TaskRecord(envelope)
            else:
                task.record(envelope)
            touched[id(task)] = task
            if len(touched) >= 1000:
                app.save(*touched.values())
                touched = {}
        if touched:
            app.save(*touched.values())
    finally:
        connection.close()
        app.close()
    publish_sqlite(partial, path)
    info_path.write_text(json.dumps({"ledger": ledger.name, "events": count}) + "\n")
    return path


def time_peer(leader: Path, workdir: Path) -> dict[str, Any]:
    copy = workdir / "leader.sqlite"
    shutil.copyfile(leader, copy)
    system = System(pipes=[[TaskLog, TaskBoard]])
    runner: SingleThreadedRunner[uuid.UUID] = SingleThreadedRunner(
        system, env=_peer_env(copy, workdir / "follower.sqlite")
    )
    runner.start()
    try:
        board = runner.get(TaskBoard)
        started = time.perf_counter()
        board.pull_and_process("TaskLog")
        elapsed = time.perf_counter() - started
        processed = board.recorder.max_tracking_id("TaskLog") or 0
    finally:
        runner.stop()
    return {"events": processed, "seconds": elapsed, "events_per_second": processed / elapsed}


# -- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    count = args.events
    print(f"projection: cold catch-up of a ledger of about {count:,} task events", flush=True)
    ledger, info = ledger_file(count, args.rebuild)
    events = int(info["events"])
    print(f"  ledger: {ledger} ({events:,} events)", flush=True)
    peer_count = min(events, args.peer_events) if args.peer_events else events
    leader = peer_leader(ledger, peer_count, args.rebuild)
    print(f"  eventsourcing leader: {leader} ({peer_count:,} events)", flush=True)
    with tempfile.TemporaryDirectory(prefix="projection-bench-") as scratch:
        workdir = Path(scratch)
        single = repeat_ours(ledger, workdir, args.profile_projection, 1, args.projection_runs)
        ours = repeat_ours(ledger, workdir, False, None, args.projection_runs)
        peer = time_peer(leader, workdir) if not args.skip_peer else None
    ratio = ours["events_per_second"] / peer["events_per_second"] if peer else None
    rows: list[list[Any]] = [
        [
            f"ours: TaskProjection.catch_up, {ours['workers']} fold processes",
            ours["events"],
            ours["seconds"],
            ours["events_per_second"],
        ],
        [
            "ours: TaskProjection.catch_up, one process",
            single["events"],
            single["seconds"],
            single["events_per_second"],
        ],
    ]
    if peer:
        rows.append(
            [
                "eventsourcing follower (pull_and_process)",
                peer["events"],
                peer["seconds"],
                peer["events_per_second"],
            ]
        )
    print_table(["", "events", "seconds", "events/s"], rows)
    met = ours["events_per_second"] >= TARGET_EVENTS_PER_SECOND
    print(
        f"  tasks projected: {ours['tasks']:,}; anomalies: {ours['anomalies']}; "
        f"target {TARGET_EVENTS_PER_SECOND:,}/s: {'met' if met else 'NOT met'}"
        + (f"; ours / follower: {ratio:.1f}x" if ratio else "")
    )
    path = write_result(
        "projection",
        {
            "events": events,
            "ours": ours,
            "ours_one_process": single,
            "peer": peer,
            "ratio": ratio,
            "target_events_per_second": TARGET_EVENTS_PER_SECOND,
            "met": met,
        },
    )
    print(f"  written {path}")
    return 0 if met and ours["anomalies"] == 0 else 1
