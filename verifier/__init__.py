"""Independent verifier for Evidence Ledger proofs, checkpoints, RFC 3161 timestamp tokens,
signed PDFs and evidence packs; and, online, a check that a pack's checkpoint is still in
the ledger's log and a monitor that follows the log and cosigns it as a C2SP witness.

It trusts nothing the ledger says and imports nothing from the ledger's packages
(``ledger``, ``projections``, ``evidence``, ``api``): only the standard library and
third-party libraries (``cryptography``; ``asn1crypto``, ``pyhanko`` and
``pyhanko-certvalidator`` for timestamp tokens and PDF signatures; ``httpx`` for the online
modes). The checks follow the written spec in ``docs/verification.md``. The timestamp and
PDF checks load pyHanko on first use, and the online modes httpx, so the proof and
checkpoint checks start without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verifier._internal.cosignature import (
    Cosigner,
    CosignerKey,
    cosignature_key_id,
    cosigned_message,
    verify_cosignature,
)
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
    from verifier.monitor import Monitor, MonitorRound
    from verifier.online import LogClient, LogComparison, add_online_step, compare_with_log
    from verifier.pdf import PdfReport, SignatureFinding, check_pdf
    from verifier.timestamp import TimestampReport, check_timestamp

_LAZY = {
    "LogClient": "verifier.online",
    "LogComparison": "verifier.online",
    "add_online_step": "verifier.online",
    "compare_with_log": "verifier.online",
    "Monitor": "verifier.monitor",
    "MonitorRound": "verifier.monitor",
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
    "Cosigner",
    "CosignerKey",
    "Indication",
    "LogClient",
    "LogComparison",
    "Monitor",
    "MonitorRound",
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
    "add_online_step",
    "check_pdf",
    "check_timestamp",
    "compare_with_log",
    "cosignature_key_id",
    "cosigned_message",
    "empty_root",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_cosignature",
    "verify_inclusion",
    "verify_note",
    "verify_pack",
]


def __getattr__(name: str) -> Any:
    """Load the timestamp and PDF checks (and pyHanko with them) and the online modes (and
    httpx with them) on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'verifier' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
