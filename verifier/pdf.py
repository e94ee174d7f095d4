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

import asyncio
import base64
import io
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.general import find_unique_cms_attribute
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.ades import AdESWithTimeValidationResult, ades_with_time_validation
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from verifier.errors import Verdict
from verifier.models import CheckResult

__all__ = [
    "PdfReport",
    "RevocationDataError",
    "SignatureFinding",
    "check_pdf",
    "load_crl",
    "load_ocsp_response",
]

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
#: The namespace of ETSI TS 119 102-2 validation reports (pyHanko writes v1.2.1).
ETSI_REPORT_NAMESPACE: Final = "http://uri.etsi.org/19102/v1.2.1#"
_XML_PREFIXES: Final = {
    "vr": ETSI_REPORT_NAMESPACE,
    "XAdES": "http://uri.etsi.org/01903/v1.3.2#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xs": "http://www.w3.org/2001/XMLSchema",
}


class RevocationDataError(ValueError):
    """A CRL or OCSP response given to the verifier cannot be read."""


def load_crl(data: bytes) -> asn1_crl.CertificateList:
    """A CRL from DER or PEM (``X509 CRL``) bytes; :class:`RevocationDataError` otherwise."""
    try:
        der = _pem_body(data, "X509 CRL") if b"-----BEGIN" in data else bytes(data)
        crl = asn1_crl.CertificateList.load(der)
        crl.native  # noqa: B018 (parse it all now, not later inside pyHanko)
    except Exception as error:  # asn1crypto raises ValueError, TypeError, ...
        raise RevocationDataError(f"not a DER or PEM CRL ({_short(error, 80)})") from None
    return crl


def load_ocsp_response(data: bytes) -> asn1_ocsp.OCSPResponse:
    """A successful OCSP response from DER bytes; :class:`RevocationDataError` otherwise."""
    try:
        response = asn1_ocsp.OCSPResponse.load(bytes(data))
        status = response["response_status"].native
        basic = response.basic_ocsp_response
    except Exception as error:
        raise RevocationDataError(f"not a DER OCSP response ({_short(error, 80)})") from None
    if status != "successful" or basic is None:
        raise RevocationDataError(f"the OCSP response's status is {status!r}, not successful")
    return response


def _pem_body(data: bytes, label: str) -> bytes:
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    start = data.index(begin) + len(begin)
    return base64.b64decode(b"".join(data[start : data.index(end, start)].split()))


@dataclass(frozen=True)
class _Revinfo:
    """Revocation data and extra certificates: given by the auditor and read from the PDF."""

    crls: list[asn1_crl.CertificateList]
    ocsps: list[asn1_ocsp.OCSPResponse]
    certs: list[asn1_x509.Certificate]

    def plus(self, other: _Revinfo) -> _Revinfo:
        return _Revinfo(self.crls + other.crls, self.ocsps + other.ocsps, self.certs + other.certs)

    def counts(self) -> dict[str, int]:
        return {"crls": len(self.crls), "ocsp_responses": len(self.ocsps)}


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
    revoked: bool = False
    """The revocation data the verifier had says the signer's certificate is revoked."""
    pyhanko_ades: str | None = None
    """pyHanko's own ETSI EN 319 102-1 result (validation of signatures with time), as
    ``STATUS/SUB_INDICATION``; the XML report carries it too (None: not run)."""

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
            "revoked": self.revoked,
            "pyhanko_ades": self.pyhanko_ades,
        }


@dataclass(frozen=True)
class PdfReport:
    """The outcome of :func:`check_pdf`."""

    result: CheckResult
    signatures: list[SignatureFinding] = field(default_factory=list)
    etsi_report: dict[str, Any] = field(default_factory=dict)
    """A JSON rendering of the ETSI TS 119 102-2 validation report (see ``_etsi_report``)."""
    etsi_report_xml: str | None = None
    """pyHanko's own ETSI TS 119 102-2 XML report of the signatures (one
    ``SignatureValidationReport`` each, in document order; document timestamps are not in
    it), or None when it cannot be made (no signature, or ``xsdata`` is not installed)."""


