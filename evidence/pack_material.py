"""What an evidence pack carries besides the log: certificates, revocation data, app keys.

Everything here is read from evidence already held: the certificates and revocation data
inside the signed PDFs (their CMS signatures, signature timestamps and document security
store), the certificates inside the checkpoints' RFC 3161 tokens, the trust roots the
ledger is configured with, and the upstream apps' registered public keys. Nothing is
fetched from the network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.dss import DocumentSecurityStore

from ledger.store import LedgerStore

logger = logging.getLogger(__name__)

__all__ = [
    "PdfMaterial",
    "SignatureFacts",
    "app_keys_jwks",
    "certificate_chain",
    "pdf_material",
    "pem",
    "token_certificates",
]


@dataclass(frozen=True)
class SignatureFacts:
    """One signature of a signed PDF, as read from the PDF itself."""

    field_name: str
    signer: x509.Certificate
    """The signer's certificate."""
    signing_time: datetime | None
    """The time the signer claims (CMS signingTime); not proof of anything."""
    tsa_time: datetime | None
    """genTime of the signature timestamp token, if the signature has one."""


@dataclass
class PdfMaterial:
    """Certificates and revocation data found in one PDF."""

    signatures: list[SignatureFacts] = field(default_factory=list)
    signer_certificates: list[x509.Certificate] = field(default_factory=list)
    """Every certificate the PDF's signatures carry (CMS certificates and the DSS)."""
    tsa_certificates: list[x509.Certificate] = field(default_factory=list)
    """Certificates inside signature and document timestamp tokens."""
    crls: list[bytes] = field(default_factory=list)
    ocsp_responses: list[bytes] = field(default_factory=list)


def _from_asn1(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _cms_certificates(signed_data: Any) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for choice in signed_data["certificates"] or ():
        if choice.name == "certificate":
            out.append(_from_asn1(choice.chosen))
    return out


def _timestamp_token(signer_info: Any) -> Any | None:
    """The signature timestamp token (a CMS ContentInfo) of a CMS signer, if any."""
    for attribute in signer_info["unsigned_attrs"] or ():
        if attribute["type"].native == "signature_time_stamp_token":
            return attribute["values"][0]
    return None


def _gen_time(token: Any) -> datetime | None:
    content = token["content"]["encap_content_info"]["content"].parsed
    value = content["gen_time"].native
    return value if isinstance(value, datetime) else None


def pdf_material(data: bytes) -> PdfMaterial:
    """The certificates, signatures and revocation data inside a signed PDF."""
    material = PdfMaterial()
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    for sig in reader.embedded_regular_signatures:
        material.signer_certificates.extend(_cms_certificates(sig.signed_data))
        token = _timestamp_token(sig.signer_info)
        tsa_time = None
        if token is not None:
            material.tsa_certificates.extend(_cms_certificates(token["content"]))
            tsa_time = _gen_time(token)
        material.signatures.append(
            SignatureFacts(
                field_name=str(sig.field_name),
                signer=_from_asn1(sig.signer_cert),
                signing_time=sig.self_reported_timestamp,
                tsa_time=tsa_time,
            )
        )
    for stamp in reader.embedded_timestamp_signatures:
        material.tsa_certificates.extend(_cms_certificates(stamp.signed_data))
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except Exception:  # pyHanko raises NoDSSFoundError (and others on odd files): no DSS
        dss = None
    if dss is not None:
        material.signer_certificates.extend(_from_asn1(c) for c in dss.load_certs())
        material.crls.extend(c.dump() for c in getattr(dss, "crls", None) or ())
        material.ocsp_responses.extend(o.dump() for o in getattr(dss, "ocsps", None) or ())
    return material


def token_certificates(response_der: bytes) -> list[x509.Certificate]:
    """The certificates inside an RFC 3161 ``TimeStampResp`` (the TSA's, usually)."""
    response = tsp.TimeStampResp.load(response_der)
    token = response["time_stamp_token"]
    if not isinstance(token, cms.ContentInfo) or token["content"] is None:
        return []
    return _cms_certificates(token["content"])


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def unique(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates without repeats, in first-seen order."""
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certificates:
        der = _fingerprint(cert)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


def certificate_chain(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """``leaf`` then each issuer found in ``pool`` by name and signature, up to a root.

    This only orders certificates for people and verifiers; it trusts nothing.
    """
    chain = [leaf]
    seen = {_fingerprint(leaf)}
    current = leaf
    while current.issuer != current.subject:
        issuer = None
        for candidate in pool:
            if candidate.subject != current.issuer or _fingerprint(candidate) in seen:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except Exception:  # wrong key, unsupported algorithm: not this issuer
                logger.debug("certificate %s did not issue %s", candidate.subject, current.subject)
                continue
            issuer = candidate
            break
        if issuer is None:
            break
        chain.append(issuer)
        seen.add(_fingerprint(issuer))
        current = issuer
    return chain


def pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """PEM blocks, one after the other."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def der_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cert_sha256(cert: x509.Certificate) -> str:
    return der_sha256(_fingerprint(cert))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_keys_jwks(store: LedgerStore, task_id: UUID) -> dict[str, Any] | None:
    """The task's tenant's registered app keys as a JWK Set, or ``None`` if there are none.

    Reads the HTTP API's tenancy tables with plain SQL (the evidence package does not import
    the API); a ledger that never served the API has no such tables, and gets ``None``.
    """
    from projections.database import database_for

    database = database_for(store)
    try:
        owner = database.query(
            "SELECT tenant_id FROM api_streams WHERE stream_id = ?", (str(task_id),)
        )
        if not owner:
            return None
        rows = database.query(
            "SELECT kid, app_id, public_key, created_at, revoked_at FROM api_app_keys "
            "WHERE tenant_id = ? ORDER BY created_at, kid",
            (owner[0][0],),
        )
    except Exception as exc:  # no tenancy tables: a ledger used without the HTTP API
        logger.debug("no app keys for task %s: %s", task_id, exc)
        return None
    finally:
        database.close()
    if not rows:
        return None
    keys = [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(bytes(public_key)),
            "kid": str(kid),
            "alg": "EdDSA",
            "use": "sig",
            "app_id": str(app_id),
            "registered_at": str(created_at),
            "revoked_at": None if revoked_at is None else str(revoked_at),
        }
        for kid, app_id, public_key, created_at, revoked_at in rows
    ]
    return {"keys": keys}
