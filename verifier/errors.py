"""Exceptions raised by the independent verifier, one subtree per concern.

Every error explains itself in ``str(error)`` and carries the verdict it stands for, so a
caller can report it without knowing the subclass: most mean the evidence is wrong
(``FAILED``); a few mean the verifier could not decide (``INDETERMINATE``), for example
when no trusted key signed a checkpoint.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

__all__ = [
    "CheckpointError",
    "NoteError",
    "NoteFormatError",
    "NoteSignatureError",
    "ProofError",
    "UntrustedNoteError",
    "Verdict",
    "VerificationError",
    "VerifierKeyError",
]


class Verdict(StrEnum):
    """The outcome of one check, in the vocabulary of ETSI EN 319 102-1."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    INDETERMINATE = "INDETERMINATE"


class VerificationError(Exception):
    """Root of every error the verifier raises about the evidence it was given."""

    verdict: ClassVar[Verdict] = Verdict.FAILED
    """What this error means for the check that raised it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """One sentence saying what was wrong, for people and for JSON output."""


class ProofError(VerificationError):
    """An RFC 9162 inclusion or consistency proof does not prove what it claims."""


class VerifierKeyError(VerificationError):
    """A verifier key string is not a well-formed Ed25519 note key; it is a bad input."""


class NoteError(VerificationError):
    """A C2SP signed note cannot be accepted."""


class NoteFormatError(NoteError):
    """The signed note breaks the C2SP signed-note syntax."""


class NoteSignatureError(NoteError):
    """A signature line from a known key does not verify over the note text."""


class UntrustedNoteError(NoteError):
    """No signature from a trusted key is on the note, so nothing vouches for its text."""

    verdict: ClassVar[Verdict] = Verdict.INDETERMINATE


class CheckpointError(VerificationError):
    """A note text is not a valid C2SP tlog-checkpoint, or it is not the expected log's."""
