"""``verifier.pdf.check_pdf`` and ``evidence-verify pdf``, on PDFs signed directly with
pyHanko's own signer and its in-process TSA (not through the ledger's ``evidence`` code),
with a small PKI made here with cryptography.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from verifier import Verdict
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main
from verifier.pdf import check_pdf

MARKER = b"(Contract: pay HK$ 5,000)"


def make_pdf() -> bytes:
    """A one-page PDF 1.7 with a text line, written by hand with a correct xref table."""
    content = b"BT /F1 18 Tf 72 720 Td " + MARKER + b" Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Verifier PDF test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _cert(
    subject: str,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None,
    *,
    ca: bool = False,
    eku: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), True
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=True)
    return builder.sign(signing_key, hashes.SHA256())


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _asn1_key(key: CertificateIssuerPrivateKeyTypes) -> asn1_keys.PrivateKeyInfo:
    return asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    other_root: x509.Certificate
    signer: signers.SimpleSigner
    second_signer: signers.SimpleSigner
    timestamper: DummyTimeStamper


@pytest.fixture(scope="module")
def pki() -> Pki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("PDF test root", root_key, None, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("Unrelated root", other_key, None, ca=True)
    store = SimpleCertificateStore.from_certs([_asn1_cert(root)])

    def signer(name: str) -> signers.SimpleSigner:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, key, (root, root_key))
        return signers.SimpleSigner(
            signing_cert=_asn1_cert(cert), signing_key=_asn1_key(key), cert_registry=store
        )

    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's
    # in-process TSA (DummyTimeStamper) signs with RSA only.
    tsa_cert = _cert(
        "PDF test TSA", tsa_key, (root, root_key), eku=ExtendedKeyUsageOID.TIME_STAMPING
    )
    timestamper = DummyTimeStamper(
        tsa_cert=_asn1_cert(tsa_cert), tsa_key=_asn1_key(tsa_key), certs_to_embed=store
    )
    return Pki(
        root, other_root, signer("Chan Siu Ming 陳小明"), signer("Alice Supplier"), timestamper
    )


def sign(pdf: bytes, signer: signers.SimpleSigner, field: str, timestamper=None) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=SigSeedSubFilter.PADES)
    out = signers.sign_pdf(writer, meta, signer=signer, timestamper=timestamper)
    return bytes(out.getvalue())


def document_timestamp(pdf: bytes, timestamper: DummyTimeStamper) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    out = signers.PdfTimeStamper(timestamper).timestamp_pdf(writer, "sha256")
    return bytes(out.getvalue())


@pytest.fixture(scope="module")
def signed(pki: Pki) -> bytes:
    return sign(make_pdf(), pki.signer, "Buyer", pki.timestamper)


def test_a_pyhanko_signed_pdf_passes(signed: bytes, pki: Pki) -> None:
    report = check_pdf(signed, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.PASSED, report.result.reason
    (finding,) = report.signatures
    assert finding.field_name == "Buyer" and finding.kind == "signature"
    assert "陳小明" in finding.signer_subject and "PDF test root" in finding.issuer
    assert finding.intact and finding.valid and finding.trusted and finding.timestamp_ok
    assert finding.timestamp_time is not None and finding.signing_time is not None
    assert finding.modification_level == "NONE" and finding.coverage == "ENTIRE_FILE"
    assert finding.pades_level == "B-T"
    assert finding.indication == "TOTAL_PASSED" and finding.sub_indication is None
    assert report.result.details["indication"] == "TOTAL_PASSED"
    (etsi,) = report.etsi_report["SignatureValidationReport"]
    status = etsi["SignatureValidationStatus"]
    assert status["MainIndication"] == "urn:etsi:019102:mainindication:total-passed"


def test_a_byte_changed_inside_the_signed_range_fails(signed: bytes, pki: Pki) -> None:
    assert signed.count(MARKER) == 1
    tampered = signed.replace(MARKER, MARKER.replace(b"5,000", b"9,000"))
    report = check_pdf(tampered, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.FAILED
    (finding,) = report.signatures
    assert not finding.intact
    assert finding.indication == "TOTAL_FAILED" and finding.sub_indication == "HASH_FAILURE"
    assert report.result.details["sub_indication"] == "HASH_FAILURE"


def test_page_content_added_after_signing_fails_with_the_modification_level(
    signed: bytes, pki: Pki
) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    stream = generic.StreamObject(stream_data=b"BT /F1 18 Tf 72 600 Td (Amount: HK$ 1) Tj ET")
    writer.add_stream_to_page(0, writer.add_object(stream))
    out = io.BytesIO()
    writer.write(out)
    changed = out.getvalue()
    assert changed.startswith(signed)

    report = check_pdf(changed, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.FAILED
    (finding,) = report.signatures
    assert finding.intact and finding.valid and finding.trusted  # the signed bytes are untouched
    assert finding.modification_level == "OTHER"
    assert finding.sub_indication == "SIG_CONSTRAINTS_FAILURE"
    assert "OTHER" in report.result.reason
    assert finding.changes


def test_an_untrusted_signer_is_indeterminate(signed: bytes, pki: Pki) -> None:
    report = check_pdf(signed, trust_roots=[pki.other_root], tsa_roots=[pki.root])
    assert report.result.verdict is Verdict.INDETERMINATE
    (finding,) = report.signatures
    assert finding.intact and finding.valid and not finding.trusted
    assert finding.indication == "INDETERMINATE"
    assert finding.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"


def test_no_trust_roots_is_indeterminate_never_passed(signed: bytes) -> None:
    report = check_pdf(signed, trust_roots=[])
    assert report.result.verdict is Verdict.INDETERMINATE


def test_an_untrusted_tsa_is_indeterminate(signed: bytes, pki: Pki) -> None:
    report = check_pdf(signed, trust_roots=[pki.root], tsa_roots=[pki.other_root])
    assert report.result.verdict is Verdict.INDETERMINATE
    (finding,) = report.signatures
    assert finding.trusted and finding.timestamp_ok is False


def test_a_second_signature_is_an_allowed_change(signed: bytes, pki: Pki) -> None:
    twice = sign(signed, pki.second_signer, "Supplier", pki.timestamper)
    report = check_pdf(twice, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.PASSED, report.result.reason
    by_field = {f.field_name: f for f in report.signatures}
    assert set(by_field) == {"Buyer", "Supplier"}
    assert by_field["Buyer"].modification_level in {"LTA_UPDATES", "FORM_FILLING"}
    assert by_field["Supplier"].modification_level == "NONE"


def test_a_signature_without_timestamp_is_b_b(pki: Pki) -> None:
    report = check_pdf(sign(make_pdf(), pki.signer, "Buyer"), trust_roots=[pki.root])
    assert report.result.verdict is Verdict.PASSED
    (finding,) = report.signatures
    assert finding.timestamp_ok is None and finding.timestamp_time is None
    assert finding.pades_level == "B-B"


def test_a_document_timestamp_is_checked(signed: bytes, pki: Pki) -> None:
    stamped = document_timestamp(signed, pki.timestamper)
    report = check_pdf(stamped, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.PASSED, report.result.reason
    kinds = {f.kind: f for f in report.signatures}
    assert set(kinds) == {"signature", "document_timestamp"}
    stamp = kinds["document_timestamp"]
    assert stamp.intact and stamp.valid and stamp.trusted and stamp.timestamp_time is not None
    assert "PDF test TSA" in stamp.signer_subject
    assert kinds["signature"].modification_level in {"NONE", "LTA_UPDATES"}
    # The document timestamp's TSA must be trusted too.
    untrusted = check_pdf(stamped, trust_roots=[pki.root], tsa_roots=[pki.other_root])
    assert untrusted.result.verdict is Verdict.INDETERMINATE


def test_a_pdf_with_only_a_document_timestamp(pki: Pki) -> None:
    report = check_pdf(document_timestamp(make_pdf(), pki.timestamper), trust_roots=[pki.root])
    assert report.result.verdict is Verdict.PASSED, report.result.reason
    (finding,) = report.signatures
    assert finding.kind == "document_timestamp"


def test_a_pdf_without_signatures_is_indeterminate(pki: Pki) -> None:
    report = check_pdf(make_pdf(), trust_roots=[pki.root])
    assert report.result.verdict is Verdict.INDETERMINATE
    assert report.signatures == []
    assert report.result.details["sub_indication"] == "SIGNED_DATA_NOT_FOUND"


@pytest.mark.parametrize("garbage", [b"", b"not a pdf", b"%PDF-1.7\n%%EOF\n"])
def test_garbage_fails_as_format_failure(garbage: bytes, pki: Pki) -> None:
    report = check_pdf(garbage, trust_roots=[pki.root])
    assert report.result.verdict in {Verdict.FAILED, Verdict.INDETERMINATE}
    if report.result.verdict is Verdict.FAILED:
        assert report.result.details["sub_indication"] == "FORMAT_FAILURE"


# The command line


def test_cli_exit_codes(
    signed: bytes, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "signed.pdf"
    good.write_bytes(signed)
    bad = tmp_path / "tampered.pdf"
    bad.write_bytes(signed.replace(MARKER, MARKER.replace(b"5,000", b"9,000")))
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
    other = tmp_path / "other.pem"
    other.write_bytes(pki.other_root.public_bytes(serialization.Encoding.PEM))

    assert main(["pdf", str(good), "--trust-root", str(root)]) == EXIT_PASSED
    assert "PASSED: pdf:" in capsys.readouterr().out

    assert main(["pdf", str(good), "--trust-root", str(root), "--json"]) == EXIT_PASSED
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "PASSED"
    assert out["details"]["signatures"][0]["field_name"] == "Buyer"
    assert out["details"]["etsi_report"]["standard"] == "ETSI TS 119 102-2"

    assert main(["pdf", str(bad), "--trust-root", str(root)]) == EXIT_FAILED
    assert main(["pdf", str(good), "--trust-root", str(other)]) == EXIT_INDETERMINATE
    assert main(["pdf", str(good)]) == EXIT_INDETERMINATE
    args = ["pdf", str(good), "--trust-root", str(root), "--tsa-root", str(other)]
    assert main(args) == EXIT_INDETERMINATE
    capsys.readouterr()

    assert main(["pdf", str(tmp_path / "missing.pdf"), "--trust-root", str(root)]) == EXIT_USAGE
    assert main(["pdf", str(good), "--trust-root", str(good)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "not a PEM or DER" in captured.err


def test_a_changed_byte_in_a_sealed_revision_fails_without_crashing(
    signed: bytes, pki: Pki
) -> None:
    """A byte changed in the revision a document timestamp seals: whatever pyHanko can no
    longer parse, the check answers FAILED rather than raising."""
    sealed = document_timestamp(signed, pki.timestamper)
    data = bytearray(sealed)
    spot = len(signed) + 40  # inside the bytes the document timestamp covers
    data[spot] = ord(" ") if data[spot] != ord(" ") else ord("\n")
    report = check_pdf(bytes(data), trust_roots=[pki.root])
    assert report.result.verdict is Verdict.FAILED
