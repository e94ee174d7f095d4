"""Compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), verification only.

An event's ``app_signature.value`` is ``BASE64URL(header).BASE64URL(payload).BASE64URL(sig)``
with the payload attached; the signature is over the ASCII of ``header.payload``. Keys come
as JWKs ``{"kty": "OKP", "crv": "Ed25519", "x": ...}`` (RFC 8037 section 2).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["JwsError", "VerifiedJws", "public_key_from_jwk", "verify_compact_jws"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class JwsError(Exception):
    """The JWS is malformed or does not verify; ``str(error)`` says which."""


def _b64url(text: str, what: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JwsError(f"the JWS {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwsError(f"the JWS {what} is not base64url") from None


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 public key of an OKP JWK, or ``JwsError``."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise JwsError(f"key {jwk.get('kid')!r} is not an OKP Ed25519 JWK")
    x = jwk.get("x")
    raw = _b64url(x, "key") if isinstance(x, str) else b""
    if len(raw) != 32:
        raise JwsError(f"key {jwk.get('kid')!r} does not hold a 32-byte Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class VerifiedJws:
    header: dict[str, Any]
    payload: bytes


def verify_compact_jws(value: str, key: Ed25519PublicKey) -> VerifiedJws:
    """Verify an attached compact JWS with ``alg: EdDSA``; return its header and payload."""
    parts = value.split(".")
    if len(parts) != 3:
        raise JwsError("the JWS is not in compact form (three dot-separated parts)")
    header_b64, payload_b64, signature_b64 = parts
    if not payload_b64:
        raise JwsError("the JWS payload is detached; the event must carry it attached")
    try:
        header = json.loads(_b64url(header_b64, "header"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JwsError("the JWS protected header is not JSON") from None
    if not isinstance(header, dict):
        raise JwsError("the JWS protected header is not a JSON object")
    if header.get("alg") != "EdDSA":
        raise JwsError(f"the JWS algorithm is {header.get('alg')!r}, not 'EdDSA'")
    if "crit" in header:
        raise JwsError("the JWS has critical header parameters this verifier does not know")
    payload = _b64url(payload_b64, "payload")
    signature = _b64url(signature_b64, "signature")
    try:
        key.verify(signature, f"{header_b64}.{payload_b64}".encode("ascii"))
    except InvalidSignature:
        raise JwsError("the JWS signature does not verify with the app's key") from None
    return VerifiedJws(header, payload)
