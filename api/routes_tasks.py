"""HTTP routes for tasks and their documents: upload, create, act, sign, read, list.

Every POST that stores events is app-signed (a detached JWS over the RFC 8785 body, see
:mod:`api.jws`) and verified before anything else is done or stored, and runs under an
``Idempotency-Key``. The act's event carries the app's event id (a replay is refused by the
store) and the app's signature. Each task and each uploaded document belongs to one tenant:
another tenant's id answers 404, exactly as an id that does not exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.problems import Problem
from api.security import (
    MAX_TEMPLATE_VERSION,
    SignedBody,
    connection_ip,
    idempotent,
    principal,
    raw_body,
    require,
    revoked_meanwhile,
    verified_body,
)
from api.tenancy import Principal, StaleCredentials, TenantStore
from ledger.blobs import BlobRef
from ledger.events import Actor, RequestContext, format_time
from ledger.log_writer import Transaction
from ledger.store import AlsoWrite, Receipt
from ledger.task_service import Acting, ActResult, SignerProfile
from ledger.timeline import timeline
from ledger.workflow import (
    PDF_MEDIA_TYPE,
    AddSigner,
    Approve,
    Command,
    Comment,
    Create,
    Directory,
    ReadToEnd,
    Reject,
    Remind,
    ReminderPolicy,
    Return,
    Revoke,
    StepSpec,
    Submit,
    TaskState,
    Transfer,
    VerifyIdentity,
    View,
    ad_hoc_route,
    route,
)
from projections.scope import tenant_scope
from projections.task_rows import from_micros

if TYPE_CHECKING:
    from api.app import Runtime

router = APIRouter(tags=["tasks"])
Caller = Annotated[Principal, Depends(principal)]
TaskId = Annotated[UUID, Path(description="The task's id (a UUID).")]

SHA256_PATTERN = r"^[0-9a-f]{64}$"
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, description="SHA-256, lowercase hex.")]
READERS = ("app", "legal", "auditor", "compliance")
_CHUNK = 1024 * 1024


# -- request bodies ----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActorIn(_Strict):
    """The person acting, as the upstream app identified them."""

    id: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Defaults to the name in the tenant's directory (or the id).",
    )
    organisation: str | None = Field(default=None, max_length=256)
    role: str = Field(default="user", min_length=1, max_length=64)


class ContextIn(_Strict):
    """Where and on what the end user acted, as the app reports it."""

    ip: str | None = Field(default=None, max_length=45, description="The end user's IP.")
    user_agent: str | None = Field(default=None, max_length=1024)
    device_id: str | None = Field(default=None, max_length=256)
    platform: str | None = Field(default=None, max_length=64)
    client_time: str | None = Field(
        default=None, max_length=64, description="When the user acted; default: the body's."
    )
    request_id: str | None = Field(default=None, max_length=128)


class SignedAct(_Strict):
    """What every app-signed act carries; send the body's JWS in ``JWS-Signature``."""

    event_id: UUID = Field(description="The id of the act's event, chosen by the app.")
    client_time: str = Field(
        max_length=64, description="RFC 3339 with offset; must be near the ledger's clock."
    )
    actor: ActorIn
    context: ContextIn = Field(default_factory=ContextIn)


class TemplateRef(_Strict):
    id: str = Field(min_length=1, max_length=256)
    version: int | None = Field(
        default=None, ge=1, le=MAX_TEMPLATE_VERSION, description="Default: the latest."
    )


class ReminderPolicyIn(_Strict):
    first_after_hours: int = Field(ge=1, le=100_000)
    every_hours: int = Field(ge=1, le=100_000)
    max_reminders: int = Field(ge=1, le=1000)


class NewTask(SignedAct):
    """Launch a task from a stored template, or ad hoc from steps given here."""

    task_id: UUID | None = Field(default=None, description="Default: a new UUID.")
    template: TemplateRef | None = None
    steps: list[dict[str, Any]] | None = Field(
        default=None, max_length=100, description="Template steps (StepSpec JSON), ad hoc."
    )
    name: str = Field(default="Ad hoc task", min_length=1, max_length=256)
    allow_self_approval: bool = False
    title: str = Field(min_length=1, max_length=1024)
    form: dict[str, Any] = Field(default_factory=dict)
    deadline: datetime | None = None
    documents: list[Sha256] = Field(default_factory=list, max_length=100)
    cc: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=100
    )
    reminder_policy: ReminderPolicyIn | None = None


