"""Routing: from a template, a form and an initiator to the concrete steps of one task.

:func:`route` evaluates each step's condition on the form, drops the steps whose condition
is false and resolves directory roles to user ids. The resulting :class:`Route` is what the
``task.created`` event records, so a task keeps the exact template id and version it ran
under and the people it was routed to, even after the template or the directory changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.workflow.errors import RoleUnresolved, RoutingError, TemplateError
from ledger.workflow.templates import Placement, ReminderPolicy, StepSpec, Template


@dataclass(frozen=True)
class DirectoryUser:
    """What the tenant's directory says about one person."""

    display_name: str
    organisation: str | None = None
    department: str | None = None


@dataclass(frozen=True)
class Directory:
    """The tenant-maintained directory: people, and the roles that resolve to them.

    ``roles`` are tenant-wide (``"cfo"``); ``department_roles`` are scoped to the initiator's
    department (``"department_head"`` of procurement) and win over a tenant-wide role of
    the same name.
    """

    users: Mapping[str, DirectoryUser] = field(default_factory=dict)
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    department_roles: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def resolve(self, role: str, initiator: str) -> tuple[str, ...]:
        """The user ids holding ``role`` for a request by ``initiator`` (maybe none)."""
        person = self.users.get(initiator)
        department = person.department if person else None
        if department is not None:
            scoped = self.department_roles.get(department, {}).get(role)
            if scoped:
                return tuple(scoped)
        return tuple(self.roles.get(role, ()))

    def display_name(self, user_id: str) -> str:
        """The name to show for ``user_id``; the id itself for people outside the directory."""
        person = self.users.get(user_id)
        return person.display_name if person else user_id

    def to_json(self) -> dict[str, Any]:
        return {
            "users": {
                uid: {
                    "display_name": u.display_name,
                    "organisation": u.organisation,
                    "department": u.department,
                }
                for uid, u in self.users.items()
            },
            "roles": {role: list(people) for role, people in self.roles.items()},
            "department_roles": {
                dept: {role: list(people) for role, people in roles.items()}
                for dept, roles in self.department_roles.items()
            },
        }

    @classmethod
    def from_json(cls, value: object) -> Directory:
        """The one door for an uploaded directory: every field checked, or TemplateError."""
        if not isinstance(value, Mapping) or not set(value) <= {
            "users",
            "roles",
            "department_roles",
        }:
            raise TemplateError("directory", "must be an object of users, roles, department_roles")
        users: dict[str, DirectoryUser] = {}
        for uid, entry in _mapping("directory.users", value.get("users", {})).items():
            where = f"directory.users.{uid}"
            entry = _mapping(where, entry)
            if not set(entry) <= {"display_name", "organisation", "department"}:
                raise TemplateError(where, "has unknown fields")
            users[_name(where, uid)] = DirectoryUser(
                _name(f"{where}.display_name", entry.get("display_name")),
                _optional_name(f"{where}.organisation", entry.get("organisation")),
                _optional_name(f"{where}.department", entry.get("department")),
            )
        roles = {
            _name("directory.roles", role): _people(f"directory.roles.{role}", people)
            for role, people in _mapping("directory.roles", value.get("roles", {})).items()
        }
        department_roles = {
            _name("directory.department_roles", dept): {
                _name(f"directory.department_roles.{dept}", role): _people(
                    f"directory.department_roles.{dept}.{role}", people
                )
                for role, people in _mapping(f"directory.department_roles.{dept}", roles_).items()
            }
            for dept, roles_ in _mapping(
                "directory.department_roles", value.get("department_roles", {})
            ).items()
        }
        return cls(users, roles, department_roles)


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TemplateError(where, "must be a JSON object")
    return value


