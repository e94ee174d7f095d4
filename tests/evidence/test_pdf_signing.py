"""PAdES signing, B-LTA finalisation and acceptance of app-signed PDFs, checked by pyHanko.

Signatures are made against the real local TSA over HTTP on loopback and validated with
pyHanko's own validator. Time is not frozen: certificates are valid from five minutes before
creation for two years, so wall-clock time is tolerated.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext

from evidence.errors import PdfSigningError, SubmittedPdfRefused
from evidence.local_ca import IssuedSigner, LocalCertificateAuthority, SignerIdentity
from evidence.pdf_signing import Placement, finalise_ltav, sign_pdf
from evidence.pdf_validation import validate_submitted_pdf
from evidence.testing_pdfs import make_test_pdf
from ledger.local_tsa import LocalTimestampAuthority, LocalTsaServer

PASSPHRASE = b"test passphrase"


@dataclass(frozen=True)
class Pki:
    ca: LocalCertificateAuthority
    tsa: LocalTimestampAuthority
    tsa_url: str
    buyer: IssuedSigner
    supplier: IssuedSigner


@dataclass(frozen=True)
class Signed:
    original: bytes
    once: bytes
    twice: bytes
    lta: bytes


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def tsa_authority(tmp_path_factory: pytest.TempPathFactory) -> LocalTimestampAuthority:
    return LocalTimestampAuthority.load_or_create(tmp_path_factory.mktemp("tsa") / "tsa")


@pytest.fixture(scope="module")
def tsa_server(tsa_authority: LocalTimestampAuthority) -> Iterator[LocalTsaServer]:
    with tsa_authority.serve() as server:
        yield server


@pytest.fixture(scope="module")
def pki(
    tmp_path_factory: pytest.TempPathFactory,
    tsa_authority: LocalTimestampAuthority,
    tsa_server: LocalTsaServer,
) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca = LocalCertificateAuthority.load_or_create(base / "ca", PASSPHRASE)
    buyer = ca.issue_signer(
        SignerIdentity("user-0001", "陈小明", "Procurement", email="xiaoming@example.com")
    )
    supplier = ca.issue_signer(
        SignerIdentity("ext-42", "Alice Supplier", "Supplier Ltd", phone="+85291234567")
    )
    return Pki(ca, tsa_authority, tsa_server.url, buyer, supplier)


def _sign(pdf: bytes, signer: IssuedSigner, pki: Pki, field: str, x: int) -> bytes:
    return sign_pdf(
        pdf,
        signer,
        placement=Placement(page=2, x1=x, y1=60, x2=x + 220, y2=140),
        field_name=field,
        reason="I agree to the supply contract",
        location="Hong Kong",
        timestamp_url=pki.tsa_url,
        tsa_trust_roots=[pki.tsa.root_certificate],
        passphrase=PASSPHRASE,
    )


@pytest.fixture(scope="module")
def signed(pki: Pki) -> Signed:
    original = make_test_pdf("Supply contract", pages=2)
    once = _sign(original, pki.buyer, pki, "BuyerSignature", 60)
    twice = _sign(once, pki.supplier, pki, "SupplierSignature", 320)
    context = ValidationContext(
        trust_roots=[_asn1(pki.ca.root_certificate), _asn1(pki.tsa.root_certificate)]
    )
    lta = finalise_ltav(twice, context, pki.tsa_url)
    return Signed(original, once, twice, lta)


def _validate(pdf: bytes, field: str, pki: Pki) -> object:
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    (sig,) = [s for s in reader.embedded_regular_signatures if s.field_name == field]
    return validate_pdf_signature(
        sig,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(pki.ca.root_certificate)]),
        ts_validation_context=ValidationContext(trust_roots=[_asn1(pki.tsa.root_certificate)]),
    )


def test_each_signature_is_a_new_incremental_revision(signed: Signed) -> None:
    assert signed.once.startswith(signed.original)
    assert signed.twice.startswith(signed.once)
    assert signed.lta.startswith(signed.twice)
    reader = PdfFileReader(io.BytesIO(signed.twice), strict=False)
    assert reader.xrefs.total_revisions == 3


def test_both_signatures_are_pades_b_t_intact_valid_trusted(signed: Signed, pki: Pki) -> None:
    for field in ("BuyerSignature", "SupplierSignature"):
        status = _validate(signed.twice, field, pki)
        assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
        assert status.bottom_line  # type: ignore[attr-defined]
        stamp = status.timestamp_validity  # type: ignore[attr-defined]
        assert stamp is not None and stamp.intact and stamp.valid and stamp.trusted
    reader = PdfFileReader(io.BytesIO(signed.twice), strict=False)
    for sig in reader.embedded_regular_signatures:
        assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"


def test_second_signer_only_makes_allowed_changes_to_the_first(signed: Signed, pki: Pki) -> None:
    first = _validate(signed.twice, "BuyerSignature", pki)
    assert first.modification_level == ModificationLevel.FORM_FILLING  # type: ignore[attr-defined]
    second = _validate(signed.twice, "SupplierSignature", pki)
    assert second.modification_level == ModificationLevel.NONE  # type: ignore[attr-defined]


def test_signature_has_a_visible_stamp_on_the_placement_page(signed: Signed) -> None:
    reader = PdfFileReader(io.BytesIO(signed.once), strict=False)
    (sig,) = reader.embedded_regular_signatures
    widget = sig.sig_field
    rect = [float(v) for v in widget["/Rect"]]
    assert rect == [60.0, 60.0, 280.0, 140.0]
    appearance = widget["/AP"]["/N"].get_object()
    # The stamp embeds the bundled CJK font (decision 0006); tests/evidence/test_fonts.py
    # checks that 陈小明 is extractable from it.
    (font,) = appearance["/Resources"]["/Font"].values()
    assert "+NotoSansSC-Regular" in str(font.get_object()["/BaseFont"])
    page_two = reader.root["/Pages"]["/Kids"][1].get_object()
    assert [a.get_object()["/T"] for a in page_two["/Annots"]] == ["BuyerSignature"]


def test_b_lta_adds_dss_and_a_trusted_document_timestamp(signed: Signed, pki: Pki) -> None:
    reader = PdfFileReader(io.BytesIO(signed.lta), strict=False)
    dss = reader.root["/DSS"]
    assert len(dss["/Certs"]) >= 3  # local CA root, the signers, the TSA chain
    (doc_ts,) = reader.embedded_timestamp_signatures
    status = validate_pdf_timestamp(
        doc_ts,
        validation_context=ValidationContext(trust_roots=[_asn1(pki.tsa.root_certificate)]),
    )
    assert status.intact and status.valid and status.trusted
    for field in ("BuyerSignature", "SupplierSignature"):
        assert _validate(signed.lta, field, pki).bottom_line  # type: ignore[attr-defined]


def test_changing_one_signed_byte_breaks_the_signature(signed: Signed, pki: Pki) -> None:
    position = signed.original.index(b"Supply contract")
    tampered = bytearray(signed.twice)
    tampered[position] = ord("X")
    status = _validate(bytes(tampered), "BuyerSignature", pki)
    assert not status.intact  # type: ignore[attr-defined]
    assert not status.bottom_line  # type: ignore[attr-defined]


def test_tsa_not_trusted_fails_closed(pki: Pki) -> None:
    with pytest.raises(PdfSigningError, match="timestamp"):
        sign_pdf(
            make_test_pdf(pages=1),
            pki.buyer,
            placement=Placement(1, 10, 10, 200, 80),
            field_name="Sig",
            reason="ok",
            location="HK",
            timestamp_url=pki.tsa_url,
            tsa_trust_roots=[pki.ca.root_certificate],  # the wrong root for the TSA
            passphrase=PASSPHRASE,
        )


def test_placement_past_the_last_page_is_refused(pki: Pki) -> None:
    with pytest.raises(PdfSigningError, match="past the last"):
        _sign(make_test_pdf(pages=1), pki.buyer, pki, "Sig", 10)


# --- the alternative flow: an app submits a PDF signed with the signer's own key ---


@pytest.fixture(scope="module")
def own_key_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificateAuthority:
    """A separately generated PKI standing for the signer's own CA."""
    return LocalCertificateAuthority.load_or_create(tmp_path_factory.mktemp("own") / "ca", b"own")