def check_pdf(
    pdf: bytes,
    *,
    trust_roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate] | None = None,
    crls: Sequence[bytes] = (),
    ocsp_responses: Sequence[bytes] = (),
) -> PdfReport:
    """Check every signature and document timestamp of ``pdf``.

    Signer certificates must chain to ``trust_roots``; signature and document timestamps to
    ``tsa_roots`` (default: ``trust_roots``). Nothing is fetched: revocation is checked
    against the CRLs and OCSP responses given here (DER; a CRL may be PEM) and those the PDF
    carries (its DSS, and the signatures' ``adbe-revocationInfoArchival`` attribute). With
    none, revocation is not checked (soft fail), as before. The verdict is ``PASSED``
    (TOTAL_PASSED) only when every signature is intact, valid and trusted, its timestamp (if
    any) checks out, its certificate is neither revoked nor expired by what the revocation
    data and trusted timestamps prove, and later revisions made only allowed changes; a PDF
    without signatures is ``INDETERMINATE``. Raises :class:`RevocationDataError` for a
    ``crls`` or ``ocsp_responses`` item that cannot be read.
    """
    given = _Revinfo(
        [load_crl(c) for c in crls], [load_ocsp_response(o) for o in ocsp_responses], []
    )
    roots = [_to_asn1(c) for c in trust_roots]
    ts_roots = roots if tsa_roots is None else [_to_asn1(c) for c in tsa_roots]
    validation_time = datetime.now(UTC)
    try:
        reader = PdfFileReader(io.BytesIO(bytes(pdf)), strict=False)
        regular = list(reader.embedded_regular_signatures)
        stamps = list(reader.embedded_timestamp_signatures)
        has_dss = "/DSS" in reader.root
        embedded = _dss_revinfo(reader)
    except Exception as error:  # pyHanko raises many kinds on a malformed file
        reason = f"format: the PDF cannot be read ({_short(error)})"
        details = {"indication": TOTAL_FAILED, "sub_indication": "FORMAT_FAILURE"}
        return PdfReport(CheckResult(CHECK, Verdict.FAILED, reason, details), [], {})

    last_stamp_end = max((_signed_end(s) for s in stamps), default=-1)
    findings: list[SignatureFinding] = []
    xml_reports: list[str] = []
    for sig in regular:
        revinfo = given.plus(embedded).plus(_archival_revinfo(sig))
        finding, xml = _check_signature(
            sig,
            roots,
            ts_roots,
            revinfo,
            validation_time,
            has_dss=has_dss,
            lta=last_stamp_end > _signed_end(sig),
        )
        findings.append(finding)
        if xml is not None:
            xml_reports.append(xml)
    for stamp in stamps:
        context = _context(ts_roots, validation_time, given.plus(embedded))
        findings.append(_check_document_timestamp(stamp, context))
    findings.sort(key=lambda f: f.field_name)
    result = _overall(findings, validation_time)
    etsi_xml = _merge_etsi_reports(xml_reports) if len(xml_reports) == len(regular) else None
    revocation = {"given": given.counts(), "in_pdf_dss": embedded.counts()}
    result = replace(result, details={**result.details, "revocation_data": revocation})
    return PdfReport(result, findings, _etsi_report(findings, validation_time), etsi_xml)


def _context(
    roots: list[asn1_x509.Certificate], moment: datetime, revinfo: _Revinfo | None = None
) -> ValidationContext:
    # An explicit (possibly empty) list: never the operating system's trust store.
    revinfo = revinfo or _Revinfo([], [], [])
    return ValidationContext(
        trust_roots=list(roots),
        moment=moment,
        allow_fetching=False,
        revocation_mode="soft-fail",
        crls=list(revinfo.crls),
        ocsps=list(revinfo.ocsps),
        other_certs=list(revinfo.certs),
    )


def _dss_revinfo(reader: PdfFileReader) -> _Revinfo:
    """The CRLs, OCSP responses and certificates of the document's DSS (PAdES LTV data)."""
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return _Revinfo([], [], [])
    crls = [
        asn1_crl.CertificateList.load(ref.get_object().read_data(DecodePurpose.CRL))
        for ref in dss.crls
    ]
    ocsps = [
        asn1_ocsp.OCSPResponse.load(ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE))
        for ref in dss.ocsps
    ]
    return _Revinfo(crls, ocsps, list(dss.load_certs()))


def _archival_revinfo(sig: EmbeddedPdfSignature) -> _Revinfo:
    """Revocation data in the signature's signed ``adbe-revocationInfoArchival`` attribute."""
    try:
        archival = find_unique_cms_attribute(
            sig.signer_info["signed_attrs"], "adobe_revocation_info_archival"
        )
    except Exception:  # absent (the usual case), or more than one
        return _Revinfo([], [], [])
    crls = list(archival["crl"]) if archival["crl"] else []
    ocsps = list(archival["ocsp"]) if archival["ocsp"] else []
    return _Revinfo(crls, ocsps, [])


