"""The rules that turn commands into events, or refuse them.

:func:`decide` is pure: given a task's :class:`~ledger.workflow.state.TaskState`, a
command, the acting user and the current time, it returns the events to append (type,
``data`` and identity factors; the caller adds actor, context and stream) or raises one
specific :class:`~ledger.workflow.errors.ActionRefused`. A refusal produces no event, so
nothing is stored. The caller appends with ``expected={task: state.last_sequence}`` so a
concurrent act on the same task is re-decided, never lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ledger.blobs import BlobRef
from ledger.events import (
    IDENTITY_FACTORS,
    IDENTITY_RESULTS,
    Actor,
    EventDraft,
    IdentityFactor,
    RequestContext,
    format_time,
)
from ledger.workflow import errors
from ledger.workflow.commands import (
    AddDocument,
    AddSigner,
    Approve,
    Command,
    Comment,
    Create,
    Expire,
    ReadToEnd,
    Reject,
    Remind,
    Return,
    Revoke,
    Sign,
    Submit,
    Transfer,
    VerifyIdentity,
    View,
)
from ledger.workflow.routing import RouteStep
from ledger.workflow.state import StepState, TaskState, apply

#: The actor id of the ledger's scheduler, the only one who expires tasks and reminds by policy.
SYSTEM_ACTOR = "system:scheduler"
PDF_MEDIA_TYPE = "application/pdf"
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class EventDraftData:
    """One event to append: its type, ``data`` and identity factors (envelope fields)."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    identity_factors: tuple[IdentityFactor, ...] = ()

    def to_draft(
        self, stream_id: UUID, actor: Actor, context: RequestContext | None = None
    ) -> EventDraft:
        """The store's draft, once the caller knows who acted and from where."""
        return EventDraft(
            stream_id=stream_id,
            type=self.type,
            actor=actor,
            context=context or RequestContext(),
            data=self.data,
            identity_factors=self.identity_factors,
        )


# -- commands ----------------------------------------------------------------------------


# -- the rules ---------------------------------------------------------------------------


def decide(
    state: TaskState, command: Command, actor_id: str, now: datetime
) -> list[EventDraftData]:
    """The events ``command`` by ``actor_id`` at ``now`` produces, or a specific refusal."""
    if now.tzinfo is None:
        raise errors.InvalidCommand("now must be timezone-aware")
    if isinstance(command, Create):
        if state.created:
            raise errors.TaskExists()
        return _create(command, actor_id)
    if not state.created:
        raise errors.TaskNotCreated()
    if state.finished:
        raise errors.TaskFinished(state.status)
    handler = _HANDLERS[type(command)]
    return handler(state, command, actor_id, now)


