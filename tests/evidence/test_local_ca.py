"""The local signing CA: encrypted keys, certificates bound to the verified identity, reloads.

Invariant pinned: no private key is ever written in clear (PRC ESL art. 13 "sole control").
"""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evidence.errors import CertificateAuthorityError, EvidenceError
from evidence.local_ca import (
    CA_CERT_FILE,
    CA_COMMON_NAME,
    CA_KEY_FILE,
    DOCUMENT_SIGNING_EKU,
    LocalCertificateAuthority,
    SignerIdentity,
)

PASSPHRASE = b"correct horse battery staple"
CHEN = SignerIdentity(
    signer_id="user-0001", name="陈小明", organisation="采购部", email="xiaoming@example.com"
)
SUPPLIER = SignerIdentity(
    signer_id="ext-42", name="Alice Supplier", organisation="Supplier Ltd", phone="+85291234567"
)


@pytest.fixture
def ca(tmp_path: Path) -> LocalCertificateAuthority:
    return LocalCertificateAuthority.load_or_create(tmp_path / "ca", PASSPHRASE)


def test_every_private_key_is_encrypted_pkcs8_with_mode_0600(
    ca: LocalCertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue_signer(CHEN)
    for key_path in (tmp_path / "ca" / CA_KEY_FILE, issued.key_path):
        pem = key_path.read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(pem, password=None)
        serialization.load_pem_private_key(pem, password=PASSPHRASE)


def test_wrong_passphrase_is_refused(ca: LocalCertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_signer(CHEN)
    with pytest.raises(CertificateAuthorityError):
        LocalCertificateAuthority.load_or_create(tmp_path / "ca", b"wrong")
    with pytest.raises(EvidenceError):
        issued.simple_signer(b"wrong")
    assert issued.simple_signer(PASSPHRASE).signing_cert is not None


def test_root_is_named_as_local_and_is_a_ca(ca: LocalCertificateAuthority) -> None:
    root = ca.root_certificate
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    assert "not a qualified trust service" in CA_COMMON_NAME
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_signer_certificate_binds_the_verified_identity(ca: LocalCertificateAuthority) -> None:
    issued = ca.issue_signer(CHEN)
    cert = issued.certificate

    def subject(oid: x509.ObjectIdentifier) -> str:
        return str(cert.subject.get_attributes_for_oid(oid)[0].value)

    assert subject(NameOID.COMMON_NAME) == "陈小明"
    assert subject(NameOID.ORGANIZATION_NAME) == "采购部"
    assert subject(NameOID.SERIAL_NUMBER) == "user-0001"
    assert subject(NameOID.EMAIL_ADDRESS) == "xiaoming@example.com"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["xiaoming@example.com"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert DOCUMENT_SIGNING_EKU in eku and ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=729) < lifetime < timedelta(days=731)
    cert.verify_directly_issued_by(ca.root_certificate)
    assert issued.chain == (ca.root_certificate,)


def test_phone_only_signer_gets_a_tel_uri(ca: LocalCertificateAuthority) -> None:
    cert = ca.issue_signer(SUPPLIER).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["tel:+85291234567"]
    assert not cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)


def test_reload_keeps_the_same_ca_and_reuses_issued_signers(
    ca: LocalCertificateAuthority, tmp_path: Path
) -> None:
    first = ca.issue_signer(CHEN)
    reloaded = LocalCertificateAuthority.load_or_create(tmp_path / "ca", PASSPHRASE)
    assert reloaded.root_certificate == ca.root_certificate
    again = reloaded.issue_signer(CHEN)
    assert again.certificate == first.certificate
    assert again.key_path == first.key_path
    other = reloaded.issue_signer(SUPPLIER)
    assert other.certificate.serial_number != first.certificate.serial_number
    fingerprint = ca.root_certificate.fingerprint(hashes.SHA256())
    assert reloaded.root_certificate.fingerprint(hashes.SHA256()) == fingerprint


def test_half_made_ca_is_refused_not_replaced(tmp_path: Path) -> None:
    LocalCertificateAuthority.load_or_create(tmp_path / "ca", PASSPHRASE)
    (tmp_path / "ca" / CA_CERT_FILE).unlink()
    with pytest.raises(CertificateAuthorityError, match="only"):
        LocalCertificateAuthority.load_or_create(tmp_path / "ca", PASSPHRASE)


@pytest.mark.parametrize(
    "fields",
    [
        {"email": None, "phone": None},
        {"signer_id": "has_underscore"},
        {"name": " "},
        {"phone": "12345"},
    ],
)
def test_incomplete_or_unencodable_identity_is_rejected(fields: dict[str, object]) -> None:
    values: dict[str, object] = {
        "signer_id": "u-1",
        "name": "A",
        "organisation": "B",
        "email": "a@example.com",
    }
    values.update(fields)
    with pytest.raises(ValueError):
        SignerIdentity(**values)  # type: ignore[arg-type]


def _start_together(gate: Path, target: Path, kind: str, number: int) -> str:
    """Say ready, wait for ``gate``, then load or make the CA or TSA at ``target``; its
    root's hash."""
    import time

    from ledger.local_tsa import LocalTimestampAuthority

    (gate.parent / f"ready-{number}").touch()
    while not gate.exists():
        time.sleep(0.0005)
    if kind == "ca":
        root = LocalCertificateAuthority.load_or_create(target, b"pass").root_certificate
    else:
        root = LocalTimestampAuthority.load_or_create(target).root_certificate
    return root.fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize("kind", ["ca", "tsa"])
def test_workers_starting_at_once_make_one_authority_and_all_use_it(
    tmp_path: Path, kind: str
) -> None:
    """The workers of a new server all reach first start together: one makes the local CA
    (or TSA), the others wait for it and load it; none fails."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    gate, target = tmp_path / "go", tmp_path / "data" / kind
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        started = [pool.submit(_start_together, gate, target, kind, n) for n in range(4)]
        while len(list(tmp_path.glob("ready-*"))) < 4:
            assert not any(future.done() for future in started)
            time.sleep(0.01)
        gate.touch()
        roots = {future.result(timeout=120) for future in started}
    assert len(roots) == 1
