"""The workflow's exception hierarchy.

One root, :class:`WorkflowError`, with a subtree per concern: templates (bad definitions),
routing (a template that cannot be turned into concrete steps for a form) and refusals
(a command that breaks a rule). Every refusal means nothing is stored; the API maps them
to problem responses at its edge.
"""

from __future__ import annotations

from ledger.errors import LedgerError


class WorkflowError(LedgerError):
    """Root of every error the workflow domain raises on purpose."""


# -- templates ---------------------------------------------------------------------------


class TemplateError(WorkflowError, ValueError):
    """A template definition (or its JSON) breaks a rule; ``where`` names the field."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"invalid template: {where}: {reason}")
        self.where = where
        self.reason = reason


# -- routing -----------------------------------------------------------------------------


class RoutingError(WorkflowError):
    """A template could not be routed for this form, initiator and directory."""


class FormFieldError(RoutingError, ValueError):
    """A condition reads a form field that is missing or of the wrong kind."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"form field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class RoleUnresolved(RoutingError):
    """A directory role named by a step resolves to nobody, so the step could never end."""

    def __init__(self, step: str, role: str) -> None:
        super().__init__(f"step {step!r}: directory role {role!r} resolves to nobody")
        self.step = step
        self.role = role


# -- refusals ----------------------------------------------------------------------------


class ActionRefused(WorkflowError):
    """A command was refused by a workflow rule; no event is produced."""


class TaskNotCreated(ActionRefused):
    """The task has no ``task.created`` event yet."""

    def __init__(self) -> None:
        super().__init__("the task does not exist yet; create it first")


class TaskExists(ActionRefused):
    """A task stream can be created only once."""

    def __init__(self) -> None:
        super().__init__("the task already exists")


class TaskNotStarted(ActionRefused):
    """The task is still a draft: it must be submitted before anyone acts on a step."""

    def __init__(self) -> None:
        super().__init__("the task is still a draft; the initiator must submit it first")


class TaskFinished(ActionRefused):
    """The task is completed, rejected, revoked or expired; nothing more may happen."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the task is {status}; no further action is allowed")
        self.status = status


class NotAParticipant(ActionRefused):
    """The actor has no part in this task (or in the current step)."""

    def __init__(self, actor_id: str, where: str) -> None:
        super().__init__(f"{actor_id!r} is not a participant of {where}")
        self.actor_id = actor_id
        self.where = where


class NotYourTurn(ActionRefused):
    """The actor is in the current step but must wait (sequential order, or an added signer)."""

    def __init__(self, actor_id: str, step: str, pending: tuple[str, ...]) -> None:
        super().__init__(
            f"{actor_id!r} must wait in step {step!r}; now pending: {', '.join(pending)}"
        )
        self.actor_id = actor_id
        self.step = step
        self.pending = pending


class AlreadyActed(ActionRefused):
    """The actor already acted in this visit of the step."""

    def __init__(self, actor_id: str, step: str, act: str) -> None:
        super().__init__(f"{actor_id!r} already {act} in step {step!r}")
        self.actor_id = actor_id
        self.step = step
        self.act = act


class NotInitiator(ActionRefused):
    """Only the initiator may do this (submit, revoke, remind manually)."""

    def __init__(self, actor_id: str, act: str) -> None:
        super().__init__(f"only the initiator may {act}; {actor_id!r} is not the initiator")
        self.actor_id = actor_id
        self.act = act


class NotSystemActor(ActionRefused):
    """Only the ledger's scheduler may do this (expire, remind by policy)."""

    def __init__(self, actor_id: str, act: str) -> None:
        super().__init__(f"only the scheduler may {act}; {actor_id!r} may not")
        self.actor_id = actor_id
        self.act = act


class SelfApprovalNotAllowed(ActionRefused):
    """The initiator tried to approve their own request and the template forbids it."""

    def __init__(self, actor_id: str, step: str) -> None:
        super().__init__(
            f"{actor_id!r} initiated this request and may not approve it (step {step!r}); "
            "the template does not allow self-approval"
        )
        self.actor_id = actor_id
        self.step = step


class IdentityCheckRequired(ActionRefused):
    """The step requires an identity factor the actor has not passed within the window."""

    def __init__(self, actor_id: str, step: str, factor: str, window_seconds: int) -> None:
        super().__init__(
            f"{actor_id!r} must pass the {factor!r} identity check within "
            f"{window_seconds} s before acting in step {step!r}"
        )
        self.actor_id = actor_id
        self.step = step
        self.factor = factor
        self.window_seconds = window_seconds


class UnknownStep(ActionRefused):
    """A command names a step the task's route does not have."""

    def __init__(self, step: str) -> None:
        super().__init__(f"the task has no step {step!r}")
        self.step = step


class UnknownDocument(ActionRefused):
    """The act names a document that is not one of the task's."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"document {sha256} is not a document of this task")
        self.sha256 = sha256


class InvalidReturnTarget(ActionRefused):
    """A return must go to an earlier step that someone acts in (not a CC step)."""

    def __init__(self, step: str, current: str) -> None:
        super().__init__(f"cannot return from step {current!r} to {step!r}: not an earlier step")
        self.step = step
        self.current = current


class WrongActForStep(ActionRefused):
    """The act does not fit the step's role (e.g. signing an approver step)."""

    def __init__(self, act: str, step: str, role: str) -> None:
        super().__init__(f"cannot {act} in step {step!r}, whose participants are {role}s")
        self.act = act
        self.step = step
        self.role = role


class NotDue(ActionRefused):
    """Expiry was asked for before any deadline passed."""

    def __init__(self, deadline: str | None) -> None:
        detail = f"the deadline {deadline} has not passed" if deadline else "there is no deadline"
        super().__init__(f"cannot expire the task: {detail}")
        self.deadline = deadline


class InvalidCommand(ActionRefused, ValueError):
    """A command's own arguments are wrong (blank reason, transfer to oneself, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
