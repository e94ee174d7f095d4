"""What the court report shows: plain values, gathered by the pack builder, drawn by the report.

The pack builder (:mod:`evidence.pack`) fills a :class:`ReportInput` from the stored events,
documents, signatures, checkpoints and the verification run at export; the report
(:mod:`evidence.report`) lays it out in English and Chinese. Neither reads the other's
internals, so each can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class IdentityCheck:
    """One identity check a party passed or failed (never the secret)."""

    factor: str
    method: str
    result: str
    at: datetime
    provider_reference: str | None = None


@dataclass(frozen=True)
class Party:
    """A person with a part in the task, and how they proved who they were."""

    user_id: str
    name: str
    organisation: str | None
    roles: tuple[str, ...]
    """What they did in the task: initiator, approver, signer, viewer, CC."""
    identity_checks: tuple[IdentityCheck, ...] = ()


@dataclass(frozen=True)
class TimelineRow:
    leaf_index: int
    sequence: int
    server_time: datetime
    actor_name: str
    organisation: str | None
    action_en: str
    action_zh: str
    details: str
    ip: str | None
    connection_ip: str | None
    device: str | None
    identity: str | None


@dataclass(frozen=True)
class DocumentInfo:
    file_name: str
    sha256: str
    size: int
    revisions: tuple[str, ...]
    """SHA-256 of each signed revision, oldest first; the last is the final PDF."""


@dataclass(frozen=True)
class SignatureInfo:
    document_file_name: str
    revision_sha256: str
    field_name: str
    signer_subject: str
    issuer: str
    serial: str
    not_before: datetime | None
    not_after: datetime | None
    signing_time: datetime | None
    tsa_time: datetime | None
    level: str
    """``PAdES-B-T``, ``PAdES-B-LTA``, …"""


@dataclass(frozen=True)
class Anchoring:
    """Where the task's events sit in the log, and what proves it."""

    log_origin: str
    ledger_key: str
    """The ledger's verifier key (C2SP vkey)."""
    first_leaf: int
    last_leaf: int
    checkpoint_size: int
    checkpoint_root: str
    """Base64 root hash, as in the checkpoint note."""
    checkpoint_note: str
    tsa_time: datetime | None
    tsa_name: str | None
    later_checkpoints: tuple[int, ...] = ()
    """Sizes of later checkpoints the pack proves consistency to."""


@dataclass(frozen=True)
class ReportInput:
    task_id: str
    title: str
    template: str
    """``id vN (name)`` of the template the task ran under."""
    status: str
    initiator: str
    created_at: datetime | None
    finished_at: datetime | None
    timezone: str
    """The tenant's IANA time zone, e.g. ``Asia/Hong_Kong``; times are also shown in it."""
    parties: tuple[Party, ...]
    documents: tuple[DocumentInfo, ...]
    timeline: tuple[TimelineRow, ...]
    signatures: tuple[SignatureInfo, ...]
    anchoring: Anchoring
    verdict: str
    """The verification run at export: ``TOTAL_PASSED``, ``TOTAL_FAILED`` or ``INDETERMINATE``."""
    verdict_details: tuple[str, ...]
    verify_command: str
    trust_anchors: tuple[str, ...]
    """What the verifier must be given, in words (ledger key, TSA root, signing CA root)."""
    generated_at: datetime
    pack_files: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(path in the pack, SHA-256) for every file, as in ``manifest.json``."""
