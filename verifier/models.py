"""Public result types of the verifier: checkpoints, trusted keys and check results.

Each type that wraps an external format checks that format's invariants when it is built,
so a value of the type is always well-formed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifier._internal.note import NoteSignature, SignedNote, VerifierKey, verify_note
from verifier.errors import CheckpointError, UntrustedNoteError, Verdict, VerificationError

__all__ = [
    "CheckResult",
    "Checkpoint",
    "NoteSignature",
    "SignedNote",
    "Verdict",
    "VerifierKey",
]

_ROOT_HASH_SIZE = 32
_MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: the tree head a log commits to at one size."""

    origin: str
    """The log's identity, first line of the note text; the ledger key's name."""
    size: int
    """Number of leaves in the tree."""
    root_hash: bytes
    """The 32-byte RFC 9162 root hash of the tree at ``size``."""
    extensions: tuple[str, ...] = ()
    """Optional extension lines after the root hash, opaque to the verifier."""

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size} is outside 0..2^64-1")
        if len(self.root_hash) != _ROOT_HASH_SIZE:
            raise CheckpointError(
                f"root hash is {len(self.root_hash)} bytes, expected {_ROOT_HASH_SIZE}"
            )
        for number, line in enumerate(self.extensions, start=4):
            _check_line(line, f"extension line {number}")

    @classmethod
    def from_note_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (origin, size, root hash, extensions), each line ended
        by a newline, as c2sp.org/tlog-checkpoint lays it out. Signatures are not checked.
        """
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint text has {len(lines)} lines; origin, size and root hash are needed"
            )
        origin, size_line, root_line, *extensions = lines
        _check_line(origin, "origin")
        if not _DECIMAL.fullmatch(size_line):
            raise CheckpointError(
                f"tree size line {size_line!r} is not a decimal number without leading zeros"
            )
        size = int(size_line)
        root_hash = _decode_root_hash(root_line)
        return cls(origin, size, root_hash, tuple(extensions))

    @classmethod
    def from_signed_note(
        cls, message: bytes | str, keys: Iterable[VerifierKey], *, origin: str | None = None
    ) -> Checkpoint:
        """Verify a signed checkpoint note against trusted keys and return its tree head.

        Besides the signed-note rules, one of the verified signatures must come from a key
        named exactly as the checkpoint's origin (the log's own signature: the ledger names
        its key after its log, and C2SP says the names SHOULD match), so a trusted key never
        vouches for another log's tree head. ``origin``, if given, pins the expected log.
        """
        note = verify_note(message, keys)
        checkpoint = cls.from_note_text(note.text)
        if origin is not None and checkpoint.origin != origin:
            raise CheckpointError(
                f"checkpoint origin is {checkpoint.origin!r}, expected {origin!r}"
            )
        if not any(signature.name == checkpoint.origin for signature in note.signatures):
            signers = ", ".join(signature.key_label for signature in note.signatures)
            raise UntrustedNoteError(
                f"no trusted key named after the origin {checkpoint.origin!r} signed the "
                f"checkpoint (verified signers: {signers})"
            )
        return checkpoint

    def to_note_text(self) -> str:
        """Return the note text this checkpoint is signed over."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = (self.origin, str(self.size), root, *self.extensions)
        return "".join(f"{line}\n" for line in lines)


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"checkpoint {what} is empty")
    if "\n" in line:
        raise CheckpointError(f"checkpoint {what} contains a newline")


def _decode_root_hash(line: str) -> bytes:
    """Decode the root hash line, accepting only canonical standard base64 of 32 bytes."""
    try:
        root_hash = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CheckpointError(f"root hash line {line!r} is not base64") from error
    if base64.b64encode(root_hash).decode("ascii") != line:
        raise CheckpointError(f"root hash line {line!r} is not canonical base64")
    if len(root_hash) != _ROOT_HASH_SIZE:
        raise CheckpointError(f"root hash is {len(root_hash)} bytes, expected {_ROOT_HASH_SIZE}")
    return root_hash


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, as the command line reports it."""

    check: str
    """Which check ran: ``inclusion``, ``consistency`` or ``checkpoint``."""
    verdict: Verdict
    """PASSED, FAILED or INDETERMINATE."""
    reason: str
    """One sentence saying why, for people and machines alike."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """What was checked (sizes, roots, origin), as JSON-ready values."""

    @property
    def passed(self) -> bool:
        """Whether the check passed; anything else must be treated as not verified."""
        return self.verdict is Verdict.PASSED

    @classmethod
    def from_error(
        cls, check: str, error: VerificationError, details: Mapping[str, Any] | None = None
    ) -> CheckResult:
        """Turn a verification error into a result carrying the error's own verdict."""
        return cls(check, error.verdict, error.reason, dict(details or {}))

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready mapping: verdict, check, reason and details."""
        return {
            "verdict": self.verdict.value,
            "check": self.check,
            "reason": self.reason,
            "details": dict(self.details),
        }
