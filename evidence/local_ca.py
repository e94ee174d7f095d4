"""The embedded default's signing CA: a local root that issues each signer a certificate.

A signer's certificate binds the identity the workflow verified (name, organisation, email
or phone, and the ledger's stable signer id). Every private key, the CA's and each signer's,
is stored only as encrypted PKCS#8 (mode 0600) under a passphrase, so signature-creation data
is never on disk in clear (PRC ESL art. 13, eIDAS art. 26 "sole control" as far as a
server-held key can go). The root is named as local: it is trusted only by whoever is handed
its certificate, and is not a qualified trust service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from pyhanko.sign.signers import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from evidence.errors import CertificateAuthorityError
from ledger.files import creation_lock, write_new_file

__all__ = [
    "CA_COMMON_NAME",
    "IssuedSigner",
    "LocalCertificateAuthority",
    "SignerIdentity",
]

logger = logging.getLogger(__name__)

CA_COMMON_NAME: Final = "Evidence Ledger Local Signing CA (not a qualified trust service)"
CA_ORGANIZATION: Final = "Evidence Ledger local"
CA_VALIDITY: Final = timedelta(days=3653)
SIGNER_VALIDITY: Final = timedelta(days=730)

CA_KEY_FILE: Final = "signing-ca.key.pem"
CA_CERT_FILE: Final = "signing-ca.cert.pem"
SIGNERS_DIR: Final = "signers"
SIGNER_KEY_FILE: Final = "signer.key.pem"
SIGNER_CERT_FILE: Final = "signer.cert.pem"
SIGNER_IDENTITY_FILE: Final = "identity.json"

#: RFC 9336 id-kp-documentSigning.
DOCUMENT_SIGNING_EKU: Final = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: What X.520 serialNumber (a PrintableString of at most 64 characters) can hold.
_SIGNER_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]{1,64}")
_PHONE_PATTERN: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_CLOCK_SKEW: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class SignerIdentity:
    """Who a certificate is issued to: the identity the workflow verified before signing."""

    #: The ledger's stable id of the signer; goes into the subject's serialNumber, so it is
    #: limited to PrintableString characters (letters, digits, ``-.:/+=()?,'`` and space).
    signer_id: str
    #: The signer's name as verified, e.g. ``陈小明``; the certificate's commonName.
    name: str
    #: The organisation the signer signs for; the certificate's organizationName.
    organisation: str
    #: Verified email address (emailAddress and an rfc822Name SAN), if any.
    email: str | None = None
    #: Verified phone number in E.164 form, if any; a ``tel:`` URI in the SAN (RFC 3966).
    phone: str | None = None

    def __post_init__(self) -> None:
        for field_name in ("signer_id", "name", "organisation"):
            if not getattr(self, field_name).strip():
                raise ValueError(f"SignerIdentity.{field_name} must not be empty")
        if not (self.email or self.phone):
            raise ValueError("SignerIdentity needs a verified email or phone")
        if not _SIGNER_ID_PATTERN.fullmatch(self.signer_id):
            raise ValueError("SignerIdentity.signer_id must be 1-64 PrintableString characters")
        if self.phone is not None and not _PHONE_PATTERN.fullmatch(self.phone):
            raise ValueError("SignerIdentity.phone must be in E.164 form, e.g. +85212345678")

    def fingerprint(self) -> str:
        """A stable hex digest of the whole identity: same identity, same certificate."""
        canonical = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedSigner:
    """A signer's certificate and chain, plus where its encrypted key lives."""

    identity: SignerIdentity
    certificate: x509.Certificate
    #: Issuer certificates, the local root last (the signer certificate is not included).
    chain: tuple[x509.Certificate, ...]
    key_path: Path

    def simple_signer(self, passphrase: bytes) -> SimpleSigner:
        """Decrypt the key with ``passphrase`` and wrap it for pyHanko; fails on a wrong one."""
        key = _load_encrypted_key(self.key_path, passphrase)
        key_info = asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return SimpleSigner(
            signing_cert=_to_asn1(self.certificate),
            signing_key=key_info,
            cert_registry=SimpleCertificateStore.from_certs([_to_asn1(c) for c in self.chain]),
        )


