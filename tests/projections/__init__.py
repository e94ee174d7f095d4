"""Task projection tests: tasks driven through ``decide`` and stored in a real store.

:class:`StoredTask` is the workflow tests' driver with the store in the middle: each
command is decided on the task's state, appended with ``expected={task: last_sequence}``,
and the state is re-read from the store. The store's clock is the driver's, so the server
times the fold sees are the times ``decide`` was given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger.events import Actor
from ledger.store import LedgerStore, Receipt
from ledger.workflow import Command, Create, EventDraftData, Submit, TaskState, decide, route
from ledger.workflow.state import apply
from projections import TaskProjection, fold_safely, rows_for
from projections.task_rows import act_row, apply_safely
from tests.workflow import CONTRACT, INITIATOR, T0, seed_directory, seed_form, seed_template


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def actor(user: str) -> Actor:
    return Actor(id=user, display_name=user, organisation="Acme HK", role="user")


@dataclass
class StoredTask:
    store: LedgerStore
    clock: Clock
    task_id: uuid.UUID = field(default_factory=uuid.uuid4)
    state: TaskState = field(default_factory=TaskState)

    def act(self, user: str, command: Command, *, gap: timedelta = timedelta(minutes=1)) -> None:
        """Decide and store; raises the refusal, if any (nothing is stored then)."""
        self.clock.now += gap
        drafts = decide(self.state, command, user, self.clock.now)
        self.append(drafts, user)

    def append(self, drafts: list[EventDraftData], user: str) -> list[Receipt]:
        """Store drafts as given (also ones ``decide`` would refuse) and re-read the state."""
        receipts = self.store.append(
            [d.to_draft(self.task_id, actor(user)) for d in drafts],
            expected={self.task_id: self.state.last_sequence},
        )
        self.state = fold_safely(e.envelope for e in self.store.read_stream(self.task_id))
        return receipts


def launch(
    store: LedgerStore,
    clock: Clock,
    amount: str = "12800.00",
    cross_border: bool = False,
    task_id: uuid.UUID | None = None,
    **template: Any,
) -> StoredTask:
    """A submitted seed task, stored."""
    task = StoredTask(store, clock, task_id or uuid.uuid4())
    form = seed_form(amount, cross_border)
    r = route(seed_template(**template), form, INITIATOR, seed_directory())
    deadline = clock.now + timedelta(days=7)
    task.act(INITIATOR, Create(r, "Purchase request: laptops", form, deadline, (CONTRACT,)))
    task.act(INITIATOR, Submit())
    return task


def oracle(store: LedgerStore, task_ids: Iterable[uuid.UUID], *, safe: bool = False) -> Any:
    """What the projection must hold for these tasks: ``rows_for`` of a fold of each stream,
    and ``act_row`` of each event against the state it met."""
    dump: dict[str, list[tuple[Any, ...]]] = {
        "proj_tasks": [],
        "proj_participants": [],
        "proj_documents": [],
        "proj_anomalies": [],
        "proj_acts": [],
    }
    step = apply_safely if safe else apply
    for task_id in task_ids:
        events = store.read_stream(task_id)
        if not events:
            continue
        state = TaskState()
        leaf = -1
        for event in events:
            entry = store.entry_for_event(event.event_id)
            assert entry is not None
            leaf = entry.leaf_index
            before, state = state, step(state, event.envelope)
            dump["proj_acts"].append(act_row(str(task_id), leaf, before, event.envelope, state))
        rows = rows_for(str(task_id), state, leaf)
        if rows.task is not None:
            dump["proj_tasks"].append(rows.task)
        dump["proj_participants"] += rows.participants
        dump["proj_documents"] += rows.documents
        dump["proj_anomalies"] += rows.anomalies
    return {table: sorted(rows) for table, rows in dump.items()}


def rows_of(projection: TaskProjection) -> Any:
    return projection.dump()
