"""Revoked and expired signer certificates, and pyHanko's ETSI TS 119 102-2 XML report, in
``verifier.pdf.check_pdf``, ``evidence-verify pdf`` and the pack's PDF step.

The PKI is certomancer's (``tests/pki/signers.yml``): a good signer, one revoked since
2024-01-01 and one expired on 2023-01-01. PDFs are signed with pyHanko, every timestamp
frozen at 2025-06-01 by the in-process TSA (``tests/verifier/signer_pki.py``). Revocation
data is the root's CRL or an OCSP response from certomancer's responder, given on the
command line or embedded in the PDF's DSS; nothing goes over the network.
"""

from __future__ import annotations

import base64
import io
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.dss import DocumentSecurityStore

from tests.verifier.signer_pki import SignerPki, load_signer_pki
from tests.verifier.test_pdf import make_pdf
from verifier import Verdict
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main
from verifier.pdf import (
    ETSI_REPORT_NAMESPACE,
    PdfReport,
    RevocationDataError,
    SignatureFinding,
    check_pdf,
)

VR = "{" + ETSI_REPORT_NAMESPACE + "}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SignerPki:
    return load_signer_pki(tmp_path_factory.mktemp("signer-pki"))


@pytest.fixture(scope="module")
def revoked(pki: SignerPki) -> bytes:
    """Signed with the revoked certificate; content and signature timestamps of 2025."""
    return pki.sign(make_pdf(), "signer-revoked")


@pytest.fixture(scope="module")
def crl(pki: SignerPki) -> bytes:
    return pki.crl()


def _only(report: PdfReport) -> SignatureFinding:
    (finding,) = report.signatures
    return finding


def with_dss(pdf: bytes, *, crls: Sequence[bytes] = (), ocsps: Sequence[bytes] = ()) -> bytes:
    """``pdf`` plus an incremental update whose DSS holds the given revocation data."""
    from asn1crypto import crl as asn1_crl
    from asn1crypto import ocsp as asn1_ocsp

    stream = io.BytesIO(pdf)
    DocumentSecurityStore.add_dss(
        stream,
        None,
        crls=[asn1_crl.CertificateList.load(c) for c in crls],
        ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in ocsps],
        strict=False,
    )
    return stream.getvalue()


# -- clean signatures are unchanged ----------------------------------------------------------------


@pytest.mark.parametrize("revocation", ["none", "crl", "ocsp"])
def test_a_good_certificate_passes_with_or_without_revocation_data(
    pki: SignerPki, crl: bytes, revocation: str
) -> None:
    signed = pki.sign(make_pdf(), "signer")
    given = {
        "none": {},
        "crl": {"crls": [crl]},
        "ocsp": {"ocsp_responses": [pki.ocsp("signer")]},
    }[revocation]
    report = check_pdf(signed, trust_roots=[pki.root], **given)
    assert report.result.verdict is Verdict.PASSED, report.result.reason
    assert _only(report).revoked is False
    assert _only(report).pyhanko_ades == "PASSED/OK"


