"""C2SP signed notes with Ed25519 keys: verifier keys, parsing and signature checks.

The rules are those of https://c2sp.org/signed-note; the verifier key string
``name+hex8keyid+base64(0x01 || public key)`` is the one of golang.org/x/mod/sumdb/note,
which the C2SP ecosystem uses to hand out keys. Only Ed25519 (signature type 0x01) is
accepted: the ledger signs with Ed25519 and a verifier should support only what it needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.errors import (
    NoteFormatError,
    NoteSignatureError,
    UntrustedNoteError,
    VerifierKeyError,
)

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_SIGNATURES",
    "NoteSignature",
    "SignedNote",
    "VerifierKey",
    "format_verifier_key",
    "key_id",
    "parse_verifier_key",
    "split_signed_note",
    "verify_note",
]

ED25519_SIGNATURE_TYPE = 0x01
"""The C2SP signed-note signature type byte for Ed25519."""

MAX_SIGNATURES = 16
"""Most signature lines accepted on one note; C2SP requires accepting at least 16."""

SIGNATURE_LINE_PREFIX = "\u2014 "
"""Every signature line starts with an em dash (U+2014) and a space."""

_ED25519_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_ID_SIZE = 4
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


def _is_valid_key_name(name: str) -> bool:
    """Key names are non-empty and hold no Unicode space and no plus (C2SP signed-note)."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _decode_base64(text: str) -> bytes | None:
    """Decode standard base64 (RFC 4648 section 4), accepting only its canonical form."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(data).decode("ascii") != text:
        return None
    return data


def key_id(name: str, public_key: bytes) -> int:
    """Return the key ID SHA-256(name || 0x0A || 0x01 || public key)[:4] as a big-endian int."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + public_key
    ).digest()
    return int.from_bytes(digest[:_KEY_ID_SIZE], "big")


def format_verifier_key(name: str, public_key: bytes) -> str:
    """Return the verifier key string ``name+keyid+base64(0x01 || public key)``."""
    encoded = base64.b64encode(bytes([ED25519_SIGNATURE_TYPE]) + public_key).decode("ascii")
    return f"{name}+{key_id(name, public_key):08x}+{encoded}"


