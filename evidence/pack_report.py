"""The court report's values, gathered from a task's events while a pack is exported.

:class:`ReportCollector` sees each envelope once, in log order, and keeps only what the
report shows (parties, identity checks, one timeline row per event); the pack builder then
adds the documents, signatures, anchoring and the verification run at export and asks for
the :class:`~evidence.report_model.ReportInput`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evidence.pack_material import SignatureFacts
from evidence.report_model import (
    Anchoring,
    DocumentInfo,
    IdentityCheck,
    Party,
    ReportInput,
    SignatureInfo,
    TimelineRow,
)
from ledger.timeline import timeline
from ledger.workflow.state import TaskState, parse_time

__all__ = ["ReportCollector", "signature_rows"]


@dataclass
class _PartyFacts:
    name: str
    organisation: str | None
    roles: list[str] = field(default_factory=list)
    checks: list[IdentityCheck] = field(default_factory=list)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


class ReportCollector:
    """Parties, identity checks and timeline rows of one task, event by event."""

    def __init__(self) -> None:
        self._parties: dict[str, _PartyFacts] = {}
        self.rows: list[TimelineRow] = []
        self.template = ""
        self.initiator = ""

    def add(self, leaf_index: int, envelope: Mapping[str, Any]) -> None:
        actor = envelope["actor"]
        party = self._parties.setdefault(
            actor["id"],
            _PartyFacts(actor.get("display_name") or actor["id"], actor.get("organisation")),
        )
        role = actor.get("role")
        if role and role not in party.roles:
            party.roles.append(role)
        at = _time(envelope["server_time"])
        for factor in envelope.get("identity_factors") or ():
            party.checks.append(
                IdentityCheck(
                    factor=str(factor.get("factor")),
                    method=str(factor.get("method")),
                    result=str(factor.get("result")),
                    at=_time(factor.get("verified_at")) or at or datetime.min,
                    provider_reference=factor.get("provider_reference"),
                )
            )
        data = envelope.get("data") or {}
        if envelope["type"] == "identity.verified":
            party.checks.append(
                IdentityCheck(
                    factor=str(data.get("factor")),
                    method=str(data.get("method")),
                    result=str(data.get("result")),
                    at=at or datetime.min,
                    provider_reference=data.get("provider_reference"),
                )
            )
        if envelope["type"] == "task.created":
            template = data.get("template") or {}
            self.template = (
                f"{template.get('id')} v{template.get('version')} ({template.get('name')})"
            )
            self.initiator = party.name
        (entry,) = timeline([envelope])
        context = envelope.get("context") or {}
        self.rows.append(
            TimelineRow(
                leaf_index=leaf_index,
                sequence=entry.sequence,
                server_time=at or datetime.min,
                actor_name=entry.actor_name,
                organisation=entry.organisation,
                action_en=entry.action,
                action_zh=entry.action_zh,
                details=entry.details,
                ip=entry.ip,
                connection_ip=context.get("connection_ip"),
                device=entry.device,
                identity=entry.identity,
            )
        )

    def parties(self) -> tuple[Party, ...]:
        return tuple(
            Party(
                user_id=user,
                name=facts.name,
                organisation=facts.organisation,
                roles=tuple(facts.roles),
                identity_checks=tuple(facts.checks),
            )
            for user, facts in self._parties.items()
        )

    def report_input(
        self,
        *,
        task_id: str,
        state: TaskState,
        timezone: str,
        documents: Sequence[DocumentInfo],
        signatures: Sequence[SignatureInfo],
        anchoring: Anchoring,
        verdict: str,
        verdict_details: Sequence[str],
        verify_command: str,
        trust_anchors: Sequence[str],
        generated_at: datetime,
        pack_files: Sequence[tuple[str, str]],
    ) -> ReportInput:
        return ReportInput(
            task_id=task_id,
            title=state.title,
            template=self.template,
            status=state.status,
            initiator=self.initiator,
            created_at=state.created_at,
            finished_at=state.finished_at,
            timezone=timezone,
            parties=self.parties(),
            documents=tuple(documents),
            timeline=tuple(self.rows),
            signatures=tuple(signatures),
            anchoring=anchoring,
            verdict=verdict,
            verdict_details=tuple(verdict_details),
            verify_command=verify_command,
            trust_anchors=tuple(trust_anchors),
            generated_at=generated_at,
            pack_files=tuple(pack_files),
        )


def signature_rows(
    file_name: str,
    facts: Sequence[SignatureFacts],
    recorded: Mapping[str, Mapping[str, Any]],
) -> list[SignatureInfo]:
    """One row per signature of a document's final PDF.

    ``recorded`` maps a signature field name to what its ``document.signed`` event says
    (the revision hash and the PAdES level); the certificate facts come from the PDF.
    """
    rows = []
    for sig in facts:
        event = recorded.get(sig.field_name, {})
        cert = sig.signer
        rows.append(
            SignatureInfo(
                document_file_name=file_name,
                revision_sha256=str(event.get("revision_sha256", "")),
                field_name=sig.field_name,
                signer_subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                serial=format(cert.serial_number, "x"),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                signing_time=sig.signing_time,
                tsa_time=sig.tsa_time,
                level=str(event.get("level", "PAdES-B-T")),
            )
        )
    return rows