class DocumentAct(SignedAct):
    document_sha256: Sha256 | None = None


class VerifyIdentityAct(SignedAct):
    factor: str = Field(min_length=1, max_length=32, examples=["sms_otp"])
    method: str = Field(min_length=1, max_length=64)
    result: Literal["passed", "failed"]
    provider_reference: str | None = Field(default=None, max_length=256)


class ApproveAct(SignedAct):
    comment: str | None = Field(default=None, max_length=4096)


class ReasonAct(SignedAct):
    reason: str = Field(min_length=1, max_length=4096)


class ReturnAct(ReasonAct):
    to_step: str = Field(min_length=1, max_length=256)


class TransferAct(SignedAct):
    to_user: str = Field(min_length=1, max_length=256)
    reason: str | None = Field(default=None, max_length=4096)


class AddSignerAct(SignedAct):
    user: str = Field(min_length=1, max_length=256)
    position: Literal["before", "after"]


class RemindAct(SignedAct):
    to_user: str = Field(min_length=1, max_length=256)


class CommentAct(SignedAct):
    text: str = Field(min_length=1, max_length=4096)


class SignerIn(_Strict):
    """The identity the certificate is issued to, as the app verified it."""

    name: str = Field(min_length=1, max_length=256)
    organisation: str = Field(min_length=1, max_length=256)
    email: str | None = Field(default=None, max_length=256)
    phone: str | None = Field(default=None, max_length=16, description="E.164")


class SignAct(SignedAct):
    """Sign with the ledger's CA (``signer``), or hand in a PDF the signer signed."""

    document_sha256: Sha256
    signer: SignerIn | None = None
    signed_document_sha256: Sha256 | None = Field(
        default=None, description="A PDF the signer signed with their own key, uploaded first."
    )


# -- responses ---------------------------------------------------------------------------


class DocumentOut(BaseModel):
    sha256: str
    size: int
    media_type: str
    file_name: str


class ReceiptOut(BaseModel):
    event_id: UUID
    sequence: int
    leaf_index: int
    event_hash: str = Field(description="The event hash (RFC 9162 leaf hash), hex.")
    server_time: str


class ActOut(BaseModel):
    task_id: UUID
    receipts: list[ReceiptOut]
    state: dict[str, Any]


class TemplateOut(BaseModel):
    id: str | None
    version: int | None
    name: str | None


class TaskSummary(BaseModel):
    task_id: UUID
    status: str
    title: str
    template: TemplateOut
    initiator: str | None
    current_step: str | None
    pending: list[str]
    created_at: str | None
    submitted_at: str | None
    finished_at: str | None
    deadline: str | None
    due_at: str | None
    steps: int
    steps_done: int
    signatures: int
    comments: int
    anomalies: int
    last_sequence: int
    last_leaf_index: int


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    next: UUID | None = Field(description="Pass as ``after`` for the next page.")


class TimelineOut(BaseModel):
    task_id: UUID
    entries: list[dict[str, Any]]


# -- helpers -----------------------------------------------------------------------------


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _time(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "event_id": str(receipt.event_id),
        "sequence": receipt.sequence,
        "leaf_index": receipt.leaf_index,
        "event_hash": receipt.event_hash.hex(),
        "server_time": receipt.server_time,
    }


