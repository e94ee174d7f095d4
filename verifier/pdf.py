"""PAdES/CMS checks of every signature and document timestamp in a PDF, with pyHanko.

:func:`check_pdf` runs pyHanko's validator on each signature (``validate_pdf_signature``)
and each document timestamp (``validate_pdf_timestamp``), offline: integrity, signature
value, certificate path to the auditor's trust roots, the signature timestamp against the
TSA roots, and pyHanko's difference analysis of what later revisions changed. Each one gets
an ETSI EN 319 102-1 indication and sub-indication, and the whole PDF a verdict; the steps
are written in ``docs/verification.md`` ("PDF signature check").
"""

# pyHanko's public API is only partly annotated.

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from verifier.errors import Verdict
from verifier.models import CheckResult

__all__ = ["PdfReport", "SignatureFinding", "check_pdf"]

CHECK: Final = "pdf"
TOTAL_PASSED: Final = "TOTAL_PASSED"
TOTAL_FAILED: Final = "TOTAL_FAILED"
INDETERMINATE: Final = "INDETERMINATE"

#: Changes a later revision may make after a signature without breaking it (pyHanko's
#: default difference policy: signatures, DSS and document timestamps, form filling).
ALLOWED_MODIFICATIONS: Final = frozenset(
    {ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING}
)
_VERDICT_OF: Final = {
    TOTAL_PASSED: Verdict.PASSED,
    TOTAL_FAILED: Verdict.FAILED,
    INDETERMINATE: Verdict.INDETERMINATE,
}
_ETSI_URN: Final = "urn:etsi:019102"


@dataclass(frozen=True)
class SignatureFinding:
    """What the checks found for one signature or document timestamp of the PDF."""

    field_name: str
    kind: str
    """``signature``, or ``document_timestamp`` (an RFC 3161 token over the document)."""
    signer_subject: str
    """RFC 4514 subject of the signer's (or the TSA's) certificate."""
    issuer: str
    serial: int
    signing_time: datetime | None
    """The time the signer claims (CMS signingTime); proves nothing by itself."""
    timestamp_time: datetime | None
    """genTime of the signature timestamp, or of the document timestamp itself."""
    intact: bool
    """The signed byte ranges hash to what the signature says."""
    valid: bool
    """The signature value verifies with the certificate's public key."""
    trusted: bool
    """The certificate path ends at one of the trust roots given."""
    timestamp_ok: bool | None
    """The signature timestamp is intact, valid and trusted (None: there is none)."""
    coverage: str | None
    """pyHanko's ``SignatureCoverageLevel``: how much of the file the signature covers."""
    modification_level: str | None
    """pyHanko's ``ModificationLevel`` for what later revisions changed (None: unknown)."""
    changes: str
    """What changed after the signature, in words (fields filled, or why it is suspicious)."""
    docmdp_ok: bool | None
    """Whether the later changes respect the document's DocMDP permissions."""
    pades_level: str | None
    """PAdES baseline level read from the structure (B-B, B-T, B-LT, B-LTA), not validated."""
    indication: str
    """ETSI EN 319 102-1 main indication for this signature."""
    sub_indication: str | None
    reason: str

    def summary(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "field_name": self.field_name,
            "kind": self.kind,
            "signer_subject": self.signer_subject,
            "issuer": self.issuer,
            "serial": str(self.serial),
            "signing_time": _iso(self.signing_time),
            "timestamp_time": _iso(self.timestamp_time),
            "intact": self.intact,
            "valid": self.valid,
            "trusted": self.trusted,
            "timestamp_ok": self.timestamp_ok,
            "coverage": self.coverage,
            "modification_level": self.modification_level,
            "changes": self.changes,
            "docmdp_ok": self.docmdp_ok,
            "pades_level": self.pades_level,
            "indication": self.indication,
            "sub_indication": self.sub_indication,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PdfReport:
    """The outcome of :func:`check_pdf`."""

    result: CheckResult
    signatures: list[SignatureFinding] = field(default_factory=list)
    etsi_report: dict[str, Any] = field(default_factory=dict)
    """A JSON rendering of the ETSI TS 119 102-2 validation report (see ``_etsi_report``)."""


def check_pdf(
    pdf: bytes,
    *,
    trust_roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate] | None = None,
) -> PdfReport:
    """Check every signature and document timestamp of ``pdf``.

    Signer certificates must chain to ``trust_roots``; signature and document timestamps to
    ``tsa_roots`` (default: ``trust_roots``). Nothing is fetched; revocation is checked only
    against revocation data pyHanko finds in the signatures (soft fail otherwise). The
    verdict is ``PASSED`` (TOTAL_PASSED) only when every signature is intact, valid and
    trusted, its timestamp (if any) checks out, and later revisions made only allowed
    changes; a PDF without signatures is ``INDETERMINATE``.
    """
    roots = [_to_asn1(c) for c in trust_roots]
    ts_roots = roots if tsa_roots is None else [_to_asn1(c) for c in tsa_roots]
    validation_time = datetime.now(UTC)
    try:
        reader = PdfFileReader(io.BytesIO(bytes(pdf)), strict=False)
        regular = list(reader.embedded_regular_signatures)
        stamps = list(reader.embedded_timestamp_signatures)
        has_dss = "/DSS" in reader.root
    except Exception as error:  # pyHanko raises many kinds on a malformed file
        reason = f"format: the PDF cannot be read ({_short(error)})"
        details = {"indication": TOTAL_FAILED, "sub_indication": "FORMAT_FAILURE"}
        return PdfReport(CheckResult(CHECK, Verdict.FAILED, reason, details), [], {})

    last_stamp_end = max((_signed_end(s) for s in stamps), default=-1)
    findings: list[SignatureFinding] = []
    for sig in regular:
        findings.append(
            _check_signature(
                sig,
                _context(roots, validation_time),
                _context(ts_roots, validation_time),
                has_dss=has_dss,
                lta=last_stamp_end > _signed_end(sig),
            )
        )
    for stamp in stamps:
        findings.append(_check_document_timestamp(stamp, _context(ts_roots, validation_time)))
    findings.sort(key=lambda f: f.field_name)
    result = _overall(findings, validation_time)
    return PdfReport(result, findings, _etsi_report(findings, validation_time))


