"""Tasks as a service: the workflow rules, the event store and the document blobs together.

Every act goes the same way: read the task's stream, fold it into its state, let
:func:`~ledger.workflow.decide` turn the command into events or refuse it, and append the
events with ``expected={task: state.last_sequence}``. If another act on the same task got
in first the store raises :class:`~ledger.errors.StreamConflict`; the act is then decided
again on the new state (and may now be refused), so concurrent acts never lose an update.
A refusal stores nothing.

Signing needs PDF machinery the ledger core does not carry: it is given a
:class:`DocumentSigner` (the embedded default's is ``evidence.task_signing``). Each
signature is a new revision of the document in the blob store; the event records the
hashes of the document and of the revision, and the signer's certificate. When the last
step completes, every signed document is finalised (validation data and a document
timestamp) and ``task.completed`` records those final revisions too, so every revision's
hash is in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from ledger.blobs import BlobError, BlobRef, BlobStore
from ledger.errors import LedgerError, StreamConflict
from ledger.events import Actor, AppSignature, EventDraft, RequestContext
from ledger.store import AlsoWrite, LedgerStore, Receipt
from ledger.workflow import (
    PDF_MEDIA_TYPE,
    Command,
    Create,
    EventDraftData,
    Placement,
    Sign,
    TaskState,
    decide,
    fold,
)
from ledger.workflow import errors as workflow_errors
from ledger.workflow.state import DocumentState, StepState

#: How often an act is decided again after losing a race for its task.
MAX_ATTEMPTS = 8


class TaskServiceError(LedgerError):
    """A request to the task service that cannot be carried out as asked."""


class DocumentRefused(TaskServiceError, ValueError):
    """An uploaded or submitted document is not acceptable (not a PDF, badly signed...)."""


class SigningUnavailable(TaskServiceError):
    """This ledger was started without a document signer."""


class TaskNotFound(TaskServiceError):
    def __init__(self, task_id: UUID) -> None:
        super().__init__(f"there is no task {task_id}")
        self.task_id = task_id


@dataclass(frozen=True)
class Acting:
    """Who acts and from where: the actor and the request context of their device.

    An upstream app also gives the event id it chose and its signature over what it sent;
    both go on the act's own event (not on events the ledger adds, such as
    ``task.completed``), so a replayed request is refused by the event id.
    """

    actor: Actor
    context: RequestContext = field(default_factory=RequestContext)
    event_id: UUID | None = None
    app_signature: AppSignature | None = None

    def drafts(self, task_id: UUID, drafts: Sequence[EventDraftData]) -> list[EventDraft]:
        """The store's drafts: every event by this actor, the first carrying the request."""
        out = [d.to_draft(task_id, self.actor, self.context) for d in drafts]
        if out:
            out[0] = replace(out[0], event_id=self.event_id, app_signature=self.app_signature)
        return out


@dataclass(frozen=True)
class SignerProfile:
    """The identity a signing certificate is bound to, as the upstream app verified it."""

    user_id: str
    name: str
    organisation: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class SignedRevision:
    """A new revision of a PDF and the facts about its signature the event records."""

    pdf: bytes
    signature: Mapping[str, Any]
    """JSON-ready: field name, certificate subject, issuer, serial, SHA-256, PAdES level."""


class DocumentSigner(Protocol):
    """PDF checks and PAdES signing, supplied from outside the ledger core."""

    def check_pdf(self, data: bytes) -> None:
        """Raise :class:`DocumentRefused` with the reason if ``data`` is not a usable PDF."""

    def sign(
        self,
        pdf: bytes,
        *,
        signer: SignerProfile,
        placement: Placement | None,
        field_name: str,
        reason: str,
    ) -> SignedRevision:
        """Sign ``pdf`` for ``signer`` as a new incremental revision (PAdES B-T)."""

    def accept_signed(self, pdf: bytes, previous: bytes) -> SignedRevision:
        """Validate a PDF the signer signed with their own key as the next revision."""

    def finalise(self, pdf: bytes) -> bytes:
        """Add validation data and a document timestamp (PAdES B-LTA)."""