@pytest.fixture(scope="module")
def app_signed(signed: Signed, pki: Pki, own_key_ca: LocalCertificateAuthority) -> bytes:
    own = own_key_ca.issue_signer(
        SignerIdentity("ext-7", "Bob External", "Outside Co", email="bob@example.org")
    )
    return sign_pdf(
        signed.once,
        own.simple_signer(b"own"),
        placement=Placement(2, 320, 200, 540, 280),
        field_name="ExternalSignature",
        reason="Signed in my own app",
        location="Shenzhen",
        timestamp_url=pki.tsa_url,
        tsa_trust_roots=[pki.tsa.root_certificate],
    )


def test_submitted_pdf_validates_against_its_root(
    signed: Signed, pki: Pki, own_key_ca: LocalCertificateAuthority, app_signed: bytes
) -> None:
    report = validate_submitted_pdf(
        app_signed,
        signed.once,
        trust_roots=[pki.ca.root_certificate, own_key_ca.root_certificate],
        tsa_trust_roots=[pki.tsa.root_certificate],
    )
    assert report.verdict == "TOTAL_PASSED"
    by_name = {s.field_name: s for s in report.signatures}
    new = by_name["ExternalSignature"]
    assert new.is_new and new.trusted and new.intact and new.valid and new.timestamp_trusted
    assert "Bob External" in new.signer_subject
    assert new.timestamp_time is not None
    assert not by_name["BuyerSignature"].is_new
    assert by_name["BuyerSignature"].modification_level == "FORM_FILLING"
    assert report.summary()["verdict"] == "TOTAL_PASSED"


