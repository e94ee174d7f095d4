"""Step 11 of pack verification: the acts of a task against the route frozen in ``task.created``.

Written from the event shapes in docs/architecture.md and the pack spec, not from the
ledger's workflow code: the route (``data.steps`` of ``task.created``: ``key``, ``role``,
``mode``, ``participants``, ``required_factors``) is replayed with the events that change it
(``task.transferred``, ``signer.added``, ``step.returned``), and every completing act
(``step.approved``, ``document.signed``) is checked:

- the act names a step of the route whose role fits (approver approves, signer signs);
- the actor is a participant of that step who has not acted yet in this visit of it, the
  step is not done already (an or-sign step takes one act), and in a sequential step every
  participant listed before the actor has acted (a transfer takes the transferrer's place);
- every earlier step is done (sequential order between steps; a countersign step needs
  all its participants, an or-sign step any one; a viewer step is done by its
  participants' ``document.read_to_end`` events, in their turn, while it is the current
  step; a CC step is never waited for);
- each factor the step requires is in the act's ``identity_factors`` with result
  ``passed``, and matches an earlier ``identity.verified`` event of the same actor (same
  factor and provider reference, ``verified_at`` equal to that event's ``server_time``)
  no older than the route's ``identity_window_seconds``.

``task.completed`` must come after every approver and signer step is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["WorkflowFinding", "check_workflow"]

_ACTS = {"step.approved": "approver", "document.signed": "signer"}
_WAITED_FOR = frozenset({"approver", "signer", "viewer"})
"""Roles whose steps later steps wait for; CC participants are told, never waited for."""


@dataclass
class _Step:
    key: str
    role: str
    mode: str
    participants: list[str]
    required_factors: list[str]
    acted: set[str] = field(default_factory=set)

    @property
    def done(self) -> bool:
        if self.role not in _WAITED_FOR:
            return True
        if self.mode == "or_sign":
            return bool(self.acted)
        return all(user in self.acted for user in self.participants)

    @property
    def next_in_line(self) -> str | None:
        """In a sequential step, the first participant who has not acted."""
        return next((user for user in self.participants if user not in self.acted), None)

    def in_turn(self, actor: str) -> bool:
        return self.mode != "sequential" or self.next_in_line == actor


@dataclass(frozen=True)
class WorkflowFinding:
    leaf_index: int
    sequence: int
    problem: str

    def __str__(self) -> str:
        return f"event {self.sequence} (leaf {self.leaf_index}): {self.problem}"


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _step_from(value: Any) -> _Step | None:
    if not isinstance(value, Mapping):
        return None
    key, role, mode = value.get("key"), value.get("role"), value.get("mode")
    participants = value.get("participants")
    factors = value.get("required_factors") or []
    if not (isinstance(key, str) and isinstance(role, str) and isinstance(mode, str)):
        return None
    if not isinstance(participants, list) or not isinstance(factors, list):
        return None
    return _Step(key, role, mode, [str(p) for p in participants], [str(f) for f in factors])


class _Replay:
    def __init__(self) -> None:
        self.steps: list[_Step] = []
        self.window: float | None = None
        self.verifications: list[tuple[str, Mapping[str, Any], datetime | None]] = []
        self.findings: list[WorkflowFinding] = []
        self.acts = 0
        self._leaf = 0
        self._sequence = 0

    def problem(self, text: str) -> None:
        self.findings.append(WorkflowFinding(self._leaf, self._sequence, text))

    def index(self, key: Any) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.key == key), None)

    def run(self, leaf: int, envelope: Mapping[str, Any]) -> None:
        self._leaf, self._sequence = leaf, int(envelope.get("sequence") or 0)
        kind = envelope.get("type")
        data = envelope.get("data")
        data = data if isinstance(data, Mapping) else {}
        actor_value = envelope.get("actor")
        actor = str(actor_value.get("id")) if isinstance(actor_value, Mapping) else ""
        if kind == "task.created":
            self.created(data)
        elif not self.steps and kind in (*_ACTS, "task.completed"):
            self.problem(f"{kind} before any task.created with a route")
        elif kind == "identity.verified":
            self.verifications.append((actor, data, _time(envelope.get("server_time"))))
        elif kind == "task.transferred":
            self.transferred(actor, data)
        elif kind == "signer.added":
            self.signer_added(data)
        elif kind == "step.returned":
            self.returned(data)
        elif kind in _ACTS:
            self.act(str(kind), actor, data, envelope)
        elif kind == "document.read_to_end":
            self.read(actor, data)
        elif kind == "task.completed":
            pending = [s.key for s in self.steps if not s.done]
            if pending:
                self.problem(f"task.completed while steps {pending} are not done")

    def created(self, data: Mapping[str, Any]) -> None:
        if self.steps:
            self.problem("a second task.created")
            return
        raw = data.get("steps")
        steps = [_step_from(s) for s in raw] if isinstance(raw, list) else []
        if not steps or any(s is None for s in steps):
            self.problem("task.created has no readable route (data.steps)")
            return
        self.steps = [s for s in steps if s is not None]
        window = data.get("identity_window_seconds")
        self.window = float(window) if isinstance(window, int) else None

    def transferred(self, actor: str, data: Mapping[str, Any]) -> None:
        index = self.index(data.get("step"))
        to_user = data.get("to_user")
        if index is None or not isinstance(to_user, str):
            self.problem(f"transfer in unknown step {data.get('step')!r}")
            return
        step = self.steps[index]
        if actor not in step.participants or actor in step.acted:
            self.problem(f"{actor!r} transferred step {step.key!r} without being pending in it")
            return
        step.participants[step.participants.index(actor)] = to_user

    def signer_added(self, data: Mapping[str, Any]) -> None:
        index = self.index(data.get("step"))
        added = _step_from(data.get("added_step"))
        if index is None or added is None or data.get("position") not in ("before", "after"):
            self.problem("signer.added does not name a step, a position and a new step")
            return
        self.steps.insert(index if data["position"] == "before" else index + 1, added)

    def returned(self, data: Mapping[str, Any]) -> None:
        target, source = self.index(data.get("to_step")), self.index(data.get("step"))
        if target is None or source is None or target >= source:
            self.problem(f"return from {data.get('step')!r} to {data.get('to_step')!r}")
            return
        for step in self.steps[target:]:
            step.acted.clear()

    def act(self, kind: str, actor: str, data: Mapping[str, Any], env: Mapping[str, Any]) -> None:
        self.acts += 1
        index = self.index(data.get("step"))
        if index is None:
            self.problem(f"{kind} names step {data.get('step')!r}, which is not in the route")
            return
        step = self.steps[index]
        if step.role != _ACTS[kind]:
            self.problem(f"{kind} in step {step.key!r}, whose role is {step.role!r}")
        if actor not in step.participants:
            self.problem(
                f"{actor!r} acted in step {step.key!r} but is not one of its participants "
                f"{step.participants}"
            )
        elif actor in step.acted:
            self.problem(f"{actor!r} acted twice in step {step.key!r}")
        elif step.done:
            self.problem(f"{kind} in step {step.key!r}, which one act had completed already")
        elif not step.in_turn(actor):
            self.problem(
                f"{actor!r} acted in sequential step {step.key!r} before {step.next_in_line!r}, "
                "who is listed before them (out of turn)"
            )
        earlier = [s.key for s in self.steps[:index] if not s.done]
        if earlier:
            self.problem(
                f"{kind} in step {step.key!r} before earlier steps {earlier} were done "
                "(out of order)"
            )
        self.factors(step, actor, env)
        step.acted.add(actor)

    def read(self, actor: str, data: Mapping[str, Any]) -> None:
        """A ``document.read_to_end`` completes its actor's part of the current viewer step
        when it is their turn; any other view is evidence, not a workflow act."""
        index = self.index(data.get("step"))
        if index is None:
            return
        step = self.steps[index]
        if step.role != "viewer" or step.done or actor not in step.participants:
            return
        if actor in step.acted or not step.in_turn(actor):
            return
        if all(s.done for s in self.steps[:index]):
            step.acted.add(actor)

    def factors(self, step: _Step, actor: str, env: Mapping[str, Any]) -> None:
        raw = env.get("identity_factors")
        given = [f for f in raw if isinstance(f, Mapping)] if isinstance(raw, list) else []
        at = _time(env.get("server_time"))
        for factor in step.required_factors:
            found = [f for f in given if f.get("factor") == factor and f.get("result") == "passed"]
            if not found:
                self.problem(
                    f"step {step.key!r} requires a passed {factor!r} identity check, and the "
                    "act records none"
                )
                continue
            proof = found[-1]
            verified_at = _time(proof.get("verified_at"))
            match = [
                when
                for who, data, when in self.verifications
                if who == actor
                and data.get("factor") == factor
                and data.get("result") == "passed"
                and data.get("provider_reference") == proof.get("provider_reference")
                and when is not None
                and when == verified_at
            ]
            if not match:
                self.problem(
                    f"the {factor!r} check the act records (verified at "
                    f"{proof.get('verified_at')}) matches no earlier identity.verified event "
                    f"of {actor!r}"
                )
            elif at is not None and self.window is not None:
                age = (at - match[-1]).total_seconds()
                if not 0 <= age <= self.window:
                    self.problem(
                        f"the {factor!r} check is {age:.0f} s old at the act; the route allows "
                        f"{self.window:.0f} s"
                    )


def check_workflow(
    events: Sequence[tuple[int, Mapping[str, Any]]],
) -> tuple[list[WorkflowFinding], int]:
    """Replay ``(leaf_index, envelope)`` pairs in order; return the findings and the number of
    completing acts checked."""
    replay = _Replay()
    for leaf, envelope in events:
        replay.run(leaf, envelope)
    if not replay.steps and not replay.findings:
        replay.problem("the task has no task.created event with a route")
    return replay.findings, replay.acts
