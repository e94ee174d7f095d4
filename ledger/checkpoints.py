"""C2SP ``tlog-checkpoint`` bodies wrapped in C2SP ``signed-note`` signatures.

A checkpoint body is three lines: the log origin, the tree size in decimal and the root
hash in standard base64. The signed note is the body, a blank line, then one line per
signature: ``— <key name> <base64(key ID || Ed25519 signature)>``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from ledger.errors import CheckpointError
from ledger.keys import NoteKey
from ledger.merkle import HASH_SIZE

SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
_SIZE_PATTERN = re.compile(r"(0|[1-9][0-9]*)\Z")


@dataclass(frozen=True)
class CheckpointBody:
    """The signed statement: this log, at this size, has this root."""

    origin: str
    tree_size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("a checkpoint origin is one non-empty line")
        if self.tree_size < 0:
            raise CheckpointError("a tree size is never negative")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("a root hash is 32 bytes")

    def text(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return f"{self.origin}\n{self.tree_size}\n{root}\n"

    @classmethod
    def parse(cls, text: str) -> CheckpointBody:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint body is at least three lines, each ending in \\n")
        origin, size, root = lines[0], lines[1], lines[2]
        if not _SIZE_PATTERN.match(size):
            raise CheckpointError(f"tree size {size!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise CheckpointError(f"root hash {root!r} is not base64") from exc
        return cls(origin=origin, tree_size=int(size), root_hash=root_hash)


def sign_note(body: str, key: NoteKey) -> str:
    """A signed note of ``body`` with one Ed25519 signature by ``key``."""
    if not body.endswith("\n"):
        raise CheckpointError("a note's text ends with a newline")
    signature = key.sign(body.encode("utf-8"))
    encoded = base64.b64encode(key.key_id + signature).decode()
    return f"{body}\n{SIGNATURE_PREFIX}{key.name} {encoded}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text of a signed note and its ``(key name, key ID || signature)`` lines."""
    text, separator, signatures = note.rpartition("\n\n")
    if not separator:
        raise CheckpointError("a signed note has a blank line before its signatures")
    parsed: list[tuple[str, bytes]] = []
    for line in signatures.rstrip("\n").split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError(f"not a signature line: {line!r}")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            parsed.append((name, base64.b64decode(encoded, validate=True)))
        except binascii.Error as exc:
            raise CheckpointError(f"signature of {name!r} is not base64") from exc
    return text + "\n", parsed


def verify_note(note: str, key: NoteKey) -> str:
    """Check ``key``'s signature on a note (the ledger's own check); return the text."""
    text, signatures = split_note(note)
    for name, blob in signatures:
        if name == key.name and blob[:4] == key.key_id:
            try:
                key.private_key.public_key().verify(blob[4:], text.encode("utf-8"))
            except InvalidSignature as exc:
                raise CheckpointError(f"the signature of {name} does not verify") from exc
            return text
    raise CheckpointError(f"the note carries no signature by {key.name}")
