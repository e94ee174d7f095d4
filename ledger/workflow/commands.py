"""The commands a participant, the initiator or the scheduler can give a task.

Each is a frozen value; :func:`ledger.workflow.decide.decide` turns one into events or
refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.blobs import BlobRef
from ledger.workflow.routing import Route


@dataclass(frozen=True)
class Create:
    """Launch a task on a route (from :func:`~ledger.workflow.routing.route`).

    ``documents`` are PDFs already in the blob store; ``cc`` are people told of the task
    who never act in it. An ad hoc task is a route of a one-off template.
    """

    route: Route
    title: str
    form: Mapping[str, Any] = field(default_factory=dict)
    deadline: datetime | None = None
    documents: tuple[BlobRef, ...] = ()
    cc: tuple[str, ...] = ()
    department: str | None = None
    """The initiator's department, recorded for the KPI views (by department)."""


@dataclass(frozen=True)
class AddDocument:
    """The initiator attaches one more PDF while the task is still a draft."""

    document: BlobRef


@dataclass(frozen=True)
class Submit:
    """The initiator sends the draft on its way; the first step starts."""


@dataclass(frozen=True)
class View:
    """The actor opened a document of the task."""

    document_sha256: str | None = None


@dataclass(frozen=True)
class ReadToEnd:
    """The actor scrolled to the end; this completes a viewer step's part."""

    document_sha256: str | None = None


@dataclass(frozen=True)
class VerifyIdentity:
    """The outcome of an identity check by a provider; never the secret itself."""

    factor: str
    method: str
    result: str
    provider_reference: str | None = None


@dataclass(frozen=True)
class Approve:
    comment: str | None = None


@dataclass(frozen=True)
class Reject:
    reason: str


@dataclass(frozen=True)
class Return:
    """Send the task back to an earlier step (退回); its participants act again."""

    to_step: str
    reason: str


@dataclass(frozen=True)
class Sign:
    """Record a signature made elsewhere (PAdES); here only the rules and the hashes."""

    document_sha256: str
    revision_sha256: str


@dataclass(frozen=True)
class Transfer:
    """Hand one's own pending part to another person (转交)."""

    to_user: str
    reason: str | None = None


@dataclass(frozen=True)
class AddSigner:
    """Add a person as a new one-person step just before or after the current one (加签)."""

    user: str
    position: str  # "before" | "after"


@dataclass(frozen=True)
class Remind:
    """Nudge a pending participant (催签): ``manual`` (initiator) or ``policy`` (scheduler)."""

    to_user: str
    kind: str = "manual"


@dataclass(frozen=True)
class Comment:
    text: str


@dataclass(frozen=True)
class Revoke:
    reason: str


@dataclass(frozen=True)
class Expire:
    """The scheduler ends a task whose deadline is before ``now`` (the time given to decide)."""


Command = (
    Create | AddDocument | Submit | View | ReadToEnd | VerifyIdentity | Approve | Reject
    | Return | Sign | Transfer | AddSigner | Remind | Comment | Revoke | Expire
)  # fmt: skip
