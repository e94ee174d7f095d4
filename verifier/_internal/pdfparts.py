"""Facts read from a PDF with pyHanko's parser, no validation: each signature's field, signer
certificate and byte range, and the embedded files (the report's attachments).

Validation (integrity, certificate paths, timestamps, changes after signing) is
``verifier.pdf.check_pdf``; this module only says which signature is where and by whom, so
steps 10 and 13 can compare the PDFs with the events and the pack.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from cryptography import x509

__all__ = ["PdfParseError", "SignatureFacts", "embedded_files", "signature_facts"]


class PdfParseError(Exception):
    """The PDF cannot be parsed; ``str(error)`` says why."""


@dataclass(frozen=True)
class SignatureFacts:
    field: str
    subject: str
    """RFC 4514 form of the signer certificate's subject."""
    serial: str
    """Lowercase hex of the certificate's serial number."""
    certificate_sha256: str
    covered_until: int
    """End of the signed byte range: the length of the revision the signature closes."""
    is_document_timestamp: bool


def _reader(pdf: bytes) -> Any:
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        return PdfFileReader(BytesIO(pdf), strict=False)
    except Exception as error:  # pyHanko raises several types on malformed input
        raise PdfParseError(f"the PDF cannot be parsed: {error}") from None


def signature_facts(pdf: bytes) -> list[SignatureFacts]:
    """Every signature field with a value, in document order."""
    reader = _reader(pdf)
    out: list[SignatureFacts] = []
    try:
        for signature in reader.embedded_signatures:
            byte_range = list(signature.sig_object["/ByteRange"])
            der = signature.signer_cert.dump()
            certificate = x509.load_der_x509_certificate(der)
            out.append(
                SignatureFacts(
                    field=str(signature.field_name),
                    subject=certificate.subject.rfc4514_string(),
                    serial=format(certificate.serial_number, "x"),
                    certificate_sha256=hashlib.sha256(der).hexdigest(),
                    covered_until=int(byte_range[2]) + int(byte_range[3]),
                    is_document_timestamp=signature.sig_object.get("/Type") == "/DocTimeStamp",
                )
            )
    except PdfParseError:
        raise
    except Exception as error:
        raise PdfParseError(f"the PDF's signatures cannot be read: {error}") from None
    return out


def embedded_files(pdf: bytes) -> dict[str, bytes]:
    """The files in the document's ``/EmbeddedFiles`` name tree, by name (flat arrays and
    one level of ``/Kids``)."""
    reader = _reader(pdf)
    out: dict[str, bytes] = {}
    try:
        names = reader.root.get("/Names")
        tree = names.get("/EmbeddedFiles") if names is not None else None
        if tree is None:
            return out
        nodes = [tree]
        while nodes:
            node = nodes.pop()
            for kid in node.get("/Kids", []):
                nodes.append(kid.get_object())
            pairs = list(node.get("/Names", []))
            for name, spec in zip(pairs[0::2], pairs[1::2], strict=False):
                spec = spec.get_object()
                stream = spec["/EF"].get("/F") or spec["/EF"].get("/UF")
                out[str(name)] = stream.get_object().data
    except Exception as error:
        raise PdfParseError(f"the PDF's embedded files cannot be read: {error}") from None
    return out
