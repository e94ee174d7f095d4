"""Acceptance of a PDF that an app signed with the signer's own key (the alternative flow).

Before the ledger records such a PDF as the task's next revision it checks, in order:

1. the bytes the ledger held are an exact prefix: the submission is an incremental update;
2. the PDF holds signatures, at least one of them new (covering bytes past the prefix);
3. every signature is intact and cryptographically valid;
4. every signer's certificate path ends at one of the configured trust roots;
5. every signature timestamp present validates against the TSA roots;
6. nothing but allowed changes (form filling, signatures, DSS) follows any signature.

The first failing step raises :class:`~evidence.errors.SubmittedPdfRefused` with the
ETSI EN 319 102-1 indication and sub-indication; the report is attached to it when one exists.
"""

# pyHanko's public API is only partly annotated.

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NoReturn

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext

from evidence.errors import SubmittedPdfRefused

__all__ = [
    "SignatureCheck",
    "SubmittedPdfReport",
    "validate_submitted_pdf",
]

TOTAL_PASSED: Final = "TOTAL_PASSED"
TOTAL_FAILED: Final = "TOTAL_FAILED"
INDETERMINATE: Final = "INDETERMINATE"

#: Changes a later revision may make after a signature without breaking it.
_ALLOWED_LEVELS: Final = frozenset(
    {ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING}
)
_ALLOWED_NAMES: Final = frozenset(level.name for level in _ALLOWED_LEVELS)


@dataclass(frozen=True)
class SignatureCheck:
    """What pyHanko's validator found for one signature of the submitted PDF."""

    field_name: str
    #: RFC 4514 form of the signer certificate's subject and issuer.
    signer_subject: str
    issuer: str
    serial_number: int
    #: The signing time the signer claims (CMS signingTime); not proof of anything.
    signing_time: datetime | None
    #: The signature timestamp's genTime, if the signature has a timestamp token.
    timestamp_time: datetime | None
    #: The signed bytes hash to what the signature says (nothing inside the range changed).
    intact: bool
    #: ``intact``, and the signature value verifies with the certificate's public key.
    valid: bool
    #: The signer's certificate path ends at one of the configured trust roots.
    trusted: bool
    #: The timestamp token is intact, valid and trusted by the TSA roots (None: no token).
    timestamp_trusted: bool | None
    #: pyHanko's ``ModificationLevel`` name for what later revisions changed.
    modification_level: str
    #: True when this signature was added after the revision the ledger held.
    is_new: bool


