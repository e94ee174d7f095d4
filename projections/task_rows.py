"""The task read model's rows as a pure function of a task's folded state.

:func:`rows_for` is the one place that says what the projection tables hold for a task: the
projector writes exactly these rows, and the tests use the same function on a fold of the
stored stream as their oracle. Times are integers, microseconds since the Unix epoch in UTC,
in both backends (so that the rows of SQLite and PostgreSQL are equal value for value and
KPI views need no parsing); ``None`` stays ``NULL``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ledger.workflow.schedule import next_wakeup, waiting_since
from ledger.workflow.state import FINISHED_STATUSES, StepState, TaskState, apply, parse_time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: Separates user ids in ``proj_tasks.pending`` (ids never contain a newline in practice;
#: the queryable form is ``proj_participants.pending``).
PENDING_SEPARATOR = "\n"

TASK_COLUMNS = (
    "task_id",
    "status",
    "title",
    "template_id",
    "template_version",
    "template_name",
    "initiator",
    "current_step",
    "current_step_index",
    "pending",
    "pending_count",
    "created_at",
    "submitted_at",
    "finished_at",
    "deadline",
    "due_at",
    "wake_at",
    "steps",
    "steps_done",
    "signatures",
    "comments",
    "verifications",
    "anomalies",
    "last_sequence",
    "last_leaf_index",
    "department",
    "returns",
    "electronic",
)
PARTICIPANT_COLUMNS = (
    "task_id",
    "step_index",
    "position",
    "step_key",
    "step_title",
    "role",
    "mode",
    "visit",
    "step_active",
    "step_done",
    "step_started_at",
    "step_due_at",
    "user_id",
    "act",
    "acted_at",
    "viewed_at",
    "read_at",
    "reminders",
    "reminded_at",
    "pending",
)
DOCUMENT_COLUMNS = (
    "task_id",
    "position",
    "sha256",
    "file_name",
    "media_type",
    "size",
    "revisions",
    "current_sha256",
)
ANOMALY_COLUMNS = ("task_id", "position", "note")
ACT_COLUMNS = (
    "leaf_index",
    "task_id",
    "sequence",
    "type",
    "at",
    "actor_id",
    "system",
    "step_index",
    "step_key",
    "pending_since",
    "ip",
    "connection_ip",
    "device_id",
    "platform",
    "user_agent",
    "mobile",
    "required_factors",
    "missing_factors",
    "in_turn",
    "self_act",
    "deadline",
    "anomaly",
)

#: Event types that are a participant's act on a step (the same as in
#: :data:`projections.facts.ACT_TYPES`).
ACT_TYPES = frozenset(
    {
        "step.approved",
        "document.signed",
        "step.rejected",
        "step.returned",
        "task.transferred",
        "signer.added",
    }
)
#: Platforms an upstream app reports for phones and tablets (compared in lower case).
MOBILE_PLATFORMS = frozenset({"ios", "ipados", "android", "harmonyos", "mobile"})
_MOBILE_AGENT_MARKS = ("Mobile", "Android", "iPhone", "iPad")
#: Acts for which the step's required identity factors are checked.
_IDENTITY_CHECKED = frozenset({"step.approved", "document.signed"})
_NO_CONTEXT: Mapping[str, Any] = {}
_MOBILE_SEEN_SIZE = 4096
_mobile_seen: dict[tuple[object, object], int] = {}


class TaskRows(NamedTuple):
    """One task's rows in each projection table (``task`` is ``None`` before creation)."""

    task: tuple[Any, ...] | None
    participants: list[tuple[Any, ...]]
    documents: list[tuple[Any, ...]]
    anomalies: list[tuple[Any, ...]]


def micros(moment: datetime | None) -> int | None:
    """``moment`` as integer microseconds since the Unix epoch (UTC); ``None`` stays."""
    if moment is None:
        return None
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int | None) -> datetime | None:
    """Inverse of :func:`micros`: an aware UTC datetime."""
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