@dataclass(frozen=True)
class VerifierKey:
    """A trusted Ed25519 note key: the name and key ID that signature lines refer to."""

    name: str
    """The key name; for the ledger's key it is the log origin."""
    key_id: int
    """The 32-bit key ID, checked against the name and public key when built."""
    public_key: bytes
    """The raw 32-byte Ed25519 public key (RFC 8032 encoding)."""

    def __post_init__(self) -> None:
        if not _is_valid_key_name(self.name):
            raise VerifierKeyError(f"key name {self.name!r} is empty or contains a space or '+'")
        if len(self.public_key) != _ED25519_KEY_SIZE:
            raise VerifierKeyError(
                f"Ed25519 public key is {len(self.public_key)} bytes, expected {_ED25519_KEY_SIZE}"
            )
        expected = key_id(self.name, self.public_key)
        if self.key_id != expected:
            raise VerifierKeyError(
                f"key ID {self.key_id:08x} does not match name and public key "
                f"(expected {expected:08x})"
            )
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as error:
            raise VerifierKeyError(f"not an Ed25519 public key: {error}") from error

    @classmethod
    def from_ed25519(cls, name: str, public_key: bytes) -> VerifierKey:
        """Build the key for ``name`` from a raw Ed25519 public key, deriving its key ID."""
        return cls(name, key_id(name, public_key), bytes(public_key))

    @classmethod
    def from_string(cls, vkey: str) -> VerifierKey:
        """Parse ``name+hex8keyid+base64(0x01 || 32-byte public key)``, checking the key ID."""
        name, _, rest = vkey.partition("+")
        hex_id, _, encoded = rest.partition("+")
        if not _HEX8.fullmatch(hex_id):
            raise VerifierKeyError(
                "verifier key must be name+keyid+key with an 8-digit hexadecimal key ID"
            )
        raw = _decode_base64(encoded)
        if not raw:
            raise VerifierKeyError("verifier key material is missing or not canonical base64")
        if raw[0] != ED25519_SIGNATURE_TYPE:
            raise VerifierKeyError(
                f"signature type 0x{raw[0]:02x} is not supported; only Ed25519 (0x01) is"
            )
        return cls(name, int(hex_id, 16), raw[1:])

    def __str__(self) -> str:
        return format_verifier_key(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's Ed25519 signature over ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse a verifier key string; the same as ``VerifierKey.from_string``."""
    return VerifierKey.from_string(vkey)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note: who claims to have signed, and the signature bytes."""

    name: str
    """The key name on the signature line."""
    key_id: int
    """The key ID from the first four bytes of the decoded signature."""
    signature: bytes
    """The signature proper, without the key ID."""

    @property
    def key_label(self) -> str:
        """The ``name+keyid`` form used in messages."""
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class SignedNote:
    """A note whose text was verified by at least one trusted key."""

    text: str
    """The signed text, including its final newline but not the blank separator line."""
    signatures: tuple[NoteSignature, ...]
    """Signatures from trusted keys; every one of them verified."""
    unverified: tuple[NoteSignature, ...]
    """Signatures from keys the caller did not trust; ignored, as C2SP requires."""


def split_signed_note(message: bytes | str) -> tuple[str, tuple[NoteSignature, ...]]:
    """Split a signed note into its text and signature lines, enforcing the C2SP syntax.

    Nothing is verified here; ``verify_note`` is the door for trusted use.
    """
    # 1. The whole note is valid UTF-8.
    try:
        raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        decoded = raw.decode("utf-8")
    except UnicodeError as error:
        raise NoteFormatError("signed note is not valid UTF-8") from error
    # 2. No ASCII control character other than newline appears anywhere.
    for offset, char in enumerate(decoded):
        if char < " " and char != "\n":
            raise NoteFormatError(
                f"signed note contains control character U+{ord(char):04X} at character {offset}"
            )
    # 3. The note ends with a newline, and its last blank line separates text from signatures.
    if not decoded.endswith("\n"):
        raise NoteFormatError("signed note does not end with a newline")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("signed note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    lines = block.split("\n")[:-1]
    # 4. There are between 1 and MAX_SIGNATURES signature lines.
    if not lines:
        raise NoteFormatError("signed note has no signature lines after the blank line")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(
            f"signed note has {len(lines)} signature lines; at most {MAX_SIGNATURES} are accepted"
        )
    return text, tuple(_parse_signature_line(line) for line in lines)


def _parse_signature_line(line: str) -> NoteSignature:
    """Parse ``— name base64(key ID || signature)`` into its parts."""
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise NoteFormatError(f"line {line[:40]!r} after the blank line is not a signature line")
    name, _, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    if not _is_valid_key_name(name):
        raise NoteFormatError(f"signature line has an invalid key name {name!r}")
    raw = _decode_base64(encoded)
    if raw is None or len(raw) <= _KEY_ID_SIZE:
        raise NoteFormatError(
            f"signature by {name!r} is not canonical base64 of a key ID and a signature"
        )
    return NoteSignature(name, int.from_bytes(raw[:_KEY_ID_SIZE], "big"), raw[_KEY_ID_SIZE:])


def _index_keys(keys: Iterable[VerifierKey]) -> dict[tuple[str, int], VerifierKey]:
    """Map (name, key ID) to key, refusing two different keys that share both."""
    index: dict[tuple[str, int], VerifierKey] = {}
    for key in keys:
        known = index.setdefault((key.name, key.key_id), key)
        if known != key:
            raise VerifierKeyError(
                f"two different trusted keys share name and ID {key.name}+{key.key_id:08x}"
            )
    return index


def verify_note(message: bytes | str, keys: Iterable[VerifierKey]) -> SignedNote:
    """Check a C2SP signed note against trusted keys and return its verified text.

    Signatures from unknown keys are ignored; one from a trusted key that fails to verify
    rejects the note (``NoteSignatureError``); a note that no trusted key signed is
    ``UntrustedNoteError``, whose verdict is INDETERMINATE.
    """
    text, signatures = split_signed_note(message)
    trusted = _index_keys(keys)
    text_bytes = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for signature in signatures:
        key = trusted.get((signature.name, signature.key_id))
        if key is None:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if not key.verify(text_bytes, signature.signature):
            raise NoteSignatureError(
                f"signature by trusted key {signature.key_label} does not verify over the note text"
            )
        if signature not in verified:
            verified.append(signature)
    if not verified:
        present = ", ".join(s.key_label for s in signatures)
        wanted = ", ".join(f"{name}+{kid:08x}" for name, kid in trusted) or "none given"
        raise UntrustedNoteError(
            f"no signature on the note is from a trusted key (signed by {present}; "
            f"trusted: {wanted})"
        )
    return SignedNote(text, tuple(verified), tuple(unverified))