class LocalCertificateAuthority:
    """A local root CA whose encrypted key issues per-signer certificates."""

    def __init__(
        self,
        directory: Path,
        certificate: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        passphrase: bytes,
    ) -> None:
        """Use :meth:`load_or_create`; this only wires already-checked parts together."""
        self._directory = directory
        self._certificate = certificate
        self._key = key
        self._passphrase = passphrase

    @classmethod
    def load_or_create(cls, directory: Path, passphrase: bytes) -> LocalCertificateAuthority:
        """Reload the CA under ``directory``, making it on first start (all or nothing)."""
        directory = Path(directory)
        if not passphrase:
            raise CertificateAuthorityError("the local CA needs a non-empty passphrase")
        if all((directory / p).exists() for p in (CA_KEY_FILE, CA_CERT_FILE)):
            return cls.load(directory, passphrase)  # no lock: the directory may be read-only
        with creation_lock(directory):  # server workers start at once
            present = [p for p in (CA_KEY_FILE, CA_CERT_FILE) if (directory / p).exists()]
            if len(present) == 1:
                raise CertificateAuthorityError(
                    f"{directory} holds only {present[0]} of a local signing CA; refusing to "
                    "replace it, as signatures may already rely on its root"
                )
            if not present:
                _create_ca(directory, passphrase)
        return cls.load(directory, passphrase)

    @classmethod
    def load(cls, directory: Path, passphrase: bytes) -> LocalCertificateAuthority:
        """Load an existing CA, decrypting its key and checking it matches the certificate."""
        directory = Path(directory)
        try:
            cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
        except (OSError, ValueError) as exc:
            raise CertificateAuthorityError(
                f"cannot load {directory / CA_CERT_FILE}: {exc}"
            ) from exc
        key = _load_encrypted_key(directory / CA_KEY_FILE, passphrase)
        if key.public_key() != cert.public_key():
            raise CertificateAuthorityError(f"{directory / CA_KEY_FILE} does not match its cert")
        return cls(directory, cert, key, passphrase)

    @property
    def root_certificate(self) -> x509.Certificate:
        """The local root: the trust anchor for signatures made with issued certificates."""
        return self._certificate

    def issue_signer(self, identity: SignerIdentity) -> IssuedSigner:
        """The signer's certificate for ``identity``, issued now or reused if already issued."""
        signer_dir = self._directory / SIGNERS_DIR / identity.fingerprint()
        existing = self._load_signer(signer_dir, identity)
        if existing is not None:
            return existing
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build_signer_certificate(identity, key.public_key())
        files = {
            SIGNER_KEY_FILE: (_encrypted_pem(key, self._passphrase), 0o600),
            SIGNER_CERT_FILE: (cert.public_bytes(serialization.Encoding.PEM), 0o644),
            SIGNER_IDENTITY_FILE: (
                json.dumps(asdict(identity), ensure_ascii=False, indent=2).encode(),
                0o644,
            ),
        }
        _install_directory(signer_dir, files)
        logger.info("issued a signer certificate for %s", identity.signer_id)
        loaded = self._load_signer(signer_dir, identity)
        assert loaded is not None
        return loaded

    def _load_signer(self, signer_dir: Path, identity: SignerIdentity) -> IssuedSigner | None:
        if not (signer_dir / SIGNER_CERT_FILE).exists():
            return None
        try:
            stored = json.loads((signer_dir / SIGNER_IDENTITY_FILE).read_text())
            cert = x509.load_pem_x509_certificate((signer_dir / SIGNER_CERT_FILE).read_bytes())
        except (OSError, ValueError) as exc:
            raise CertificateAuthorityError(f"cannot load signer in {signer_dir}: {exc}") from exc
        if stored != asdict(identity):
            raise CertificateAuthorityError(f"{signer_dir} holds another identity")
        try:
            cert.verify_directly_issued_by(self._certificate)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateAuthorityError(f"{signer_dir} was not issued by this CA") from exc
        if cert.not_valid_after_utc <= datetime.now(UTC):
            return None  # expired: the caller issues a fresh one over it
        return IssuedSigner(identity, cert, (self._certificate,), signer_dir / SIGNER_KEY_FILE)

    def _build_signer_certificate(
        self, identity: SignerIdentity, public_key: ec.EllipticCurvePublicKey
    ) -> x509.Certificate:
        now = datetime.now(UTC).replace(microsecond=0)
        attributes = [
            x509.NameAttribute(NameOID.COMMON_NAME, identity.name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.organisation),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, identity.signer_id),
        ]
        san: list[x509.GeneralName] = []
        if identity.email:
            attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, identity.email))
            san.append(x509.RFC822Name(identity.email))
        if identity.phone:
            san.append(x509.UniformResourceIdentifier(f"tel:{identity.phone}"))
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + SIGNER_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signer=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([DOCUMENT_SIGNING_EKU, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self._key, hashes.SHA256())


def _create_ca(directory: Path, passphrase: bytes) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signer=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    # Key first, certificate last: a crash in between leaves a state load_or_create refuses.
    directory.mkdir(parents=True, exist_ok=True)
    write_new_file(directory / CA_KEY_FILE, _encrypted_pem(key, passphrase), 0o600)
    write_new_file(directory / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("created local signing CA in %s", directory)


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signer,
        content_commitment=signer,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signer,
        crl_sign=not signer,
        encipher_only=False,
        decipher_only=False,
    )


def _encrypted_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def _load_encrypted_key(path: Path, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (OSError, ValueError, TypeError) as exc:
        raise CertificateAuthorityError(
            f"cannot decrypt {path} (wrong passphrase, or not an encrypted key): {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateAuthorityError(f"{path} is not an EC key")
    return key


def _install_directory(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Make the fresh signer ``directory`` with ``files``: staged beside it, then one rename."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for name, (content, mode) in files.items():
            write_new_file(staging / name, content, mode)
        if directory.exists():
            # An expired signer certificate is replaced; the old files are kept beside it.
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            directory.rename(directory.with_name(f"{directory.name}.expired-{stamp}"))
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
