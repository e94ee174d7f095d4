"""Evidence packs of the demo story, checked as an outside verifier would check them.

The pack is read with ``zipfile`` and checked against the spec in docs/evidence-pack.md:
hashes from the manifest, events re-hashed, tlog-proofs parsed here and their proofs and
checkpoints verified with the independent ``verifier`` package, consistency proofs,
documents against the hashes in the events, and member names.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pypdf
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

import verifier
from evidence.demo import DemoRun, run_story
from evidence.pack import FORMAT, SAFE_MEMBER, PackSummary, UnknownTask, export_pack
from evidence.services import open_task_service
from ledger.app import Ledger
from ledger.events import Actor, EventDraft
from ledger.settings import Settings
from ledger.task_service import TaskService


@dataclass
class Exported:
    ledger: Ledger
    service: TaskService
    run: DemoRun
    purchase: PackSummary
    contract: PackSummary


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """The demo story on a fresh SQLite ledger, its two tasks exported."""
    root = tmp_path_factory.mktemp("pack")
    with Ledger.open(Settings(data_dir=root / "data", seal_interval=0.05)) as ledger:
        ledger.start_sealer()
        service = open_task_service(ledger)
        run = run_story(service)
        # One more event after the story, so the contract's checkpoint has a later one.
        last = max(r.leaf_index for r in run.supplier_signed.receipts)
        ledger.wait_for_checkpoint(last)
        auditor = Actor("u-9", "Audit", "auditor")
        ledger.append([EventDraft(uuid.uuid4(), "comment.added", auditor, data={"text": "x"})])
        ledger.wait_for_checkpoint(ledger.store.tree_size() - 1)
        purchase = export_pack(ledger, service, run.purchase, root / "purchase.zip")
        contract = export_pack(
            ledger, service, run.contract, root / "out" / "contract.zip", include_report=False
        )
        yield Exported(ledger, service, run, purchase, contract)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _manifest(path: Path) -> dict:
    return json.loads(_members(path)["manifest.json"])


def _packs(exported: Exported) -> list[PackSummary]:
    return [exported.purchase, exported.contract]


def parse_tlog_proof(text: str) -> tuple[int, list[bytes], str]:
    """c2sp.org/tlog-proof@v1: header, optional extra, index, hashes, blank line, checkpoint."""
    head, separator, checkpoint = text.partition("\n\n")
    assert separator, "a tlog-proof has a blank line before its checkpoint"
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    assert rest[0].startswith("index ")
    index_text = rest[0][len("index ") :]
    assert index_text == str(int(index_text)), "no leading zeros"
    hashes = [base64.b64decode(line, validate=True) for line in rest[1:]]
    assert all(len(h) == 32 for h in hashes)
    return int(index_text), hashes, checkpoint


def test_manifest_lists_every_file_with_its_hash(exported: Exported) -> None:
    for summary in _packs(exported):
        members = _members(summary.path)
        manifest = json.loads(members.pop("manifest.json"))
        assert manifest["format"] == FORMAT
        assert manifest["task_id"] == str(summary.task_id)
        listed = {f["path"]: f for f in manifest["files"]}
        assert set(listed) == set(members), "every member listed, nothing listed missing"
        assert "manifest.json" not in listed
        for path, data in members.items():
            assert listed[path]["sha256"] == hashlib.sha256(data).hexdigest(), path
            assert listed[path]["size"] == len(data), path
        assert summary.files == len(members)
        assert summary.sha256 == hashlib.sha256(summary.path.read_bytes()).hexdigest()


def test_events_rehash_and_match_the_store(exported: Exported) -> None:
    store = exported.ledger.store
    for summary in _packs(exported):
        members = _members(summary.path)
        lines = [json.loads(line) for line in members["events.jsonl"].splitlines()]
        stored = store.read_stream(summary.task_id)
        assert len(lines) == len(stored) == summary.events
        leaves = [line["leaf_index"] for line in lines]
        assert leaves == sorted(leaves)
        previous = None
        for line, event in zip(lines, stored, strict=True):
            canonical = base64.b64decode(line["canonical"], validate=True)
            assert canonical == event.canonical
            assert verifier.leaf_hash(canonical).hex() == line["event_hash"] == event.hash.hex()
            entry = store.entry_for_event(event.event_id)
            assert entry is not None and entry.leaf_index == line["leaf_index"]
            envelope = json.loads(canonical)
            assert envelope["prev"] == previous
            previous = line["event_hash"]


def test_every_tlog_proof_verifies_against_the_signed_checkpoint(exported: Exported) -> None:
    key = verifier.VerifierKey.from_string(exported.ledger.key.verifier_key())
    for summary in _packs(exported):
        members = _members(summary.path)
        manifest = json.loads(members["manifest.json"])
        assert members["certificates/ledger.vkey"].decode().strip() == str(
            manifest["log"]["verifier_key"]
        )
        pack_checkpoint = members[manifest["checkpoints"][0]["note"]].decode()
        hashes = {}
        for line in members["events.jsonl"].splitlines():
            event = json.loads(line)
            hashes[event["leaf_index"]] = bytes.fromhex(event["event_hash"])
        assert set(hashes) == {
            int(name.split("/")[1].split(".")[0]) for name in members if name.startswith("proofs/")
        }
        for index, leaf in hashes.items():
            text = members[f"proofs/{index}.tlog-proof"].decode()
            parsed_index, proof, note = parse_tlog_proof(text)
            assert parsed_index == index
            assert note == pack_checkpoint
            checkpoint = verifier.Checkpoint.from_signed_note(
                note, [key], origin=manifest["log"]["origin"]
            )
            assert checkpoint.size == manifest["log"]["checkpoint_size"] == summary.checkpoint_size
            verifier.verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root_hash)
            with pytest.raises(verifier.VerificationError):
                verifier.verify_inclusion(
                    leaf, index, checkpoint.size, proof, hashlib.sha256(b"x").digest()
                )


def test_checkpoints_carry_tokens_over_their_notes_and_consistency_proofs(
    exported: Exported,
) -> None:
    from ledger.timestamping import verify_timestamp

    key = verifier.VerifierKey.from_string(exported.ledger.key.verifier_key())
    roots = exported.ledger.tsa_trust_roots
    later_seen = 0
    for summary in _packs(exported):
        members = _members(summary.path)
        manifest = json.loads(members["manifest.json"])
        entries = manifest["checkpoints"]
        assert entries[0]["role"] == "pack"
        assert entries[0]["timestamp"] is not None
        heads = {}
        for entry in entries:
            note = members[entry["note"]].decode()
            heads[entry["tree_size"]] = verifier.Checkpoint.from_signed_note(note, [key])
            if entry["timestamp"]:
                token = members[entry["timestamp"]["path"]]
                verify_timestamp(token, note.encode(), roots)
        first = heads[entries[0]["tree_size"]]
        for entry in entries[1:]:
            later_seen += 1
            lines = members[entry["consistency_from_pack"]].decode().splitlines()
            assert lines[0] == "evidence-ledger.pack/consistency-proof@v1"
            assert lines[1] == f"size1 {first.size}"
            assert lines[2] == f"size2 {entry['tree_size']}"
            proof = [base64.b64decode(h, validate=True) for h in lines[3:]]
            second = heads[entry["tree_size"]]
            verifier.verify_consistency(
                first.size, second.size, first.root_hash, second.root_hash, proof
            )
    assert later_seen >= 2, "both packs have a later checkpoint to be consistent with"


def test_documents_and_revisions_match_the_hashes_in_the_events(exported: Exported) -> None:
    summary = exported.contract
    members = _members(summary.path)
    manifest = json.loads(members["manifest.json"])
    recorded: set[str] = set()
    for line in members["events.jsonl"].splitlines():
        envelope = json.loads(base64.b64decode(json.loads(line)["canonical"]))
        data = envelope["data"]
        recorded.update(d["sha256"] for d in data.get("documents", ()))
        if envelope["type"] == "document.signed":
            recorded.add(data["revision_sha256"])
        for final in data.get("final_revisions", ()):
            recorded.add(final["revision_sha256"])
    (document,) = manifest["documents"]
    assert document["sha256"] == exported.run.contract_document
    assert document["file_name"] == "Supply contract NW-2026-112.pdf"
    files = [document, *document["revisions"]]
    assert len(document["revisions"]) == 3  # two signatures, then the B-LTA final
    for item in files:
        data = members[item["path"]]
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        assert item["sha256"] in recorded
        assert item["recorded_at_leaf"] is not None
    revisions = [members[document["path"]], *(members[r["path"]] for r in document["revisions"])]
    for older, newer in itertools.pairwise(revisions):
        assert newer.startswith(older), "each revision is an incremental update of the last"
    assert revisions[0].startswith(b"%PDF-")
    # Signer chains and the TSA chain came out of the PDFs and tokens.
    certificates = manifest["certificates"]
    subjects = " ".join(s["subject"] for s in certificates["signers"])
    assert "John Smith" in subjects and "Margaret Wong" in subjects
    assert all(s["chain_length"] == 2 for s in certificates["signers"])
    assert certificates["tsa"] and certificates["tsa_roots"] and certificates["signer_roots"]
    assert manifest["revocation"]["available"] is False
    assert "publish no CRL" in manifest["revocation"]["note"]


def test_member_names_have_no_path_tricks(exported: Exported) -> None:
    for summary in _packs(exported):
        with zipfile.ZipFile(summary.path) as archive:
            names = archive.namelist()
            assert len(names) == len(set(names))
            for name in names:
                assert SAFE_MEMBER.match(name), name
                assert not name.startswith("/") and "\\" not in name
                assert ".." not in name.split("/")
            assert archive.testzip() is None


def test_export_is_atomic_and_leaves_no_temporary_files(exported: Exported) -> None:
    for summary in _packs(exported):
        leftovers = [p for p in summary.path.parent.iterdir() if p.name.endswith(".partial")]
        assert leftovers == []


def test_unknown_task_fails_cleanly_and_leaves_no_file(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "nothing.zip"
    with pytest.raises(UnknownTask, match="there is no task"):
        export_pack(exported.ledger, exported.service, uuid.uuid4(), out)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_midway_leaves_nothing(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, sha256: str) -> Iterator[bytes]:
        yield b"%PDF-"
        raise OSError("disk gone")

    monkeypatch.setattr(type(exported.service.blobs), "iter_read", broken)
    with pytest.raises(OSError, match="disk gone"):
        export_pack(exported.ledger, exported.service, exported.run.contract, tmp_path / "x.zip")
    assert list(tmp_path.iterdir()) == []


def test_progress_is_reported(exported: Exported, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    export_pack(
        exported.ledger,
        exported.service,
        exported.run.purchase,
        tmp_path / "p.zip",
        lambda phase, done, total: seen.append((phase, done, total)),
        include_report=False,
    )
    phases = [p for p, _, _ in seen]
    assert phases[-1] == "done"
    assert ("events", 16, 16) in seen and ("proofs", 16, 16) in seen


def test_export_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url, seal_interval=0.05)
    with Ledger.open(settings) as ledger:
        ledger.start_sealer()
        service = open_task_service(ledger)
        run = run_story(service)
        summary = export_pack(ledger, service, run.contract, tmp_path / "c.zip")
    manifest = _manifest(summary.path)
    assert manifest["events"]["count"] == summary.events == 10
    assert summary.revisions == 3


def test_report_and_every_signed_pdf_pass_pyhanko_and_show_the_names(
    exported: Exported, tmp_path: Path
) -> None:
    """Issue 5, point 3: checked by others — pyHanko's validator, a text extractor, pdftoppm."""
    summary = export_pack(
        exported.ledger, exported.service, exported.run.contract, tmp_path / "r.zip",
        include_report=True, timezone="Asia/Hong_Kong",
    )  # fmt: skip
    members = _members(summary.path)
    manifest = json.loads(members["manifest.json"])
    assert manifest["report"]["path"] == "report.pdf" and manifest["report"]["signed"]
    signer_roots = x509.load_pem_x509_certificates(members["certificates/signer-roots.pem"])
    tsa_roots = x509.load_pem_x509_certificates(members["certificates/tsa-roots.pem"])

    def context(roots: list[x509.Certificate]) -> ValidationContext:
        return ValidationContext(
            trust_roots=[asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in roots],
            allow_fetching=False,
        )

    revisions = [n for n in members if n.startswith("documents/") and n.count("/") == 2]
    assert len(revisions) == 3
    for name in [*revisions, "report.pdf"]:
        reader = PdfFileReader(io.BytesIO(members[name]), strict=False)
        signatures = reader.embedded_regular_signatures
        assert signatures, name
        for embedded in signatures:
            status = validate_pdf_signature(
                embedded,
                signer_validation_context=context(signer_roots),
                ts_validation_context=context(tsa_roots),
            )
            assert status.bottom_line, (name, status.pretty_print_details())

    # The report's text carries the Chinese and English names and both languages' headings.
    report = pypdf.PdfReader(io.BytesIO(members["report.pdf"]))
    text = "".join(page.extract_text() for page in report.pages)
    for expected in ("陈小明", "Chen Xiaoming", "黄美玲", "John Smith", "时间线", "Timeline"):
        assert expected in text, expected
    # Its attachments are the pack's own events and manifest (without the report's entry).
    assert report.attachments["events.jsonl"] == [members["events.jsonl"]]

    # Pages for a person to look at (kept under EVIDENCE_LEDGER_KEEP_RENDERS, if set).
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdftoppm (poppler-utils) is needed in CI")
        pytest.skip("pdftoppm is not installed: the pages were not rendered")
    (tmp_path / "report.pdf").write_bytes(members["report.pdf"])
    out = Path(os.environ.get("EVIDENCE_LEDGER_KEEP_RENDERS") or tmp_path) / "pack-report"
    subprocess.run(
        [
            pdftoppm,
            "-png",
            "-r",
            "50",
            "-f",
            "1",
            "-l",
            "2",
            str(tmp_path / "report.pdf"),
            str(out),
        ],
        check=True,
    )
    assert len(list(out.parent.glob(f"{out.name}*.png"))) == 2
