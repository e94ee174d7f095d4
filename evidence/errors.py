"""Errors of the evidence package: one root, a subtree per concern, each able to explain itself.

Refusals of a submitted PDF carry the ETSI EN 319 102-1 indication (``TOTAL_FAILED`` or
``INDETERMINATE``) and a sub-indication, so callers can map them to a verdict without parsing
messages.
"""

from __future__ import annotations

__all__ = [
    "CertificateAuthorityError",
    "EvidenceError",
    "PdfSigningError",
    "SubmittedPdfRefused",
]


class EvidenceError(Exception):
    """Root of every error raised by :mod:`evidence`."""


class CertificateAuthorityError(EvidenceError):
    """The local signing CA's files are missing, unreadable, inconsistent or locked."""


class PdfSigningError(EvidenceError):
    """A PDF could not be signed or finalised (bad input, placement, TSA or validation data)."""


class SubmittedPdfRefused(EvidenceError):
    """A PDF submitted by an app is not accepted as the next signed revision.

    ``indication`` is ``TOTAL_FAILED`` (proven bad: broken signature, rewritten history,
    disallowed changes) or ``INDETERMINATE`` (not provably good: untrusted certificate path,
    no signature at all); ``sub_indication`` names the reason in ETSI terms.
    """

    def __init__(
        self, message: str, *, indication: str, sub_indication: str, report: object = None
    ) -> None:
        super().__init__(message)
        self.indication = indication
        self.sub_indication = sub_indication
        #: The per-signature report, when validation got far enough to make one.
        self.report = report

    def __str__(self) -> str:
        return f"{self.args[0]} ({self.indication}/{self.sub_indication})"