def _name(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise TemplateError(where, "must be a non-blank string of at most 256 characters")
    return value


def _optional_name(where: str, value: object) -> str | None:
    return None if value is None else _name(where, value)


def _people(where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TemplateError(where, "must be a non-empty list of user ids")
    return tuple(_name(where, v) for v in value)


@dataclass(frozen=True)
class RouteStep:
    """A concrete step of one task: the template step with its participants resolved."""

    key: str
    title: str
    role: str
    mode: str
    participants: tuple[str, ...]
    required_factors: tuple[str, ...] = ()
    deadline_hours: int | None = None
    placements: tuple[Placement, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "role": self.role,
            "mode": self.mode,
            "participants": list(self.participants),
            "required_factors": list(self.required_factors),
            "deadline_hours": self.deadline_hours,
            "placements": [p.to_json() for p in self.placements],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RouteStep:
        """Read a step back from ``task.created`` data, checking it as a template step."""
        participants = value.get("participants")
        if not isinstance(participants, list) or not all(
            isinstance(p, str) and p for p in participants
        ):
            raise TemplateError("route.participants", "must be a list of user ids")
        spec = StepSpec.from_json(
            {**value, "participants": [{"user": p} for p in participants]}, "route step"
        )
        return cls.resolved(spec, participants)

    @classmethod
    def resolved(cls, spec: StepSpec, participants: Sequence[str]) -> RouteStep:
        """The template step ``spec`` with its participants resolved to user ids."""
        return cls(
            key=spec.key,
            title=spec.title,
            role=spec.role,
            mode=spec.mode,
            participants=tuple(participants),
            required_factors=spec.required_factors,
            deadline_hours=spec.deadline_hours,
            placements=spec.placements,
        )


@dataclass(frozen=True)
class Route:
    """Everything a task needs from its template, frozen at launch."""

    template_id: str
    template_version: int
    template_name: str
    initiator: str
    steps: tuple[RouteStep, ...]
    allow_self_approval: bool = False
    identity_window_seconds: int = 300
    reminder_policy: ReminderPolicy | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "template": {
                "id": self.template_id,
                "version": self.template_version,
                "name": self.template_name,
            },
            "initiator": self.initiator,
            "allow_self_approval": self.allow_self_approval,
            "identity_window_seconds": self.identity_window_seconds,
            "reminder_policy": self.reminder_policy.to_json() if self.reminder_policy else None,
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Route:
        template = value["template"]
        return cls(
            template_id=template["id"],
            template_version=template["version"],
            template_name=template["name"],
            initiator=value["initiator"],
            steps=tuple(RouteStep.from_json(s) for s in value["steps"]),
            allow_self_approval=value["allow_self_approval"],
            identity_window_seconds=value["identity_window_seconds"],
            reminder_policy=(
                ReminderPolicy.from_json(value["reminder_policy"])
                if value.get("reminder_policy") is not None
                else None
            ),
        )


def route(
    template: Template, form: Mapping[str, Any], initiator: str, directory: Directory
) -> Route:
    """The ordered concrete steps of ``template`` for this form and initiator.

    A step whose condition is false is left out; roles resolve through ``directory``
    (each person once per step, in directory order). Raises :class:`RoleUnresolved` when a
    role names nobody and :class:`RoutingError` when no step applies.
    """
    steps: list[RouteStep] = []
    for spec in template.steps:
        if spec.condition is not None and not spec.condition.holds(form):
            continue
        people: list[str] = []
        for ref in spec.participants:
            if ref.user is not None:
                found: tuple[str, ...] = (ref.user,)
            else:
                found = directory.resolve(str(ref.role), initiator)
                if not found:
                    raise RoleUnresolved(spec.key, str(ref.role))
            people.extend(p for p in found if p not in people)
        steps.append(RouteStep.resolved(spec, people))
    if not steps:
        raise RoutingError(f"no step of template {template.id!r} applies to this form")
    return Route(
        template_id=template.id,
        template_version=template.version,
        template_name=template.name,
        initiator=initiator,
        steps=tuple(steps),
        allow_self_approval=template.allow_self_approval,
        identity_window_seconds=template.identity_window_seconds,
        reminder_policy=template.reminder_policy,
    )


#: The template id an ad hoc task records: its steps were given at launch, not by a template.
AD_HOC_TEMPLATE = "ad-hoc"


def ad_hoc_route(
    initiator: str,
    steps: Sequence[StepSpec],
    directory: Directory,
    *,
    name: str = "Ad hoc task",
    form: Mapping[str, Any] | None = None,
    **options: Any,
) -> Route:
    """The route of a task whose steps the initiator sets out at launch (no stored template).

    The steps get the same checks as a template's (they are routed through a one-off
    template ``ad-hoc`` version 1), so an ad hoc task obeys every rule a templated one does.
    """
    template = Template(AD_HOC_TEMPLATE, 1, name, tuple(steps), **options)
    return route(template, form or {}, initiator, directory)