def state_json(task_id: UUID, state: TaskState) -> dict[str, Any]:
    """A task's folded state as the API shows it."""
    route_ = state.route
    step = state.current_step
    return {
        "task_id": str(task_id),
        "status": state.status,
        "title": state.title,
        "template": (
            {
                "id": route_.template_id,
                "version": route_.template_version,
                "name": route_.template_name,
            }
            if route_
            else None
        ),
        "initiator": state.initiator,
        "created_at": _time(state.created_at),
        "submitted_at": _time(state.submitted_at),
        "finished_at": _time(state.finished_at),
        "deadline": _time(state.deadline),
        "effective_deadline": _time(state.effective_deadline),
        "current_step": step.key if step else None,
        "pending": list(state.pending),
        "cc": list(state.cc),
        "documents": [
            {
                "sha256": d.sha256,
                "file_name": d.file_name,
                "media_type": d.media_type,
                "size": d.size,
                "revisions": list(d.revisions),
                "current": d.current,
            }
            for d in state.documents
        ],
        "steps": [
            {
                "key": s.key,
                "title": s.spec.title,
                "role": s.spec.role,
                "mode": s.spec.mode,
                "required_factors": list(s.spec.required_factors),
                "visit": s.visit,
                "active": s.active,
                "done": s.done,
                "started_at": _time(s.started_at),
                "due_at": _time(s.due_at),
                "participants": [
                    {
                        "user": p.user,
                        "act": p.act,
                        "acted_at": _time(p.acted_at),
                        "viewed_at": _time(p.viewed_at),
                        "read_at": _time(p.read_at),
                        "reminders": p.reminders,
                        "reminded_at": _time(p.reminded_at),
                    }
                    for p in s.participants
                ],
            }
            for s in state.steps
        ],
        "verifications": [
            {
                "actor": v.actor,
                "factor": v.factor,
                "method": v.method,
                "result": v.result,
                "at": format_time(v.at),
                "provider_reference": v.provider_reference,
            }
            for v in state.verifications
        ],
        "signatures": state.signatures,
        "comments": state.comments,
        "last_sequence": state.last_sequence,
        "anomalies": list(state.anomalies),
    }


def _not_found(task_id: UUID) -> Problem:
    return Problem(404, "task-not-found", f"there is no task {task_id}")


def _owned_task(runtime: Runtime, who: Principal, task_id: UUID) -> None:
    if not runtime.tenants.owns_stream(who.tenant_id, task_id):
        raise _not_found(task_id)


def _document_ref(runtime: Runtime, who: Principal, sha256: str) -> BlobRef:
    found = runtime.tenants.document(who.tenant_id, sha256)
    if found is None or not runtime.tasks.blobs.exists(sha256):
        raise Problem(422, "unknown-document", f"document {sha256} was not uploaded by this tenant")
    file_name, size = found
    return BlobRef(sha256, size, PDF_MEDIA_TYPE, file_name)


def _task_document(runtime: Runtime, task_id: UUID, sha256: str) -> None:
    """422 unless ``sha256`` is one of the task's documents or their signed revisions: a
    view or read is evidence about the task's own documents, never about any other hash."""
    state = runtime.tasks.existing(task_id)
    if not any(sha256 == d.sha256 or sha256 in d.revisions for d in state.documents):
        raise Problem(
            422, "unknown-document", f"document {sha256} is not a document of task {task_id}"
        )


def _acting(
    request: Request, runtime: Runtime, who: Principal, body: SignedAct, signed: SignedBody
) -> Acting:
    """The actor, the end user's context and the connecting address, from a verified body."""
    name = body.actor.display_name
    if name is None:
        name = runtime.tenants.directory(who.tenant_id).display_name(body.actor.id)
    ctx = body.context
    context = RequestContext(
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        device_id=ctx.device_id,
        platform=ctx.platform,
        client_time=ctx.client_time or body.client_time,
        request_id=ctx.request_id,
        connection_ip=connection_ip(request, runtime.settings),
    )
    actor = Actor(body.actor.id, name, body.actor.role, body.actor.organisation)
    return Acting(actor, context, event_id=body.event_id, app_signature=signed.signature)


def _keys_still_live(who: Principal, signed: SignedBody) -> AlsoWrite:
    """A check, in the act's own transaction, that the API key and the app key it was
    verified with are still live: a revocation committed after they were read and before
    the act's events are stored refuses them (:class:`~api.tenancy.StaleCredentials`)."""
    key_ids = [who.key_id]
    app_keys = [(who.tenant_id, signed.signature.key_id)]

    def check(tx: Transaction, receipts: list[Receipt]) -> None:
        TenantStore.claim_streams_in(tx, (), key_ids, app_keys)

    return check


