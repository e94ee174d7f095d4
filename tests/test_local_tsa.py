"""The embedded default's local TSA: its files, its certificates and its HTTP service.

Tokens are checked with rfc3161-client (what the ledger uses) and, independently, with
pyHanko's CMS and certificate-path validation, so a bug shared by our builder and our
verifier cannot hide. Invariant 4 (timestamped checkpoints) relies on this TSA by default.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc3161_client
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import ValidationContext

from ledger.local_tsa import (
    LOCAL_TSA_POLICY_OID,
    ROOT_CERT_FILE,
    ROOT_COMMON_NAME,
    ROOT_KEY_FILE,
    TSA_CERT_FILE,
    TSA_COMMON_NAME,
    TSA_KEY_FILE,
    LocalTimestampAuthority,
    LocalTsaError,
    LocalTsaServer,
)

DATA = "checkpoint note: evidence-ledger.example/log\n42\n签名\n".encode()


@pytest.fixture(scope="module")
def tsa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-tsa") / "tsa"


@pytest.fixture(scope="module")
def authority(tsa_dir: Path) -> LocalTimestampAuthority:
    return LocalTimestampAuthority.load_or_create(tsa_dir)


@pytest.fixture(scope="module")
def server(authority: LocalTimestampAuthority) -> Iterator[LocalTsaServer]:
    with authority.serve() as running:
        yield running


def post(
    url: str, body: bytes, content_type: str = "application/timestamp-query"
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get_content_type(), exc.read()


def request_for(
    data: bytes, *, nonce: bool = True, cert_req: bool = True
) -> rfc3161_client.TimeStampRequest:
    return (
        rfc3161_client.TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(rfc3161_client.HashAlgorithm.SHA256)
        .nonce(nonce=nonce)
        .cert_request(cert_request=cert_req)
        .build()
    )


def raw_request(**fields: object) -> bytes:
    """A TimeStampReq built field by field, to send what our client never would."""
    base: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": hashlib.sha256(DATA).digest(),
        },
        "cert_req": True,
    }
    base.update(fields)
    return bytes(tsp.TimeStampReq(base).dump())


def pyhanko_status(
    token_der: bytes, data: bytes, root: x509.Certificate
) -> TimestampSignatureStatus:
    """Validate a TimeStampToken with pyHanko alone: CMS signature, imprint, path, EKU."""
    signed_data = cms.ContentInfo.load(token_der)["content"]
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER))],
        allow_fetching=False,
        revocation_mode="soft-fail",
    )
    kwargs = asyncio.run(
        validate_tst_signed_data(
            signed_data, context, lambda algorithm: hashlib.new(algorithm, data).digest()
        )
    )
    return TimestampSignatureStatus(**kwargs)


def test_first_start_creates_keys_readable_only_by_owner(
    authority: LocalTimestampAuthority, tsa_dir: Path
) -> None:
    assert authority.directory == tsa_dir
    for name in (ROOT_KEY_FILE, TSA_KEY_FILE):
        assert stat.S_IMODE((tsa_dir / name).stat().st_mode) == 0o600
    for name in (ROOT_CERT_FILE, TSA_CERT_FILE):
        assert (tsa_dir / name).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(tsa_dir.stat().st_mode) & 0o077 == 0
    # Creation is staged beside the directory; nothing of the staging may be left over.
    assert sorted(p.name for p in tsa_dir.parent.iterdir()) == ["tsa"]


def test_second_start_reloads_the_same_authority(
    authority: LocalTimestampAuthority, tsa_dir: Path
) -> None:
    again = LocalTimestampAuthority.load_or_create(tsa_dir)
    assert again.root_certificate == authority.root_certificate
    assert again.tsa_certificate == authority.tsa_certificate
    # Same key too: a token from the reloaded authority verifies against the old root.
    response = rfc3161_client.decode_timestamp_response(again.respond(request_for(DATA).as_bytes()))
    verifier = rfc3161_client.VerifierBuilder(roots=[authority.root_certificate]).build()
    assert verifier.verify_message(response, DATA)


def test_certificates_name_it_local_and_restrict_the_tsa_to_time_stamping(
    authority: LocalTimestampAuthority,
) -> None:
    root, tsa = authority.root_certificate, authority.tsa_certificate
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ROOT_COMMON_NAME
    assert tsa.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == TSA_COMMON_NAME
    assert "not a qualified trust service" in TSA_COMMON_NAME
    assert tsa.issuer == root.subject
    tsa.verify_directly_issued_by(root)

    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    key_usage = tsa.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert not key_usage.value.key_cert_sign
    assert not tsa.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    now = datetime.now(UTC)
    for cert in (root, tsa):
        assert cert.not_valid_before_utc <= now
        assert cert.not_valid_after_utc - now > timedelta(days=9 * 365)


def test_token_over_http_verifies_with_rfc3161_client_and_independently_with_pyhanko(
    authority: LocalTimestampAuthority, server: LocalTsaServer
) -> None:
    request = request_for(DATA)
    assert request.nonce is not None
    status, content_type, body = post(server.url, request.as_bytes())
    assert (status, content_type) == (200, "application/timestamp-reply")

    response = rfc3161_client.decode_timestamp_response(body)
    verifier = (
        rfc3161_client.VerifierBuilder(roots=[authority.root_certificate])
        .nonce(request.nonce)
        .build()
    )
    assert verifier.verify_message(response, DATA)
    assert response.tst_info.policy.dotted_string == LOCAL_TSA_POLICY_OID

    token_der = bytes(response.time_stamp_token())
    ok = pyhanko_status(token_der, DATA, authority.root_certificate)
    assert ok.intact and ok.valid and ok.trusted
    assert ok.signing_cert.subject.native["common_name"] == TSA_COMMON_NAME
    assert abs(ok.timestamp - datetime.now(UTC)) < timedelta(seconds=30)

    changed = pyhanko_status(token_der, DATA + b"!", authority.root_certificate)
    assert not changed.intact

    other_root = LocalTimestampAuthority.load_or_create(
        authority.directory.parent / "other"
    ).root_certificate
    assert not pyhanko_status(token_der, DATA, other_root).trusted


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_token_verifies_with_the_openssl_command(
    authority: LocalTimestampAuthority, server: LocalTsaServer, tmp_path: Path
) -> None:
    """A third implementation: ``openssl ts -verify`` against the local root."""
    status, _, body = post(server.url, request_for(DATA).as_bytes())
    assert status == 200
    (tmp_path / "token.tsr").write_bytes(body)
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "root.pem").write_bytes(
        authority.root_certificate.public_bytes(serialization.Encoding.PEM)
    )
    command = ["openssl", "ts", "-verify", "-in", "token.tsr", "-CAfile", "root.pem"]
    good = subprocess.run(
        [*command, "-data", "data"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert good.returncode == 0, good.stderr
    assert "Verification: OK" in good.stdout
    (tmp_path / "data").write_bytes(DATA + b"!")
    bad = subprocess.run(
        [*command, "-data", "data"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0


def test_serial_numbers_differ_between_tokens(authority: LocalTimestampAuthority) -> None:
    serials = {
        rfc3161_client.decode_timestamp_response(
            authority.respond(request_for(DATA).as_bytes())
        ).tst_info.serial_number
        for _ in range(5)
    }
    assert len(serials) == 5


def test_without_cert_req_the_token_carries_no_certificates(
    authority: LocalTimestampAuthority,
) -> None:
    body = authority.respond(request_for(DATA, cert_req=False).as_bytes())
    signed_data = cms.ContentInfo.load(
        bytes(rfc3161_client.decode_timestamp_response(body).time_stamp_token())
    )["content"]
    assert not signed_data["certificates"].native


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """asn1crypto's own TimeStampResp insists on a token, which rejections do not carry."""

    _fields = [  # noqa: RUF012
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def rejection(body: bytes) -> tuple[str, set[str]]:
    status = _TimeStampResp.load(body)["status"]
    return status["status"].native, set(status["fail_info"].native or ())


def test_junk_gets_http_400_with_a_rejection(server: LocalTsaServer) -> None:
    status, content_type, body = post(server.url, b"this is not DER")
    assert (status, content_type) == (400, "application/timestamp-reply")
    assert rejection(body) == ("rejection", {"bad_data_format"})
    assert rfc3161_client.decode_timestamp_response(body).status == 2


@pytest.mark.parametrize(
    ("request_der", "failure"),
    [
        (
            raw_request(
                message_imprint={
                    "hash_algorithm": {"algorithm": "sha1"},
                    "hashed_message": hashlib.sha1(DATA).digest(),
                }
            ),
            "bad_alg",
        ),
        (
            raw_request(
                message_imprint={
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": b"\x00" * 20,
                }
            ),
            "bad_data_format",
        ),
        (raw_request(version="v2"), "bad_data_format"),
        (raw_request(req_policy="1.2.3.4"), "unaccepted_policy"),
    ],
    ids=["sha1", "short-digest", "version-2", "foreign-policy"],
)
def test_requests_it_will_not_stamp_get_a_rejection(
    server: LocalTsaServer, request_der: bytes, failure: str
) -> None:
    status, content_type, body = post(server.url, request_der)
    assert (status, content_type) == (200, "application/timestamp-reply")
    assert rejection(body) == ("rejection", {failure})


def test_requests_under_its_own_policy_are_stamped(authority: LocalTimestampAuthority) -> None:
    body = authority.respond(raw_request(req_policy=LOCAL_TSA_POLICY_OID))
    assert rfc3161_client.decode_timestamp_response(body).status == 0


def test_http_protocol_errors(server: LocalTsaServer) -> None:
    good = request_for(DATA).as_bytes()
    assert post(server.url, good, content_type="application/octet-stream")[0] == 415
    assert post(server.url + "elsewhere", good)[0] == 404
    assert post(server.url, b"\x30" * (64 * 1024))[0] == 413
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url, timeout=5)
    assert info.value.code == 405
    assert info.value.headers["Allow"] == "POST"
    info.value.close()


