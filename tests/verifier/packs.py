"""Making evidence packs for the verifier's tests, and tampering with copies of them.

Packs are made the real way (``evidence.demo.run_story`` then ``evidence.pack.export_pack``);
the verifier itself never imports this module. Tampering works on the members in memory:
change one thing, optionally re-hash and re-chain the events, then write the ZIP with the
manifest's ``files`` (and ``events`` summary) rewritten to match, so that only the step the
test aims at can object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from verifier import VerifierKey
from verifier.pack import PackReport, verify_pack


@dataclass
class Anchors:
    """What an auditor hands the verifier."""

    ledger_keys: list[VerifierKey]
    trust_roots: list[x509.Certificate]
    tsa_roots: list[x509.Certificate]
    app_keys: dict[str, Any] | None = None

    def verify(self, path: Path, **changes: Any) -> PackReport:
        arguments: dict[str, Any] = {
            "ledger_keys": self.ledger_keys,
            "trust_roots": self.trust_roots,
            "tsa_roots": self.tsa_roots,
            "app_keys": self.app_keys,
        }
        arguments.update(changes)
        return verify_pack(path, **arguments)


def read_pack(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def manifest_of(members: dict[str, bytes]) -> dict[str, Any]:
    value = json.loads(members["manifest.json"])
    assert isinstance(value, dict)
    return value


def refresh_manifest(members: dict[str, bytes]) -> None:
    """Rewrite the manifest's ``files`` and ``events`` summary to match the members."""
    manifest = manifest_of(members)
    manifest["files"] = [
        {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in sorted(members.items())
        if name != "manifest.json"
    ]
    lines = [json.loads(line) for line in members.get("events.jsonl", b"").splitlines()]
    if lines:
        manifest["events"].update(
            count=len(lines), first_leaf=lines[0]["leaf_index"], last_leaf=lines[-1]["leaf_index"]
        )
    members["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"


def write_pack(
    members: dict[str, bytes] | Iterable[tuple[str, bytes]],
    path: Path,
    *,
    refresh: bool = True,
) -> Path:
    """Write a ZIP; with ``refresh`` the manifest is made consistent with the members."""
    if isinstance(members, dict):
        if refresh:
            refresh_manifest(members)
        items: Iterable[tuple[str, bytes]] = members.items()
    else:
        items = members
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in items:
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 22, 0, 0, 0))
            archive.writestr(info, data)
    return path


# -- events ------------------------------------------------------------------------------------


@dataclass
class Line:
    leaf_index: int
    event_hash: str
    envelope: dict[str, Any]
    canonical: bytes = field(default=b"")


def events_of(members: dict[str, bytes]) -> list[Line]:
    out = []
    for raw in members["events.jsonl"].splitlines():
        line = json.loads(raw)
        canonical = base64.b64decode(line["canonical"])
        out.append(Line(line["leaf_index"], line["event_hash"], json.loads(canonical), canonical))
    return out


def leaf_hex(canonical: bytes) -> str:
    return hashlib.sha256(b"\x00" + canonical).hexdigest()


def set_events(
    members: dict[str, bytes],
    lines: list[Line],
    *,
    rehash: bool = True,
    rechain: bool = True,
    encode: Callable[[dict[str, Any]], bytes] = rfc8785.dumps,
) -> None:
    """Write ``lines`` back to ``events.jsonl``: each envelope re-encoded (RFC 8785 unless
    ``encode`` says otherwise); with ``rehash`` each ``event_hash`` recomputed, with
    ``rechain`` each ``prev`` relinked to the previous line's hash first."""
    previous: str | None = None
    out = []
    for line in lines:
        if rechain:
            line.envelope["prev"] = previous
        line.canonical = encode(line.envelope)
        if rehash:
            line.event_hash = leaf_hex(line.canonical)
        previous = line.event_hash
        out.append(
            json.dumps(
                {
                    "leaf_index": line.leaf_index,
                    "event_hash": line.event_hash,
                    "canonical": base64.b64encode(line.canonical).decode(),
                },
                separators=(",", ":"),
            ).encode()
        )
    members["events.jsonl"] = b"\n".join(out) + b"\n"


# -- keys and certificates ---------------------------------------------------------------------


def ed25519_vkey(name: str) -> tuple[ed25519.Ed25519PrivateKey, VerifierKey]:
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, VerifierKey.from_ed25519(name, raw)


def sign_note(text: str, name: str, private: ed25519.Ed25519PrivateKey, key: VerifierKey) -> bytes:
    """A C2SP signed note of ``text`` with one Ed25519 signature."""
    signature = private.sign(text.encode())
    blob = base64.b64encode(key.key_id.to_bytes(4, "big") + signature).decode()
    return f"{text}\n\u2014 {name} {blob}\n".encode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def tsa_without_eku() -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    """A test root and a TSA certificate it issued with no extended key usage at all."""
    now = datetime.now(UTC)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("Test TSA Root"))
        .issuer_name(_name("Test TSA Root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name("Test TSA without timeStamping EKU"))
        .issuer_name(root.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return root, tsa, tsa_key


def timestamp_response(
    data: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey, chain: list[x509.Certificate]
) -> bytes:
    """A granted RFC 3161 TimeStampResp over SHA-256(data) signed with ``cert``/``key``."""
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    def asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))

    der_key = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    stamper = DummyTimeStamper(
        tsa_cert=asn1(cert),
        tsa_key=asn1_keys.PrivateKeyInfo.load(der_key),
        certs_to_embed=SimpleCertificateStore.from_certs([asn1(c) for c in chain]),
    )
    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "nonce": uuid.uuid4().int >> 64,
            "cert_req": True,
        }
    )
    return bytes(stamper.request_tsa_response(request).dump())


def failed_steps(report: PackReport) -> set[int]:
    return {step.number for step in report.steps if step.verdict.value == "FAILED"}
