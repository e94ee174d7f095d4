"""App signatures: JWS (RFC 7515) with EdDSA (RFC 8037) over the RFC 8785 form of the body.

An app sends its JSON body as usual and, in the ``JWS-Signature`` header, a compact JWS
with a detached payload (RFC 7515 appendix F): ``BASE64URL(header)..BASE64URL(signature)``.
The payload it signed is the RFC 8785 (JCS) canonical form of the body, so any JSON
serialisation of the same body verifies. The protected header must be
``{"alg": "EdDSA", "kid": KEY_ID}`` (other members are allowed and signed too).

The ledger keeps the attached form ``header.payload.signature`` in the event's
``app_signature.value``: any stock JWS library verifies it with the app's public key and
gets back exactly what the app sent. See ``docs/api.md`` for signing in a few lines.

Signatures are checked with libsodium (through PyNaCl), which verifies Ed25519 about twice
as fast as OpenSSL and accepts a subset of what OpenSSL accepts: it also refuses keys and
commitments of small order and non-canonical keys (decision 0009). The verifier checks the
same signatures again with OpenSSL (``cryptography``), an independent implementation.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import rfc8785
from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import CryptoError

HEADER = "JWS-Signature"
ALGORITHM = "EdDSA"
MAX_HEADER_BYTES = 1024


class SignatureError(ValueError):
    """The signature is missing, malformed or does not verify; the message says which."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    if not _B64URL_TEXT.fullmatch(text):
        raise SignatureError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("not base64url") from exc


_B64URL_TEXT = re.compile(r"[A-Za-z0-9_-]+")


def canonical_body(body: Any) -> bytes:
    """The RFC 8785 bytes an app signs for ``body`` (floats are refused, as in events)."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS) if _plain(body) else rfc8785.dumps(body)


def _plain(value: Any) -> bool:
    """True when orjson's sorted output is exactly RFC 8785 (see decision 0004)."""
    # Loops, not ``all()`` over generators: this walks every signed body.
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not (k.isascii() or max(k, default="") < "\ud800"):
                return False
            if not _plain(v):
                return False
        return True
    if isinstance(value, list):
        for v in value:  # noqa: SIM110 (see above)
            if not _plain(v):
                return False
        return True
    if isinstance(value, float):
        raise SignatureError("signed bodies may not contain floats; send decimals as strings")
    return True


@dataclass(frozen=True)
class DetachedJws:
    """A parsed ``JWS-Signature`` header: its protected header and signature bytes."""

    protected: str
    kid: str
    signature: bytes

    def attached(self, payload: bytes) -> str:
        """The compact serialisation with the payload in place, as kept in the event."""
        return f"{self.protected}.{b64url(payload)}.{b64url(self.signature)}"


def parse(header_value: str | None) -> DetachedJws:
    """Parse the header; raise :class:`SignatureError` saying what is wrong."""
    if not header_value:
        raise SignatureError(f"the {HEADER} header is missing: every event body must be signed")
    if len(header_value) > MAX_HEADER_BYTES:
        raise SignatureError(f"the {HEADER} header is longer than {MAX_HEADER_BYTES} bytes")
    parts = header_value.strip().split(".")
    if len(parts) != 3 or parts[1] != "":
        raise SignatureError(f"{HEADER} must be a detached compact JWS: header..signature")
    protected, _, signature = parts
    kid = _kid(protected)
    raw = b64url_decode(signature)
    if len(raw) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    return DetachedJws(protected, kid, raw)


@lru_cache(maxsize=256)
def _kid(protected: str) -> str:
    """The key id of a protected header, checked (cached: an app sends the same one often)."""
    if len(protected) > MAX_HEADER_BYTES:
        raise SignatureError("the JWS protected header is too long")
    try:
        header = orjson.loads(b64url_decode(protected))
    except orjson.JSONDecodeError as exc:
        raise SignatureError("the JWS protected header is not JSON") from exc
    if not isinstance(header, dict):
        raise SignatureError("the JWS protected header is not a JSON object")
    if header.get("alg") != ALGORITHM:
        raise SignatureError(f"the JWS alg must be {ALGORITHM}, not {header.get('alg')!r}")
    if "crit" in header:
        raise SignatureError("the JWS has critical extensions this ledger does not know")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 128 or not kid.isprintable():
        # Printable: a key id is a name, and PostgreSQL text cannot hold a NUL.
        raise SignatureError("the JWS header needs a kid naming the app's registered key")
    return kid


def usable_public_key(public_key: bytes) -> bool:
    """True for the encoding of an Ed25519 key a signer can have: 32 bytes, a canonical point
    on the curve in the prime-order subgroup (not of small or mixed order)."""
    return len(public_key) == 32 and crypto_core_ed25519_is_valid_point(public_key)


def verify(jws: DetachedJws, payload: bytes, public_key: bytes) -> None:
    """Check the signature over ``payload``; raise :class:`SignatureError` if it fails."""
    signing_input = f"{jws.protected}.{b64url(payload)}".encode()
    if not ed25519_verify(public_key, jws.signature, signing_input):
        raise SignatureError(f"the signature does not verify with key {jws.kid!r}")


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """RFC 8032 Ed25519 verification by libsodium, which releases the GIL meanwhile."""
    if len(public_key) != 32 or len(signature) != 64:
        return False  # libsodium reads exactly 32 and 64 bytes from these
    try:
        crypto_sign_open(signature + message, public_key)
    except CryptoError:
        return False
    return True