@dataclass(frozen=True)
class ActResult:
    """What an act stored, and the task's state after it."""

    task_id: UUID
    receipts: list[Receipt]
    event_types: list[str]
    state: TaskState


class TaskService:
    """Create tasks, act on them, sign their documents; everything as ledger events."""

    def __init__(
        self,
        store: LedgerStore,
        blobs: BlobStore,
        signer: DocumentSigner | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.signer = signer
        self.clock = clock or store.clock

    # -- reading ---------------------------------------------------------------------

    def state(self, task_id: UUID) -> TaskState:
        """The task's state, folded from its stored events."""
        return fold(e.envelope for e in self.store.read_stream(task_id))

    def existing(self, task_id: UUID) -> TaskState:
        state = self.state(task_id)
        if not state.created:
            raise TaskNotFound(task_id)
        return state

    # -- documents -------------------------------------------------------------------

    def upload(self, data: bytes, file_name: str) -> BlobRef:
        """Keep a PDF in the blob store after checking it is one; returns its reference."""
        if not data.startswith(b"%PDF-"):
            raise DocumentRefused(f"{file_name!r} is not a PDF (it does not start with %PDF-)")
        if self.signer is not None:
            self.signer.check_pdf(data)
        try:
            return self.blobs.put(data, media_type=PDF_MEDIA_TYPE, file_name=file_name)
        except BlobError as exc:
            raise DocumentRefused(str(exc)) from exc

    def _document_for(self, state: TaskState, sha256: str) -> DocumentState:
        document = state.document(sha256)
        if document is None:
            raise workflow_errors.UnknownDocument(sha256)
        return document

    # -- acting ----------------------------------------------------------------------

    def create(
        self, task_id: UUID, command: Create, by: Acting, *, also: AlsoWrite | None = None
    ) -> ActResult:
        """Record a new task; its documents must already be in the blob store."""
        for document in command.documents:
            if not self.blobs.exists(document.sha256):
                raise DocumentRefused(f"{document.file_name!r} was not uploaded first")
        return self.act(task_id, command, by, also=also)

    def act(
        self, task_id: UUID, command: Command, by: Acting, *, also: AlsoWrite | None = None
    ) -> ActResult:
        """Decide ``command`` by ``by`` on the task's current state and store its events.

        ``also``, if given, runs in the events' own transaction
        (:meth:`~ledger.store.LedgerStore.append`): whatever it raises stores nothing.
        """
        if isinstance(command, Sign):
            raise TaskServiceError("signatures go through sign(), which makes the revision")

        def attempt(state: TaskState, now: datetime) -> list[EventDraftData]:
            drafts = decide(state, command, by.actor.id, now)
            return self._finalised(state, drafts)

        return self._commit(task_id, by, attempt, also)

    def act_when(
        self,
        task_id: UUID,
        by: Acting,
        choose: Callable[[TaskState, datetime], Command | None],
    ) -> ActResult | None:
        """Act only if ``choose`` still picks a command on the task's latest state.

        For the scheduler: whether a reminder or the expiry is owed is decided again after
        a lost race, so two schedulers never store the same reminder twice.
        """
        chosen: list[Command] = []

        def attempt(state: TaskState, now: datetime) -> list[EventDraftData]:
            chosen.clear()
            command = choose(state, now)
            if command is None:
                return []
            chosen.append(command)
            return self._finalised(state, decide(state, command, by.actor.id, now))

        result = self._commit(task_id, by, attempt)
        return result if chosen else None

    def sign(
        self,
        task_id: UUID,
        document_sha256: str,
        by: Acting,
        *,
        profile: SignerProfile | None = None,
        signed_pdf: bytes | None = None,
        reason: str = "Signed",
        also: AlsoWrite | None = None,
    ) -> ActResult:
        """Sign the current revision of a task document, or accept one the signer signed.

        With ``profile`` the ledger's signer (the local CA by default) signs on the
        signer's behalf; with ``signed_pdf`` the PDF the signer signed with their own key
        is validated as the next revision. The rules are checked before any signing.
        ``also`` runs in the events' transaction, as for :meth:`act`.
        """
        if self.signer is None:
            raise SigningUnavailable("this ledger has no document signer configured")
        signer = self.signer
        if (profile is None) == (signed_pdf is None):
            raise TaskServiceError("give either a signer profile or a signed PDF")
        if profile is not None and profile.user_id != by.actor.id:
            raise TaskServiceError("the signer profile must be the acting user's")

        def attempt(state: TaskState, now: datetime) -> list[EventDraftData]:
            document = self._document_for(state, document_sha256)
            # The rules first, with a placeholder revision: no signing for a refused act.
            decide(state, Sign(document_sha256, "0" * 64), by.actor.id, now)
            step = state.current_step
            assert step is not None  # decide refused otherwise
            current = self.blobs.read(document.current)
            if signed_pdf is not None:
                revision = signer.accept_signed(signed_pdf, current)
            else:
                assert profile is not None
                revision = signer.sign(
                    current,
                    signer=profile,
                    placement=_placement(step, document, state),
                    field_name=_field_name(step, document),
                    reason=reason,
                )
            stored = self.blobs.put(
                revision.pdf, media_type=PDF_MEDIA_TYPE, file_name=document.file_name
            )
            drafts = decide(state, Sign(document_sha256, stored.sha256), by.actor.id, now)
            signed = drafts[0]
            drafts[0] = EventDraftData(
                signed.type,
                {**signed.data, "signature": dict(revision.signature)},
                signed.identity_factors,
            )
            return self._finalised(state, drafts, {document_sha256: stored.sha256})

        return self._commit(task_id, by, attempt, also)

    def _finalised(
        self,
        state: TaskState,
        drafts: list[EventDraftData],
        new_revisions: Mapping[str, str] | None = None,
    ) -> list[EventDraftData]:
        """``drafts``, with ``task.completed`` naming the final revision of each signed PDF."""
        if not drafts or drafts[-1].type != "task.completed":
            return drafts
        currents = {d.sha256: d.current for d in state.documents if d.revisions}
        currents.update(new_revisions or {})
        if not currents:
            return drafts
        if self.signer is None:
            raise SigningUnavailable("completing a signed task needs the document signer")
        finals = []
        for document, revision in currents.items():
            final = self.signer.finalise(self.blobs.read(revision))
            name = self._document_for(state, document).file_name
            stored = self.blobs.put(final, media_type=PDF_MEDIA_TYPE, file_name=name)
            finals.append({"document_sha256": document, "revision_sha256": stored.sha256})
        completed = EventDraftData("task.completed", {"final_revisions": finals})
        return [*drafts[:-1], completed]

    def _commit(
        self,
        task_id: UUID,
        by: Acting,
        attempt: Callable[[TaskState, datetime], list[EventDraftData]],
        also: AlsoWrite | None = None,
    ) -> ActResult:
        for _ in range(MAX_ATTEMPTS):
            state = self.state(task_id)
            drafts = attempt(state, self.clock())
            if not drafts:
                return ActResult(task_id, [], [], state)
            try:
                receipts = self.store.append(
                    by.drafts(task_id, drafts), expected={task_id: state.last_sequence}, also=also
                )
            except StreamConflict:
                continue
            types = [d.type for d in drafts]
            return ActResult(task_id, receipts, types, self.state(task_id))
        raise TaskServiceError(
            f"task {task_id} kept changing under this act; tried {MAX_ATTEMPTS} times"
        )


def _field_name(step: StepState, document: DocumentState) -> str:
    """A signature field name unique within the document: its revision number and step."""
    safe = "".join(c if c.isalnum() else "-" for c in step.key)
    return f"Signature{len(document.revisions) + 1}-{safe}"


def _placement(step: StepState, document: DocumentState, state: TaskState) -> Placement | None:
    """The step's placement for this signer: the n-th signer of a step takes the n-th one."""
    placements: Sequence[Placement] = step.spec.placements
    if not placements:
        return None
    signed = sum(1 for p in step.members if p.act == "signed")
    return placements[min(signed, len(placements) - 1)]
