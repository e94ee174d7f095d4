"""What the scheduler owes a task, and when: expiry at its deadline, reminders by policy.

Pure functions of a :class:`~ledger.workflow.state.TaskState`. The state comes from the log,
so the schedule survives restarts: nothing is kept in memory between runs, and a reminder or
expiry that was already stored is part of the state and is not owed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.workflow.state import StepState, TaskState


@dataclass(frozen=True)
class DueReminder:
    """A policy reminder owed to ``user`` from ``at``."""

    user: str
    at: datetime


def waiting_since(step: StepState, user: str) -> datetime | None:
    """When ``user``'s turn in ``step`` began, or ``None`` if they are not pending.

    In a sequential step a turn begins when the one before acted; in countersign and
    or-sign steps when the step began. Someone handed a part by transfer waits from the
    transfer.
    """
    if user not in step.pending or step.started_at is None:
        return None
    since = step.started_at
    sequential = step.spec.mode == "sequential"
    previous = None
    for participant in step.participants:
        if participant.user == user:
            if previous is not None and previous.act == "transferred" and previous.acted_at:
                since = max(since, previous.acted_at)
            break
        if sequential and participant.acted_at is not None:
            since = max(since, participant.acted_at)
        previous = participant
    return since


def due_reminders(state: TaskState) -> list[DueReminder]:
    """The next policy reminder of each pending participant (due now or later)."""
    policy = state.route.reminder_policy if state.route else None
    step = state.current_step
    if policy is None or step is None or state.finished or state.status == "draft":
        return []
    owed: list[DueReminder] = []
    for user in step.pending:
        member = step.member(user)
        since = waiting_since(step, user)
        if member is None or since is None or member.reminders >= policy.max_reminders:
            continue
        if member.reminders and member.reminded_at is not None:
            at = member.reminded_at + timedelta(hours=policy.every_hours)
        else:
            at = since + timedelta(hours=policy.first_after_hours)
        owed.append(DueReminder(user, at))
    return owed


def next_wakeup(state: TaskState) -> datetime | None:
    """The earliest time the scheduler owes this task something, or ``None`` if never.

    Expiry is owed strictly after the effective deadline (``now > deadline``, as
    :func:`~ledger.workflow.decide.decide` requires); a reminder from its time.
    """
    if state.finished or state.status == "draft":
        return None
    times = [r.at for r in due_reminders(state)]
    deadline = state.effective_deadline
    if deadline is not None:
        times.append(deadline + timedelta(microseconds=1))
    return min(times) if times else None
