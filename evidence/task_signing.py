"""The document signer the task service uses: a local CA, pyHanko and the ledger's TSA.

:class:`LocalCaDocumentSigner` implements :class:`ledger.task_service.DocumentSigner`:
it issues each signer a certificate bound to the identity the app verified, signs as a
PAdES B-T incremental revision with a visible stamp, validates PDFs signers signed with
their own keys against the configured trust roots, and finalises completed documents to
PAdES B-LTA. pyHanko's synchronous calls run their own event loop, so call these from a
worker thread when inside an asyncio server.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko_certvalidator import ValidationContext

from evidence.errors import EvidenceError, SubmittedPdfRefused
from evidence.local_ca import LocalCertificateAuthority, SignerIdentity
from evidence.pdf_checks import PageTreeError, count_pages
from evidence.pdf_signing import finalise_ltav, sign_pdf
from evidence.pdf_validation import validate_submitted_pdf
from ledger.task_service import DocumentRefused, SignedRevision, SignerProfile, TaskServiceError
from ledger.workflow.templates import Placement

#: Where stamps go when a signer step names no placement: a row along the foot of page 1.
_DEFAULT_STAMP = (200, 60)
_MARGIN = 36


class LocalCaDocumentSigner:
    """Sign with certificates from the local CA; check and finalise with the same roots."""

    def __init__(
        self,
        ca: LocalCertificateAuthority,
        passphrase: bytes,
        *,
        timestamp_url: str,
        tsa_trust_roots: Iterable[x509.Certificate],
        signer_trust_roots: Iterable[x509.Certificate] = (),
    ) -> None:
        self.ca = ca
        self._passphrase = passphrase
        self.timestamp_url = timestamp_url
        self.tsa_trust_roots = list(tsa_trust_roots)
        self.signer_trust_roots = [ca.root_certificate, *signer_trust_roots]

    def check_pdf(self, data: bytes) -> None:
        """Refuse what pyHanko cannot open, encrypted files, broken page trees (loops,
        wrong counts, see :mod:`evidence.pdf_checks`) and files with no page."""
        try:
            reader = PdfFileReader(io.BytesIO(data), strict=False)
            if reader.encrypted:
                raise DocumentRefused("the PDF is encrypted; upload it without a password")
            pages = count_pages(reader.root.raw_get("/Pages"))
        except PageTreeError as exc:
            raise DocumentRefused(f"the PDF's page tree is broken: {exc}") from exc
        except DocumentRefused:
            raise
        except Exception as exc:  # pyHanko raises many types on a malformed file
            raise DocumentRefused(f"the file is not a readable PDF: {exc}") from exc
        if pages < 1:
            raise DocumentRefused("the PDF has no page")

    def sign(
        self,
        pdf: bytes,
        *,
        signer: SignerProfile,
        placement: Placement | None,
        field_name: str,
        reason: str,
    ) -> SignedRevision:
        try:
            identity = SignerIdentity(
                signer_id=signer.user_id,
                name=signer.name,
                organisation=signer.organisation,
                email=signer.email,
                phone=signer.phone,
            )
        except ValueError as exc:
            raise TaskServiceError(f"cannot issue a signing certificate: {exc}") from exc
        issued = self.ca.issue_signer(identity)
        try:
            signed = sign_pdf(
                pdf,
                issued,
                placement=placement or _default_placement(pdf),
                field_name=field_name,
                reason=reason,
                location=signer.organisation,
                timestamp_url=self.timestamp_url,
                tsa_trust_roots=self.tsa_trust_roots,
                passphrase=self._passphrase,
            )
        except EvidenceError as exc:
            raise TaskServiceError(f"signing failed: {exc}") from exc
        facts = _certificate_facts(issued.certificate)
        return SignedRevision(signed, {"field": field_name, "level": "PAdES-B-T", **facts})

    def accept_signed(self, pdf: bytes, previous: bytes) -> SignedRevision:
        try:
            report = validate_submitted_pdf(
                pdf, previous, self.signer_trust_roots, self.tsa_trust_roots
            )
        except SubmittedPdfRefused as exc:
            raise DocumentRefused(f"the signed PDF was refused: {exc}") from exc
        (new,) = [c for c in report.signatures if c.is_new][-1:]
        facts: dict[str, Any] = {
            "field": new.field_name,
            "level": "PAdES-B-T" if new.timestamp_trusted else "PAdES-B-B",
            "subject": new.signer_subject,
            "issuer": new.issuer,
            "serial": format(new.serial_number, "x"),
            "submitted_by_signer": True,
        }
        return SignedRevision(pdf, facts)

    def sign_report(self, pdf: bytes, origin: str) -> bytes:
        """Certify a court report as the ledger: invisible, no later changes, PAdES B-T."""
        from evidence.report import report_signer, sign_report

        try:
            return sign_report(
                pdf,
                report_signer(self.ca, origin),
                timestamp_url=self.timestamp_url,
                tsa_trust_roots=self.tsa_trust_roots,
                passphrase=self._passphrase,
            )
        except EvidenceError as exc:
            raise TaskServiceError(f"signing the report failed: {exc}") from exc

    def finalise(self, pdf: bytes) -> bytes:
        roots = [_to_asn1(c) for c in (*self.signer_trust_roots, *self.tsa_trust_roots)]
        context = ValidationContext(trust_roots=roots, allow_fetching=False)
        try:
            return finalise_ltav(pdf, context, self.timestamp_url)
        except EvidenceError as exc:
            raise TaskServiceError(f"finalising the signed PDF failed: {exc}") from exc


def _certificate_facts(certificate: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "certificate_sha256": certificate.fingerprint(hashes.SHA256()).hex(),
    }


def _default_placement(pdf: bytes) -> Placement:
    """The next free slot along the foot of page 1, by the number of signatures so far."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    count = len(reader.embedded_regular_signatures)
    width, height = _DEFAULT_STAMP
    x1 = _MARGIN + (count % 2) * (width + 12)
    y1 = _MARGIN + (count // 2) * (height + 12)
    return Placement(1, x1, y1, x1 + width, y1 + height)


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