def _text(name: str, value: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidCommand(f"{name} must not be blank")
    return value


def _document(document: BlobRef) -> dict[str, object]:
    """A document reference as events record it, after checking each field."""
    if not isinstance(document, BlobRef) or not _SHA256.match(document.sha256):
        raise errors.InvalidCommand("a document needs its SHA-256 as 64 lowercase hex digits")
    if document.media_type != PDF_MEDIA_TYPE:
        raise errors.InvalidCommand(
            f"{document.file_name!r} is {document.media_type}; tasks take PDF documents only"
        )
    if document.size <= 0:
        raise errors.InvalidCommand(f"{document.file_name!r} is empty")
    _text("file_name", document.file_name)
    return document.to_json()


def _create(command: Create, actor: str) -> list[EventDraftData]:
    if actor != command.route.initiator:
        raise errors.NotInitiator(actor, "create the task")
    documents = [_document(d) for d in command.documents]
    if len({d.sha256 for d in command.documents}) != len(documents):
        raise errors.InvalidCommand("the same document is attached twice")
    cc = [_text("cc", user) for user in command.cc]
    if len(set(cc)) != len(cc):
        raise errors.InvalidCommand("the CC list names someone twice")
    data = {
        **command.route.to_json(),
        "title": _text("title", command.title),
        "form": dict(command.form),
        "deadline": format_time(command.deadline) if command.deadline else None,
        "documents": documents,
        "cc": cc,
    }
    if command.department is not None:
        data["department"] = _text("department", command.department)
    return [EventDraftData("task.created", data)]


def _add_document(
    state: TaskState, c: AddDocument, actor: str, now: datetime
) -> list[EventDraftData]:
    if actor != state.initiator:
        raise errors.NotInitiator(actor, "add a document")
    if state.status != "draft":
        raise errors.InvalidCommand("documents can be added only before the task is submitted")
    data = _document(c.document)
    if state.document(c.document.sha256) is not None:
        raise errors.InvalidCommand(f"{c.document.file_name!r} is already attached")
    return [EventDraftData("document.added", data)]


def _turn(state: TaskState, actor: str) -> tuple[int, StepState]:
    """The current step, if ``actor`` is pending in it; otherwise the precise reason why not."""
    if state.status == "draft":
        raise errors.TaskNotStarted()
    step, index = state.current_step, state.current
    if step is None or index is None:
        raise errors.TaskFinished("done with every step")
    member = step.member(actor)
    if member is None:
        raise errors.NotAParticipant(actor, f"step {step.key!r}")
    if actor not in step.pending:
        if member.act is not None:
            raise errors.AlreadyActed(actor, step.key, member.act)
        raise errors.NotYourTurn(actor, step.key, step.pending)
    return index, step


def _role(step: StepState, act: str, *roles: str) -> None:
    if step.spec.role not in roles:
        raise errors.WrongActForStep(act, step.key, step.spec.role)


def _not_self(state: TaskState, step: StepState, user: str) -> None:
    assert state.route is not None
    if (
        step.spec.role == "approver"
        and user == state.initiator
        and not state.route.allow_self_approval
    ):
        raise errors.SelfApprovalNotAllowed(user, step.key)


def _identity(
    state: TaskState, step: StepState, actor: str, now: datetime
) -> tuple[IdentityFactor, ...]:
    """The passed checks that satisfy the step's required factors, or the missing one."""
    assert state.route is not None
    window = state.route.identity_window_seconds
    since = now - timedelta(seconds=window)
    proofs: list[IdentityFactor] = []
    for factor in step.spec.required_factors:
        found = [
            v
            for v in state.verifications
            if v.actor == actor and v.factor == factor and v.result == "passed"
            if since <= v.at <= now
        ]
        if not found:
            raise errors.IdentityCheckRequired(actor, step.key, factor, window)
        v = found[-1]
        proofs.append(IdentityFactor(v.factor, v.method, v.result, v.at, v.provider_reference))
    return tuple(proofs)


def _with_completion(
    state: TaskState, drafts: list[EventDraftData], actor: str, now: datetime
) -> list[EventDraftData]:
    """``drafts``, plus ``task.completed`` when they finish the last step."""
    preview = state
    for number, draft in enumerate(drafts, start=1):
        preview = apply(preview, preview_envelope(draft, actor, state.last_sequence + number, now))
    if preview.all_steps_done and not preview.finished:
        drafts = [*drafts, EventDraftData("task.completed", {})]
    return drafts


def preview_envelope(
    draft: EventDraftData, actor_id: str, sequence: int, now: datetime
) -> dict[str, Any]:
    """The fields of the envelope :func:`~ledger.workflow.state.apply` reads, for a draft."""
    return {
        "type": draft.type,
        "actor": {"id": actor_id},
        "data": dict(draft.data),
        "sequence": sequence,
        "server_time": format_time(now),
        "identity_factors": [f.to_json() for f in draft.identity_factors],
    }


def _submit(state: TaskState, c: Submit, actor: str, now: datetime) -> list[EventDraftData]:
    if actor != state.initiator:
        raise errors.NotInitiator(actor, "submit")
    if state.status != "draft":
        raise errors.InvalidCommand("the task was already submitted")
    return _with_completion(state, [EventDraftData("task.submitted", {})], actor, now)


def _in_task(state: TaskState, actor: str) -> None:
    if actor not in state.people:
        raise errors.NotAParticipant(actor, "this task")


def _view(state: TaskState, c: View | ReadToEnd, actor: str, now: datetime) -> list[EventDraftData]:
    _in_task(state, actor)
    if c.document_sha256 is not None and not _SHA256.match(c.document_sha256):
        raise errors.InvalidCommand("document_sha256 must be 64 lowercase hex digits")
    step = state.current_step
    data = {"step": step.key if step else None, "document_sha256": c.document_sha256}
    if isinstance(c, View):
        return [EventDraftData("document.viewed", data)]
    return _with_completion(state, [EventDraftData("document.read_to_end", data)], actor, now)


def _verify(state: TaskState, c: VerifyIdentity, actor: str, now: datetime) -> list[EventDraftData]:
    _index, step = _turn(state, actor)
    if c.factor not in IDENTITY_FACTORS:
        raise errors.InvalidCommand(f"{c.factor!r} is not a known identity factor")
    if c.result not in IDENTITY_RESULTS:
        raise errors.InvalidCommand("result must be 'passed' or 'failed'")
    _text("method", c.method)
    factor = IdentityFactor(c.factor, c.method, c.result, now, c.provider_reference)
    data = {
        "step": step.key,
        "factor": c.factor,
        "method": c.method,
        "result": c.result,
        "provider_reference": c.provider_reference,
    }
    return [EventDraftData("identity.verified", data, (factor,))]


def _approve(state: TaskState, c: Approve, actor: str, now: datetime) -> list[EventDraftData]:
    _index, step = _turn(state, actor)
    _role(step, "approve", "approver")
    _not_self(state, step, actor)
    proofs = _identity(state, step, actor, now)
    draft = EventDraftData("step.approved", {"step": step.key, "comment": c.comment}, proofs)
    return _with_completion(state, [draft], actor, now)


def _sign(state: TaskState, c: Sign, actor: str, now: datetime) -> list[EventDraftData]:
    _index, step = _turn(state, actor)
    _role(step, "sign", "signer")
    for name in ("document_sha256", "revision_sha256"):
        if not _SHA256.match(getattr(c, name)):
            raise errors.InvalidCommand(f"{name} must be 64 lowercase hex digits")
    document = state.document(c.document_sha256)
    if document is None:
        raise errors.UnknownDocument(c.document_sha256)
    if c.revision_sha256 == document.sha256 or c.revision_sha256 in document.revisions:
        raise errors.InvalidCommand("revision_sha256 names a revision the task already has")
    proofs = _identity(state, step, actor, now)
    data = {
        "step": step.key,
        "document_sha256": c.document_sha256,
        "revision_sha256": c.revision_sha256,
    }
    return _with_completion(state, [EventDraftData("document.signed", data, proofs)], actor, now)


def _reject(state: TaskState, c: Reject, actor: str, now: datetime) -> list[EventDraftData]:
    _index, step = _turn(state, actor)
    _role(step, "reject", "approver", "signer")
    data = {"step": step.key, "reason": _text("reason", c.reason)}
    return [EventDraftData("step.rejected", data)]


def _return(state: TaskState, c: Return, actor: str, now: datetime) -> list[EventDraftData]:
    index, step = _turn(state, actor)
    _role(step, "return", "approver", "signer")
    target = state.step_index(c.to_step)
    if target is None:
        raise errors.UnknownStep(c.to_step)
    if target >= index or state.steps[target].spec.role == "cc":
        raise errors.InvalidReturnTarget(c.to_step, step.key)
    data = {"step": step.key, "to_step": c.to_step, "reason": _text("reason", c.reason)}
    return [EventDraftData("step.returned", data)]


def _newcomer(state: TaskState, step: StepState, actor: str, user: str) -> None:
    """Transfers and added signers obey the same rules as the people they join."""
    _text("user", user)
    if user == actor or step.member(user) is not None:
        raise errors.InvalidCommand(f"{user!r} is already a participant of step {step.key!r}")
    _not_self(state, step, user)


def _transfer(state: TaskState, c: Transfer, actor: str, now: datetime) -> list[EventDraftData]:
    _index, step = _turn(state, actor)
    _role(step, "transfer", "approver", "signer", "viewer")
    _newcomer(state, step, actor, c.to_user)
    data = {"step": step.key, "from_user": actor, "to_user": c.to_user, "reason": c.reason}
    return [EventDraftData("task.transferred", data)]


def _add_signer(state: TaskState, c: AddSigner, actor: str, now: datetime) -> list[EventDraftData]:
    _index, step = _turn(state, actor)
    _role(step, "add a participant", "approver", "signer")
    if c.position not in ("before", "after"):
        raise errors.InvalidCommand("position must be 'before' or 'after'")
    _newcomer(state, step, actor, c.user)
    number = 1
    while state.step_index(f"{step.key}+{number}") is not None:
        number += 1
    spec = step.spec
    added = RouteStep(
        key=f"{step.key}+{number}",
        title=f"{spec.title} (added by {actor})",
        role=spec.role,
        mode="sequential",
        participants=(c.user,),
        required_factors=spec.required_factors,
        deadline_hours=spec.deadline_hours,
        placements=spec.placements,
    )
    data = {"step": step.key, "position": c.position, "user": c.user, "added_step": added.to_json()}
    return [EventDraftData("signer.added", data)]


def _remind(state: TaskState, c: Remind, actor: str, now: datetime) -> list[EventDraftData]:
    if c.kind == "manual" and actor != state.initiator:
        raise errors.NotInitiator(actor, "remind")
    if c.kind == "policy" and actor != SYSTEM_ACTOR:
        raise errors.NotSystemActor(actor, "remind by policy")
    if c.kind not in ("manual", "policy"):
        raise errors.InvalidCommand("kind must be 'manual' or 'policy'")
    if state.status == "draft":
        raise errors.TaskNotStarted()
    if c.to_user not in state.pending:
        raise errors.NotAParticipant(c.to_user, "the pending participants")
    step = state.current_step
    assert step is not None
    return [
        EventDraftData("task.reminded", {"step": step.key, "to_user": c.to_user, "kind": c.kind})
    ]


def _comment(state: TaskState, c: Comment, actor: str, now: datetime) -> list[EventDraftData]:
    _in_task(state, actor)
    return [EventDraftData("comment.added", {"text": _text("text", c.text)})]


def _revoke(state: TaskState, c: Revoke, actor: str, now: datetime) -> list[EventDraftData]:
    if actor != state.initiator:
        raise errors.NotInitiator(actor, "revoke")
    return [EventDraftData("task.revoked", {"reason": _text("reason", c.reason)})]


def _expire(state: TaskState, c: Expire, actor: str, now: datetime) -> list[EventDraftData]:
    if actor != SYSTEM_ACTOR:
        raise errors.NotSystemActor(actor, "expire")
    deadline = state.effective_deadline
    if deadline is None or now <= deadline:
        raise errors.NotDue(format_time(deadline) if deadline else None)
    step = state.current_step
    data = {"deadline": format_time(deadline), "step": step.key if step else None}
    return [EventDraftData("task.expired", data)]


_HANDLERS: dict[type, Callable[[TaskState, Any, str, datetime], list[EventDraftData]]] = {
    AddDocument: _add_document,
    Submit: _submit,
    View: _view,
    ReadToEnd: _view,
    VerifyIdentity: _verify,
    Approve: _approve,
    Reject: _reject,
    Return: _return,
    Sign: _sign,
    Transfer: _transfer,
    AddSigner: _add_signer,
    Remind: _remind,
    Comment: _comment,
    Revoke: _revoke,
    Expire: _expire,
}