@dataclass(frozen=True)
class SubmittedPdfReport:
    """The outcome of :func:`validate_submitted_pdf` for a PDF the ledger accepts."""

    signatures: tuple[SignatureCheck, ...]
    #: Length of the revision the ledger held, or None when there was none.
    previous_revision_length: int | None

    @property
    def verdict(self) -> str:
        """``TOTAL_PASSED`` when every check holds, else the first failing indication."""
        if not self.signatures or not any(s.is_new for s in self.signatures):
            return INDETERMINATE
        if not all(s.intact and s.valid for s in self.signatures):
            return TOTAL_FAILED
        if any(s.modification_level not in _ALLOWED_NAMES for s in self.signatures):
            return TOTAL_FAILED
        if not all(s.trusted and s.timestamp_trusted is not False for s in self.signatures):
            return INDETERMINATE
        return TOTAL_PASSED

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest for the event log."""
        return {
            "verdict": self.verdict,
            "previous_revision_length": self.previous_revision_length,
            "signatures": [
                {
                    "field_name": s.field_name,
                    "signer_subject": s.signer_subject,
                    "issuer": s.issuer,
                    "serial_number": str(s.serial_number),
                    "signing_time": s.signing_time.isoformat() if s.signing_time else None,
                    "timestamp_time": s.timestamp_time.isoformat() if s.timestamp_time else None,
                    "intact": s.intact,
                    "valid": s.valid,
                    "trusted": s.trusted,
                    "timestamp_trusted": s.timestamp_trusted,
                    "modification_level": s.modification_level,
                    "is_new": s.is_new,
                }
                for s in self.signatures
            ],
        }


def validate_submitted_pdf(
    pdf: bytes,
    previous_revision: bytes | None,
    trust_roots: Iterable[x509.Certificate],
    tsa_trust_roots: Iterable[x509.Certificate],
) -> SubmittedPdfReport:
    """Check a submitted signed PDF as the next revision of ``previous_revision``.

    Returns the report when the verdict is ``TOTAL_PASSED``; raises
    :class:`SubmittedPdfRefused` otherwise. Empty trust roots are refused (fail closed).
    """
    roots = [_to_asn1(c) for c in trust_roots]
    tsa_roots = [_to_asn1(c) for c in tsa_trust_roots]
    if not roots or not tsa_roots:
        raise ValueError("validate_submitted_pdf needs signer and TSA trust roots")

    # Step 1: an incremental update of what the ledger held.
    if previous_revision is not None and (
        len(pdf) <= len(previous_revision) or not pdf.startswith(previous_revision)
    ):
        raise SubmittedPdfRefused(
            "the submitted PDF is not an incremental update of the revision the ledger holds",
            indication=TOTAL_FAILED,
            sub_indication="FORMAT_FAILURE",
        )
    # Step 2: signatures, one of them new.
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        embedded = list(reader.embedded_regular_signatures)
    except Exception as exc:  # pyHanko raises several types on a malformed file
        raise SubmittedPdfRefused(
            f"the submitted PDF cannot be read: {exc}",
            indication=TOTAL_FAILED,
            sub_indication="FORMAT_FAILURE",
        ) from exc
    held = len(previous_revision) if previous_revision is not None else 0
    checks = tuple(
        _check(sig, roots, tsa_roots, held if previous_revision is not None else None)
        for sig in embedded
    )
    report = SubmittedPdfReport(checks, None if previous_revision is None else held)
    if not checks or not any(c.is_new for c in checks):
        _refuse(
            report, "the submitted PDF has no new signature", INDETERMINATE, "SIGNED_DATA_NOT_FOUND"
        )
    # Steps 3 to 6, each with its own reason.
    for c in checks:
        if not c.intact:
            _refuse(
                report, f"{c.field_name}: signed bytes were changed", TOTAL_FAILED, "HASH_FAILURE"
            )
        if not c.valid:
            _refuse(
                report,
                f"{c.field_name}: signature does not verify",
                TOTAL_FAILED,
                "SIG_CRYPTO_FAILURE",
            )
    for c in checks:
        if not c.trusted:
            _refuse(
                report,
                f"{c.field_name}: no certificate path from {c.signer_subject} to a trust root",
                INDETERMINATE,
                "NO_CERTIFICATE_CHAIN_FOUND",
            )
        if c.timestamp_trusted is False:
            _refuse(
                report,
                f"{c.field_name}: the signature timestamp is not trusted by the TSA roots",
                INDETERMINATE,
                "NO_POE",
            )
    for c in checks:
        if c.modification_level not in _ALLOWED_NAMES:
            _refuse(
                report,
                f"{c.field_name}: disallowed changes after signing ({c.modification_level})",
                TOTAL_FAILED,
                "SIG_CONSTRAINTS_FAILURE",
            )
    return report


def _check(
    sig: Any,
    roots: list[asn1_x509.Certificate],
    tsa_roots: list[asn1_x509.Certificate],
    held: int | None,
) -> SignatureCheck:
    status: PdfSignatureStatus = validate_pdf_signature(
        sig,
        signer_validation_context=ValidationContext(trust_roots=roots),
        ts_validation_context=ValidationContext(trust_roots=tsa_roots),
    )
    stamp = status.timestamp_validity
    cert = status.signing_cert
    signed_end = int(sig.byte_range[2]) + int(sig.byte_range[3])
    level = status.modification_level
    return SignatureCheck(
        field_name=str(sig.field_name),
        signer_subject=cert.subject.human_friendly,
        issuer=cert.issuer.human_friendly,
        serial_number=int(cert.serial_number),
        signing_time=status.signer_reported_dt,
        timestamp_time=stamp.timestamp if stamp is not None else None,
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        timestamp_trusted=(
            None if stamp is None else bool(stamp.intact and stamp.valid and stamp.trusted)
        ),
        modification_level=level.name if level is not None else "OTHER",
        is_new=held is None or signed_end > held,
    )


def _refuse(
    report: SubmittedPdfReport, message: str, indication: str, sub_indication: str
) -> NoReturn:
    raise SubmittedPdfRefused(
        message, indication=indication, sub_indication=sub_indication, report=report
    )


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