def test_stop_releases_the_port(authority: LocalTimestampAuthority) -> None:
    with authority.serve() as running:
        url = running.url
        assert post(url, request_for(DATA).as_bytes())[0] == 200
    running.stop()  # a second stop is harmless
    with pytest.raises(urllib.error.URLError):
        post(url, request_for(DATA).as_bytes())


def test_a_partial_directory_is_refused_not_overwritten(
    authority: LocalTimestampAuthority, tmp_path: Path
) -> None:
    partial = tmp_path / "tsa"
    partial.mkdir()
    root_pem = authority.root_certificate.public_bytes(serialization.Encoding.PEM)
    (partial / ROOT_CERT_FILE).write_bytes(root_pem)
    with pytest.raises(LocalTsaError, match="only part of a local TSA"):
        LocalTimestampAuthority.load_or_create(partial)
    assert sorted(p.name for p in partial.iterdir()) == [ROOT_CERT_FILE]
    assert (partial / ROOT_CERT_FILE).read_bytes() == root_pem


def test_an_empty_existing_directory_is_filled(tmp_path: Path) -> None:
    empty = tmp_path / "tsa"
    empty.mkdir()
    created = LocalTimestampAuthority.load_or_create(empty)
    assert created.tsa_certificate.issuer == created.root_certificate.subject
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tsa"]


def test_a_key_that_does_not_match_its_certificate_is_refused(
    authority: LocalTimestampAuthority, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    LocalTimestampAuthority.load_or_create(mixed)
    (mixed / TSA_CERT_FILE).write_bytes((authority.directory / TSA_CERT_FILE).read_bytes())
    with pytest.raises(LocalTsaError, match="does not match"):
        LocalTimestampAuthority.load(mixed)
