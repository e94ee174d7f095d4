"""The court report: content in both languages, PDF/A-3 structure, attachments, the ledger's
certification signature (validated by pyHanko against the local CA and TSA), rendering with
pdftoppm for a person to look at, and a 10,000-event timeline.

PDF/A conformance is checked structurally here (veraPDF is not available offline; decision
0007 lists what is checked and what is not).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader
from pypdf.generic import IndirectObject

from evidence.errors import PdfSigningError
from evidence.local_ca import LocalCertificateAuthority
from evidence.report import (
    REPORT_FIELD_NAME,
    REPORT_SIGNER_ID,
    ReportError,
    build_report,
    report_signer,
    sign_report,
)
from evidence.report_model import (
    Anchoring,
    DocumentInfo,
    IdentityCheck,
    Party,
    ReportInput,
    SignatureInfo,
    TimelineRow,
)
from ledger.local_tsa import LocalTimestampAuthority

PASSPHRASE = b"test passphrase"
ORIGIN = "ledger.example.hk/log"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
KEEP_RENDERS = "EVIDENCE_LEDGER_KEEP_RENDERS"
RENDERS_DIR = Path(__file__).resolve().parents[1] / "renders"
START = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)

MANIFEST = b'{"format":"evidence-pack/1","task":"T-2026-0042","files":[]}\n'
EVENTS = b'{"leaf_index":1040,"event_hash":"abc"}\n{"leaf_index":1041,"event_hash":"def"}\n'
ATTACHMENTS = {"manifest.json": MANIFEST, "events.jsonl": EVENTS}

SECTION_HEADINGS = [
    ("Summary", "摘要"),
    ("Parties and identity evidence", "当事人及身份核验证据"),
    ("Timeline", "时间线"),
    ("Signatures", "签名"),
    ("Anchoring in the log", "日志锚定"),
    ("Legal requirements and the evidence", "法定要件与证据对照"),
    ("How to verify", "如何验证"),
]

# -- a realistic input, made by hand --------------------------------------------------------

_ACTIONS = [
    ("created the task", "创建任务", "Procurement: 12 laptops, HK$86,400"),
    ("uploaded a document", "上传文件", "contract.pdf, 1,048,576 bytes"),
    ("submitted for approval", "提交审批", "route: amount > HK$5,000 → CFO"),
    ("approved", "审批通过", "countersign 会签 1/2"),
    ("approved", "审批通过", "countersign 会签 2/2"),
    ("reminded", "催签", "reminder sent to 王芳"),
    ("added a signer", "加签", "Alice Wong (Supplier Ltd)"),
    ("passed identity check", "通过身份核验", "SMS OTP to +852 9123 ****"),
    ("viewed the document", "查看文件", "contract.pdf, revision 0"),
    ("signed", "签署", "field BuyerSignature, PAdES-B-T"),
]
_PEOPLE = [
    ("陈小明", "采购部 Procurement", "iPhone 15 · iOS 18.1 · DingTalk 7.6", "SMS OTP 短信验证码"),
    ("王芳", "财务部 Finance", "Windows 11 · Edge 131", "password + TOTP"),
    ("Alice Wong", "Supplier Ltd", "Pixel 8 · Android 15 · Chrome 131", "SMS OTP 短信验证码"),
    ("李建国 (CFO)", "财务部 Finance", "macOS 15 · Safari 18", "face 人脸识别"),
]


def _rows(count: int) -> tuple[TimelineRow, ...]:
    rows = []
    for i in range(count):
        name, org, device, identity = _PEOPLE[i % len(_PEOPLE)]
        en, zh, details = _ACTIONS[i % len(_ACTIONS)]
        rows.append(
            TimelineRow(
                leaf_index=1040 + i,
                sequence=i + 1,
                server_time=START + timedelta(minutes=7 * i, seconds=i % 60),
                actor_name=name,
                organisation=org,
                action_en=en,
                action_zh=zh,
                details=details,
                ip=f"203.0.113.{10 + i % 200}",
                connection_ip="198.51.100.7",
                device=device,
                identity=identity if i % 3 else None,
            )
        )
    return tuple(rows)


def sample_input(events: int = 20) -> ReportInput:
    final = "9f2c" * 16
    checkpoint_note = (
        f"{ORIGIN}\n{1040 + events + 200}\nq3fXvUJ1m0M5bC8mVJm3hYb6k1oZ8dF0rT2wXy4pQ5s=\n\n"
        "— ledger.example.hk/log Az3h9Qm2v8XkL0pR5sT7uW9yB1dF3gH5jK7mN9pQ2rS4tV6xZ8aC0eG2iK4mO6q=\n"
    )
    return ReportInput(
        task_id="T-2026-0042",
        title="Laptop purchase and supply contract 笔记本电脑采购及供货合同",
        template="procurement-contract v3 (Procurement with contract 采购及合同)",
        status="completed",
        initiator="陈小明",
        created_at=START,
        finished_at=START + timedelta(minutes=7 * events),
        timezone="Asia/Hong_Kong",
        parties=(
            Party(
                "u-0001",
                "陈小明",
                "采购部 Procurement",
                ("initiator", "signer"),
                (
                    IdentityCheck("sms_otp", "SMS OTP 短信验证码", "passed", START, "SMS-7781"),
                    IdentityCheck(
                        "face", "liveness + ID card 活体+身份证", "passed", START, "FACE-2231"
                    ),
                ),
            ),
            Party(
                "u-0002",
                "王芳",
                "财务部 Finance",
                ("approver",),
                (IdentityCheck("password", "password + TOTP", "passed", START),),
            ),
            Party(
                "ext-42",
                "Alice Wong",
                "Supplier Ltd",
                ("signer",),
                (IdentityCheck("sms_otp", "SMS OTP", "passed", START, "SMS-9912"),),
            ),
            Party("u-0009", "李建国", "财务部 Finance", ("approver", "cc"), ()),
        ),
        documents=(
            DocumentInfo("contract.pdf", "3b7e" * 16, 1_048_576, ("51aa" * 16, final)),
            DocumentInfo("quotation.pdf", "77c1" * 16, 204_800, ()),
        ),
        timeline=_rows(events),
        signatures=(
            SignatureInfo(
                "contract.pdf",
                "51aa" * 16,
                "BuyerSignature",
                "CN=陈小明, O=采购部 Procurement, serialNumber=u-0001",
                "CN=Evidence Ledger Local Signing CA (not a qualified trust service)",
                "0x5a1f3c9e2b7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f",
                START - timedelta(days=1),
                START + timedelta(days=729),
                START + timedelta(minutes=60),
                START + timedelta(minutes=60, seconds=1),
                "PAdES-B-LTA",
            ),
            SignatureInfo(
                "contract.pdf",
                final,
                "SupplierSignature",
                "CN=Alice Wong, O=Supplier Ltd, serialNumber=ext-42",
                "CN=Evidence Ledger Local Signing CA (not a qualified trust service)",
                "0x1d2c3b4a59687766554433221100ffeeddccbbaa",
                START - timedelta(days=1),
                START + timedelta(days=729),
                START + timedelta(minutes=90),
                START + timedelta(minutes=90, seconds=2),
                "PAdES-B-LTA",
            ),
        ),
        anchoring=Anchoring(
            log_origin=ORIGIN,
            ledger_key=f"{ORIGIN}+5e1a2b3c+AZkq0l8Y3xR7pWm2vN9cT4hJ6uB1dF5gK8sQ0eL2oI7y",
            first_leaf=1040,
            last_leaf=1040 + events - 1,
            checkpoint_size=1040 + events + 200,
            checkpoint_root="q3fXvUJ1m0M5bC8mVJm3hYb6k1oZ8dF0rT2wXy4pQ5s=",
            checkpoint_note=checkpoint_note,
            tsa_time=START + timedelta(minutes=7 * events + 1),
            tsa_name="Evidence Ledger Local TSA (not a qualified trust service)",
            later_checkpoints=(1600, 2048),
        ),
        verdict="TOTAL_PASSED",
        verdict_details=(
            "20 events: hashes, chain links and inclusion proofs verified",
            "2 signatures valid; timestamps trusted (local TSA)",
        ),
        verify_command=(
            "evidence-verify T-2026-0042.zip --trust-root signing-ca.pem "
            "--trust-root tsa-root.pem --ledger-key ledger.vkey"
        ),
        trust_anchors=(
            "Ledger key 账本公钥 (C2SP vkey): ledger.vkey",
            "Local TSA root 本地时间戳根证书: tsa-root.pem",
            "Local signing CA root 本地签名 CA 根证书: signing-ca.pem",
        ),
        generated_at=START + timedelta(days=1),
        pack_files=(
            ("manifest.json", "aa" * 32),
            ("documents/contract.pdf", "3b7e" * 16),
            ("events.jsonl", "bb" * 32),
        ),
    )


# -- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: LocalCertificateAuthority
    tsa: LocalTimestampAuthority
    tsa_url: str


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def tsa_authority(tmp_path_factory: pytest.TempPathFactory) -> LocalTimestampAuthority:
    return LocalTimestampAuthority.load_or_create(tmp_path_factory.mktemp("tsa") / "tsa")


@pytest.fixture(scope="module")
def pki(
    tmp_path_factory: pytest.TempPathFactory, tsa_authority: LocalTimestampAuthority
) -> Iterator[Pki]:
    ca = LocalCertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca") / "ca", PASSPHRASE)
    with tsa_authority.serve() as server:
        yield Pki(ca, tsa_authority, server.url)


@pytest.fixture(scope="module")
def report() -> bytes:
    return build_report(sample_input(), ATTACHMENTS)


@pytest.fixture(scope="module")
def signed(report: bytes, pki: Pki) -> bytes:
    return sign_report(
        report,
        report_signer(pki.ca, ORIGIN),
        timestamp_url=pki.tsa_url,
        tsa_trust_roots=[pki.tsa.root_certificate],
        passphrase=PASSPHRASE,
    )


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _validate(pdf: bytes, pki: Pki) -> object:
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    (sig,) = reader.embedded_regular_signatures
    return validate_pdf_signature(
        sig,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(pki.ca.root_certificate)]),
        ts_validation_context=ValidationContext(trust_roots=[_asn1(pki.tsa.root_certificate)]),
    )


def _resolve(value: object) -> object:
    return value.get_object() if isinstance(value, IndirectObject) else value


# -- the ledger's signature ------------------------------------------------------------------


def test_the_report_signer_is_the_ledgers_own_certificate(pki: Pki) -> None:
    signer = report_signer(pki.ca, ORIGIN)
    assert report_signer(pki.ca, ORIGIN).certificate == signer.certificate  # issued once
    subject = signer.certificate.subject
    (common_name,) = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert common_name.value == f"Evidence Ledger report signer ({ORIGIN})"
    (serial,) = subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    assert serial.value == REPORT_SIGNER_ID
    (org,) = subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert org.value == "Evidence Ledger"
    signer.certificate.verify_directly_issued_by(pki.ca.root_certificate)
    with pytest.raises(ValueError, match="origin"):
        report_signer(pki.ca, " ")


def test_the_signature_is_a_trusted_pades_b_t_certification_allowing_no_changes(
    report: bytes, signed: bytes, pki: Pki
) -> None:
    assert signed.startswith(report)  # an incremental revision: the unsigned report is kept
    status = _validate(signed, pki)
    assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
    assert status.bottom_line  # type: ignore[attr-defined]
    stamp = status.timestamp_validity  # type: ignore[attr-defined]
    assert stamp is not None and stamp.intact and stamp.valid and stamp.trusted
    assert status.docmdp_ok  # type: ignore[attr-defined]
    assert status.modification_level == ModificationLevel.NONE  # type: ignore[attr-defined]
    assert status.signing_cert.subject.native["serial_number"] == REPORT_SIGNER_ID  # type: ignore[attr-defined]
    reader = PdfFileReader(io.BytesIO(signed), strict=False)
    (sig,) = reader.embedded_regular_signatures
    assert sig.field_name == REPORT_FIELD_NAME
    assert sig.docmdp_level == MDPPerm.NO_CHANGES  # a certification signature, DocMDP P=1
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert "/DocMDP" in reader.root["/Perms"]
    assert "/Version" not in reader.root  # still PDF 1.7, the base of PDF/A-3
    assert set(reader.root["/Extensions"]) == {"/ESIC"}


def test_a_change_after_signing_is_detected(signed: bytes, pki: Pki) -> None:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    writer.root["/Lang"] = generic.TextStringObject("fr")
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    status = _validate(out.getvalue(), pki)
    assert status.intact and status.valid  # type: ignore[attr-defined]  # bytes signed still match
    assert not status.docmdp_ok  # type: ignore[attr-defined]  # … but the change is flagged
    assert not status.bottom_line  # type: ignore[attr-defined]


def test_signing_needs_tsa_roots(report: bytes, pki: Pki) -> None:
    with pytest.raises(PdfSigningError, match="TSA trust roots"):
        sign_report(
            report,
            report_signer(pki.ca, ORIGIN),
            timestamp_url=pki.tsa_url,
            tsa_trust_roots=[],
            passphrase=PASSPHRASE,
        )


def test_a_timestamp_from_an_untrusted_tsa_is_refused(
    report: bytes, pki: Pki, tmp_path: Path
) -> None:
    other = LocalTimestampAuthority.load_or_create(tmp_path / "other-tsa")
    with pytest.raises(PdfSigningError, match="not trusted"):
        sign_report(
            report,
            report_signer(pki.ca, ORIGIN),
            timestamp_url=pki.tsa_url,
            tsa_trust_roots=[other.root_certificate],
            passphrase=PASSPHRASE,
        )


# -- content ---------------------------------------------------------------------------------


def test_the_text_has_the_names_headings_and_laws_in_both_languages(signed: bytes) -> None:
    text = _text(signed)
    squashed = _squash(text)
    for name in ("陈小明", "王芳", "李建国", "Alice Wong"):
        assert name in text
    for english, chinese in SECTION_HEADINGS:
        assert english in text, english
        assert chinese in text, chinese
    for needle in ("Electronic Signature Law", "eIDAS", "Cap. 553", "art. 13(4)", "art. 26(c)"):
        assert needle in text, needle
    assert "s.6(1A)" in squashed and "NOTMET" in squashed  # never overclaims recognition
    assert "notqualifiedtrustserviceproviders" in squashed
    # the exact verify command and the trust anchors
    assert _squash(sample_input().verify_command) in squashed
    assert "tsa-root.pem" in text and "ledger.vkey" in text
    # times in UTC and in the tenant's zone; header and page numbers in both languages
    assert "2026-11-20 01:30:00 UTC" in text
    assert "2026-11-20 09:30:00 HKT (+08:00)" in text
    assert "Task 任务 T-2026-0042" in text
    assert "Checkpoint 检查点 ledger.example.hk/log" in text
    pages = len(PdfReader(io.BytesIO(signed)).pages)
    assert f"Page 1 of {pages} / 第 1 页 共 {pages} 页" in text


def test_every_timeline_row_is_in_the_report() -> None:
    data = sample_input(20)
    text = _text(build_report(data, {}))
    for row in data.timeline:
        assert f"{row.leaf_index}\n#{row.sequence}" in text or f"#{row.sequence}" in text
        assert row.ip is not None and row.ip in text


def test_an_unknown_time_zone_is_an_error() -> None:
    with pytest.raises(ReportError, match="Mars/Olympus"):
        build_report(replace(sample_input(), timezone="Mars/Olympus"), {})


# -- PDF/A-3 structure -----------------------------------------------------------------------


def test_the_attachments_are_associated_files_with_their_bytes(signed: bytes) -> None:
    reader = PdfReader(io.BytesIO(signed))
    assert {name: data[0] for name, data in reader.attachments.items()} == ATTACHMENTS
    root = reader.trailer["/Root"]
    af = [_resolve(spec) for spec in root["/AF"]]
    relationships = {str(spec["/UF"]): str(spec["/AFRelationship"]) for spec in af}  # type: ignore[index]
    assert relationships == {"manifest.json": "/Data", "events.jsonl": "/Source"}
    for spec in af:
        assert str(spec["/F"]) == str(spec["/UF"])  # type: ignore[index]
        embedded = _resolve(spec["/EF"]["/F"])  # type: ignore[index]
        subtype = str(embedded["/Subtype"])  # type: ignore[index]
        assert subtype.replace("#2F", "/") in ("/application/json", "/application/x-ndjson")
        assert "/ModDate" in embedded["/Params"]  # type: ignore[index]


def _xmp(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    metadata = reader.trailer["/Root"]["/Metadata"].get_object()
    assert "/Filter" not in metadata  # PDF/A: the XMP stream stays readable without filters
    return metadata.get_data().decode("utf-8")


def test_the_report_declares_pdfa_3b_and_signing_keeps_the_claim(
    report: bytes, signed: bytes
) -> None:
    for pdf in (report, signed):
        xmp = _xmp(pdf)
        assert re.search(r"pdfaid:part(>|=\")3", xmp), xmp
        assert re.search(r"pdfaid:conformance(>|=\")B", xmp), xmp
        reader = PdfReader(io.BytesIO(pdf))
        info = reader.metadata  # PDF/A-3 may go without an Info dictionary; if one, it agrees
        for key in ("/Producer", "/Title"):
            if info is not None and key in info:
                assert str(info[key]) in xmp, key
        assert pdf[:5] == b"%PDF-"
        assert all(b > 127 for b in pdf.split(b"\n", 2)[1][1:5])  # binary comment line
        assert "/Encrypt" not in reader.trailer and "/ID" in reader.trailer


def test_there_is_an_srgb_output_intent(signed: bytes) -> None:
    root = PdfReader(io.BytesIO(signed)).trailer["/Root"]
    (intent,) = [_resolve(i) for i in root["/OutputIntents"]]
    assert intent["/S"] == "/GTS_PDFA1"  # type: ignore[index]
    profile = _resolve(intent["/DestOutputProfile"])  # type: ignore[index]
    assert profile["/N"] == 3  # type: ignore[index]
    icc = profile.get_data()  # type: ignore[attr-defined]
    assert icc[36:40] == b"acsp" and icc[16:20] == b"RGB "  # an ICC profile for RGB


def _fonts(obj: object, seen: set[int], found: list[dict[str, object]]) -> None:
    """Every font dictionary reachable from ``obj`` (pages, forms, annotations)."""
    if isinstance(obj, IndirectObject):
        if obj.idnum in seen:
            return
        seen.add(obj.idnum)
        obj = obj.get_object()
    if isinstance(obj, dict):
        if obj.get("/Type") == "/Font":
            found.append(obj)
        for key, value in obj.items():
            if key not in ("/Parent", "/P"):
                _fonts(value, seen, found)
    elif isinstance(obj, list):
        for value in obj:
            _fonts(value, seen, found)


def test_every_font_is_embedded_and_there_is_no_transparency(signed: bytes) -> None:
    reader = PdfReader(io.BytesIO(signed))
    found: list[dict[str, object]] = []
    _fonts(reader.trailer["/Root"], set(), found)
    assert found
    for font in found:
        if font["/Subtype"] == "/Type0":
            (descendant,) = font["/DescendantFonts"]  # type: ignore[misc]
            descriptor = _resolve(_resolve(descendant)["/FontDescriptor"])  # type: ignore[index]
            assert "/ToUnicode" in font
        else:
            descriptor = _resolve(font["/FontDescriptor"])
        assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), font  # type: ignore[operator]
    raw = signed.decode("latin-1")
    assert "/SMask" not in raw
    assert not re.search(r"/(CA|ca) 0?\.\d", raw)
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            flags = int(_resolve(annot)["/F"])  # type: ignore[index]
            assert flags & 4 and not flags & 2  # printable, not hidden (PDF/A 6.3.2)


# -- looking at it ---------------------------------------------------------------------------


def _pdftoppm() -> str:
    found = shutil.which("pdftoppm")
    if found is None:
        message = "pdftoppm (Debian package poppler-utils) is not installed"
        if IN_CI:
            pytest.fail(f"{message}; CI=true needs it (.ci/run installs it)")
        pytest.skip(f"{message}: apt-get install poppler-utils to render the report")
    return found


def test_the_first_pages_render_to_png(signed: bytes, tmp_path: Path) -> None:
    pdftoppm = _pdftoppm()
    source = tmp_path / "report.pdf"
    source.write_bytes(signed)
    out = tmp_path / "renders"
    out.mkdir()
    subprocess.run(
        [pdftoppm, "-png", "-r", "80", "-f", "1", "-l", "4", str(source), str(out / "report")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pngs = sorted(out.glob("report-*.png"))
    assert len(pngs) == 4
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 20_000  # text drawn, not a blank page
    if os.environ.get(KEEP_RENDERS):
        RENDERS_DIR.mkdir(exist_ok=True)
        (RENDERS_DIR / ".gitignore").write_text("*\n")
        (RENDERS_DIR / "report.pdf").write_bytes(signed)
        for png in pngs:
            shutil.copy(png, RENDERS_DIR / png.name)


# -- size ------------------------------------------------------------------------------------


def test_a_10000_event_timeline_builds_in_seconds() -> None:
    data = sample_input(10_000)
    started = time.perf_counter()
    pdf = build_report(data, ATTACHMENTS)
    elapsed = time.perf_counter() - started
    assert elapsed < 15, f"10,000 rows took {elapsed:.1f} s (aim: < 5 s)"
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) > 300
    last_timeline = next(
        page.extract_text()
        for page in reversed(reader.pages)
        if "#10000" in (page.extract_text() or "")
    )
    assert "11039" in last_timeline  # the last leaf index