def _ades_spec(
    roots: list[asn1_x509.Certificate],
    ts_roots: list[asn1_x509.Certificate],
    revinfo: _Revinfo,
) -> SignatureValidationSpec:
    """pyHanko's AdES validation settings: the same roots, local revocation data only."""

    def policy(anchors: list[asn1_x509.Certificate]) -> CertValidationPolicySpec:
        return CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build(trust_roots=anchors),
            revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy.from_legacy("soft-fail")),
        )

    knowledge = LocalKnowledge(
        known_crls=[CRLContainer(crl) for crl in revinfo.crls],
        known_ocsps=[c for o in revinfo.ocsps for c in OCSPContainer.load_multi(o)],
        known_certs=list(revinfo.certs),
    )
    return SignatureValidationSpec(
        cert_validation_policy=policy(roots),
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
        ),
        ts_cert_validation_policy=policy(ts_roots),
        local_knowledge=knowledge,
    )


def _ades_validation(
    sig: EmbeddedPdfSignature,
    roots: list[asn1_x509.Certificate],
    ts_roots: list[asn1_x509.Certificate],
    revinfo: _Revinfo,
) -> AdESWithTimeValidationResult | None:
    """pyHanko's ETSI EN 319 102-1 validation process for signatures with time (5.5)."""
    try:
        return asyncio.run(
            ades_with_time_validation(
                sig.signed_data,
                _ades_spec(roots, ts_roots, revinfo),
                raw_digest=sig.compute_digest(),
                extra_status_kwargs=sig.summarise_integrity_info(),
                status_cls=PdfSignatureStatus,
            )
        )
    except Exception:  # the classic validation above has judged it already
        return None


def _check_signature(
    sig: EmbeddedPdfSignature,
    roots: list[asn1_x509.Certificate],
    ts_roots: list[asn1_x509.Certificate],
    revinfo: _Revinfo,
    moment: datetime,
    *,
    has_dss: bool,
    lta: bool,
) -> tuple[SignatureFinding, str | None]:
    context = _context(roots, moment, revinfo)
    ts_context = _context(ts_roots, moment, revinfo)
    try:
        status = validate_pdf_signature(
            sig, signer_validation_context=context, ts_validation_context=ts_context
        )
    except PdfReadError:
        # A later revision no longer parses, so the difference analysis cannot run; the
        # signature's own integrity check still can, and is what decides.
        status = validate_pdf_signature(
            sig,
            signer_validation_context=_context(roots, moment, revinfo),
            ts_validation_context=_context(ts_roots, moment, revinfo),
            skip_diff=True,
        )
    ades = _ades_validation(sig, roots, ts_roots, revinfo)
    stamp = status.timestamp_validity
    timestamp_ok = None if stamp is None else bool(stamp.intact and stamp.valid and stamp.trusted)
    level, changes = _modifications(status)
    pades = _pades_level(sig, timestamped=stamp is not None, has_dss=has_dss, lta=lta)
    indication, sub, reason = _judge(status, level, stamp, ades)
    cert = status.signing_cert
    subject, issuer = _names(cert)
    finding = SignatureFinding(
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
        revoked=bool(getattr(status, "revoked", False)),
        pyhanko_ades=_ades_summary(ades),
    )
    return finding, _etsi_xml(sig, ades)


def _ades_summary(ades: AdESWithTimeValidationResult | None) -> str | None:
    if ades is None:
        return None
    return f"{ades.ades_subindic.status.name}/{ades.ades_subindic.standard_name}"


def _etsi_xml(sig: EmbeddedPdfSignature, ades: AdESWithTimeValidationResult | None) -> str | None:
    """pyHanko's ETSI TS 119 102-2 XML report of one signature (needs ``xsdata``)."""
    if ades is None or ades.api_status is None:
        return None
    try:
        from pyhanko.sign.validation.report.tools import generate_report
    except ImportError:  # pyHanko's "etsi" extra (xsdata) is not installed
        return None
    try:
        return str(generate_report(sig, ades))
    except Exception:
        return None


