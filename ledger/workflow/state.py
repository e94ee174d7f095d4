"""Task state as a pure fold over a task's stored event envelopes.

:func:`apply` takes a state and one envelope (a mapping with ``type``, ``actor``, ``data``,
``sequence``, ``server_time`` and ``identity_factors``, as the store keeps it) and returns
the next state; :func:`fold` applies a stream from the empty state. Both are pure and
deterministic: the same events always give the same state, whether built at once or one
event at a time. Times come from the envelope's ``server_time``, never from a clock.

The fold trusts the log: an event that does not fit the state (an act by someone who was
not pending, say, appended directly by an upstream app) is not applied but recorded in
:attr:`TaskState.anomalies`, for the compliance views to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson

from ledger.workflow.routing import Route, RouteStep

FINISHED_STATUSES: frozenset[str] = frozenset({"completed", "rejected", "revoked", "expired"})
#: Acts that finish a participant's part of a step.
COMPLETING_ACTS: frozenset[str] = frozenset({"approved", "signed", "read"})


@dataclass(frozen=True)
class ParticipantState:
    """One person's part in the current visit of a step."""

    user: str
    act: str | None = None
    """``approved``, ``signed``, ``read``, ``rejected``, ``transferred``, or ``None`` (not yet)."""
    acted_at: datetime | None = None
    viewed_at: datetime | None = None
    read_at: datetime | None = None
    reminders: int = 0
    reminded_at: datetime | None = None


@dataclass(frozen=True)
class StepState:
    """A route step and where it stands: entered (``active``), done, and who has acted."""

    spec: RouteStep
    participants: tuple[ParticipantState, ...]
    visit: int = 0
    """How many times the step has been entered (returns enter it again)."""
    active: bool = False
    done: bool = False
    started_at: datetime | None = None
    due_at: datetime | None = None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def members(self) -> tuple[ParticipantState, ...]:
        """The participants who still belong to the step (not transferred away)."""
        return tuple([p for p in self.participants if p.act != "transferred"])

    @property
    def pending(self) -> tuple[str, ...]:
        """Who may act now: the next in line (sequential) or everyone yet to act."""
        if not self.active or self.done:
            return ()
        # No act yet means not transferred either: ``members`` need not be built.
        waiting = tuple([p.user for p in self.participants if p.act is None])
        return waiting[:1] if self.spec.mode == "sequential" else waiting

    @property
    def complete(self) -> bool:
        acts = [p.act in COMPLETING_ACTS for p in self.participants if p.act != "transferred"]
        return any(acts) if self.spec.mode == "or_sign" else all(acts)

    def member(self, user: str) -> ParticipantState | None:
        return next((p for p in self.members if p.user == user), None)


@dataclass(frozen=True)
class Verification:
    """An identity check seen in the stream (never the secret, only its outcome)."""

    actor: str
    factor: str
    method: str
    result: str
    at: datetime
    provider_reference: str | None = None


@dataclass(frozen=True)
class DocumentState:
    """A document of the task and its revisions: the upload, then each signed revision."""

    sha256: str
    file_name: str
    media_type: str
    size: int
    revisions: tuple[str, ...] = ()
    """SHA-256 of each signed (or finalised) revision, oldest first."""

    @property
    def current(self) -> str:
        """The hash of the bytes the next signer signs: the latest revision or the upload."""
        return self.revisions[-1] if self.revisions else self.sha256


@dataclass(frozen=True)
class TaskState:
    """Everything the workflow rules need about one task, rebuilt from its events."""

    created: bool = False
    status: str = "draft"
    title: str = ""
    route: Route | None = None
    deadline: datetime | None = None
    documents: tuple[DocumentState, ...] = ()
    cc: tuple[str, ...] = ()
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    steps: tuple[StepState, ...] = ()
    current: int | None = None
    """Index of the step being worked on; ``None`` before submission and after the last."""
    all_steps_done: bool = False
    signatures: int = 0
    comments: int = 0
    verifications: tuple[Verification, ...] = ()
    last_sequence: int = 0
    finished_at: datetime | None = None
    anomalies: tuple[str, ...] = ()
    department: str | None = None
    """The initiator's department when the task was created, if the creator said."""
    returns: int = 0
    """How many times the task was sent back to an earlier step (退回)."""

    @property
    def initiator(self) -> str | None:
        return self.route.initiator if self.route else None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def current_step(self) -> StepState | None:
        return self.steps[self.current] if self.current is not None else None

    @property
    def pending(self) -> tuple[str, ...]:
        step = self.current_step
        return step.pending if step and not self.finished else ()

    @property
    def people(self) -> frozenset[str]:
        """Everyone with a part in the task: the initiator and every step's participants."""
        users = {p.user for s in self.steps for p in s.participants} | set(self.cc)
        return frozenset(users | ({self.initiator} if self.initiator else set()))

    @property
    def effective_deadline(self) -> datetime | None:
        """The earliest of the task deadline and the current step's due time."""
        step = self.current_step
        times = [t for t in (self.deadline, step.due_at if step else None) if t is not None]
        return min(times) if times else None

    def step_index(self, key: str) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.key == key), None)

    def document(self, sha256: str) -> DocumentState | None:
        """The task document uploaded with hash ``sha256``."""
        return next((d for d in self.documents if d.sha256 == sha256), None)