def rows_for(task_id: str, state: TaskState, last_leaf_index: int) -> TaskRows:
    """The rows of task ``task_id`` in ``state``, last changed by leaf ``last_leaf_index``.

    A stream without ``task.created`` has no rows (its events are anomalies of a task that
    does not exist yet).
    """
    if not state.created:
        return TaskRows(None, [], [], [])
    route = state.route
    finished = state.finished
    current = state.current
    pending = state.pending
    pending_set = frozenset(pending)
    step = state.current_step
    participants: list[tuple[Any, ...]] = []
    steps_done = 0
    for index, s in enumerate(state.steps):
        spec = s.spec
        steps_done += s.done
        step_fields = (
            spec.key,
            spec.title,
            spec.role,
            spec.mode,
            s.visit,
            1 if s.active else 0,
            1 if s.done else 0,
            micros(s.started_at),
            micros(s.due_at),
        )
        is_current = index == current and not finished
        for position, p in enumerate(s.participants):
            # Inlined micros(): this loop makes most of the rows of a catch-up.
            acted, viewed, read, reminded = p.acted_at, p.viewed_at, p.read_at, p.reminded_at
            participants.append(
                (
                    task_id,
                    index,
                    position,
                    *step_fields,
                    p.user,
                    p.act,
                    None if acted is None else (acted - _EPOCH) // _MICROSECOND,
                    None if viewed is None else (viewed - _EPOCH) // _MICROSECOND,
                    None if read is None else (read - _EPOCH) // _MICROSECOND,
                    p.reminders,
                    None if reminded is None else (reminded - _EPOCH) // _MICROSECOND,
                    1 if is_current and p.act is None and p.user in pending_set else 0,
                )
            )
    documents = [
        (task_id, n, d.sha256, d.file_name, d.media_type, d.size, len(d.revisions), d.current)
        for n, d in enumerate(state.documents)
    ]
    anomalies = [(task_id, n, note) for n, note in enumerate(state.anomalies)]
    task = (
        task_id,
        state.status,
        state.title,
        route.template_id if route else None,
        route.template_version if route else None,
        route.template_name if route else None,
        state.initiator,
        step.key if step is not None else None,
        current,
        PENDING_SEPARATOR.join(pending),
        len(pending),
        micros(state.created_at),
        micros(state.submitted_at),
        micros(state.finished_at),
        micros(state.deadline),
        micros(state.effective_deadline),
        micros(next_wakeup(state)),
        len(state.steps),
        steps_done,
        state.signatures,
        state.comments,
        len(state.verifications),
        len(state.anomalies),
        state.last_sequence,
        last_leaf_index,
        state.department,
        state.returns,
        1 if _signed_electronically(state) else 0,
    )
    return TaskRows(task, participants, documents, anomalies)


def _signed_electronically(state: TaskState) -> bool:
    """Completed, with every document carrying a signed revision recorded in the log."""
    return (
        state.status == "completed"
        and bool(state.documents)
        and all(d.revisions for d in state.documents)
    )


