"""The scheduler expires and reminds from the log alone, across restarts (issue 3, point 3)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

from ledger.blobs import BlobStore
from ledger.scheduler import Scheduler
from ledger.store import LedgerStore
from ledger.task_service import TaskService
from ledger.workflow import Create, ReminderPolicy, Submit, route
from tests.conftest import StoreFactory
from tests.ledger.test_task_service import by
from tests.workflow import DEPT_HEAD, INITIATOR, T0, seed_directory, seed_form, seed_template

POLICY = ReminderPolicy(first_after_hours=24, every_hours=24, max_reminders=3)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def open_service(make: StoreFactory, clock: Clock, blobs: Path) -> TaskService:
    store = make()
    store.clock = clock
    return TaskService(store, BlobStore(blobs))


def launch(service: TaskService, days: int = 3) -> UUID:
    task = uuid4()
    r = route(seed_template(reminder_policy=POLICY), seed_form(), INITIATOR, seed_directory())
    deadline = T0 + timedelta(days=days)
    service.create(task, Create(r, "Laptops", seed_form(), deadline), by(INITIATOR))
    service.act(task, Submit(), by(INITIATOR))
    return task


def kinds(store: LedgerStore, task: UUID) -> list[str]:
    out = []
    for event in store.read_stream(task):
        env = event.envelope
        if env["type"] == "task.reminded":
            out.append(f"reminded:{env['data']['to_user']}:{env['data']['kind']}")
        else:
            out.append(env["type"])
    return out


def only(task: UUID) -> Callable[[datetime], list[UUID]]:
    return lambda now: [task]


def test_reminders_then_expiry_survive_a_restart(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    clock = Clock(T0)
    service = open_service(store_factory, clock, tmp_path / "blobs")
    task = launch(service)
    scheduler = Scheduler(service, only(task))
    assert scheduler.run_once() == []  # nothing owed yet

    clock.now = T0 + timedelta(hours=25)
    assert [r.event_types for r in scheduler.run_once()] == [["task.reminded"]]
    assert scheduler.run_once() == []  # the next one is a day later

    # A new process: new store, new service, new scheduler; nothing remembered in memory.
    clock.now = T0 + timedelta(days=3, hours=1)
    restarted = Scheduler(open_service(store_factory, clock, tmp_path / "blobs"), only(task))
    stored = [r.event_types for r in restarted.run_once()]
    assert stored == [["task.expired"]]  # expiry wins over the reminder owed the same day
    assert restarted.run_once() == []
    assert kinds(service.store, task) == [
        "task.created",
        "task.submitted",
        f"reminded:{DEPT_HEAD}:policy",
        "task.expired",
    ]
    expired = service.store.read_stream(task)[-1].envelope
    assert expired["actor"]["id"] == "system:scheduler"
    assert expired["data"]["deadline"] == "2025-03-06T09:00:00.000000Z"


def run(scheduler: Scheduler, barrier: threading.Barrier) -> None:
    barrier.wait()
    scheduler.run_once()


def test_racing_schedulers_store_each_reminder_and_the_expiry_once(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    clock = Clock(T0)
    first = open_service(store_factory, clock, tmp_path / "blobs")
    task = launch(first, days=10)
    schedulers = [
        Scheduler(open_service(store_factory, clock, tmp_path / "blobs"), only(task))
        for _ in range(4)
    ]
    for hours in (25, 49, 24 * 10 + 1):
        clock.now = T0 + timedelta(hours=hours)
        barrier = threading.Barrier(len(schedulers))

        threads = [threading.Thread(target=run, args=(s, barrier)) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert kinds(first.store, task) == [
        "task.created",
        "task.submitted",
        f"reminded:{DEPT_HEAD}:policy",
        f"reminded:{DEPT_HEAD}:policy",
        "task.expired",
    ]