def _merge_etsi_reports(reports: list[str]) -> str | None:
    """One ``vr:ValidationReport`` with each signature's ``SignatureValidationReport`` (in
    document order) and every validation object once."""
    if not reports:
        return None
    for prefix, uri in _XML_PREFIXES.items():
        ElementTree.register_namespace(prefix, uri)
    vr = "{" + ETSI_REPORT_NAMESPACE + "}"
    # pyHanko wrote these reports a moment ago; they hold no outside XML
    merged = ElementTree.fromstring(reports[0])  # noqa: S314
    objects = merged.find(f"{vr}SignatureValidationObjects")
    seen = {o.get("id") for o in merged.iter(f"{vr}ValidationObject")}
    for text in reports[1:]:
        other = ElementTree.fromstring(text)  # noqa: S314
        report = other.find(f"{vr}SignatureValidationReport")
        if report is None:
            continue
        last = merged.findall(f"{vr}SignatureValidationReport")[-1]
        merged.insert(list(merged).index(last) + 1, report)
        for obj in other.iter(f"{vr}ValidationObject"):
            if obj.get("id") in seen:
                continue
            seen.add(obj.get("id"))
            if objects is None:
                objects = ElementTree.SubElement(merged, f"{vr}SignatureValidationObjects")
            objects.append(obj)
    ElementTree.indent(merged, "  ")
    return ElementTree.tostring(merged, encoding="unicode", xml_declaration=True)


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


def _judge(
    status: Any, level: ModificationLevel | None, stamp: Any, ades: Any = None
) -> tuple[str, str | None, str]:
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
    certificate = _certificate_verdict(status, stamp, ades)
    if certificate is not None:
        return certificate
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


def _certificate_verdict(status: Any, stamp: Any, ades: Any) -> tuple[str, str, str] | None:
    """A revoked or expired signer certificate, judged as ETSI EN 319 102-1 does.

    pyHanko's validation of signatures with time (``ades``, section 5.5) says REVOKED
    (TOTAL_FAILED) when a trusted content timestamp, made before the signature, is after
    the revocation: the signature was made with a revoked certificate. It says EXPIRED when
    such a timestamp is after the certificate's notAfter; this verifier fails that too
    (TOTAL_FAILED, EXPIRED): the signature was made with an expired certificate. Without
    such proof, a revocation or an expiry the verifier knows of is INDETERMINATE
    (REVOKED_NO_POE, REVOKED_CA_NO_POE, OUT_OF_BOUNDS_NO_POE), never PASSED.
    """
    ades_sub = ades.ades_subindic if ades is not None else None
    cert = status.signing_cert
    not_after = cert["tbs_certificate"]["validity"]["not_after"].native
    revocation = getattr(ades.api_status, "revocation_details", None) if ades else None
    revocation = revocation or getattr(status, "revocation_details", None)
    when = f" on {_iso(revocation.revocation_date)}" if revocation is not None else ""
    proof = _proof_of_time(ades, stamp)
    if ades_sub is AdESFailure.REVOKED:
        return (
            TOTAL_FAILED,
            "REVOKED",
            f"the signer's certificate was revoked{when}, and {proof} proves the signature "
            "was made after that",
        )
    if ades_sub is AdESIndeterminate.EXPIRED:
        return (
            TOTAL_FAILED,
            "EXPIRED",
            f"the signer's certificate expired on {_iso(not_after)}, and {proof} proves the "
            "signature was made after that",
        )
    if ades_sub in (AdESFailure.NOT_YET_VALID, AdESIndeterminate.NOT_YET_VALID):
        return (
            TOTAL_FAILED,
            "NOT_YET_VALID",
            f"the signature was made before its certificate was valid ({proof} proves it)",
        )
    problem = status.trust_problem_indic
    for sub in (ades_sub, problem):
        if sub in (AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE):
            whose = (
                "a CA certificate of the signer's path"
                if "CA" in sub.name
                else "the signer's certificate"
            )
            return (
                INDETERMINATE,
                sub.standard_name,
                f"{whose} is revoked{when}, and no trusted timestamp proves the signature "
                "was made before the revocation",
            )
    if problem is AdESIndeterminate.OUT_OF_BOUNDS_NO_POE:
        return (
            INDETERMINATE,
            problem.standard_name,
            f"the signer's certificate is outside its validity (it ends {_iso(not_after)}), "
            "and no trusted timestamp proves the signature was made within it",
        )
    return None


def _proof_of_time(ades: Any, stamp: Any) -> str:
    content = getattr(getattr(ades, "api_status", None), "content_timestamp_validity", None)
    if content is not None and content.timestamp is not None:
        return f"a trusted content timestamp of {_iso(content.timestamp)}"
    if stamp is not None and stamp.timestamp is not None:
        return f"a trusted timestamp of {_iso(stamp.timestamp)}"
    return "a trusted timestamp"


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