def _context(roots: list[asn1_x509.Certificate], moment: datetime) -> ValidationContext:
    # An explicit (possibly empty) list: never the operating system's trust store.
    return ValidationContext(
        trust_roots=list(roots), moment=moment, allow_fetching=False, revocation_mode="soft-fail"
    )


def _check_signature(
    sig: EmbeddedPdfSignature,
    context: ValidationContext,
    ts_context: ValidationContext,
    *,
    has_dss: bool,
    lta: bool,
) -> SignatureFinding:
    try:
        status = validate_pdf_signature(
            sig, signer_validation_context=context, ts_validation_context=ts_context
        )
    except PdfReadError:
        # A later revision no longer parses, so the difference analysis cannot run; the
        # signature's own integrity check still can, and is what decides.
        status = validate_pdf_signature(
            sig,
            signer_validation_context=context,
            ts_validation_context=ts_context,
            skip_diff=True,
        )
    stamp = status.timestamp_validity
    timestamp_ok = None if stamp is None else bool(stamp.intact and stamp.valid and stamp.trusted)
    level, changes = _modifications(status)
    pades = _pades_level(sig, timestamped=stamp is not None, has_dss=has_dss, lta=lta)
    indication, sub, reason = _judge(status, level, stamp)
    cert = status.signing_cert
    subject, issuer = _names(cert)
    return SignatureFinding(
        field_name=str(sig.field_name),
        kind="signature",
        signer_subject=subject,
        issuer=issuer,
        serial=int(cert.serial_number),
        signing_time=status.signer_reported_dt,
        timestamp_time=stamp.timestamp if stamp is not None else None,
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        timestamp_ok=timestamp_ok,
        coverage=status.coverage.name if status.coverage is not None else None,
        modification_level=level.name if level is not None else None,
        changes=changes,
        docmdp_ok=status.docmdp_ok,
        pades_level=pades,
        indication=indication,
        sub_indication=sub,
        reason=reason,
    )


