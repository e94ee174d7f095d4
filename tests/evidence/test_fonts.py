"""The CJK font for stamps: where it comes from, that it draws Chinese names, and that a stamp
with a Chinese name is real text in the PDF and still a valid PAdES signature (decision 0006).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fontTools.ttLib import TTFont
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader

from evidence import fonts
from evidence.fonts import (
    CJK_FONT_ENV,
    LEGACY_CJK_FONT_ENV,
    CjkFontError,
    CjkFontNotFound,
    bundled_cjk_font,
    cjk_font_path,
)
from evidence.local_ca import LocalCertificateAuthority, SignerIdentity
from evidence.pdf_signing import Placement, find_cjk_font, sign_pdf
from evidence.testing_pdfs import make_test_pdf
from ledger.local_tsa import LocalTimestampAuthority, LocalTsaServer

PASSPHRASE = b"test passphrase"
NAME = "陈小明"
FIELD = "BuyerSignature"


@pytest.fixture(autouse=True)
def _no_font_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CJK_FONT_ENV, raising=False)
    monkeypatch.delenv(LEGACY_CJK_FONT_ENV, raising=False)


def _covers(font_file: Path, chars: str) -> bool:
    font = TTFont(font_file, lazy=True)
    try:
        cmap = font.getBestCmap()
        return all(ord(ch) in cmap for ch in chars)
    finally:
        font.close()


def test_the_bundled_font_is_noto_sans_sc_under_the_ofl() -> None:
    path = bundled_cjk_font()
    assert path is not None, "pylopdf-fonts-zh-cn is a main dependency and must be installed"
    assert cjk_font_path() == path
    font = TTFont(path, lazy=True)
    assert font["name"].getDebugName(1) == "Noto Sans SC"
    assert "Open Font License" in str(font["name"].getDebugName(13))
    font.close()


def test_the_font_found_has_glyphs_for_a_chinese_name_and_sign() -> None:
    assert _covers(cjk_font_path(), NAME + "签")


def test_the_environment_variable_overrides_the_bundled_font(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "Other.otf"
    other.write_bytes(cjk_font_path().read_bytes())
    monkeypatch.setenv(CJK_FONT_ENV, str(other))
    assert cjk_font_path() == other
    assert find_cjk_font() == other


def test_the_legacy_variable_is_still_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "Legacy.ttf"
    other.write_bytes(b"not read here")
    monkeypatch.setenv(LEGACY_CJK_FONT_ENV, str(other))
    assert cjk_font_path() == other


@pytest.mark.parametrize("name", ["missing.otf", "collection.ttc"])
def test_a_configured_font_that_cannot_be_used_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    if name.endswith(".ttc"):
        (tmp_path / name).write_bytes(b"ttcf")
    monkeypatch.setenv(CJK_FONT_ENV, str(tmp_path / name))
    with pytest.raises(CjkFontError, match=CJK_FONT_ENV):
        cjk_font_path()


def test_no_font_anywhere_is_a_clear_error_and_stamps_fall_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fonts, "bundled_cjk_font", lambda: None)
    monkeypatch.setattr(fonts, "_SYSTEM_CANDIDATES", ())
    with pytest.raises(CjkFontNotFound, match=CJK_FONT_ENV):
        cjk_font_path()
    assert find_cjk_font() is None


# --- a signed PDF with a Chinese name on the stamp -------------------------------------------


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
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificateAuthority:
    return LocalCertificateAuthority.load_or_create(
        tmp_path_factory.mktemp("ca") / "ca", PASSPHRASE
    )


@pytest.fixture(scope="module")
def signed(
    ca: LocalCertificateAuthority,
    tsa_authority: LocalTimestampAuthority,
    tsa_server: LocalTsaServer,
) -> bytes:
    signer = ca.issue_signer(
        SignerIdentity("user-0001", NAME, "采购部", email="xiaoming@example.com")
    )
    return sign_pdf(
        make_test_pdf("Supply contract", pages=1),
        signer,
        placement=Placement(page=1, x1=60, y1=60, x2=300, y2=140),
        field_name=FIELD,
        reason="同意签署 I agree",
        location="Hong Kong",
        timestamp_url=tsa_server.url,
        tsa_trust_roots=[tsa_authority.root_certificate],
        passphrase=PASSPHRASE,
    )


def _stamp_text(pdf: bytes) -> str:
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    widgets = [a.get_object() for a in page.annotations or []]
    (widget,) = [w for w in widgets if w.get("/T") == FIELD]
    return page.extract_xform_text(widget["/AP"]["/N"])


def test_the_stamp_text_names_the_signer_in_chinese(signed: bytes) -> None:
    stamp = _stamp_text(signed)
    assert f"Digitally signed by {NAME}" in stamp
    assert "采购部" in stamp
    assert "同意签署 I agree" in stamp


def test_the_stamp_embeds_a_subset_of_the_cjk_font(signed: bytes) -> None:
    reader = PdfFileReader(io.BytesIO(signed), strict=False)
    (sig,) = reader.embedded_regular_signatures
    appearance = sig.sig_field["/AP"]["/N"]
    (font,) = appearance["/Resources"]["/Font"].values()
    font = font.get_object()
    assert font["/Subtype"] == "/Type0"
    base = str(font["/BaseFont"])
    assert "+NotoSansSC-Regular" in base  # a subset: /ABCDEF+NotoSansSC-Regular-Identity-H
    assert "/ToUnicode" in font  # what makes the name extractable and searchable
    assert "/FontFile3" in font["/DescendantFonts"][0]["/FontDescriptor"]  # embedded CFF


def test_the_signature_with_a_chinese_stamp_still_validates(
    signed: bytes, ca: LocalCertificateAuthority, tsa_authority: LocalTimestampAuthority
) -> None:
    reader = PdfFileReader(io.BytesIO(signed), strict=False)
    (sig,) = reader.embedded_regular_signatures
    status = validate_pdf_signature(
        sig,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(ca.root_certificate)]),
        ts_validation_context=ValidationContext(
            trust_roots=[_asn1(tsa_authority.root_certificate)]
        ),
    )
    assert status.intact and status.valid and status.trusted
    assert status.bottom_line
    stamp = status.timestamp_validity
    assert stamp is not None and stamp.intact and stamp.valid and stamp.trusted
    assert status.signing_cert.subject.native["common_name"] == NAME