def _record_revisions(runtime: Runtime, who: Principal, result: ActResult) -> None:
    """Let the tenant download every signed revision of its task's documents."""
    if not {"document.signed", "task.completed"} & set(result.event_types):
        return
    for document in result.state.documents:
        for revision in document.revisions:
            if runtime.tenants.owns_document(who.tenant_id, revision):
                continue
            size = runtime.tasks.blobs.path_of(revision).stat().st_size
            runtime.tenants.record_document(who.tenant_id, revision, document.file_name, size)


def _act_answer(status: int, result: ActResult) -> tuple[int, Any]:
    return status, {
        "task_id": str(result.task_id),
        "receipts": [receipt_json(r) for r in result.receipts],
        "state": state_json(result.task_id, result.state),
    }


async def _signed_post(
    request: Request,
    who: Caller,
    perform: Any,
) -> Response:
    """Verify the app's signature over the body, then run ``perform`` once per key.

    ``perform(signed, runtime)`` returns ``(status, payload)``; it runs in a worker thread.
    """
    require(who, "app")
    runtime = _runtime(request)
    raw = await raw_body(request, runtime.settings)

    def verify_and_run() -> Response:
        signed = verified_body(request, raw, who, runtime.settings, runtime.tasks.clock())
        try:
            return idempotent(request, who, raw, lambda: perform(signed, runtime))
        except StaleCredentials as exc:
            raise revoked_meanwhile(exc) from None

    response: Response = await run_in_threadpool(verify_and_run)
    return response


# -- documents ---------------------------------------------------------------------------


