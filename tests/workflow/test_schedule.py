"""When the scheduler owes a task a reminder or its expiry (issue 3, points 3 and 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.workflow import SYSTEM_ACTOR, Approve, Expire, Remind, ReminderPolicy, Transfer
from ledger.workflow import errors as e
from ledger.workflow.schedule import due_reminders, next_wakeup, waiting_since
from tests.workflow import DEPT_HEAD, FINANCE, LEGAL, T0, launched

POLICY = ReminderPolicy(first_after_hours=24, every_hours=12, max_reminders=2)


def test_no_policy_means_only_the_deadline_is_owed() -> None:
    d = launched()
    assert due_reminders(d.state) == []
    # the countersign step has a 48 h deadline, but it has not started; the task's is 7 days
    assert next_wakeup(d.state) == T0 + timedelta(days=7, microseconds=1)


def test_policy_reminders_follow_the_turn_and_stop_at_the_maximum() -> None:
    d = launched(reminder_policy=POLICY)
    started = d.now
    assert [(r.user, r.at) for r in due_reminders(d.state)] == [
        (DEPT_HEAD, started + timedelta(hours=24))
    ]
    d.act(SYSTEM_ACTOR, Remind(DEPT_HEAD, "policy"), at=started + timedelta(hours=25))
    assert due_reminders(d.state)[0].at == started + timedelta(hours=37)
    d.act(SYSTEM_ACTOR, Remind(DEPT_HEAD, "policy"), at=started + timedelta(hours=38))
    assert due_reminders(d.state) == []  # two is the maximum for this visit
    approved = started + timedelta(hours=40)
    d.act(DEPT_HEAD, Approve(), at=approved)
    # countersign: both wait from the step's start; its own 48 h deadline now applies
    assert {(r.user, r.at) for r in due_reminders(d.state)} == {
        (FINANCE, approved + timedelta(hours=24)),
        (LEGAL, approved + timedelta(hours=24)),
    }
    assert next_wakeup(d.state) == approved + timedelta(hours=24)


def test_a_transferred_part_waits_from_the_transfer() -> None:
    d = launched(reminder_policy=POLICY)
    moved = d.now + timedelta(hours=3)
    d.act(DEPT_HEAD, Transfer("u-deputy"), at=moved)
    step = d.state.current_step
    assert step is not None and waiting_since(step, "u-deputy") == moved
    assert waiting_since(step, DEPT_HEAD) is None


def test_expiry_is_owed_strictly_after_the_deadline_and_then_nothing_more() -> None:
    d = launched(reminder_policy=POLICY)
    deadline = T0 + timedelta(days=7)
    with pytest.raises(e.NotDue):
        d.act(SYSTEM_ACTOR, Expire(), at=deadline)
    d.act(SYSTEM_ACTOR, Expire(), at=deadline + timedelta(microseconds=1))
    assert d.state.status == "expired"
    assert next_wakeup(d.state) is None and due_reminders(d.state) == []