def _check_document_timestamp(
    stamp: EmbeddedPdfSignature, context: ValidationContext
) -> SignatureFinding:
    status = validate_pdf_timestamp(stamp, validation_context=context)
    level, changes = _modifications(status)
    indication, sub, reason = _judge(status, level, None)
    cert = status.signing_cert
    subject, issuer = _names(cert)
    return SignatureFinding(
        field_name=str(stamp.field_name),
        kind="document_timestamp",
        signer_subject=subject,
        issuer=issuer,
        serial=int(cert.serial_number),
        signing_time=None,
        timestamp_time=status.timestamp,
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        timestamp_ok=None,
        coverage=status.coverage.name if status.coverage is not None else None,
        modification_level=level.name if level is not None else None,
        changes=changes,
        docmdp_ok=status.docmdp_ok,
        pades_level=None,
        indication=indication,
        sub_indication=sub,
        reason=reason,
    )


def _modifications(status: Any) -> tuple[ModificationLevel | None, str]:
    """pyHanko's modification level, and what changed after the signature, in words."""
    diff = status.diff_result
    level: ModificationLevel | None = status.modification_level
    if isinstance(diff, SuspiciousModification):
        return level or ModificationLevel.OTHER, f"suspicious change: {_short(diff)}"
    if diff is None:
        if status.coverage == SignatureCoverageLevel.ENTIRE_FILE:
            return ModificationLevel.NONE, "nothing: the signature covers the whole file"
        return level, "not analysed"
    fields = sorted(diff.changed_form_fields)
    if level == ModificationLevel.NONE:
        return level, "nothing but signature and validation data"
    shown = f"; form fields changed: {', '.join(fields)}" if fields else ""
    return level, f"{level.name if level else 'unknown'} changes{shown}"


def _judge(status: Any, level: ModificationLevel | None, stamp: Any) -> tuple[str, str | None, str]:
    """ETSI EN 319 102-1 indication, sub-indication and reason for one signature."""
    if not status.intact:
        return TOTAL_FAILED, "HASH_FAILURE", "the signed bytes were changed after signing"
    if not status.valid:
        return TOTAL_FAILED, "SIG_CRYPTO_FAILURE", "the signature value does not verify"
    coverage = status.coverage
    if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
        return TOTAL_FAILED, "FORMAT_FAILURE", "the signature does not cover its whole revision"
    if level is None or level not in ALLOWED_MODIFICATIONS or status.docmdp_ok is False:
        named = level.name if level is not None else "unknown"
        return (
            TOTAL_FAILED,
            "SIG_CONSTRAINTS_FAILURE",
            f"later revisions made changes that are not allowed after signing ({named})",
        )
    if stamp is not None and not (stamp.intact and stamp.valid):
        return TOTAL_FAILED, "HASH_FAILURE", "the signature timestamp token is not intact or valid"
    problem = status.trust_problem_indic
    if problem is not None or not status.trusted:
        indication = TOTAL_FAILED if problem is not None and _is_failure(problem) else INDETERMINATE
        sub = problem.standard_name if problem is not None else "NO_CERTIFICATE_CHAIN_FOUND"
        return indication, sub, "the certificate path does not end at a trust root given"
    if stamp is not None and not stamp.trusted:
        sub = (
            stamp.trust_problem_indic.standard_name
            if stamp.trust_problem_indic is not None
            else "NO_CERTIFICATE_CHAIN_FOUND"
        )
        return INDETERMINATE, sub, "the signature timestamp's TSA is not trusted"
    return TOTAL_PASSED, None, "intact, valid and trusted; later changes are allowed"


def _is_failure(sub_indication: Any) -> bool:
    return type(sub_indication).__name__ == "AdESFailure"


def _pades_level(
    sig: EmbeddedPdfSignature, *, timestamped: bool, has_dss: bool, lta: bool
) -> str | None:
    """The PAdES baseline level the signature's structure claims (not an LTV validation)."""
    if str(sig.sig_object.get("/SubFilter")) != "/ETSI.CAdES.detached":
        return None
    if not timestamped:
        return "B-B"
    if not has_dss:
        return "B-T"
    return "B-LTA" if lta else "B-LT"