@router.post(
    "/documents",
    status_code=201,
    response_model=DocumentOut,
    responses={413: {"description": "Too large"}, 415: {"description": "Not a PDF"}},
)
async def upload_document(
    request: Request, who: Caller, file: Annotated[UploadFile, File()]
) -> Response:
    """Upload one PDF (multipart field ``file``) for the tenant's tasks (app)."""
    require(who, "app")
    runtime = _runtime(request)
    media_type = (file.content_type or "").split(";")[0].strip().lower()
    if media_type != PDF_MEDIA_TYPE:
        raise Problem(415, "unsupported-media-type", "upload documents as application/pdf")
    limit = runtime.settings.max_upload_bytes
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise Problem(413, "document-too-large", f"the document is over {limit} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    file_name = file.filename or "document.pdf"
    # Multipart boundaries differ per request: the same upload is the same name and bytes.
    fingerprint = f"{file_name}\n{media_type}\n".encode() + hashlib.sha256(data).digest()

    def run() -> tuple[int, Any]:
        ref = runtime.tasks.upload(data, file_name)
        runtime.tenants.record_document(who.tenant_id, ref.sha256, ref.file_name, ref.size)
        return 201, ref.to_json()

    response: Response = await run_in_threadpool(idempotent, request, who, fingerprint, run)
    return response


@router.get(
    "/documents/{sha256}",
    response_class=StreamingResponse,
    responses={200: {"content": {PDF_MEDIA_TYPE: {}}, "description": "The PDF's bytes."}},
)
async def download_document(
    request: Request,
    who: Caller,
    sha256: Annotated[str, Path(pattern=SHA256_PATTERN)],
) -> StreamingResponse:
    """A document the tenant uploaded, or a signed revision of one of its tasks."""
    require(who, "app", "legal", "auditor")
    runtime = _runtime(request)

    def find() -> bool:
        return runtime.tenants.owns_document(who.tenant_id, sha256) and runtime.tasks.blobs.exists(
            sha256
        )

    if not await run_in_threadpool(find):
        raise Problem(404, "document-not-found", f"there is no document {sha256}")
    size = runtime.tasks.blobs.path_of(sha256).stat().st_size
    return StreamingResponse(
        runtime.tasks.blobs.iter_read(sha256),
        media_type=PDF_MEDIA_TYPE,
        headers={"Content-Length": str(size), "ETag": f'"{sha256}"'},
    )


# -- creating and acting -----------------------------------------------------------------


def _create(request: Request, who: Principal, signed: SignedBody, runtime: Runtime) -> Any:
    body = NewTask.model_validate(signed.body)
    acting = _acting(request, runtime, who, body, signed)
    initiator = acting.actor.id
    tenants = runtime.tenants
    if (body.template is None) == (body.steps is None):
        raise Problem(422, "invalid-request", "give either template or steps (ad hoc), not both")
    directory = tenants.directory(who.tenant_id)
    policy = ReminderPolicy(**body.reminder_policy.model_dump()) if body.reminder_policy else None
    if body.template is not None:
        template = tenants.template(who.tenant_id, body.template.id, body.template.version)
        if template is None:
            raise Problem(
                422, "template-not-found", f"the tenant has no template {body.template.id!r}"
            )
        launched = route(template, body.form, initiator, directory)
        if policy is not None:
            launched = replace(launched, reminder_policy=policy)
    else:
        assert body.steps is not None
        steps = [StepSpec.from_json(s, f"steps[{i}]") for i, s in enumerate(body.steps)]
        launched = ad_hoc_route(
            initiator,
            steps,
            directory,
            name=body.name,
            form=body.form,
            allow_self_approval=body.allow_self_approval,
            reminder_policy=policy,
        )
    if body.deadline is not None and body.deadline.tzinfo is None:
        raise Problem(422, "invalid-request", "deadline needs a UTC offset")
    documents = tuple(_document_ref(runtime, who, sha) for sha in body.documents)
    task_id = body.task_id or uuid4()
    if not tenants.claim_stream(who.tenant_id, task_id):
        raise Problem(409, "task-id-taken", f"task id {task_id} is taken; choose another")
    command = Create(
        launched,
        body.title,
        body.form,
        body.deadline,
        documents=documents,
        cc=tuple(body.cc),
        department=_department(directory, initiator),
    )
    also = _keys_still_live(who, signed)
    return _act_answer(201, runtime.tasks.create(task_id, command, acting, also=also))


def _department(directory: Directory, user: str) -> str | None:
    """The initiator's department in the tenant's directory, for the KPI views."""
    person = directory.users.get(user)
    return person.department if person is not None else None


@router.post("/tasks", status_code=201, response_model=ActOut)
async def create_task(request: Request, body: NewTask, who: Caller) -> Response:
    """Launch a task (app, signed): from a template and form, or ad hoc from steps."""
    return await _signed_post(
        request, who, lambda signed, runtime: _create(request, who, signed, runtime)
    )


def _command_for(action: str, body: dict[str, Any]) -> Command:
    if action == "submit":
        return Submit()
    if action == "view":
        return View(body.get("document_sha256"))
    if action == "read":
        return ReadToEnd(body.get("document_sha256"))
    if action == "verify-identity":
        return VerifyIdentity(
            body["factor"], body["method"], body["result"], body.get("provider_reference")
        )
    if action == "approve":
        return Approve(body.get("comment"))
    if action == "reject":
        return Reject(body["reason"])
    if action == "return":
        return Return(body["to_step"], body["reason"])
    if action == "transfer":
        return Transfer(body["to_user"], body.get("reason"))
    if action == "add-signer":
        return AddSigner(body["user"], body["position"])
    if action == "remind":
        return Remind(body["to_user"], "manual")
    if action == "comment":
        return Comment(body["text"])
    if action == "revoke":
        return Revoke(body["reason"])
    raise AssertionError(action)  # pragma: no cover


_ACT_MODELS: dict[str, type[SignedAct]] = {
    "submit": SignedAct,
    "view": DocumentAct,
    "read": DocumentAct,
    "verify-identity": VerifyIdentityAct,
    "approve": ApproveAct,
    "reject": ReasonAct,
    "return": ReturnAct,
    "transfer": TransferAct,
    "add-signer": AddSignerAct,
    "remind": RemindAct,
    "comment": CommentAct,
    "revoke": ReasonAct,
    "sign": SignAct,
}


def _act(
    request: Request,
    who: Principal,
    task_id: UUID,
    action: str,
    signed: SignedBody,
    runtime: Runtime,
) -> Any:
    body = _ACT_MODELS[action].model_validate(signed.body)
    _owned_task(runtime, who, task_id)
    if isinstance(body, DocumentAct) and body.document_sha256 is not None:
        _task_document(runtime, task_id, body.document_sha256)
    acting = _acting(request, runtime, who, body, signed)
    also = _keys_still_live(who, signed)
    if isinstance(body, SignAct):
        result = _sign(runtime, who, task_id, body, acting, also)
    else:
        command = _command_for(action, body.model_dump(mode="json"))
        result = runtime.tasks.act(task_id, command, acting, also=also)
    _record_revisions(runtime, who, result)
    return _act_answer(200, result)


def _sign(
    runtime: Runtime,
    who: Principal,
    task_id: UUID,
    body: SignAct,
    acting: Acting,
    also: AlsoWrite,
) -> ActResult:
    if (body.signer is None) == (body.signed_document_sha256 is None):
        raise Problem(
            422,
            "invalid-request",
            "give either signer (the ledger signs) or signed_document_sha256",
        )
    runtime.tasks.existing(task_id)
    if body.signer is not None:
        profile = SignerProfile(
            acting.actor.id,
            body.signer.name,
            body.signer.organisation,
            body.signer.email,
            body.signer.phone,
        )
        return runtime.tasks.sign(task_id, body.document_sha256, acting, profile=profile, also=also)
    assert body.signed_document_sha256 is not None
    _document_ref(runtime, who, body.signed_document_sha256)
    signed_pdf = runtime.tasks.blobs.read(body.signed_document_sha256)
    return runtime.tasks.sign(
        task_id, body.document_sha256, acting, signed_pdf=signed_pdf, also=also
    )


async def _action(request: Request, who: Principal, task_id: UUID, action: str) -> Response:
    return await _signed_post(
        request,
        who,
        lambda signed, runtime: _act(request, who, task_id, action, signed, runtime),
    )


@router.post("/tasks/{task_id}/actions/submit", response_model=ActOut)
async def submit(request: Request, task_id: TaskId, body: SignedAct, who: Caller) -> Response:
    """The initiator submits the draft; the first step starts."""
    return await _action(request, who, task_id, "submit")


@router.post("/tasks/{task_id}/actions/view", response_model=ActOut)
async def view(request: Request, task_id: TaskId, body: DocumentAct, who: Caller) -> Response:
    """A participant opened a document."""
    return await _action(request, who, task_id, "view")


@router.post("/tasks/{task_id}/actions/read", response_model=ActOut)
async def read(request: Request, task_id: TaskId, body: DocumentAct, who: Caller) -> Response:
    """A participant read a document to the end (completes a viewer's part)."""
    return await _action(request, who, task_id, "read")


@router.post("/tasks/{task_id}/actions/verify-identity", response_model=ActOut)
async def verify_identity(
    request: Request, task_id: TaskId, body: VerifyIdentityAct, who: Caller
) -> Response:
    """The outcome of an identity check (SMS OTP, face, ...), never the secret."""
    return await _action(request, who, task_id, "verify-identity")


@router.post("/tasks/{task_id}/actions/approve", response_model=ActOut)
async def approve(request: Request, task_id: TaskId, body: ApproveAct, who: Caller) -> Response:
    """A pending approver approves."""
    return await _action(request, who, task_id, "approve")


@router.post("/tasks/{task_id}/actions/reject", response_model=ActOut)
async def reject(request: Request, task_id: TaskId, body: ReasonAct, who: Caller) -> Response:
    """A pending approver or signer rejects; the task ends."""
    return await _action(request, who, task_id, "reject")


@router.post("/tasks/{task_id}/actions/return", response_model=ActOut)
async def return_(request: Request, task_id: TaskId, body: ReturnAct, who: Caller) -> Response:
    """Send the task back to an earlier step (退回)."""
    return await _action(request, who, task_id, "return")


@router.post("/tasks/{task_id}/actions/transfer", response_model=ActOut)
async def transfer(request: Request, task_id: TaskId, body: TransferAct, who: Caller) -> Response:
    """Hand one's pending part to another person (转交)."""
    return await _action(request, who, task_id, "transfer")


@router.post("/tasks/{task_id}/actions/add-signer", response_model=ActOut)
async def add_signer(
    request: Request, task_id: TaskId, body: AddSignerAct, who: Caller
) -> Response:
    """Add a person as a step before or after the current one (加签)."""
    return await _action(request, who, task_id, "add-signer")


@router.post("/tasks/{task_id}/actions/remind", response_model=ActOut)
async def remind(request: Request, task_id: TaskId, body: RemindAct, who: Caller) -> Response:
    """The initiator reminds a pending participant (催签)."""
    return await _action(request, who, task_id, "remind")


@router.post("/tasks/{task_id}/actions/comment", response_model=ActOut)
async def comment(request: Request, task_id: TaskId, body: CommentAct, who: Caller) -> Response:
    """Anyone with a part in the task comments."""
    return await _action(request, who, task_id, "comment")


@router.post("/tasks/{task_id}/actions/revoke", response_model=ActOut)
async def revoke(request: Request, task_id: TaskId, body: ReasonAct, who: Caller) -> Response:
    """The initiator revokes the task."""
    return await _action(request, who, task_id, "revoke")


@router.post("/tasks/{task_id}/actions/sign", response_model=ActOut)
async def sign(request: Request, task_id: TaskId, body: SignAct, who: Caller) -> Response:
    """A pending signer signs the current revision of a task document (PAdES)."""
    return await _action(request, who, task_id, "sign")


# -- reading -----------------------------------------------------------------------------


@router.get("/tasks/{task_id}")
async def get_task(request: Request, task_id: TaskId, who: Caller) -> dict[str, Any]:
    """The task's state, folded from its events (app, legal, auditor, compliance)."""
    require(who, *READERS)
    runtime = _runtime(request)

    def read_state() -> dict[str, Any]:
        _owned_task(runtime, who, task_id)
        return state_json(task_id, runtime.tasks.existing(task_id))

    found: dict[str, Any] = await run_in_threadpool(read_state)
    return found


@router.get("/tasks/{task_id}/timeline", response_model=TimelineOut)
async def get_timeline(request: Request, task_id: TaskId, who: Caller) -> dict[str, Any]:
    """One line per event: who, what, when, where, how; with leaf index and event hash."""
    require(who, *READERS)
    runtime = _runtime(request)

    def read_timeline() -> dict[str, Any]:
        _owned_task(runtime, who, task_id)
        store = runtime.ledger.store
        events = store.read_stream(task_id)
        if not events:
            raise _not_found(task_id)
        entries = []
        for event, line in zip(events, timeline(e.envelope for e in events), strict=True):
            leaf = store.entry_for_event(event.event_id)
            entries.append(
                {
                    **line.to_json(),
                    "event_id": str(event.event_id),
                    "leaf_index": leaf.leaf_index if leaf else None,
                    "event_hash": event.hash.hex(),
                }
            )
        return {"task_id": str(task_id), "entries": entries}

    found: dict[str, Any] = await run_in_threadpool(read_timeline)
    return found


_TIMES = ("created_at", "submitted_at", "finished_at", "deadline", "due_at")


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in TaskSummary.model_fields if k in row and k not in _TIMES}
    out["template"] = {
        "id": row["template_id"],
        "version": row["template_version"],
        "name": row["template_name"],
    }
    for key in _TIMES:
        out[key] = _time(from_micros(row[key]))
    return out


@router.get("/tasks", response_model=TaskList)
async def list_tasks(
    request: Request,
    who: Caller,
    status: Annotated[str | None, Query(max_length=32)] = None,
    initiator: Annotated[str | None, Query(max_length=256)] = None,
    pending_user: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[UUID | None, Query(description="The last task id of the page before.")] = None,
) -> dict[str, Any]:
    """The tenant's tasks in task id order, filtered, a page at a time (from the projection)."""
    require(who, *READERS)
    runtime = _runtime(request)

    def read_page() -> list[dict[str, Any]]:
        runtime.projection.catch_up()
        return runtime.projection.list_tasks(
            status=status,
            initiator=initiator,
            pending_user=pending_user,
            limit=limit,
            after=after,
            scope=tenant_scope(who.tenant_id),
        )

    rows = await run_in_threadpool(read_page)
    tasks = [_summary(r) for r in rows]
    return {"tasks": tasks, "next": tasks[-1]["task_id"] if len(tasks) == limit else None}
