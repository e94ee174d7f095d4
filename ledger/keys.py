"""The ledger's Ed25519 checkpoint key and its C2SP signed-note identity.

C2SP signed-note: the key ID is the first four bytes of
``SHA-256(name || 0x0A || 0x01 || public key)`` (0x01 = the Ed25519 signature type), and the
verifier key is written ``name+hex(key ID)+base64(0x01 || public key)``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import ConfigurationError
from ledger.files import write_new_file

ED25519_SIGNATURE_TYPE = b"\x01"


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key ID for an Ed25519 key."""
    digest = hashlib.sha256(name.encode() + b"\n" + ED25519_SIGNATURE_TYPE + public_key)
    return digest.digest()[:4]


def check_key_name(name: str) -> None:
    """Key names are non-empty UTF-8 without spaces or '+' (C2SP signed-note)."""
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ConfigurationError(f"invalid signed-note key name {name!r}")


@dataclass(frozen=True)
class NoteKey:
    """An Ed25519 signing key under a signed-note name (the log origin)."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def verifier_key(self) -> str:
        """The C2SP verifier key string auditors pass to ``evidence-verify``."""
        encoded = base64.b64encode(ED25519_SIGNATURE_TYPE + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def sign(self, text: bytes) -> bytes:
        return self.private_key.sign(text)


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Read the PEM key at ``path``, or make one there (mode 0600) on first start."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise ConfigurationError(f"{path} is not a PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_new_file(path, pem, 0o600)
    except FileExistsError:  # another process made the key first: use theirs
        return load_or_create_private_key(path)
    return key