def test_submitted_pdf_is_refused_against_another_root(
    signed: Signed, pki: Pki, app_signed: bytes
) -> None:
    with pytest.raises(SubmittedPdfRefused) as refused:
        validate_submitted_pdf(
            app_signed,
            signed.once,
            trust_roots=[pki.ca.root_certificate],
            tsa_trust_roots=[pki.tsa.root_certificate],
        )
    assert refused.value.indication == "INDETERMINATE"
    assert refused.value.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"


def test_submitted_pdf_not_extending_the_held_revision_is_refused(
    signed: Signed, pki: Pki, own_key_ca: LocalCertificateAuthority, app_signed: bytes
) -> None:
    with pytest.raises(SubmittedPdfRefused) as refused:
        validate_submitted_pdf(
            app_signed,
            signed.twice,  # the ledger holds a later revision than the app signed
            trust_roots=[pki.ca.root_certificate, own_key_ca.root_certificate],
            tsa_trust_roots=[pki.tsa.root_certificate],
        )
    assert (refused.value.indication, refused.value.sub_indication) == (
        "TOTAL_FAILED",
        "FORMAT_FAILURE",
    )


def test_submitted_pdf_with_a_changed_byte_is_refused(
    signed: Signed, pki: Pki, own_key_ca: LocalCertificateAuthority, app_signed: bytes
) -> None:
    tampered = bytearray(app_signed)
    tail = app_signed.rindex(b"/Reason")
    tampered[tail + 9] ^= 0x01
    with pytest.raises(SubmittedPdfRefused) as refused:
        validate_submitted_pdf(
            bytes(tampered),
            None,
            trust_roots=[pki.ca.root_certificate, own_key_ca.root_certificate],
            tsa_trust_roots=[pki.tsa.root_certificate],
        )
    assert (refused.value.indication, refused.value.sub_indication) == (
        "TOTAL_FAILED",
        "HASH_FAILURE",
    )