_Handler = Callable[["TaskState", Mapping[str, Any], str, datetime], "TaskState"]
_T = TypeVar("_T")
_new = object.__new__
_set = object.__setattr__


def _replace(value: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for the frozen, slot-less, unvalidated dataclasses here.

    It copies the instance dictionary instead of calling ``__init__`` with every field,
    several times faster; equality and hashing see the same field values.
    """
    fields = value.__dict__.copy()
    fields.update(changes)
    copy: _T = _new(type(value))
    _set(copy, "__dict__", fields)
    return copy


def parse_time(value: str) -> datetime:
    """An envelope time (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(value)


def fold(events: Iterable[Mapping[str, Any]]) -> TaskState:
    """The state after ``events`` (one task's stream, in sequence order)."""
    state = TaskState()
    for envelope in events:
        state = apply(state, envelope)
    return state


def apply(state: TaskState, envelope: Mapping[str, Any]) -> TaskState:
    """The state after one more event of the task's stream."""
    after = _apply(state, envelope)
    if after is state:
        return _replace(state, last_sequence=envelope["sequence"])
    # ``after`` was made during this call and nobody else holds it yet: set the sequence
    # on it rather than copy it once more (no handler reads ``last_sequence``).
    after.__dict__["last_sequence"] = envelope["sequence"]
    return after


def _apply(state: TaskState, envelope: Mapping[str, Any]) -> TaskState:
    """The effect of one event on everything but ``last_sequence``."""
    kind = envelope["type"]
    handler = _HANDLERS.get(kind)
    if handler is None:  # types other modules own: no workflow effect
        return state
    if kind != "task.created" and not state.created:
        return _anomaly(state, envelope, "event before task.created")
    if state.finished and kind not in ("document.viewed", "document.read_to_end"):
        return _anomaly(state, envelope, f"event after the task was {state.status}")
    return handler(
        state, envelope, str(envelope["actor"]["id"]), parse_time(envelope["server_time"])
    )


def _anomaly(state: TaskState, envelope: Mapping[str, Any], reason: str) -> TaskState:
    note = f"#{envelope['sequence']} {envelope['type']}: {reason}"
    return _replace(state, anomalies=(*state.anomalies, note))


def _set_step(state: TaskState, index: int, step: StepState) -> TaskState:
    return _replace(state, steps=(*state.steps[:index], step, *state.steps[index + 1 :]))


#: A participant who has done nothing yet; copies of it are ``ParticipantState(user)``.
_NOBODY = ParticipantState("")


def _enter(step: StepState, at: datetime) -> StepState:
    """A fresh visit of ``step``: everyone pending again, the due time from now."""
    hours = step.spec.deadline_hours
    # Before its first visit nobody can have acted, viewed or been reminded in a step (all
    # of those need it current), so its participants are already as a visit starts them.
    participants = (
        step.participants
        if step.visit == 0
        else tuple([_replace(_NOBODY, user=p.user) for p in step.members])
    )
    return _replace(
        step,
        participants=participants,
        visit=step.visit + 1,
        active=True,
        done=step.spec.role == "cc",  # CC participants are told, never waited for
        started_at=at,
        due_at=at + timedelta(hours=hours) if hours is not None else None,
    )


def _advance(
    state: TaskState,
    after: int,
    at: datetime,
    steps: list[StepState] | None = None,
    **changes: Any,
) -> TaskState:
    """Move to the first step after index ``after`` that still needs someone to act.

    ``steps`` (a new list) replaces the state's steps and ``changes`` its other fields in
    the same copy of the state.
    """
    steps = list(state.steps) if steps is None else steps
    index = after + 1
    while index < len(steps):
        step = steps[index]
        if not step.active:
            step = steps[index] = _enter(step, at)
        if not step.done:
            return _replace(state, steps=tuple(steps), current=index, **changes)
        index += 1
    return _replace(state, steps=tuple(steps), current=None, all_steps_done=True, **changes)


def _with_step(state: TaskState, index: int, step: StepState) -> list[StepState]:
    """The state's steps with ``step`` at ``index``, as a new list."""
    steps = list(state.steps)
    steps[index] = step
    return steps


def _status(state: TaskState) -> TaskState:
    if state.finished or state.status == "draft":
        return state
    status = "partially_signed" if state.signatures else "in_progress"
    return state if state.status == status else _replace(state, status=status)


def _created(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    if state.created:
        return _anomaly(state, env, "the task was already created")
    data = env["data"]
    route, steps = _route(data)
    deadline = data.get("deadline")
    department = data.get("department")
    return _replace(
        state,
        created=True,
        department=department if isinstance(department, str) else None,
        title=data.get("title", ""),
        route=route,
        deadline=parse_time(deadline) if deadline else None,
        documents=tuple(_document(d) for d in data.get("documents", ())),
        cc=tuple(data.get("cc", ())),
        created_at=at,
        steps=steps,
    )


#: The fields of ``task.created`` data that :meth:`Route.from_json` reads.
_ROUTE_FIELDS = (
    "template",
    "initiator",
    "steps",
    "allow_self_approval",
    "identity_window_seconds",
    "reminder_policy",
)
_ROUTE_CACHE_SIZE = 4096
_routes: dict[bytes, tuple[Route, tuple[StepState, ...]]] = {}


def _initial_steps(route: Route) -> tuple[StepState, ...]:
    return tuple(
        StepState(s, tuple(ParticipantState(u) for u in s.participants)) for s in route.steps
    )


def _route(data: Mapping[str, Any]) -> tuple[Route, tuple[StepState, ...]]:
    """``Route.from_json(data)`` and its steps before submission, remembered.

    Many tasks share a template and its people.

    A route is an immutable value, so sharing one between states changes nothing. The key
    is the exact JSON of the fields read (a missing field differs from a null one); a
    refusal is never remembered.
    """
    try:
        key = orjson.dumps(
            {k: data[k] for k in _ROUTE_FIELDS if k in data}, option=orjson.OPT_SORT_KEYS
        )
    except TypeError:
        route = Route.from_json(data)
        return route, _initial_steps(route)
    found = _routes.get(key)
    if found is None:
        route = Route.from_json(data)
        found = (route, _initial_steps(route))
        if len(_routes) >= _ROUTE_CACHE_SIZE:
            _routes.clear()
        _routes[key] = found
    return found


def _document(value: Mapping[str, Any]) -> DocumentState:
    return DocumentState(value["sha256"], value["file_name"], value["media_type"], value["size"])


def _document_added(
    state: TaskState, env: Mapping[str, Any], actor: str, at: datetime
) -> TaskState:
    document = _document(env["data"])
    if state.status != "draft" or state.document(document.sha256) is not None:
        return _anomaly(state, env, "a document added after submission, or twice")
    return _replace(state, documents=(*state.documents, document))


def _with_revision(state: TaskState, document: str, revision: str) -> TaskState:
    return _replace(
        state,
        documents=tuple(
            _replace(d, revisions=(*d.revisions, revision)) if d.sha256 == document else d
            for d in state.documents
        ),
    )


def _submitted(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    if state.status != "draft":
        return _anomaly(state, env, "the task was already submitted")
    return _advance(state, -1, at, status="in_progress", submitted_at=at)


def _acting(state: TaskState, env: Mapping[str, Any], actor: str) -> tuple[int, StepState] | None:
    """The current step, if ``actor`` is pending in it and the event names it."""
    step = state.current_step
    if step is None or state.current is None or env["data"].get("step") != step.key:
        return None
    return (state.current, step) if actor in step.pending else None


def _act(act: str) -> _Handler:
    """A handler recording a completing act (approve, sign) by a pending participant."""

    def handler(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
        found = _acting(state, env, actor)
        if found is None:
            return _anomaly(state, env, f"{actor!r} was not pending in the named step")
        index, step = found
        step = _mark(step, actor, act=act, acted_at=at)
        if act == "signed":
            data = env["data"]
            state = _with_revision(state, data["document_sha256"], data["revision_sha256"])
            state = _replace(state, signatures=state.signatures + 1)
        if step.complete:  # one copy of the state, not one to mark and one to finish
            step.__dict__["done"] = True  # ``_mark`` made it for this call: nobody else holds it
            state = _advance(state, index, at, _with_step(state, index, step))
            return _status(state)
        return _status(_set_step(state, index, step))

    return handler


def _mark(step: StepState, user: str, **changes: Any) -> StepState:
    return _replace(
        step,
        participants=tuple(
            _replace(p, **changes) if p.user == user and p.act != "transferred" else p
            for p in step.participants
        ),
    )


def _finish_step(state: TaskState, index: int, at: datetime) -> TaskState:
    step = state.steps[index]
    if not step.complete:
        return state
    return _advance(state, index, at, _with_step(state, index, _replace(step, done=True)))


def _viewed(field: str) -> _Handler:
    def handler(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
        step, index = state.current_step, state.current
        if step is None or index is None or step.member(actor) is None or state.finished:
            return state  # views by others are evidence in the log, not workflow state
        step = _mark(step, actor, **{field: at})
        if field == "read_at" and step.spec.role == "viewer" and actor in step.pending:
            step = _mark(step, actor, act="read", acted_at=at)
            return _finish_step(_set_step(state, index, step), index, at)
        return _set_step(state, index, step)

    return handler


def _verified(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    data = env["data"]
    check = Verification(
        actor, data["factor"], data["method"], data["result"], at, data.get("provider_reference")
    )
    return _replace(state, verifications=(*state.verifications, check))


def _rejected(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    found = _acting(state, env, actor)
    if found is None:
        return _anomaly(state, env, f"{actor!r} was not pending in the named step")
    index, step = found
    state = _set_step(state, index, _mark(step, actor, act="rejected", acted_at=at))
    return _replace(state, status="rejected", finished_at=at)


def _returned(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    target = state.step_index(env["data"].get("to_step", ""))
    found = _acting(state, env, actor)
    if found is None or target is None or target >= found[0]:
        return _anomaly(state, env, "not a return by a pending participant to an earlier step")
    steps = [
        _replace(s, active=False, done=False, started_at=None, due_at=None) if i >= target else s
        for i, s in enumerate(state.steps)
    ]
    return _advance(state, target - 1, at, steps, returns=state.returns + 1)


def _transferred(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    found = _acting(state, env, actor)
    to_user = env["data"].get("to_user")
    if found is None or not to_user or found[1].member(to_user) is not None:
        return _anomaly(state, env, "not a transfer by a pending participant to a newcomer")
    index, step = found
    people: list[ParticipantState] = []
    for p in step.participants:
        if p.user == actor and p.act is None:
            people += [_replace(p, act="transferred", acted_at=at), ParticipantState(to_user)]
        else:
            people.append(p)
    return _set_step(state, index, _replace(step, participants=tuple(people)))


def _signer_added(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    found = _acting(state, env, actor)
    data = env["data"]
    if found is None or data.get("position") not in ("before", "after"):
        return _anomaly(state, env, "not an added signer by a pending participant")
    index, _ = found
    added = RouteStep.from_json(data["added_step"])
    if state.step_index(added.key) is not None:
        return _anomaly(state, env, f"step key {added.key!r} is taken")
    new = StepState(added, tuple(ParticipantState(u) for u in added.participants))
    at_index = index if data["position"] == "before" else index + 1
    state = _replace(state, steps=(*state.steps[:at_index], new, *state.steps[at_index:]))
    if data["position"] == "before":
        return _replace(_set_step(state, index, _enter(new, at)), current=index)
    return state


def _reminded(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    step, index, user = state.current_step, state.current, env["data"].get("to_user")
    member = step.member(user) if step and user else None
    if step is None or index is None or member is None:
        return _anomaly(state, env, "reminder to someone not in the current step")
    reminded = _mark(step, member.user, reminders=member.reminders + 1, reminded_at=at)
    return _set_step(state, index, reminded)


def _commented(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
    return _replace(state, comments=state.comments + 1)


def _ended(status: str) -> _Handler:
    def handler(state: TaskState, env: Mapping[str, Any], actor: str, at: datetime) -> TaskState:
        if status == "completed" and not state.all_steps_done:
            state = _anomaly(state, env, "completed before every step was done")
        for final in env["data"].get("final_revisions", ()):
            state = _with_revision(state, final["document_sha256"], final["revision_sha256"])
        return _replace(state, status=status, finished_at=at)

    return handler


_HANDLERS: dict[str, _Handler] = {
    "task.created": _created,
    "task.submitted": _submitted,
    "document.added": _document_added,
    "document.viewed": _viewed("viewed_at"),
    "document.read_to_end": _viewed("read_at"),
    "identity.verified": _verified,
    "step.approved": _act("approved"),
    "document.signed": _act("signed"),
    "step.rejected": _rejected,
    "step.returned": _returned,
    "task.transferred": _transferred,
    "signer.added": _signer_added,
    "task.reminded": _reminded,
    "comment.added": _commented,
    "task.revoked": _ended("revoked"),
    "task.expired": _ended("expired"),
    "task.completed": _ended("completed"),
}
