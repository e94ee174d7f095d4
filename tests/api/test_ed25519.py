"""The apps' Ed25519 signatures: libsodium (the ledger) against OpenSSL (the verifier).

The ledger verifies with libsodium, the offline verifier with OpenSSL through
``cryptography``. An event the ledger stores must verify in the verifier: whatever
libsodium accepts, OpenSSL must accept too. These tests check that on RFC 8032's own
vectors and on every edge case of the encodings: points of small order (the curve's
torsion), non-canonical point encodings, keys of mixed order and scalars not reduced.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api import jws

# -- edwards25519, after RFC 8032 section 5.1 -------------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the prime order of the base point
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def _add(a: Point, b: Point) -> Point:
    """The complete addition law (RFC 8032 section 5.1.4): also doubles."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = t1 * 2 * D * t2 % P
    dd = z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(n: int, point: Point) -> Point:
    result = IDENTITY
    while n:
        if n & 1:
            result = _add(result, point)
        point = _add(point, point)
        n >>= 1
    return result


def _affine(point: Point) -> tuple[int, int]:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    return x * inverse % P, y * inverse % P


def _encode(point: Point) -> bytes:
    x, y = _affine(point)
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _from_y(y: int, sign: int) -> Point | None:
    """The point with this y and sign of x (RFC 8032 section 5.1.3), or None."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    if v * x * x % P != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _same(a: Point, b: Point) -> bool:
    return _affine(a) == _affine(b)


BASE = _from_y(4 * pow(5, -1, P) % P, 0)
assert BASE is not None


def _torsion() -> list[Point]:
    """The eight points of small order: multiples of a point of order 8."""
    y = 2
    while True:
        found = _from_y(y, 0)
        y += 1
        if found is None:
            continue
        eighth = _mul(L, found)  # kills the prime-order part
        if not _same(_mul(4, eighth), IDENTITY):
            return [_mul(i, eighth) for i in range(8)]


TORSION = _torsion()


def _small_order_encodings() -> list[bytes]:
    """Every encoding of a point of small order, canonical or not (14 in all, as libsodium's
    blocklist and the Ed25519 edge-case literature count them)."""
    encodings = {_encode(t) for t in TORSION}
    for t in TORSION:
        x, y = _affine(t)
        if y + P < 2**255:  # y written as y + p
            encodings.add((y + P | (x & 1) << 255).to_bytes(32, "little"))
        if x == 0:  # x = 0 written with the sign bit set ("-0")
            encodings.add((y | 1 << 255).to_bytes(32, "little"))
            if y + P < 2**255:
                encodings.add((y + P | 1 << 255).to_bytes(32, "little"))
    return sorted(encodings)


def _k(r: bytes, a: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


def _sign_as(secret: int, public: bytes, message: bytes, nonce: int) -> bytes:
    """A signature by ``secret`` under the encoded key ``public`` (which may not be
    ``secret``'s own point: that is how keys of mixed order are made to verify)."""
    r = _encode(_mul(nonce, BASE))
    s = (nonce + _k(r, public, message) * secret) % L
    return r + s.to_bytes(32, "little")


def _openssl(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- the tests ------------------------------------------------------------------------------

# RFC 8032 section 7.1, TEST 1, 2 and 3: (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    pk, sig, msg = bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message)
    assert jws.ed25519_verify(pk, sig, msg)
    assert jws.usable_public_key(pk)
    for i in range(64):  # any flipped bit is refused
        flipped = bytearray(sig)
        flipped[i] ^= 1 << secrets.randbelow(8)
        assert not jws.ed25519_verify(pk, bytes(flipped), msg)
    assert not jws.ed25519_verify(pk, sig, msg + b"\x00")
    assert not jws.ed25519_verify(pk[:31], sig, msg)
    assert not jws.ed25519_verify(pk, sig[:63], msg)


def test_the_curve_arithmetic_here_matches_rfc8032() -> None:
    """The helper above makes RFC 8032's own public key and signature (TEST 2)."""
    secret, public, message, signature = RFC8032[1]
    digest = hashlib.sha512(bytes.fromhex(secret)).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    assert _encode(_mul(scalar, BASE)).hex() == public
    nonce = int.from_bytes(hashlib.sha512(digest[32:] + bytes.fromhex(message)).digest(), "little")
    made = _sign_as(scalar, bytes.fromhex(public), bytes.fromhex(message), nonce % L)
    assert made.hex() == signature
    assert len(TORSION) == 8 and len(_small_order_encodings()) == 14


def test_libsodium_accepts_nothing_that_openssl_refuses() -> None:
    """Every combination of edge-case keys, commitments R and scalars S."""
    secret = secrets.randbelow(L - 1) + 1
    public = _encode(_mul(secret, BASE))
    eighth = next(t for t in TORSION if not _same(_mul(4, t), IDENTITY))
    mixed = _encode(_add(_mul(secret, BASE), eighth))
    message = b"ledger edge case"
    # A signature under the mixed-order key that passes the cofactorless equation:
    # it does when 8 divides k, so try nonces until it does.
    while True:
        nonce = secrets.randbelow(L)
        passing = _sign_as(secret, mixed, message, nonce)
        if _k(passing[:32], mixed, message) % 8 == 0:
            break
    honest = _sign_as(secret, public, message, secrets.randbelow(L))
    small = _small_order_encodings()
    keys = [*small, public, mixed]
    commitments = [*small, honest[:32], passing[:32], _encode(BASE)]
    scalars = [0, 1, L, L + 1, 2**253, int.from_bytes(honest[32:], "little")]
    scalars += [int.from_bytes(passing[32:], "little")]
    scalars += [s + L for s in scalars[-2:]]  # the same, not reduced: never canonical

    both = sodium_only = openssl_only = 0
    for key, r, s in itertools.product(keys, commitments, scalars):
        if s >= 2**256:
            continue
        signature = r + s.to_bytes(32, "little")
        sodium = jws.ed25519_verify(key, signature, message)
        openssl = _openssl(key, signature, message)
        assert openssl or not sodium, (key.hex(), signature.hex())
        both += sodium and openssl
        sodium_only += sodium and not openssl
        openssl_only += openssl and not sodium
    assert sodium_only == 0
    # Not vacuous: the honest signature, the mixed-order one, and OpenSSL's wider set.
    assert jws.ed25519_verify(public, honest, message)
    assert jws.ed25519_verify(mixed, passing, message) and _openssl(mixed, passing, message)
    assert both >= 2
    # OpenSSL accepts signatures under keys of small order (any message verifies under the
    # identity with R = [S]B): libsodium refuses those keys.
    identity = _encode(IDENTITY)
    forged = _encode(BASE) + (1).to_bytes(32, "little")
    assert _openssl(identity, forged, b"any message at all")
    assert not jws.ed25519_verify(identity, forged, b"any message at all")
    assert openssl_only >= 1


def test_only_keys_a_signer_can_hold_are_usable() -> None:
    secret = secrets.randbelow(L - 1) + 1
    eighth = next(t for t in TORSION if not _same(_mul(4, t), IDENTITY))
    assert jws.usable_public_key(_encode(_mul(secret, BASE)))
    for encoding in _small_order_encodings():
        assert not jws.usable_public_key(encoding)
    assert not jws.usable_public_key(_encode(_add(_mul(secret, BASE), eighth)))  # mixed order
    y = 2
    while _from_y(y, 0) is not None:  # a y with no point on the curve
        y += 1
    assert not jws.usable_public_key(y.to_bytes(32, "little"))
    assert not jws.usable_public_key(b"\x01" * 31)