def _overall(findings: list[SignatureFinding], validation_time: datetime) -> CheckResult:
    details: dict[str, Any] = {
        "validation_time": validation_time.isoformat(),
        "signatures": [f.summary() for f in findings],
    }
    if not findings:
        details |= {"indication": INDETERMINATE, "sub_indication": "SIGNED_DATA_NOT_FOUND"}
        return CheckResult(
            CHECK, Verdict.INDETERMINATE, "the PDF holds no signature or timestamp", details
        )
    for wanted in (TOTAL_FAILED, INDETERMINATE):
        # Changed signed bytes say the most: name such a finding before the others.
        failing = sorted(
            (f for f in findings if f.indication == wanted),
            key=lambda f: f.sub_indication != "HASH_FAILURE",
        )
        culprit = failing[0] if failing else None
        if culprit is not None:
            details |= {"indication": wanted, "sub_indication": culprit.sub_indication}
            reason = f"{culprit.field_name}: {culprit.reason}"
            return CheckResult(CHECK, _VERDICT_OF[wanted], reason, details)
    details |= {"indication": TOTAL_PASSED, "sub_indication": None}
    reason = (
        f"{len(findings)} signature(s) and timestamp(s): intact, valid, trusted, and later "
        "changes are allowed"
    )
    return CheckResult(CHECK, Verdict.PASSED, reason, details)


def _etsi_report(findings: list[SignatureFinding], validation_time: datetime) -> dict[str, Any]:
    """The ETSI TS 119 102-2 report's content as JSON: one SignatureValidationReport each.

    pyHanko 0.38 can render the XML report (``pyhanko.sign.validation.report``), but only
    with its optional ``etsi`` extra (xsdata), which this project does not install; the
    fields and URNs here follow the same schema (element names in camel case).
    """
    reports = []
    for f in findings:
        main = {
            TOTAL_PASSED: "total-passed",
            TOTAL_FAILED: "total-failed",
            INDETERMINATE: "indeterminate",
        }[f.indication]
        status: dict[str, Any] = {"MainIndication": f"{_ETSI_URN}:mainindication:{main}"}
        if f.sub_indication is not None:
            status["SubIndication"] = [f"{_ETSI_URN}:subindication:{f.sub_indication}"]
        status["AdditionalInformation"] = f.reason
        attributes: dict[str, Any] = {}
        if f.signing_time is not None:
            attributes["SigningTime"] = {"Time": _iso(f.signing_time), "Signed": True}
        if f.timestamp_time is not None:
            kind = "DocTimeStamp" if f.kind == "document_timestamp" else "SignatureTimeStamp"
            attributes[kind] = {"Time": _iso(f.timestamp_time)}
        reports.append(
            {
                "SignatureIdentifier": {"Id": f.field_name, "Kind": f.kind},
                "ValidationTimeInfo": {"ValidationTime": validation_time.isoformat()},
                "SignatureAttributes": attributes,
                "SignerInformation": {
                    "Signer": f.signer_subject,
                    "Issuer": f.issuer,
                    "SerialNumber": str(f.serial),
                },
                "SignatureQuality": {"PAdESLevel": f.pades_level},
                "SignatureValidationProcess": {
                    "SignatureValidationProcessID": f"{_ETSI_URN}:validationprocess:Basic"
                },
                "SignatureValidationStatus": status,
            }
        )
    return {
        "standard": "ETSI TS 119 102-2",
        "generator": "evidence-verify (pyHanko validation)",
        "SignatureValidationReport": reports,
    }


def _signed_end(sig: EmbeddedPdfSignature) -> int:
    byte_range = sig.byte_range
    return int(byte_range[2]) + int(byte_range[3])


def _names(cert: asn1_x509.Certificate) -> tuple[str, str]:
    """RFC 4514 subject and issuer of a certificate pyHanko found."""
    try:
        parsed = x509.load_der_x509_certificate(cert.dump())
    except ValueError:
        return str(cert.subject.human_friendly), str(cert.issuer.human_friendly)
    return parsed.subject.rfc4514_string(), parsed.issuer.rfc4514_string()


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _short(error: object, limit: int = 200) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(error))
    return text if len(text) <= limit else text[: limit - 3] + "..."
