"""C2SP tlog-cosignature v1 (Ed25519): a witness's statement that it verified a checkpoint.

Written from https://c2sp.org/tlog-cosignature ("Format" and "Ed25519 signed message"):

* a cosignature is a signed-note signature line ``— <name> base64(key ID || signature)``;
* the key ID is ``SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4]``;
* the signature is a ``timestamped_signature``: a big-endian u64 POSIX timestamp (at most
  2^63 - 1) followed by the 64-byte Ed25519 signature;
* the signed message is ``cosignature/v1\\n``, then ``time <timestamp>\\n`` (ASCII decimal
  without leading zeros), then the whole note body of the checkpoint (its final newline
  included, its signature lines not).

Cosigner keys are handed out as verifier keys with signature type 0x04,
``<name>+<hex key ID>+base64(0x04 || public key)``. A cosigner's private key is read from a
PEM PKCS#8 Ed25519 key (``openssl genpkey -algorithm ed25519``; the name is given apart) or
from a ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x04 || 32-byte seed)`` string, the signer
key form of golang.org/x/mod/sumdb/note with the cosignature type byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from verifier._internal.note import SIGNATURE_LINE_PREFIX, split_signed_note
from verifier.errors import NoteFormatError, NoteSignatureError, VerifierKeyError

__all__ = [
    "COSIGNATURE_HEADER",
    "COSIGNATURE_TYPE",
    "Cosigner",
    "CosignerKey",
    "add_signature_line",
    "cosignature_key_id",
    "cosigned_message",
    "verify_cosignature",
]

COSIGNATURE_TYPE = 0x04
"""The signature type byte of Ed25519 cosignatures (key IDs and verifier keys)."""

COSIGNATURE_HEADER = "cosignature/v1"
"""The header line of the signed message, for domain separation."""

MAX_TIMESTAMP = 2**63 - 1

_KEY_SIZE = 32
_SIGNATURE_SIZE = 64
_KEY_ID_SIZE = 4
_TIMESTAMP_SIZE = 8
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _canonical_b64(text: str) -> bytes | None:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == text else None


def cosignature_key_id(name: str, public_key: bytes) -> int:
    """``SHA-256(name || "\\n" || 0x04 || public key)[:4]`` as a big-endian integer."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_TYPE]) + public_key
    ).digest()
    return int.from_bytes(digest[:_KEY_ID_SIZE], "big")