def act_row(
    task_id: str,
    leaf_index: int,
    before: TaskState,
    envelope: Mapping[str, Any],
    after: TaskState,
) -> tuple[Any, ...]:
    """The ``proj_acts`` row of one event: who did what, when, where, and what it broke.

    ``before`` and ``after`` are the task's states around the event. The flags restate the
    workflow rules (:mod:`ledger.workflow.decide`) against the state the event met, so an
    event that reached the log without passing them (appended by an upstream app, say)
    shows up in the compliance views.

    This runs once per event of a catch-up, so it reads the state's fields directly rather
    than through its derived properties (``step_index``, ``finished``,
    ``effective_deadline``), with the same meaning.
    """
    kind = envelope["type"]
    actor_id = envelope["actor"]["id"]
    if type(actor_id) is not str:
        actor_id = str(actor_id)
    at = parse_time(envelope["server_time"])
    context = envelope.get("context") or _NO_CONTEXT
    data = envelope.get("data")
    named = data.get("step") if type(data) is dict or isinstance(data, Mapping) else None
    steps = before.steps
    current = before.current
    index = current
    if isinstance(named, str):
        for number, candidate in enumerate(steps):
            if candidate.spec.key == named:
                index = number
                break
    step = steps[index] if index is not None else None
    in_turn, pending_since, self_act = 1, None, 0
    required = missing = ""
    if step is not None and kind in ACT_TYPES and before.created:
        spec = step.spec
        acting = (
            index == current
            and named == spec.key
            and before.status not in FINISHED_STATUSES
            and actor_id in step.pending
        )
        in_turn = 1 if acting else 0
        if acting:
            pending_since = micros(waiting_since(step, actor_id))
        if spec.required_factors:
            required = ",".join(sorted(spec.required_factors))
            if kind in _IDENTITY_CHECKED:
                missing = ",".join(_missing_factors(before, step, actor_id, at))
        route = before.route
        if (
            kind == "step.approved"
            and spec.role == "approver"
            and route is not None
            and actor_id == route.initiator
            and not route.allow_self_approval
        ):
            self_act = 1
    elif kind in ACT_TYPES and before.created:
        in_turn = 0  # an act naming no step of a task that has no current one
    # ``before.effective_deadline``: the earlier of the task's deadline and the current
    # step's due time.
    deadline = before.deadline
    if current is not None:
        due = steps[current].due_at
        if due is not None and (deadline is None or due < deadline):
            deadline = due
    platform = context.get("platform")
    agent = context.get("user_agent")
    noted = len(before.anomalies)
    return (
        leaf_index,
        task_id,
        envelope["sequence"],
        kind,
        (at - _EPOCH) // _MICROSECOND,
        actor_id,
        1 if actor_id.startswith("system:") else 0,
        index,
        step.spec.key if step is not None else None,
        pending_since,
        context.get("ip"),
        context.get("connection_ip"),
        context.get("device_id"),
        platform,
        agent,
        _mobile(platform, agent),
        required,
        missing,
        in_turn,
        self_act,
        None if deadline is None else (deadline - _EPOCH) // _MICROSECOND,
        "; ".join(after.anomalies[noted:]) if len(after.anomalies) != noted else None,
    )


def _missing_factors(state: TaskState, step: StepState, actor: str, at: datetime) -> list[str]:
    """The step's required factors the actor has no passed check for within the window."""
    if state.route is None:
        return []
    since = at - timedelta(seconds=state.route.identity_window_seconds)
    return sorted(
        factor
        for factor in step.spec.required_factors
        if not any(
            v.actor == actor and v.factor == factor and v.result == "passed" and since <= v.at <= at
            for v in state.verifications
        )
    )


def _mobile(platform: object, agent: object) -> int:
    """1 if the platform or user agent the app reported is a phone's or a tablet's.

    Remembered per pair: an upstream app reports the same few of them over and over.
    """
    key = (platform, agent)
    found = _mobile_seen.get(key)
    if found is None:
        phone = isinstance(platform, str) and platform.lower() in MOBILE_PLATFORMS
        if not phone and isinstance(agent, str):
            phone = any(mark in agent for mark in _MOBILE_AGENT_MARKS)
        found = 1 if phone else 0
        if len(_mobile_seen) >= _MOBILE_SEEN_SIZE:
            _mobile_seen.clear()
        _mobile_seen[key] = found
    return found


def apply_safely(state: TaskState, envelope: Mapping[str, Any]) -> TaskState:
    """:func:`ledger.workflow.apply`, but an event the fold cannot read becomes an anomaly.

    The store validates envelopes, not their ``data``: an upstream app may append, say, a
    ``task.created`` without a route. The workflow's own events never take this path, so
    for them this is exactly ``apply``; for such an event the projection keeps going.
    """
    try:
        return apply(state, envelope)
    except Exception as exc:
        sequence = envelope.get("sequence", state.last_sequence + 1)
        note = f"#{sequence} {envelope.get('type')}: unreadable data ({type(exc).__name__})"
        return replace(state, last_sequence=sequence, anomalies=(*state.anomalies, note))


def fold_safely(envelopes: Iterable[Mapping[str, Any]]) -> TaskState:
    """:func:`ledger.workflow.fold` with :func:`apply_safely`."""
    state = TaskState()
    for envelope in envelopes:
        state = apply_safely(state, envelope)
    return state
