"""Independent verifier for Evidence Ledger proofs, checkpoints, RFC 3161 timestamp tokens,
signed PDFs and evidence packs.

It trusts nothing the ledger says and imports nothing from the ledger's packages
(``ledger``, ``projections``, ``evidence``, ``api``): only the standard library and
third-party libraries (``cryptography``; ``asn1crypto``, ``pyhanko`` and
``pyhanko-certvalidator`` for timestamp tokens and PDF signatures). The checks follow the
written spec in ``docs/verification.md``. The timestamp and PDF checks load pyHanko on first
use, so the proof and checkpoint checks start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verifier._internal.merkle import (
    empty_root,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from verifier._internal.note import verify_note
from verifier.errors import (
    CheckpointError,
    NoteError,
    NoteFormatError,
    NoteSignatureError,
    ProofError,
    UntrustedNoteError,
    Verdict,
    VerificationError,
    VerifierKeyError,
)
from verifier.models import Checkpoint, CheckResult, NoteSignature, SignedNote, VerifierKey
from verifier.pack import Indication, PackReport, StepResult, SubIndication, verify_pack

if TYPE_CHECKING:
    from verifier.pdf import PdfReport, SignatureFinding, check_pdf
    from verifier.timestamp import TimestampReport, check_timestamp

_LAZY = {
    "PdfReport": "verifier.pdf",
    "SignatureFinding": "verifier.pdf",
    "check_pdf": "verifier.pdf",
    "TimestampReport": "verifier.timestamp",
    "check_timestamp": "verifier.timestamp",
}

__all__ = [
    "CheckResult",
    "Checkpoint",
    "CheckpointError",
    "Indication",
    "NoteError",
    "NoteFormatError",
    "NoteSignature",
    "NoteSignatureError",
    "PackReport",
    "PdfReport",
    "ProofError",
    "SignatureFinding",
    "SignedNote",
    "StepResult",
    "SubIndication",
    "TimestampReport",
    "UntrustedNoteError",
    "Verdict",
    "VerificationError",
    "VerifierKey",
    "VerifierKeyError",
    "check_pdf",
    "check_timestamp",
    "empty_root",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
    "verify_pack",
]


def __getattr__(name: str) -> Any:
    """Load the timestamp and PDF checks (and pyHanko with them) on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'verifier' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
