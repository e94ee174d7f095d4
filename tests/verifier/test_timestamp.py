"""``verifier.timestamp.check_timestamp`` and ``evidence-verify timestamp``, against tokens
made by other software: certomancer's TSA (ECDSA, ESSCertID v1, in-process) and OpenSSL's
``openssl ts -reply`` (RSA, ESSCertIDv2) with a TSA key and certificate made here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import algos, cms, tsp
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, ServiceLabel
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifier import Verdict
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main
from verifier.timestamp import check_timestamp

DATA = b"ledger.example/log\n7\nq1bC0s3bWbq5JxQ3KkXbX7yLQ7q1bC0s3bWbq5JxQ3I=\n"
OTHER_DATA = b"ledger.example/log\n8\nq1bC0s3bWbq5JxQ3KkXbX7yLQ7q1bC0s3bWbq5JxQ3I=\n"

# certomancer: root -> TSAs (a proper one, one without EKU, one with a non-critical EKU,
# one that expired in 2021, one revoked in 2021), and a CRL repository for the root.
_TSA_EKU = """
          - id: key_usage
            critical: true
            smart-value: {schema: key-usage, params: [digital_signature]}
          - id: extended_key_usage
            critical: %s
            value: [time_stamping]"""
_CRL_DP = """
          - id: crl_distribution_points
            smart-value: {schema: crl-dist-url, params: {crl-repo-names: [root]}}"""
_CERTOMANCER_YML = """
external-url-prefix: "http://127.0.0.1"
keysets:
  vt:
    keys:
%(keys)s
pki-architectures:
  vt:
    keyset: vt
    entity-defaults:
      country-name: HK
      organization-name: Verifier test PKI (certomancer)
    entities:
%(entities)s
    certs:
      root:
        subject: root
        issuer: root
        validity: {valid-from: "2020-01-01T00:00:00+0000", valid-to: "2100-01-01T00:00:00+0000"}
        extensions:
          - id: basic_constraints
            critical: true
            value: {ca: true}
          - id: key_usage
            critical: true
            smart-value: {schema: key-usage, params: [digital_signature, key_cert_sign, crl_sign]}
      tsa:
        issuer: root
        validity: {valid-from: "2020-01-01T00:00:00+0000", valid-to: "2098-01-01T00:00:00+0000"}
        extensions:%(eku_critical)s%(crl_dp)s
      tsa-no-eku:
        issuer: root
        validity: {valid-from: "2020-01-01T00:00:00+0000", valid-to: "2098-01-01T00:00:00+0000"}
        extensions:
          - id: key_usage
            critical: true
            smart-value: {schema: key-usage, params: [digital_signature]}
      tsa-noncritical:
        issuer: root
        validity: {valid-from: "2020-01-01T00:00:00+0000", valid-to: "2098-01-01T00:00:00+0000"}
        extensions:%(eku_noncritical)s
      tsa-expired:
        issuer: root
        validity: {valid-from: "2020-01-01T00:00:00+0000", valid-to: "2021-01-01T00:00:00+0000"}
        extensions:%(eku_critical)s
      tsa-revoked:
        issuer: root
        validity: {valid-from: "2020-01-01T00:00:00+0000", valid-to: "2098-01-01T00:00:00+0000"}
        revocation: {revoked-since: "2021-01-01T00:00:00+0000", reason: key_compromise}
        extensions:%(eku_critical)s%(crl_dp)s
    services:
      time-stamping:
%(tsas)s
      crl-repo:
        root:
          for-issuer: root
          signing-key: root
          simulated-update-schedule: "P90D"