def test_without_revocation_data_a_revoked_certificate_is_not_detected(
    pki: SignerPki, revoked: bytes
) -> None:
    """No CRL, no OCSP response, no DSS: revocation is not checked (soft fail), as before."""
    report = check_pdf(revoked, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.PASSED
    assert report.result.details["revocation_data"] == {
        "given": {"crls": 0, "ocsp_responses": 0},
        "in_pdf_dss": {"crls": 0, "ocsp_responses": 0},
    }


# -- revoked ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["crl", "ocsp"])
def test_a_certificate_revoked_before_signing_fails_as_revoked(
    pki: SignerPki, revoked: bytes, crl: bytes, source: str
) -> None:
    given = {"crls": [crl]} if source == "crl" else {"ocsp_responses": [pki.ocsp("signer-revoked")]}
    report = check_pdf(revoked, trust_roots=[pki.root], **given)
    assert report.result.verdict is Verdict.FAILED
    finding = _only(report)
    assert finding.indication == "TOTAL_FAILED" and finding.sub_indication == "REVOKED"
    assert finding.revoked and finding.intact and finding.valid
    assert "revoked on 2024-01-01" in finding.reason
    assert "content timestamp of 2025-06-01" in finding.reason
    assert report.result.details["sub_indication"] == "REVOKED"
    assert finding.pyhanko_ades == "FAILED/REVOKED"


def test_revocation_data_in_the_pdfs_dss_is_used(
    pki: SignerPki, revoked: bytes, crl: bytes
) -> None:
    ltv = with_dss(revoked, crls=[crl])
    assert ltv.startswith(revoked)
    report = check_pdf(ltv, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.FAILED, report.result.reason
    assert _only(report).sub_indication == "REVOKED"
    assert report.result.details["revocation_data"]["in_pdf_dss"]["crls"] == 1
    # the same DSS about a good certificate changes nothing
    good = with_dss(pki.sign(make_pdf(), "signer"), ocsps=[pki.ocsp("signer")])
    assert check_pdf(good, trust_roots=[pki.root]).result.verdict is Verdict.PASSED


def test_revoked_with_only_a_signature_timestamp_is_revoked_no_poe(
    pki: SignerPki, crl: bytes
) -> None:
    """The signature timestamp (2025) proves the signature existed after the revocation
    (2024), not that it was made after it: ETSI's INDETERMINATE / REVOKED_NO_POE."""
    signed = pki.sign(make_pdf(), "signer-revoked", content_timestamp=False)
    report = check_pdf(signed, trust_roots=[pki.root], crls=[crl])
    assert report.result.verdict is Verdict.INDETERMINATE
    finding = _only(report)
    assert finding.sub_indication == "REVOKED_NO_POE" and finding.revoked
    assert "no trusted timestamp proves" in finding.reason


def test_a_certificate_revoked_after_signing_is_revoked_no_poe_at_worst(
    pki: SignerPki, crl: bytes
) -> None:
    """Signed (and timestamped) in 2023, before the 2024 revocation: never TOTAL_FAILED."""
    from datetime import UTC, datetime

    signed = pki.sign(make_pdf(), "signer-revoked", at=datetime(2023, 6, 1, tzinfo=UTC))
    report = check_pdf(signed, trust_roots=[pki.root], crls=[crl])
    assert report.result.verdict is not Verdict.FAILED
    assert _only(report).sub_indication != "REVOKED"


# -- expired ---------------------------------------------------------------------------------------


def test_a_certificate_expired_before_signing_fails_as_expired(pki: SignerPki) -> None:
    signed = pki.sign(make_pdf(), "signer-expired")
    report = check_pdf(signed, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.FAILED
    finding = _only(report)
    assert finding.indication == "TOTAL_FAILED" and finding.sub_indication == "EXPIRED"
    assert "expired on 2023-01-01" in finding.reason
    assert finding.pyhanko_ades == "INDETERMINATE/EXPIRED"


def test_expired_with_only_a_signature_timestamp_is_out_of_bounds_no_poe(pki: SignerPki) -> None:
    signed = pki.sign(make_pdf(), "signer-expired", content_timestamp=False)
    report = check_pdf(signed, trust_roots=[pki.root])
    assert report.result.verdict is Verdict.INDETERMINATE
    assert _only(report).sub_indication == "OUT_OF_BOUNDS_NO_POE"


# -- revocation data that cannot be read -----------------------------------------------------------


def test_unreadable_revocation_data_is_refused(pki: SignerPki, revoked: bytes) -> None:
    with pytest.raises(RevocationDataError):
        check_pdf(revoked, trust_roots=[pki.root], crls=[b"not a crl"])
    with pytest.raises(RevocationDataError):
        check_pdf(revoked, trust_roots=[pki.root], ocsp_responses=[b"\x30\x03\x0a\x01\x01"])


# -- pyHanko's ETSI TS 119 102-2 XML report --------------------------------------------------------


def _signature_values(pdf: bytes) -> dict[str, str]:
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    return {
        str(s.field_name): base64.b64encode(s.signer_info["signature"].native).decode()
        for s in reader.embedded_regular_signatures
    }


def test_the_etsi_xml_report_names_each_signature_with_its_main_indication(
    pki: SignerPki, crl: bytes
) -> None:
    twice = pki.sign(pki.sign(make_pdf(), "signer", "Buyer"), "signer-revoked", "Supplier")
    report = check_pdf(twice, trust_roots=[pki.root], crls=[crl])
    assert report.etsi_report_xml is not None
    root = ElementTree.fromstring(report.etsi_report_xml)
    assert root.tag == f"{VR}ValidationReport"
    main_by_value = {
        element.findtext(f"{VR}SignatureIdentifier/{DS}SignatureValue", "").strip(): (
            element.findtext(f"{VR}SignatureValidationStatus/{VR}MainIndication")
        )
        for element in root.findall(f"{VR}SignatureValidationReport")
    }
    values = _signature_values(twice)
    assert set(main_by_value) == set(values.values())
    assert main_by_value[values["Buyer"]] == "urn:etsi:019102:mainindication:total-passed"
    assert main_by_value[values["Supplier"]] == "urn:etsi:019102:mainindication:total-failed"
    subs = [e.text for e in root.iter(f"{VR}SubIndication")]
    assert "urn:etsi:019102:subindication:REVOKED" in subs
    assert root.find(f"{VR}SignatureValidationObjects") is not None


# -- the command line ------------------------------------------------------------------------------


def test_cli_crl_and_ocsp_options(
    pki: SignerPki,
    revoked: bytes,
    crl: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pdf = tmp_path / "revoked.pdf"
    pdf.write_bytes(revoked)
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
    crl_der = tmp_path / "root.crl"
    crl_der.write_bytes(crl)
    crl_pem = tmp_path / "root.crl.pem"
    crl_pem.write_text(
        "-----BEGIN X509 CRL-----\n" + base64.encodebytes(crl).decode() + "-----END X509 CRL-----\n"
    )
    ocsp = tmp_path / "revoked.ocsp"
    ocsp.write_bytes(pki.ocsp("signer-revoked"))
    base = ["pdf", str(pdf), "--trust-root", str(root)]

    assert main(base) == EXIT_PASSED  # no revocation data: not checked
    capsys.readouterr()
    for extra in (["--crl", str(crl_der)], ["--crl", str(crl_pem)], ["--ocsp", str(ocsp)]):
        assert main([*base, *extra, "--json"]) == EXIT_FAILED, extra
        out = json.loads(capsys.readouterr().out)
        assert out["details"]["sub_indication"] == "REVOKED"
        assert out["details"]["signatures"][0]["revoked"] is True
        xml = out["details"]["etsi_report_xml"]
        assert ElementTree.fromstring(xml).tag == f"{VR}ValidationReport"
    assert main([*base, "--crl", str(crl_der)]) == EXIT_FAILED
    assert "REVOKED" in capsys.readouterr().out

    late = tmp_path / "late.pdf"
    late.write_bytes(pki.sign(make_pdf(), "signer-revoked", content_timestamp=False))
    args = ["pdf", str(late), "--trust-root", str(root), "--crl", str(crl_der)]
    assert main(args) == EXIT_INDETERMINATE
    capsys.readouterr()

    assert main([*base, "--crl", str(pdf)]) == EXIT_USAGE
    assert main([*base, "--ocsp", str(crl_der)]) == EXIT_USAGE
    assert main([*base, "--crl", str(tmp_path / "missing.crl")]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "--crl" in captured.err and "--ocsp" in captured.err


# -- inside a pack ---------------------------------------------------------------------------------


class _RevokedCertificateSigner:
    """The ledger's document signer, except that every signature is made with certomancer's
    revoked certificate (content and signature timestamps of 2025) and nothing is added when
    a task completes (no B-LTA revision), so the PDFs carry no revocation data."""

    def __init__(self, inner: Any, pki: SignerPki) -> None:
        self._inner, self._pki = inner, pki
        self.tsa_trust_roots = inner.tsa_trust_roots
        self.signer_trust_roots = [*inner.signer_trust_roots, pki.root]

    def check_pdf(self, data: bytes) -> None:
        self._inner.check_pdf(data)

    def sign(self, pdf: bytes, *, signer: Any, placement: Any, field_name: str, reason: str) -> Any:
        from cryptography.hazmat.primitives import hashes

        from ledger.task_service import SignedRevision

        del signer, placement, reason
        certificate = self._pki.certificate("signer-revoked")
        facts = {
            "field": field_name,
            "level": "PAdES-B-T",
            "subject": certificate.subject.rfc4514_string(),
            "issuer": certificate.issuer.rfc4514_string(),
            "serial": format(certificate.serial_number, "x"),
            "certificate_sha256": certificate.fingerprint(hashes.SHA256()).hex(),
        }
        return SignedRevision(self._pki.sign(pdf, "signer-revoked", field_name), facts)

    def accept_signed(self, pdf: bytes, previous: bytes) -> Any:
        return self._inner.accept_signed(pdf, previous)

    def finalise(self, pdf: bytes) -> bytes:
        return pdf


def test_a_pack_signed_with_a_revoked_certificate_fails_step_10(
    pki: SignerPki, crl: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evidence.demo import run_story
    from evidence.pack import export_pack
    from evidence.services import open_task_service
    from ledger.app import Ledger
    from ledger.blobs import BlobStore
    from ledger.settings import Settings
    from ledger.task_service import TaskService
    from verifier import VerifierKey
    from verifier.pack import Indication, verify_pack

    with Ledger.open(Settings(data_dir=tmp_path / "data", seal_interval=0.05)) as ledger:
        ledger.start_sealer()
        default = open_task_service(ledger)
        signer = _RevokedCertificateSigner(default.signer, pki)
        service = TaskService(ledger.store, BlobStore(ledger.settings.blobs_dir), signer)
        run = run_story(service)
        ledger.wait_for_checkpoint(ledger.store.tree_size() - 1, timestamped=True)
        pack = export_pack(
            ledger, service, run.contract, tmp_path / "revoked.zip", include_report=False
        ).path
        keys = [VerifierKey.from_string(ledger.key.verifier_key())]
        tsa_roots = [*ledger.tsa_trust_roots, pki.root]
    roots = [*default.signer.signer_trust_roots, pki.root]  # type: ignore[union-attr]

    def verify(**given: Any) -> Any:
        return verify_pack(pack, ledger_keys=keys, trust_roots=roots, tsa_roots=tsa_roots, **given)

    # Without revocation data the pack passes: nothing says the certificate is revoked.
    clean = verify()
    assert clean.indication is Indication.TOTAL_PASSED, clean.reason
    for given in ({"crls": [crl]}, {"ocsp_responses": [pki.ocsp("signer-revoked")]}):
        report = verify(**given)
        assert report.indication is Indication.TOTAL_FAILED, report.reason
        assert report.sub_indication == "REVOKED"
        step = report.step(10)
        assert step.verdict is Verdict.FAILED and step.sub_indication == "REVOKED"
        assert "revoked on 2024-01-01" in step.reason
        assert [s.number for s in report.steps if s.verdict is not Verdict.PASSED] == [10]
        (xml,) = [x for x in report.etsi_reports_xml.values() if x is not None][:1]
        assert "urn:etsi:019102:subindication:REVOKED" in xml

    # The command line, with --crl, and its JSON.
    crl_file = tmp_path / "root.crl"
    crl_file.write_bytes(crl)
    pem_files = []
    for name, certificates in (("roots.pem", roots), ("tsa.pem", tsa_roots)):
        path = tmp_path / name
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
        pem_files.append(str(path))
    args = [str(pack), "--trust-root", pem_files[0], "--tsa-root", pem_files[1]]
    args += [arg for key in keys for arg in ("--ledger-key", str(key))]
    assert main([*args, "--crl", str(crl_file), "--json"]) == EXIT_FAILED
    out = json.loads(capsys.readouterr().out)
    assert out["indication"] == "TOTAL_FAILED" and out["sub_indication"] == "REVOKED"
    assert out["steps"][9]["sub_indication"] == "REVOKED"
    assert any(out["etsi_reports_xml"].values())
    assert main(args) == EXIT_PASSED
