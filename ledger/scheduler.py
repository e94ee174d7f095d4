"""The scheduler: expires tasks past their deadline and sends policy reminders (催签).

It keeps nothing in memory that matters. Which tasks may owe something comes from a
``candidates(now)`` query (the task-state projection's ``wake_at`` column); what each one
owes is worked out again from the task's events (:mod:`ledger.workflow.schedule`), and
every reminder and expiry is itself an event. So a scheduler stopped at any moment, or
restarted a day later, does what was owed and nothing twice; several schedulers may run at
once, as each act is re-decided on the latest state after a lost race.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from uuid import UUID

from ledger.errors import LedgerError
from ledger.events import Actor
from ledger.task_service import Acting, ActResult, TaskService
from ledger.workflow import SYSTEM_ACTOR, Command, Expire, Remind, TaskState
from ledger.workflow.errors import ActionRefused
from ledger.workflow.schedule import due_reminders

_LOG = logging.getLogger(__name__)

SCHEDULER = Acting(Actor(SYSTEM_ACTOR, "Evidence Ledger scheduler", "system"))

#: Finds the tasks that may owe something at ``now`` (a superset is fine, never a subset).
Candidates = Callable[[datetime], Iterable[UUID]]
#: A bound on acts for one task in one pass, against a rule that never stops owing.
MAX_ACTS_PER_TASK = 64


def owed(state: TaskState, now: datetime) -> Command | None:
    """The one act the scheduler owes the task at ``now``: its expiry first, then reminders."""
    if state.finished or state.status == "draft":
        return None
    deadline = state.effective_deadline
    if deadline is not None and now > deadline:
        return Expire()
    for reminder in due_reminders(state):
        if reminder.at <= now:
            return Remind(reminder.user, "policy")
    return None


class Scheduler:
    """One pass over the candidate tasks, as often as it is run."""

    def __init__(self, service: TaskService, candidates: Candidates) -> None:
        self.service = service
        self.candidates = candidates

    def run_once(self) -> list[ActResult]:
        """Store every expiry and reminder owed now; returns what was stored."""
        done: list[ActResult] = []
        now = self.service.clock()
        for task_id in self.candidates(now):
            # A task may owe several reminders (a countersign step) or a reminder and then
            # its expiry: act until nothing more is owed (each act makes the next one later).
            for _ in range(MAX_ACTS_PER_TASK):
                try:
                    result = self.service.act_when(task_id, SCHEDULER, owed)
                except ActionRefused as exc:  # the task moved on meanwhile
                    _LOG.info("scheduler: task %s: %s", task_id, exc)
                    break
                if result is None:
                    break
                done.append(result)
        return done


class SchedulerThread(threading.Thread):
    """Runs :meth:`Scheduler.run_once` every ``interval`` seconds until stopped."""

    def __init__(self, scheduler: Scheduler, interval: float = 30.0) -> None:
        super().__init__(name="evidence-ledger-scheduler", daemon=True)
        self.scheduler = scheduler
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.scheduler.run_once()
            except LedgerError:
                _LOG.exception("scheduler pass failed; trying again in %.0f s", self.interval)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
