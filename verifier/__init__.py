"""Independent verifier for Evidence Ledger proofs, checkpoints and, later, evidence packs.

It trusts nothing the ledger says and imports nothing from the ledger's packages: only the
standard library and ``cryptography``. The checks follow the written spec in
``docs/verification.md``.
"""

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

__all__ = [
    "CheckResult",
    "Checkpoint",
    "CheckpointError",
    "NoteError",
    "NoteFormatError",
    "NoteSignature",
    "NoteSignatureError",
    "ProofError",
    "SignedNote",
    "UntrustedNoteError",
    "Verdict",
    "VerificationError",
    "VerifierKey",
    "VerifierKeyError",
    "empty_root",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
]