"""
_LABELS = ("root", "tsa", "tsa-no-eku", "tsa-noncritical", "tsa-expired", "tsa-revoked")
_TSAS = _LABELS[1:]


@dataclass(frozen=True)
class Certomancer:
    config: CertomancerConfig
    root: x509.Certificate

    def token(
        self, service: str = "tsa", data: bytes = DATA, nonce: int | None = 42, at=None
    ) -> bytes:
        arch = self.config.get_pki_arch(ArchLabel("vt"))
        stamper = arch.service_registry.summon_timestamper(ServiceLabel(service), at_time=at)
        request = {
            "version": "v1",
            "message_imprint": tsp.MessageImprint(
                {
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                    "hashed_message": hashlib.sha256(data).digest(),
                }
            ),
            "cert_req": True,
        }
        if nonce is not None:
            request["nonce"] = nonce
        return stamper.request_tsa_response(tsp.TimeStampReq(request)).dump()

    def crl(self) -> bytes:
        arch = self.config.get_pki_arch(ArchLabel("vt"))
        return arch.service_registry.get_crl(ServiceLabel("root"), at_time=datetime.now(UTC)).dump()


@pytest.fixture(scope="module")
def certomancer(tmp_path_factory: pytest.TempPathFactory) -> Certomancer:
    base = tmp_path_factory.mktemp("certomancer")
    for label in _LABELS:
        key = ec.generate_private_key(ec.SECP256R1())
        (base / f"{label}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    text = _CERTOMANCER_YML % {
        "keys": "\n".join(f"      {label}: {{path: {label}.key.pem}}" for label in _LABELS),
        "entities": "\n".join(f"      {label}: {{common-name: VT {label}}}" for label in _LABELS),
        "eku_critical": _TSA_EKU % "true",
        "eku_noncritical": _TSA_EKU % "false",
        "crl_dp": _CRL_DP,
        "tsas": "\n".join(
            f"        {label}: {{signing-key: {label}, signing-cert: {label}}}" for label in _TSAS
        ),
    }
    config_file = base / "certomancer.yml"
    config_file.write_text(text)
    config = CertomancerConfig.from_file(str(config_file), key_search_dir=str(base))
    arch = config.get_pki_arch(ArchLabel("vt"))
    root = x509.load_der_x509_certificate(arch.get_cert(CertLabel("root")).dump())
    return Certomancer(config, root)


# OpenSSL: a CA and a TSA certificate made here with cryptography; openssl ts signs.


@dataclass(frozen=True)
class OpenSslTsa:
    workdir: Path
    root: x509.Certificate
    other_root: x509.Certificate

    def token(self, data: bytes = DATA, *, nonce: bool = True) -> tuple[bytes, int | None]:
        """A TimeStampResp from ``openssl ts -reply`` over ``data``, and the request nonce."""
        source = self.workdir / "data.bin"
        source.write_bytes(data)
        query, reply = self.workdir / "q.tsq", self.workdir / "r.tsr"
        _openssl(
            "ts", "-query", "-data", source, "-sha256", "-cert",
            *([] if nonce else ["-no_nonce"]), "-out", query,
        )  # fmt: skip
        _openssl(
            "ts", "-reply", "-config", self.workdir / "ts.cnf", "-queryfile", query,
            "-out", reply,
        )  # fmt: skip
        request = tsp.TimeStampReq.load(query.read_bytes())
        return reply.read_bytes(), request["nonce"].native


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Verifier test PKI (OpenSSL)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(common_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def openssl_tsa(tmp_path_factory: pytest.TempPathFactory) -> OpenSslTsa:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    workdir = tmp_path_factory.mktemp("openssl-tsa")
    ca_key, ca_cert = _ca("OpenSSL test root")
    _, other_root = _ca("Some other root")
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    tsa_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("OpenSSL test TSA"))
        .issuer_name(ca_cert.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (workdir / "tsa.pem").write_bytes(tsa_cert.public_bytes(pem))
    (workdir / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (workdir / "tsa.key").write_bytes(
        tsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (workdir / "ts.cnf").write_text(
        textwrap.dedent(
            f"""\
            [ tsa ]
            default_tsa = tsa_config
            [ tsa_config ]
            dir = {workdir}
            serial = $dir/serial
            crypto_device = builtin
            signer_cert = $dir/tsa.pem
            certs = $dir/ca.pem
            signer_key = $dir/tsa.key
            signer_digest = sha256
            default_policy = 1.2.3.4.1
            digests = sha256, sha384, sha512
            accuracy = secs:1
            ordering = no
            tsa_name = yes
            ess_cert_id_chain = no
            ess_cert_id_alg = sha256
            """
        )
    )
    (workdir / "serial").write_text("01\n")
    return OpenSslTsa(workdir, ca_cert, other_root)


def _verdict(report: object) -> Verdict:
    return report.result.verdict  # type: ignore[attr-defined,no-any-return]


# certomancer's tokens


def test_certomancer_token_passes_with_its_root(certomancer: Certomancer) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    report = check_timestamp(
        certomancer.token(), data=DATA, trust_roots=[certomancer.root], nonce=42
    )
    assert _verdict(report) is Verdict.PASSED, report.result.reason
    assert report.gen_time is not None and report.gen_time >= before
    assert report.tsa_subject is not None and "VT tsa" in report.tsa_subject
    assert report.hash_algorithm == "sha256"
    assert isinstance(report.serial, int)
    assert report.result.details["nonce"] == "42"


def test_a_bare_timestamp_token_is_accepted_too(certomancer: Certomancer) -> None:
    response = tsp.TimeStampResp.load(certomancer.token())
    token = response["time_stamp_token"].dump()
    report = check_timestamp(token, data=DATA, trust_roots=[certomancer.root])
    assert _verdict(report) is Verdict.PASSED, report.result.reason
    assert report.result.details["form"] == "TimeStampToken"


def test_a_digest_can_stand_for_the_data(certomancer: Certomancer) -> None:
    token = certomancer.token()
    good = check_timestamp(
        token, digest=hashlib.sha256(DATA).digest(), trust_roots=[certomancer.root]
    )
    assert _verdict(good) is Verdict.PASSED
    bad = check_timestamp(
        token, digest=hashlib.sha256(OTHER_DATA).digest(), trust_roots=[certomancer.root]
    )
    assert _verdict(bad) is Verdict.FAILED
    assert bad.result.details["sub_indication"] == "HASH_FAILURE"


def test_data_and_digest_are_exclusive(certomancer: Certomancer) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        check_timestamp(certomancer.token(), trust_roots=[certomancer.root])
    with pytest.raises(ValueError, match="exactly one"):
        check_timestamp(certomancer.token(), data=DATA, digest=b"x", trust_roots=[])


def test_token_for_other_data_fails(certomancer: Certomancer) -> None:
    report = check_timestamp(
        certomancer.token(data=OTHER_DATA), data=DATA, trust_roots=[certomancer.root]
    )
    assert _verdict(report) is Verdict.FAILED
    assert report.result.reason.startswith("imprint:")


def test_wrong_nonce_fails(certomancer: Certomancer) -> None:
    report = check_timestamp(
        certomancer.token(nonce=42), data=DATA, trust_roots=[certomancer.root], nonce=43
    )
    assert _verdict(report) is Verdict.FAILED
    assert report.result.reason.startswith("nonce check:")


def test_a_nonce_is_required_when_the_caller_expects_one(certomancer: Certomancer) -> None:
    report = check_timestamp(
        certomancer.token(nonce=None), data=DATA, trust_roots=[certomancer.root], nonce=42
    )
    assert _verdict(report) is Verdict.FAILED


def test_no_trust_root_is_indeterminate_never_passed(certomancer: Certomancer) -> None:
    report = check_timestamp(certomancer.token(), data=DATA, trust_roots=[])
    assert _verdict(report) is Verdict.INDETERMINATE
    assert report.result.details["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"
    assert report.gen_time is not None  # the token was still read and checked


def test_untrusted_root_is_indeterminate(certomancer: Certomancer, openssl_tsa: OpenSslTsa) -> None:
    report = check_timestamp(certomancer.token(), data=DATA, trust_roots=[openssl_tsa.root])
    assert _verdict(report) is Verdict.INDETERMINATE
    assert report.result.details["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"


@pytest.mark.parametrize(
    ("service", "words"),
    [("tsa-no-eku", "no extended key usage"), ("tsa-noncritical", "not critical")],
)
def test_tsa_certificate_without_the_critical_eku_fails(
    certomancer: Certomancer, service: str, words: str
) -> None:
    report = check_timestamp(certomancer.token(service), data=DATA, trust_roots=[certomancer.root])
    assert _verdict(report) is Verdict.FAILED
    assert words in report.result.reason
    assert report.result.details["sub_indication"] == "SIG_CONSTRAINTS_FAILURE"


def test_token_made_after_the_tsa_certificate_expired_fails(certomancer: Certomancer) -> None:
    token = certomancer.token("tsa-expired", at=datetime(2022, 6, 1, tzinfo=UTC))
    report = check_timestamp(token, data=DATA, trust_roots=[certomancer.root])
    assert _verdict(report) is Verdict.FAILED
    assert report.result.details["sub_indication"] == "EXPIRED"


def test_token_made_while_the_certificate_was_valid_passes_at_its_gen_time(
    certomancer: Certomancer,
) -> None:
    token = certomancer.token("tsa-expired", at=datetime(2020, 6, 1, tzinfo=UTC))
    assert (
        _verdict(check_timestamp(token, data=DATA, trust_roots=[certomancer.root]))
        is Verdict.PASSED
    )
    # Validated as at today instead, the expired certificate leaves it undecided.
    now = check_timestamp(token, data=DATA, trust_roots=[certomancer.root], at=datetime.now(UTC))
    assert _verdict(now) is Verdict.INDETERMINATE
    assert now.result.details["sub_indication"] == "OUT_OF_BOUNDS_NO_POE"


def test_revoked_tsa_certificate_fails_with_the_crl(certomancer: Certomancer) -> None:
    token = certomancer.token("tsa-revoked")
    report = check_timestamp(
        token, data=DATA, trust_roots=[certomancer.root], crls=[certomancer.crl()]
    )
    assert _verdict(report) is Verdict.FAILED
    assert report.result.details["sub_indication"] == "REVOKED"
    # Without revocation data, revocation is not checked (soft fail), as documented.
    soft = check_timestamp(token, data=DATA, trust_roots=[certomancer.root])
    assert _verdict(soft) is Verdict.PASSED
    # The CRL does not touch a TSA that is not revoked.
    fine = check_timestamp(
        certomancer.token(), data=DATA, trust_roots=[certomancer.root], crls=[certomancer.crl()]
    )
    assert _verdict(fine) is Verdict.PASSED


def _mutate_token(response_der: bytes, change: Callable[[cms.SignedData], None]) -> bytes:
    response = tsp.TimeStampResp.load(response_der)
    signed_data = response["time_stamp_token"]["content"]
    change(signed_data)
    return tsp.TimeStampResp(
        {"status": response["status"], "time_stamp_token": response["time_stamp_token"]}
    ).dump(force=True)


def test_changed_tstinfo_fails_the_signature_check(certomancer: Certomancer) -> None:
    def new_serial(signed_data: cms.SignedData) -> None:
        encap = signed_data["encap_content_info"]
        tst_info = tsp.TSTInfo.load(bytes(encap["content"]))
        tst_info["serial_number"] = tst_info["serial_number"].native + 1
        encap["content"] = cms.ParsableOctetString(tst_info.dump(force=True))

    report = check_timestamp(
        _mutate_token(certomancer.token(), new_serial), data=DATA, trust_roots=[certomancer.root]
    )
    assert _verdict(report) is Verdict.FAILED
    assert report.result.details["sub_indication"] == "HASH_FAILURE"


def test_flipped_signature_fails(certomancer: Certomancer) -> None:
    def flip(signed_data: cms.SignedData) -> None:
        signer = signed_data["signer_infos"][0]
        value = bytearray(signer["signature"].native)
        value[-5] ^= 0x01
        signer["signature"] = bytes(value)

    report = check_timestamp(
        _mutate_token(certomancer.token(), flip), data=DATA, trust_roots=[certomancer.root]
    )
    assert _verdict(report) is Verdict.FAILED
    assert report.result.details["sub_indication"] in {"SIG_CRYPTO_FAILURE", "FORMAT_FAILURE"}


def test_swapped_tsa_certificate_fails_the_ess_binding(certomancer: Certomancer) -> None:
    # Put the no-EKU TSA's certificate, relabelled with the proper TSA's issuer and serial,
    # in place of the signer's: the ESSCertID hash no longer matches.
    arch = certomancer.config.get_pki_arch(ArchLabel("vt"))
    genuine = arch.get_cert(CertLabel("tsa"))
    impostor = arch.get_cert(CertLabel("tsa-no-eku"))
    tbs = impostor["tbs_certificate"].copy()
    tbs["serial_number"] = genuine.serial_number
    forged = impostor.copy()
    forged["tbs_certificate"] = tbs

    def swap(signed_data: cms.SignedData) -> None:
        signed_data["certificates"] = cms.CertificateSet(
            [cms.CertificateChoices({"certificate": forged})]
        )

    report = check_timestamp(
        _mutate_token(certomancer.token(), swap), data=DATA, trust_roots=[certomancer.root]
    )
    assert _verdict(report) is Verdict.FAILED
    assert "ESS signingCertificate" in report.result.reason


def test_rejected_status_fails() -> None:
    # A TimeStampResp without a token: SEQUENCE { PKIStatusInfo }, built by hand because
    # asn1crypto's TimeStampResp does not mark the token OPTIONAL.
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": ["bad alg"]}).dump()
    response = b"\x30" + bytes([len(status)]) + status
    report = check_timestamp(response, data=DATA, trust_roots=[])
    assert _verdict(report) is Verdict.FAILED
    assert "rejection" in report.result.reason and "bad alg" in report.result.reason


def test_granted_without_a_token_fails() -> None:
    status = tsp.PKIStatusInfo({"status": "granted"}).dump()
    report = check_timestamp(b"\x30" + bytes([len(status)]) + status, data=DATA, trust_roots=[])
    assert _verdict(report) is Verdict.FAILED
    assert report.result.details["sub_indication"] == "FORMAT_FAILURE"


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01", b"not a token", b"\x30\x00"])
def test_garbage_fails_as_format_failure(garbage: bytes) -> None:
    report = check_timestamp(garbage, data=DATA, trust_roots=[])
    assert _verdict(report) is Verdict.FAILED
    assert report.result.details["sub_indication"] == "FORMAT_FAILURE"


def test_trailing_bytes_after_the_token_fail(certomancer: Certomancer) -> None:
    report = check_timestamp(
        certomancer.token() + b"\x00", data=DATA, trust_roots=[certomancer.root]
    )
    assert _verdict(report) is Verdict.FAILED


# OpenSSL's tokens


def test_openssl_token_passes(openssl_tsa: OpenSslTsa) -> None:
    token, nonce = openssl_tsa.token()
    assert nonce is not None
    report = check_timestamp(token, data=DATA, trust_roots=[openssl_tsa.root], nonce=nonce)
    assert _verdict(report) is Verdict.PASSED, report.result.reason
    assert report.tsa_subject is not None and "OpenSSL test TSA" in report.tsa_subject
    assert report.result.details["policy"] == "1.2.3.4.1"


def test_openssl_token_failures(openssl_tsa: OpenSslTsa) -> None:
    token, nonce = openssl_tsa.token()
    assert nonce is not None
    other = check_timestamp(token, data=OTHER_DATA, trust_roots=[openssl_tsa.root])
    assert _verdict(other) is Verdict.FAILED
    replay = check_timestamp(token, data=DATA, trust_roots=[openssl_tsa.root], nonce=nonce + 1)
    assert _verdict(replay) is Verdict.FAILED
    untrusted = check_timestamp(token, data=DATA, trust_roots=[openssl_tsa.other_root])
    assert _verdict(untrusted) is Verdict.INDETERMINATE


def test_openssl_itself_accepts_what_we_accept(openssl_tsa: OpenSslTsa) -> None:
    """Cross-check: the same token and data verify with ``openssl ts -verify``."""
    token, _ = openssl_tsa.token(nonce=False)
    (openssl_tsa.workdir / "check.tsr").write_bytes(token)
    (openssl_tsa.workdir / "check.bin").write_bytes(DATA)
    _openssl(
        "ts", "-verify", "-in", openssl_tsa.workdir / "check.tsr",
        "-data", openssl_tsa.workdir / "check.bin", "-CAfile", openssl_tsa.workdir / "ca.pem",
    )  # fmt: skip
    assert (
        _verdict(check_timestamp(token, data=DATA, trust_roots=[openssl_tsa.root]))
        is Verdict.PASSED
    )


# The command line


def _pem(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_cli_exit_codes(
    certomancer: Certomancer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token.tsr"
    token.write_bytes(certomancer.token())
    data, other = tmp_path / "data.txt", tmp_path / "other.txt"
    data.write_bytes(DATA)
    other.write_bytes(OTHER_DATA)
    root = _pem(tmp_path / "root.pem", certomancer.root)

    assert main(["timestamp", str(token), "--data", str(data), "--trust-root", root]) == EXIT_PASSED
    assert "PASSED: timestamp:" in capsys.readouterr().out

    code = main(["timestamp", str(token), "--data", str(other), "--trust-root", root, "--json"])
    assert code == EXIT_FAILED
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "FAILED" and out["check"] == "timestamp"

    assert main(["timestamp", str(token), "--data", str(data)]) == EXIT_INDETERMINATE
    capsys.readouterr()

    digest = hashlib.sha256(DATA).hexdigest()
    code = main(
        ["timestamp", str(token), "--digest", digest, "--trust-root", root, "--nonce", "42"]
    )
    assert code == EXIT_PASSED
    code = main(
        ["timestamp", str(token), "--digest", digest, "--trust-root", root, "--nonce", "41"]
    )
    assert code == EXIT_FAILED
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv",
    [
        ["timestamp", "TOKEN"],  # neither --data nor --digest
        ["timestamp", "TOKEN", "--data", "DATA", "--digest", "00"],
        ["timestamp", "TOKEN", "--digest", "zz"],
        ["timestamp", "TOKEN", "--digest", "00"],  # not a known digest length
        ["timestamp", "missing.tsr", "--data", "DATA"],
        ["timestamp", "TOKEN", "--data", "DATA", "--trust-root", "missing.pem"],
        ["timestamp", "TOKEN", "--data", "DATA", "--trust-root", "DATA"],  # not a PEM
        ["timestamp", "TOKEN", "--data", "DATA", "--nonce", "x"],
    ],
)
def test_cli_usage_errors_exit_3(
    certomancer: Certomancer, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    (tmp_path / "token.tsr").write_bytes(certomancer.token())
    (tmp_path / "data.txt").write_bytes(DATA)
    names = {"TOKEN": str(tmp_path / "token.tsr"), "DATA": str(tmp_path / "data.txt")}
    argv = [names.get(arg, arg) for arg in argv]
    argv = [str(tmp_path / arg) if arg.startswith("missing") else arg for arg in argv]
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "error" in captured.err