def cosigned_message(note_text: str, timestamp: int) -> bytes:
    """The exact bytes a v1 cosignature signs: header line, time line, checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    if not note_text.endswith("\n"):
        raise ValueError("the cosigned note body must end with a newline")
    header = f"{COSIGNATURE_HEADER}\ntime {timestamp}\n"
    return header.encode("ascii") + note_text.encode("utf-8")


@dataclass(frozen=True)
class CosignerKey:
    """A witness's public key: name, key ID (type 0x04) and raw Ed25519 key."""

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise VerifierKeyError(f"key name {self.name!r} is empty or contains a space or '+'")
        if len(self.public_key) != _KEY_SIZE:
            raise VerifierKeyError(
                f"Ed25519 public key is {len(self.public_key)} bytes, expected {_KEY_SIZE}"
            )
        expected = cosignature_key_id(self.name, self.public_key)
        if self.key_id != expected:
            raise VerifierKeyError(
                f"cosigner key ID {self.key_id:08x} does not match name and public key "
                f"(expected {expected:08x})"
            )

    @classmethod
    def from_ed25519(cls, name: str, public_key: bytes) -> CosignerKey:
        return cls(name, cosignature_key_id(name, public_key), bytes(public_key))

    @classmethod
    def from_string(cls, vkey: str) -> CosignerKey:
        """Parse ``name+hex8keyid+base64(0x04 || 32-byte public key)``."""
        name, _, rest = vkey.partition("+")
        hex_id, _, encoded = rest.partition("+")
        if not _HEX8.fullmatch(hex_id):
            raise VerifierKeyError("cosigner key must be name+keyid+key with an 8-digit hex key ID")
        raw = _canonical_b64(encoded)
        if not raw:
            raise VerifierKeyError("cosigner key material is missing or not canonical base64")
        if raw[0] != COSIGNATURE_TYPE:
            raise VerifierKeyError(
                f"signature type 0x{raw[0]:02x} is not an Ed25519 cosignature key (0x04)"
            )
        return cls(name, int(hex_id, 16), raw[1:])

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([COSIGNATURE_TYPE]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{encoded}"


@dataclass(frozen=True)
class Cosigner:
    """A witness's signing key under its name."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise VerifierKeyError(
                f"witness name {self.name!r} is empty or contains a space or '+'"
            )

    @property
    def key(self) -> CosignerKey:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return CosignerKey.from_ed25519(self.name, raw)

    @classmethod
    def from_key_file(cls, data: bytes, name: str | None) -> Cosigner:
        """Load a PEM PKCS#8 Ed25519 key (``name`` required) or a ``PRIVATE+KEY+...`` string
        (``name``, if given, must be the one in the string)."""
        text = data.decode("utf-8", "replace").strip()
        if text.startswith(_PRIVATE_PREFIX):
            return cls._from_private_string(text, name)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise VerifierKeyError(
                "the witness key is neither an unencrypted PEM Ed25519 private key nor a "
                f"PRIVATE+KEY+name+keyid+key string ({error})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise VerifierKeyError("the witness key is not an Ed25519 key")
        if name is None:
            raise VerifierKeyError("a PEM witness key needs --witness-name")
        return cls(name, key)

    @classmethod
    def _from_private_string(cls, text: str, name: str | None) -> Cosigner:
        own_name, _, rest = text[len(_PRIVATE_PREFIX) :].partition("+")
        hex_id, _, encoded = rest.partition("+")  # base64 may hold '+' itself
        if not _HEX8.fullmatch(hex_id):
            raise VerifierKeyError("a private key string is PRIVATE+KEY+name+keyid+key")
        raw = _canonical_b64(encoded)
        if raw is None or len(raw) != 1 + _KEY_SIZE or raw[0] != COSIGNATURE_TYPE:
            raise VerifierKeyError(
                "the private key string does not hold base64(0x04 || 32-byte Ed25519 seed)"
            )
        if name is not None and name != own_name:
            raise VerifierKeyError(f"--witness-name {name!r} differs from the key's {own_name!r}")
        cosigner = cls(own_name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if cosigner.key.key_id != int(hex_id, 16):
            raise VerifierKeyError("the private key string's key ID does not match its key")
        return cosigner

    def private_key_string(self) -> str:
        """This key as ``PRIVATE+KEY+name+keyid+base64(0x04 || seed)`` (keep it secret)."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        encoded = base64.b64encode(bytes([COSIGNATURE_TYPE]) + seed).decode("ascii")
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key.key_id:08x}+{encoded}"

    def cosign(self, note_text: str, timestamp: int) -> str:
        """The cosignature line (with its newline) over a checkpoint's note body."""
        signature = self.private_key.sign(cosigned_message(note_text, timestamp))
        blob = (
            self.key.key_id.to_bytes(_KEY_ID_SIZE, "big")
            + timestamp.to_bytes(_TIMESTAMP_SIZE, "big")
            + signature
        )
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


def add_signature_line(note: bytes | str, line: str) -> str:
    """``note`` (a signed note) with ``line`` appended to its signature lines, once."""
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    split_signed_note(text)  # refuses anything that is not a signed note
    if not line.endswith("\n"):
        line += "\n"
    _body, _, block = text.rpartition("\n\n")
    if line in block.splitlines(keepends=True):
        return text
    return text + line


def verify_cosignature(note: bytes | str, key: CosignerKey) -> int:
    """Find ``key``'s cosignature on a signed checkpoint note, verify it and return its
    timestamp. No line for the key is ``NoteSignatureError``, as is a line that does not
    verify; a malformed note is ``NoteFormatError``."""
    text, signatures = split_signed_note(note)
    for signature in signatures:
        if (signature.name, signature.key_id) != (key.name, key.key_id):
            continue
        blob = signature.signature
        if len(blob) != _TIMESTAMP_SIZE + _SIGNATURE_SIZE:
            raise NoteFormatError(
                f"cosignature by {key.name} is {len(blob)} bytes after the key ID; a v1 "
                f"Ed25519 cosignature is {_TIMESTAMP_SIZE + _SIGNATURE_SIZE}"
            )
        timestamp = int.from_bytes(blob[:_TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            raise NoteFormatError(f"cosignature by {key.name} has a timestamp above 2^63-1")
        try:
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(
                blob[_TIMESTAMP_SIZE:], cosigned_message(text, timestamp)
            )
        except InvalidSignature:
            raise NoteSignatureError(
                f"cosignature by {key.name}+{key.key_id:08x} does not verify"
            ) from None
        return timestamp
    raise NoteSignatureError(f"the note carries no cosignature by {key.name}+{key.key_id:08x}")
