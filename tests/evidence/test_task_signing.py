"""Signing task documents through the task service with the local CA and TSA (issue 3, point 5).

Real PDFs, real PAdES signatures, a real RFC 3161 TSA on loopback; every revision is checked
by pyHanko's validator and every revision's hash must be in the log.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext

from evidence.local_ca import LocalCertificateAuthority, SignerIdentity
from evidence.pdf_signing import sign_pdf
from evidence.task_signing import LocalCaDocumentSigner
from evidence.testing_pdfs import make_test_pdf
from ledger.blobs import BlobStore
from ledger.events import Actor, RequestContext
from ledger.local_tsa import LocalTimestampAuthority, LocalTsaServer
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.task_service import Acting, DocumentRefused, SignerProfile, TaskService
from ledger.workflow import (
    Create,
    ParticipantRef,
    Placement,
    StepSpec,
    Submit,
    Template,
    VerifyIdentity,
    route,
)
from ledger.workflow import errors as e
from tests.workflow import INITIATOR, seed_directory

PASSPHRASE = b"task signing tests"
SUPPLIER = "ext-supplier"
BUYER_SIGNATORY = "u-signatory"


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@dataclass
class World:
    service: TaskService
    ca: LocalCertificateAuthority
    tsa: LocalTimestampAuthority
    tsa_url: str


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTimestampAuthority, str]]:
    authority = LocalTimestampAuthority.load_or_create(tmp_path_factory.mktemp("tsa") / "tsa")
    server: LocalTsaServer
    with authority.serve() as server:
        yield authority, server.url


@pytest.fixture
def world(tmp_path: Path, tsa: tuple[LocalTimestampAuthority, str]) -> Iterator[World]:
    authority, url = tsa
    ca = LocalCertificateAuthority.load_or_create(tmp_path / "ca", PASSPHRASE)
    signer = LocalCaDocumentSigner(
        ca, PASSPHRASE, timestamp_url=url, tsa_trust_roots=[authority.root_certificate]
    )
    store = SQLiteLedgerStore(tmp_path / "ledger.sqlite3")
    try:
        yield World(TaskService(store, BlobStore(tmp_path / "blobs"), signer), ca, authority, url)
    finally:
        store.close()


def contract_template() -> Template:
    """Our signatory signs first, then the external supplier after an SMS OTP check."""
    return Template(
        "supply-contract",
        1,
        "Supply contract",
        (
            StepSpec(
                "company",
                "Company signs",
                "signer",
                "sequential",
                (ParticipantRef(user=BUYER_SIGNATORY),),
                required_factors=("password",),
                placements=(Placement(1, 60, 60, 280, 130),),
            ),
            StepSpec(
                "supplier",
                "Supplier signs",
                "signer",
                "sequential",
                (ParticipantRef(user=SUPPLIER),),
                required_factors=("sms_otp",),
                placements=(Placement(1, 320, 60, 540, 130),),
            ),
        ),
    )


def by(user: str, organisation: str) -> Acting:
    return Acting(
        Actor(user, user, "signer", organisation),
        RequestContext(ip="198.51.100.20", user_agent="Mozilla/5.0 (Android 14)", device_id="d9"),
    )


BUYER = SignerProfile(BUYER_SIGNATORY, "陈小明", "Acme HK Ltd", email="xiaoming@acme.example")
SUPPLIER_PROFILE = SignerProfile(SUPPLIER, "Alice Supplier", "Supplier Ltd", phone="+85291234567")


def launch(world: World) -> tuple[UUID, str]:
    contract = world.service.upload(make_test_pdf("Supply contract"), "supply-contract.pdf")
    task = uuid4()
    r = route(contract_template(), {}, INITIATOR, seed_directory())
    world.service.create(
        task, Create(r, "Supply contract", documents=(contract,)), by(INITIATOR, "Acme HK Ltd")
    )
    world.service.act(task, Submit(), by(INITIATOR, "Acme HK Ltd"))
    return task, contract.sha256


def test_two_party_contract_is_signed_finalised_and_every_revision_logged(world: World) -> None:
    task, original = launch(world)
    service = world.service
    with pytest.raises(e.IdentityCheckRequired):
        service.sign(task, original, by(BUYER_SIGNATORY, "Acme HK Ltd"), profile=BUYER)
    assert len(list(world.service.blobs.root.glob("*/*"))) == 1  # nothing signed on refusal
    service.act(task, VerifyIdentity("password", "sso", "passed"), by(BUYER_SIGNATORY, "Acme"))
    first = service.sign(task, original, by(BUYER_SIGNATORY, "Acme HK Ltd"), profile=BUYER)
    assert first.event_types == ["document.signed"] and first.state.status == "partially_signed"
    service.act(
        task, VerifyIdentity("sms_otp", "sms", "passed", "sms-7781"), by(SUPPLIER, "Supplier")
    )
    done = service.sign(task, original, by(SUPPLIER, "Supplier Ltd"), profile=SUPPLIER_PROFILE)
    assert done.event_types == ["document.signed", "task.completed"]
    assert done.state.status == "completed"

    document = done.state.document(original)
    assert document is not None and len(document.revisions) == 3  # two signatures + B-LTA
    logged = set()
    for event in service.store.read_stream(task):
        data = event.envelope["data"]
        logged.update(
            [data.get("revision_sha256")]
            + [f["revision_sha256"] for f in data.get("final_revisions", ())]
        )
    assert set(document.revisions) <= logged

    signed = [ev.envelope for ev in service.store.read_stream(task)]
    supplier_signed = [ev for ev in signed if ev["type"] == "document.signed"][-1]
    assert supplier_signed["identity_factors"][0]["provider_reference"] == "sms-7781"
    assert "Alice Supplier" in supplier_signed["data"]["signature"]["subject"]
    assert supplier_signed["data"]["signature"]["level"] == "PAdES-B-T"

    # Each revision is a prefix of the next, and pyHanko accepts the final one.
    revisions = [service.blobs.read(h) for h in (original, *document.revisions)]
    for older, newer in itertools.pairwise(revisions):
        assert newer.startswith(older)
    final = PdfFileReader(io.BytesIO(revisions[-1]), strict=False)
    names = [s.field_name for s in final.embedded_regular_signatures]
    assert names == ["Signature1-company", "Signature2-supplier"]
    for embedded in final.embedded_regular_signatures:
        status = validate_pdf_signature(
            embedded,
            signer_validation_context=ValidationContext(
                trust_roots=[_asn1(world.ca.root_certificate)], allow_fetching=False
            ),
            ts_validation_context=ValidationContext(
                trust_roots=[_asn1(world.tsa.root_certificate)], allow_fetching=False
            ),
        )
        assert status.bottom_line, status.pretty_print_details()
    (document_timestamp,) = final.embedded_timestamp_signatures
    stamp = validate_pdf_timestamp(
        document_timestamp,
        validation_context=ValidationContext(
            trust_roots=[_asn1(world.tsa.root_certificate)], allow_fetching=False
        ),
    )
    assert stamp.intact and stamp.valid and stamp.trusted


def test_a_pdf_signed_with_the_signers_own_key_is_checked_before_it_is_accepted(
    world: World, tmp_path: Path
) -> None:
    task, original = launch(world)
    service = world.service
    service.act(task, VerifyIdentity("password", "sso", "passed"), by(BUYER_SIGNATORY, "Acme"))
    held = service.blobs.read(original)
    own_ca = LocalCertificateAuthority.load_or_create(tmp_path / "own-ca", b"own")
    own = own_ca.issue_signer(
        SignerIdentity(BUYER_SIGNATORY, "陈小明", "Acme HK Ltd", email="xiaoming@acme.example")
    )
    signed_elsewhere = sign_pdf(
        held,
        own,
        placement=Placement(1, 60, 60, 280, 130),
        field_name="OwnKey",
        reason="I agree",
        location="Hong Kong",
        timestamp_url=world.tsa_url,
        tsa_trust_roots=[world.tsa.root_certificate],
        passphrase=b"own",
    )
    size = service.store.tree_size()
    # Not trusted: the signer's own CA is not among the configured roots.
    with pytest.raises(DocumentRefused, match="certificate path"):
        service.sign(task, original, by(BUYER_SIGNATORY, "Acme"), signed_pdf=signed_elsewhere)
    # A PDF not built on the held revision.
    with pytest.raises(DocumentRefused, match="incremental update"):
        service.sign(task, original, by(BUYER_SIGNATORY, "Acme"), signed_pdf=make_test_pdf("x"))
    assert service.store.tree_size() == size

    # Trust the signer's CA, and the same PDF is accepted as the next revision.
    assert isinstance(service.signer, LocalCaDocumentSigner)
    service.signer.signer_trust_roots.append(own_ca.root_certificate)
    result = service.sign(task, original, by(BUYER_SIGNATORY, "Acme"), signed_pdf=signed_elsewhere)
    event = service.store.read_stream(task)[-1].envelope
    assert event["data"]["signature"]["submitted_by_signer"] is True
    assert result.state.document(original) is not None
    assert service.blobs.read(event["data"]["revision_sha256"]) == signed_elsewhere


def test_signing_out_of_turn_or_an_unknown_document_signs_nothing(world: World) -> None:
    task, original = launch(world)
    service = world.service
    with pytest.raises(e.NotAParticipant):
        service.sign(task, original, by(SUPPLIER, "Supplier Ltd"), profile=SUPPLIER_PROFILE)
    with pytest.raises(e.UnknownDocument):
        service.sign(task, "f" * 64, by(BUYER_SIGNATORY, "Acme"), profile=BUYER)
    with pytest.raises(DocumentRefused, match="readable PDF"):
        service.upload(b"%PDF-1.7\n garbage with no objects", "broken.pdf")
    assert len(list(service.blobs.root.glob("*/*"))) == 1
