"""Workflow templates: versioned, ordered steps with participants, modes and conditions.

A template is data a tenant maintains. It is checked when built (every dataclass validates
itself in ``__post_init__``) and has one JSON door, :meth:`Template.from_json`, so a
stored or uploaded template is either valid or refused with the field that is wrong.
Money in conditions is a decimal string and is compared as :class:`~decimal.Decimal`;
floats are refused everywhere, as in the event envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger.events import IDENTITY_FACTORS
from ledger.workflow.errors import FormFieldError, TemplateError

STEP_ROLES: frozenset[str] = frozenset({"approver", "signer", "viewer", "cc"})
STEP_MODES: frozenset[str] = frozenset({"sequential", "countersign", "or_sign"})
DECIMAL_OPS: frozenset[str] = frozenset({">", ">=", "<", "<=", "==", "!="})
BOOLEAN_OPS: frozenset[str] = frozenset({"==", "!="})


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(where, "must be a non-blank string")
    return value


def _int(where: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TemplateError(where, f"must be a whole number from {minimum}")
    return value


def _decimal(where: str, value: object) -> Decimal:
    """A finite decimal from a string or an int; floats are refused (they round money)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TemplateError(where, "must be a decimal string, not " + type(value).__name__)
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise TemplateError(where, f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise TemplateError(where, f"{value!r} is not a finite number")
    return number


@dataclass(frozen=True)
class ParticipantRef:
    """Who takes part in a step: a named user id, or a directory role resolved at launch."""

    user: str | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        if (self.user is None) == (self.role is None):
            raise TemplateError("participant", "give exactly one of 'user' or 'role'")
        _text("participant", self.user if self.user is not None else self.role)

    def to_json(self) -> dict[str, str]:
        return {"user": self.user} if self.user is not None else {"role": str(self.role)}

    @classmethod
    def from_json(cls, value: object, where: str = "participant") -> ParticipantRef:
        if not isinstance(value, Mapping) or set(value) not in ({"user"}, {"role"}):
            raise TemplateError(where, 'must be {"user": id} or {"role": name}')
        return cls(user=value.get("user"), role=value.get("role"))


@dataclass(frozen=True)
class Placement:
    """Where a signature stamp goes: a 1-based page and a rectangle in PDF points."""

    page: int
    x1: int
    y1: int
    x2: int
    y2: int

    def __post_init__(self) -> None:
        _int("placement.page", self.page, 1)
        for name in ("x1", "y1", "x2", "y2"):
            _int(f"placement.{name}", getattr(self, name), 0)
        if self.x1 >= self.x2 or self.y1 >= self.y2:
            raise TemplateError("placement", "needs x1 < x2 and y1 < y2")

    def to_json(self) -> dict[str, int]:
        return {"page": self.page, "x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2}

    @classmethod
    def from_json(cls, value: object, where: str = "placement") -> Placement:
        keys = {"page", "x1", "y1", "x2", "y2"}
        if not isinstance(value, Mapping) or set(value) != keys:
            raise TemplateError(where, f"must have exactly the fields {sorted(keys)}")
        return cls(**{k: value[k] for k in keys})


@dataclass(frozen=True)
class ReminderPolicy:
    """When the scheduler reminds pending participants (催签 by policy).

    The first reminder goes ``first_after_hours`` after a participant's turn began, then one
    every ``every_hours``, at most ``max_reminders`` in one visit of a step.
    """

    first_after_hours: int
    every_hours: int
    max_reminders: int

    def __post_init__(self) -> None:
        _int("reminder_policy.first_after_hours", self.first_after_hours, 1)
        _int("reminder_policy.every_hours", self.every_hours, 1)
        _int("reminder_policy.max_reminders", self.max_reminders, 1)

    def to_json(self) -> dict[str, int]:
        return {
            "first_after_hours": self.first_after_hours,
            "every_hours": self.every_hours,
            "max_reminders": self.max_reminders,
        }

    @classmethod
    def from_json(cls, value: object, where: str = "reminder_policy") -> ReminderPolicy:
        keys = {"first_after_hours", "every_hours", "max_reminders"}
        if not isinstance(value, Mapping) or set(value) != keys:
            raise TemplateError(where, f"must have exactly the fields {sorted(keys)}")
        return cls(**{k: value[k] for k in keys})


@dataclass(frozen=True)
class Condition:
    """A test on one form field that decides whether a step runs.

    ``value`` is a decimal string (compared as money or a number; with ``currency``, the
    form's amount must be in that currency, since the ledger never converts) or a bool
    (``cross_border == true``), which allows only ``==`` and ``!=``.
    """

    field: str
    op: str
    value: str | bool
    currency: str | None = None

    def __post_init__(self) -> None:
        _text("condition.field", self.field)
        if isinstance(self.value, bool):
            if self.op not in BOOLEAN_OPS or self.currency is not None:
                raise TemplateError("condition", "a boolean test takes == or != and no currency")
            return
        if self.op not in DECIMAL_OPS:
            raise TemplateError("condition.op", f"must be one of {sorted(DECIMAL_OPS)}")
        _decimal("condition.value", self.value)
        if self.currency is not None and (len(self.currency) != 3 or not self.currency.isupper()):
            raise TemplateError("condition.currency", "must be an ISO 4217 code such as HKD")

    def holds(self, form: Mapping[str, Any]) -> bool:
        """Whether the condition is true for ``form``; a missing or ill-typed field is an error."""
        if self.field not in form:
            raise FormFieldError(self.field, "is missing")
        raw = form[self.field]
        if isinstance(self.value, bool):
            if not isinstance(raw, bool):
                raise FormFieldError(self.field, "must be true or false")
            return (raw == self.value) == (self.op == "==")
        amount, currency = raw, form.get("currency")
        if isinstance(raw, Mapping):  # {"amount": "12800.00", "currency": "HKD"}
            amount, currency = raw.get("amount"), raw.get("currency")
        try:
            number = _decimal(self.field, amount)
        except TemplateError as exc:
            raise FormFieldError(self.field, exc.reason) from None
        if self.currency is not None and currency != self.currency:
            raise FormFieldError(
                self.field, f"is in {currency!r}, the condition in {self.currency}"
            )
        limit = Decimal(self.value)
        return {
            ">": number > limit,
            ">=": number >= limit,
            "<": number < limit,
            "<=": number <= limit,
            "==": number == limit,
            "!=": number != limit,
        }[self.op]

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"field": self.field, "op": self.op, "value": self.value}
        if self.currency is not None:
            value["currency"] = self.currency
        return value

    @classmethod
    def from_json(cls, value: object, where: str = "condition") -> Condition:
        if not isinstance(value, Mapping) or not {"field", "op", "value"} <= set(value):
            raise TemplateError(where, "needs field, op and value")
        if set(value) - {"field", "op", "value", "currency"}:
            raise TemplateError(where, "has unknown fields")
        if not isinstance(value["value"], str | bool):
            raise TemplateError(f"{where}.value", "must be a decimal string or a boolean")
        return cls(value["field"], value["op"], value["value"], value.get("currency"))


@dataclass(frozen=True)
class StepSpec:
    """One step of a template: who acts, in which role and mode, and what it requires."""

    key: str
    title: str
    role: str
    mode: str
    participants: tuple[ParticipantRef, ...]
    required_factors: tuple[str, ...] = ()
    deadline_hours: int | None = None
    placements: tuple[Placement, ...] = ()
    condition: Condition | None = None

    def __post_init__(self) -> None:
        where = f"steps[{self.key!r}]"
        _text(f"{where}.key", self.key)
        _text(f"{where}.title", self.title)
        if self.role not in STEP_ROLES:
            raise TemplateError(f"{where}.role", f"must be one of {sorted(STEP_ROLES)}")
        if self.mode not in STEP_MODES:
            raise TemplateError(f"{where}.mode", f"must be one of {sorted(STEP_MODES)}")
        if not self.participants:
            raise TemplateError(f"{where}.participants", "must name at least one participant")
        for factor in self.required_factors:
            if factor not in IDENTITY_FACTORS:
                raise TemplateError(f"{where}.required_factors", f"{factor!r} is not known")
        if len(set(self.required_factors)) != len(self.required_factors):
            raise TemplateError(f"{where}.required_factors", "names a factor twice")
        if self.deadline_hours is not None:
            _int(f"{where}.deadline_hours", self.deadline_hours, 1)
        if self.placements and self.role != "signer":
            raise TemplateError(f"{where}.placements", "only signer steps carry placements")

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "role": self.role,
            "mode": self.mode,
            "participants": [p.to_json() for p in self.participants],
            "required_factors": list(self.required_factors),
            "deadline_hours": self.deadline_hours,
            "placements": [p.to_json() for p in self.placements],
            "condition": self.condition.to_json() if self.condition else None,
        }

    @classmethod
    def from_json(cls, value: object, where: str = "step") -> StepSpec:
        if not isinstance(value, Mapping):
            raise TemplateError(where, "must be a JSON object")
        required = {"key", "title", "role", "mode", "participants"}
        extra = set(value) - set(cls.__dataclass_fields__)
        if extra or not required <= set(value):
            raise TemplateError(where, f"needs {sorted(required)}; unknown: {sorted(extra)}")
        condition = value.get("condition")
        return cls(
            key=value["key"],
            title=value["title"],
            role=value["role"],
            mode=value["mode"],
            participants=tuple(
                ParticipantRef.from_json(p, f"{where}.participants")
                for p in _list(f"{where}.participants", value["participants"])
            ),
            required_factors=tuple(
                _text(f"{where}.required_factors", f)
                for f in _list(f"{where}.required_factors", value.get("required_factors", []))
            ),
            deadline_hours=value.get("deadline_hours"),
            placements=tuple(
                Placement.from_json(p, f"{where}.placements")
                for p in _list(f"{where}.placements", value.get("placements", []))
            ),
            condition=None if condition is None else Condition.from_json(condition, where),
        )


def _list(where: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TemplateError(where, "must be a list")
    return value


@dataclass(frozen=True)
class Template:
    """A versioned workflow definition; a task records the exact ``id`` and ``version``."""

    id: str
    version: int
    name: str
    steps: tuple[StepSpec, ...]
    allow_self_approval: bool = False
    identity_window_seconds: int = 300
    reminder_policy: ReminderPolicy | None = None

    def __post_init__(self) -> None:
        _text("id", self.id)
        _int("version", self.version, 1)
        _text("name", self.name)
        if not self.steps:
            raise TemplateError("steps", "must have at least one step")
        keys = [s.key for s in self.steps]
        if len(set(keys)) != len(keys):
            raise TemplateError("steps", "step keys must be unique")
        if not isinstance(self.allow_self_approval, bool):
            raise TemplateError("allow_self_approval", "must be true or false")
        _int("identity_window_seconds", self.identity_window_seconds, 1)
        if self.reminder_policy is not None and not isinstance(
            self.reminder_policy, ReminderPolicy
        ):
            raise TemplateError("reminder_policy", "must be a reminder policy")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "name": self.name,
            "steps": [s.to_json() for s in self.steps],
            "allow_self_approval": self.allow_self_approval,
            "identity_window_seconds": self.identity_window_seconds,
            "reminder_policy": self.reminder_policy.to_json() if self.reminder_policy else None,
        }

    @classmethod
    def from_json(cls, value: object) -> Template:
        """The one door for stored or uploaded templates: validates every field."""
        if not isinstance(value, Mapping):
            raise TemplateError("template", "must be a JSON object")
        required = {"id", "version", "name", "steps"}
        if not required <= set(value):
            raise TemplateError("template", f"needs {sorted(required)}")
        extra = set(value) - set(cls.__dataclass_fields__)
        if extra:
            raise TemplateError("template", f"has unknown fields {sorted(extra)}")
        return cls(
            id=value["id"],
            version=value["version"],
            name=value["name"],
            steps=tuple(
                StepSpec.from_json(s, f"steps[{i}]")
                for i, s in enumerate(_list("steps", value["steps"]))
            ),
            allow_self_approval=value.get("allow_self_approval", False),
            identity_window_seconds=value.get("identity_window_seconds", 300),
            reminder_policy=(
                ReminderPolicy.from_json(value["reminder_policy"])
                if value.get("reminder_policy") is not None
                else None
            ),
        )
