"""Issue 6, points 2 and 3: ``verify_pack`` / ``evidence-verify PACK.zip`` on real packs.

Clean packs of the demo story pass (TOTAL_PASSED) with the auditor's anchors and are
INDETERMINATE without them. Each tamper test changes ONE thing in a copy of a clean pack and
expects a specific step to fail with a specific reason; where the change needs the manifest
or the event hashes to follow, they are rewritten so only the deeper steps can object, and
the test names every step that then fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from evidence.demo import run_story
from evidence.pack import export_pack
from evidence.services import open_task_service
from ledger.app import Ledger
from ledger.events import Actor, AppSignature, EventDraft, RequestContext
from ledger.settings import Settings
from tests.verifier.packs import (
    Anchors,
    ed25519_vkey,
    events_of,
    failed_steps,
    manifest_of,
    read_pack,
    set_events,
    sign_note,
    timestamp_response,
    tsa_without_eku,
    write_pack,
)
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main
from verifier.pack import Indication, verify_pack


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class World:
    root: Path
    anchors: Anchors
    contract: Path
    """The signed contract, with its signed report."""
    bare: Path
    """The same contract without report: tampering with it touches no report attachment."""
    purchase: Path
    """The purchase request: a later checkpoint with a consistency proof, an app-signed event."""
    other_log_note: bytes
    app_private: ed25519.Ed25519PrivateKey
    jwks: dict[str, Any]


def _app_signed_comment(
    ledger: Ledger, task: uuid.UUID, private: ed25519.Ed25519PrivateKey
) -> None:
    event_id = uuid.uuid4()
    actor = Actor("u-1001", "陈小明 Chen Xiaoming", "initiator")
    body = {
        "event_id": str(event_id),
        "client_time": "2026-11-22T00:00:00+00:00",
        "stream_id": str(task),
        "type": "comment.added",
        "actor": {"id": actor.id, "display_name": actor.display_name, "role": actor.role},
        "context": {},
        "data": {"text": "PO number PO-7781 attached"},
    }
    header = _b64url(json.dumps({"alg": "EdDSA", "kid": "acme-oa-2026-11"}).encode())
    payload = _b64url(rfc8785.dumps(body))
    signature = _b64url(private.sign(f"{header}.{payload}".encode()))
    ledger.append(
        [
            EventDraft(
                task, "comment.added", actor,
                RequestContext(client_time=body["client_time"]),
                data=body["data"], event_id=event_id,
                app_signature=AppSignature(
                    "acme-oa", "acme-oa-2026-11", "EdDSA", f"{header}.{payload}.{signature}"
                ),
            )
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("packs")
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwks = {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": _b64url(public), "kid": "acme-oa-2026-11",
             "alg": "EdDSA", "use": "sig", "app_id": "acme-oa",
             "registered_at": "2026-11-01T00:00:00Z", "revoked_at": None}
        ]
    }  # fmt: skip
    with Ledger.open(Settings(data_dir=root / "other", seal_interval=0.05)) as other:
        other.start_sealer()
        other.append([EventDraft(uuid.uuid4(), "comment.added", Actor("x", "X", "auditor"))])
        other_note = other.wait_for_checkpoint(0).note.encode()
    with Ledger.open(Settings(data_dir=root / "data", seal_interval=0.05)) as ledger:
        ledger.start_sealer()
        service = open_task_service(ledger)
        run = run_story(service)
        _app_signed_comment(ledger, run.purchase, private)
        ledger.wait_for_checkpoint(ledger.store.tree_size() - 1)
        # one more event elsewhere, so the purchase pack has a later checkpoint
        ledger.append([EventDraft(uuid.uuid4(), "comment.added", Actor("u-9", "Audit", "auditor"))])
        ledger.wait_for_checkpoint(ledger.store.tree_size() - 1, timestamped=True)
        contract = export_pack(ledger, service, run.contract, root / "contract.zip").path
        bare = export_pack(
            ledger, service, run.contract, root / "bare.zip", include_report=False
        ).path
        purchase = export_pack(ledger, service, run.purchase, root / "purchase.zip").path
        anchors = Anchors(
            [VerifierKeyFrom.ledger(ledger)],
            list(service.signer.signer_trust_roots),  # type: ignore[union-attr]
            list(ledger.tsa_trust_roots),
            jwks,
        )
        yield World(root, anchors, contract, bare, purchase, other_note, private, jwks)


class VerifierKeyFrom:
    @staticmethod
    def ledger(ledger: Ledger) -> Any:
        from verifier import VerifierKey

        return VerifierKey.from_string(ledger.key.verifier_key())


def _copy(world: World, source: Path, name: str) -> dict[str, bytes]:
    del world, name
    return read_pack(source)


def _expect(report: Any, step: int, reason: str, *, only: set[int] | None = None) -> None:
    result = report.step(step)
    assert result.verdict.value == "FAILED", (step, result)
    assert reason in result.reason, result.reason
    assert report.indication is Indication.TOTAL_FAILED
    if only is not None:
        assert failed_steps(report) == only, [
            (s.number, s.reason) for s in report.steps if s.verdict.value == "FAILED"
        ]


def _tamper(world: World, name: str, members: dict[str, bytes], **options: Any) -> Path:
    return write_pack(members, world.root / f"{name}.zip", **options)


def _member(members: dict[str, bytes], prefix: str) -> str:
    return next(n for n in sorted(members) if n.startswith(prefix))


# -- clean packs ----------------------------------------------------------------------------------


def test_clean_packs_pass_with_the_auditors_anchors(world: World) -> None:
    for path in (world.contract, world.bare, world.purchase):
        report = world.anchors.verify(path)
        assert report.indication is Indication.TOTAL_PASSED, report.reason
        assert [s.verdict.value for s in report.steps] == ["PASSED"] * 13
    purchase = world.anchors.verify(world.purchase)
    assert purchase.step(8).details["later"], "the purchase pack has a later checkpoint"
    assert purchase.step(12).details["app_signed_events"] == 1
    contract = world.anchors.verify(world.contract)
    assert contract.step(10).details["signatures_matched_to_events"] == 2
    assert contract.etsi_reports, "pyHanko's ETSI report of each signed PDF is kept"


def test_clean_pack_is_indeterminate_without_trust_roots(world: World) -> None:
    report = world.anchors.verify(world.contract, trust_roots=[], tsa_roots=[])
    assert report.indication is Indication.INDETERMINATE
    assert report.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
    assert failed_steps(report) == set()
    assert {s.number for s in report.steps if s.verdict.value == "INDETERMINATE"} == {7, 10, 13}


def test_clean_pack_is_indeterminate_without_a_ledger_key(world: World) -> None:
    report = world.anchors.verify(world.contract, ledger_keys=[])
    assert report.indication is Indication.INDETERMINATE
    assert report.step(5).verdict.value == "INDETERMINATE"
    assert "no ledger verifier key was given" in report.step(5).reason


def test_app_signatures_without_keys_are_indeterminate(world: World) -> None:
    members = read_pack(world.purchase)
    assert "app-keys.jwks.json" not in members
    report = world.anchors.verify(world.purchase, app_keys=None)
    assert report.step(12).verdict.value == "INDETERMINATE"
    assert "app keys are not given" in report.step(12).reason


def test_clean_packs_from_the_conftest_ledger_pass(ledger: Ledger, tmp_path: Path) -> None:
    ledger.start_sealer()
    service = open_task_service(ledger)
    run = run_story(service)
    pack = export_pack(ledger, service, run.contract, tmp_path / "c.zip").path
    from verifier import VerifierKey

    anchors = Anchors(
        [VerifierKey.from_string(ledger.key.verifier_key())],
        list(service.signer.signer_trust_roots),  # type: ignore[union-attr]
        list(ledger.tsa_trust_roots),
    )
    started = time.perf_counter()
    report = anchors.verify(pack)
    assert report.indication is Indication.TOTAL_PASSED, report.reason
    assert time.perf_counter() - started < 1.0, "a typical pack verifies within 1 s"


def test_cli_exit_codes_and_json(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    signing = tmp_path / "signing.pem"
    signing.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in world.anchors.trust_roots))
    tsa = tmp_path / "tsa.pem"
    tsa.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in world.anchors.tsa_roots))
    key = str(world.anchors.ledger_keys[0])
    args = [str(world.contract), "--ledger-key", key, "--trust-root", str(signing)]
    assert main([*args, "--tsa-root", str(tsa), "--json"]) == EXIT_PASSED
    out = json.loads(capsys.readouterr().out)
    assert out["indication"] == "TOTAL_PASSED" and len(out["steps"]) == 13
    assert out["etsi_reports"], "pyHanko's ETSI TS 119 102-2 report is in the JSON"
    # the court report's command form: both roots as --trust-root, options before the pack
    assert main(["--trust-root", str(tsa), *args]) == EXIT_PASSED
    capsys.readouterr()
    assert main([str(world.contract), "--ledger-key", key]) == EXIT_INDETERMINATE
    assert "NO_CERTIFICATE_CHAIN_FOUND" in capsys.readouterr().out
    members = read_pack(world.bare)
    document = manifest_of(members)["documents"][0]["path"]
    members[document] = members[document].replace(b"%PDF-", b"%PDF ", 1)
    broken = write_pack(members, tmp_path / "broken.zip")
    roots = ["--trust-root", str(signing), "--trust-root", str(tsa)]
    assert main([str(broken), "--ledger-key", key, *roots]) == EXIT_FAILED
    assert "TOTAL_FAILED (HASH_FAILURE)" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.zip")]) == EXIT_USAGE
    assert main([str(world.contract), "--ledger-key", "not-a-key"]) == EXIT_USAGE
    assert main([str(world.contract), "--app-keys", str(signing)]) == EXIT_USAGE
    capsys.readouterr()


# -- 1 container ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.pdf", "does not match the member name rule"),
        ("documents/../../etc/passwd", "does not match the member name rule"),
        ("/absolute.txt", "does not match the member name rule"),
        ("Documents\\x.pdf", "does not match the member name rule"),
        ("documents/./x.pdf", "does not match the member name rule"),
    ],
)
def test_tamper_path_trick_in_a_member_name(world: World, name: str, why: str) -> None:
    members = read_pack(world.bare)
    members[name] = b"x"
    path = _tamper(world, "path-trick", members)
    report = world.anchors.verify(path)
    _expect(report, 1, why)
    assert all(s.verdict.value == "INDETERMINATE" for s in report.steps[1:])


def test_tamper_duplicate_member(world: World) -> None:
    members = read_pack(world.bare)
    items = [*members.items(), ("events.jsonl", members["events.jsonl"])]
    path = _tamper(world, "duplicate", items)  # type: ignore[arg-type]
    _expect(world.anchors.verify(path), 1, "occurs more than once")


# -- 2 manifest -----------------------------------------------------------------------------------


def test_tamper_manifest_hash_entry(world: World) -> None:
    members = read_pack(world.bare)
    manifest = manifest_of(members)
    manifest["files"][0]["sha256"] = "0" * 64
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "manifest-hash", members, refresh=False)
    _expect(world.anchors.verify(path), 2, "SHA-256 differs from the manifest", only={2})


def test_tamper_manifest_missing_file(world: World) -> None:
    members = read_pack(world.bare)
    manifest = manifest_of(members)
    name = _member(members, "certificates/signers/")
    del members[name]
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "manifest-missing", members, refresh=False)
    _expect(world.anchors.verify(path), 2, "files lists missing members")


def test_tamper_manifest_extra_file(world: World) -> None:
    members = read_pack(world.bare)
    members["documents/extra.pdf"] = b"%PDF-1.7 not listed"
    path = _tamper(world, "manifest-extra", members, refresh=False)
    _expect(world.anchors.verify(path), 2, "members not listed in files: documents/extra.pdf")


def test_tamper_manifest_path_trick_entry(world: World) -> None:
    members = read_pack(world.bare)
    manifest = manifest_of(members)
    manifest["files"].append({"path": "../outside", "sha256": "0" * 64, "size": 1})
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "manifest-trick", members, refresh=False)
    _expect(world.anchors.verify(path), 2, "unsafe path '../outside'")


def test_tamper_manifest_format(world: World) -> None:
    members = read_pack(world.bare)
    manifest = manifest_of(members)
    manifest["format"] = "evidence-ledger-pack/2"
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "manifest-format", members, refresh=False)
    _expect(world.anchors.verify(path), 2, "this verifier reads only", only={2})


# -- 3 events, 4 chain ----------------------------------------------------------------------------


def test_tamper_event_field_not_rehashed(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    lines[3].envelope["context"]["ip"] = "198.51.100.66"
    set_events(members, lines, rehash=False, rechain=False)
    path = _tamper(world, "event-field", members)
    _expect(world.anchors.verify(path), 3, "not its event_hash", only={3})


def test_tamper_event_field_rehashed_breaks_chain_and_inclusion(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    lines[3].envelope["context"]["ip"] = "198.51.100.66"
    set_events(members, lines, rechain=False)
    path = _tamper(world, "event-rehashed", members)
    report = world.anchors.verify(path)
    _expect(report, 4, "has prev", only={4, 6})
    assert "does not verify" in report.step(6).reason


def test_tamper_event_not_canonical(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    set_events(members, lines, encode=lambda e: json.dumps(e, ensure_ascii=False).encode())
    path = _tamper(world, "not-canonical", members)
    _expect(world.anchors.verify(path), 3, "not the RFC 8785 encoding")


def test_tamper_event_float(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    lines[1].envelope["data"]["amount"] = 1.5
    set_events(members, lines)
    path = _tamper(world, "float", members)
    _expect(world.anchors.verify(path), 3, "is not allowed")


def test_tamper_events_reordered(world: World) -> None:
    members = read_pack(world.bare)
    raw = members["events.jsonl"].splitlines(keepends=True)
    raw[2], raw[3] = raw[3], raw[2]
    members["events.jsonl"] = b"".join(raw)
    path = _tamper(world, "reordered", members)
    _expect(world.anchors.verify(path), 3, "does not increase")


def test_tamper_event_removed(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    removed = lines.pop(2)
    del members[f"proofs/{removed.leaf_index}.tlog-proof"]
    set_events(members, lines, rehash=False, rechain=False)
    path = _tamper(world, "removed", members)
    _expect(world.anchors.verify(path), 4, "expected 3 (a gap, reordering or insertion)", only={4})


def test_tamper_event_inserted(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    forged = json.loads(json.dumps(lines[2].envelope))
    forged["event_id"] = str(uuid.uuid4())
    forged["type"] = "comment.added"
    forged["data"] = {"text": "inserted afterwards"}
    lines.insert(3, type(lines[0])(lines[2].leaf_index, "", forged))
    for number, line in enumerate(lines, start=1):
        line.envelope["sequence"] = number
    # a fresh leaf index between two real ones is impossible; reuse the neighbour's +0.5 slot
    lines[3].leaf_index = lines[2].leaf_index
    set_events(members, lines)
    path = _tamper(world, "inserted", members)
    _expect(world.anchors.verify(path), 3, "does not increase")


def test_tamper_event_appended_with_a_forged_proof(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    forged = json.loads(json.dumps(lines[-1].envelope))
    forged.update(event_id=str(uuid.uuid4()), type="comment.added", data={"text": "late"})
    forged["sequence"] = len(lines) + 1
    size = manifest_of(members)["log"]["checkpoint_size"]
    lines.append(type(lines[0])(size - 1 if lines[-1].leaf_index < size - 1 else size, "", forged))
    set_events(members, lines)
    leaf = lines[-1].leaf_index
    proof = members[f"proofs/{lines[-2].leaf_index}.tlog-proof"].replace(
        f"index {lines[-2].leaf_index}".encode(), f"index {leaf}".encode()
    )
    members[f"proofs/{leaf}.tlog-proof"] = proof
    path = _tamper(world, "appended", members)
    _expect(world.anchors.verify(path), 6, f"the proof of leaf {leaf}", only={6})


def test_tamper_event_of_another_task(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    lines[4].envelope["stream_id"] = str(uuid.uuid4())
    set_events(members, lines)
    path = _tamper(world, "other-stream", members)
    _expect(world.anchors.verify(path), 3, "not the pack's task")


# -- 5 checkpoint signature, 6 inclusion ----------------------------------------------------------


def _checkpoint_name(members: dict[str, bytes]) -> str:
    return f"checkpoints/{manifest_of(members)['log']['checkpoint_size']}.checkpoint"


def _replace_checkpoint(members: dict[str, bytes], note: bytes) -> None:
    """Put ``note`` in place of the pack's checkpoint, in its file and in every proof."""
    name = _checkpoint_name(members)
    old = members[name]
    members[name] = note
    for member in [n for n in members if n.startswith("proofs/")]:
        members[member] = members[member].replace(old, note)


def test_tamper_checkpoint_root_line(world: World) -> None:
    members = read_pack(world.bare)
    name = _checkpoint_name(members)
    text = members[name].decode().split("\n")
    text[2] = base64.b64encode(hashlib.sha256(b"other root").digest()).decode()
    members[name] = "\n".join(text).encode()
    path = _tamper(world, "checkpoint-line", members)
    report = world.anchors.verify(path)
    _expect(report, 5, "the checkpoint note says size")
    assert "against a checkpoint other than the pack's" in report.step(6).reason


def test_tamper_checkpoint_size_line(world: World) -> None:
    members = read_pack(world.bare)
    name = _checkpoint_name(members)
    text = members[name].decode().split("\n")
    text[1] = "0" + text[1]
    members[name] = "\n".join(text).encode()
    path = _tamper(world, "checkpoint-size", members)
    _expect(world.anchors.verify(path), 5, "not a decimal number without leading zeros")


def test_tamper_checkpoint_from_another_log(world: World) -> None:
    members = read_pack(world.bare)
    _replace_checkpoint(members, world.other_log_note)
    path = _tamper(world, "other-log", members)
    _expect(world.anchors.verify(path), 5, "not the pack's log")


def test_tamper_checkpoint_signed_by_another_key(world: World) -> None:
    members = read_pack(world.bare)
    name = _checkpoint_name(members)
    origin = manifest_of(members)["log"]["origin"]
    text = members[name].decode().split("\n\n")[0] + "\n"
    private, key = ed25519_vkey(origin)
    _replace_checkpoint(members, sign_note(text, origin, private, key))
    path = _tamper(world, "other-key", members)
    report = world.anchors.verify(path)
    # the note text is the same, so inclusion still holds; the timestamp is over the old note
    _expect(report, 5, "is not signed by the given ledger key", only={5, 7})


def test_wrong_ledger_key_for_another_log_fails(world: World) -> None:
    _, key = ed25519_vkey("some-other-log.example/abc")
    report = world.anchors.verify(world.bare, ledger_keys=[key])
    _expect(report, 5, "but the ledger keys given are for some-other-log.example/abc")


def test_tamper_proof_hash(world: World) -> None:
    members = read_pack(world.bare)
    name = _member(members, "proofs/")
    lines = members[name].split(b"\n")
    lines[2] = base64.b64encode(hashlib.sha256(lines[2]).digest())
    members[name] = b"\n".join(lines)
    path = _tamper(world, "proof-hash", members)
    _expect(world.anchors.verify(path), 6, "does not verify: inclusion proof yields root", only={6})


def test_tamper_proof_index(world: World) -> None:
    members = read_pack(world.bare)
    name = _member(members, "proofs/")
    leaf = name.split("/")[1].split(".")[0]
    members[name] = members[name].replace(
        f"index {leaf}".encode(), f"index {int(leaf) + 1}".encode()
    )
    path = _tamper(world, "proof-index", members)
    _expect(world.anchors.verify(path), 6, f"says index {int(leaf) + 1}", only={6})


def test_tamper_proof_missing(world: World) -> None:
    members = read_pack(world.bare)
    name = _member(members, "proofs/")
    del members[name]
    path = _tamper(world, "proof-missing", members)
    _expect(world.anchors.verify(path), 6, f"has no {name}", only={6})


# -- 7 timestamps, 8 consistency ------------------------------------------------------------------


def _tsr_name(members: dict[str, bytes]) -> str:
    return f"checkpoints/{manifest_of(members)['log']['checkpoint_size']}.tsr"


def test_tamper_timestamp_token_for_other_data(world: World) -> None:
    members = read_pack(world.bare)
    name = _tsr_name(members)
    other = read_pack(world.purchase)
    members[name] = next(
        data for n, data in sorted(other.items()) if n.endswith(".tsr") and data != members[name]
    )
    path = _tamper(world, "tsr-other", members)
    _expect(world.anchors.verify(path), 7, "imprint", only={7})


def test_tamper_timestamp_by_a_tsa_without_the_eku(world: World) -> None:
    members = read_pack(world.bare)
    root, tsa, key = tsa_without_eku()
    note = members[_checkpoint_name(members)]
    members[_tsr_name(members)] = timestamp_response(note, tsa, key, [tsa])
    path = _tamper(world, "tsr-no-eku", members)
    report = world.anchors.verify(path, tsa_roots=[*world.anchors.tsa_roots, root])
    _expect(report, 7, "extended key usage", only={7})


def test_tamper_timestamp_token_bytes(world: World) -> None:
    members = read_pack(world.bare)
    name = _tsr_name(members)
    token = bytearray(members[name])
    token[-40] ^= 0xFF
    members[name] = bytes(token)
    path = _tamper(world, "tsr-bytes", members)
    _expect(world.anchors.verify(path), 7, "does not verify", only={7})


def test_tamper_consistency_proof_hash(world: World) -> None:
    members = read_pack(world.purchase)
    name = _member(members, "checkpoints/consistency-")
    lines = members[name].split(b"\n")
    lines[3] = base64.b64encode(hashlib.sha256(lines[3]).digest())
    members[name] = b"\n".join(lines)
    manifest = manifest_of(members)
    manifest["report"] = None
    del members["report.pdf"]
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "consistency", members)
    _expect(world.anchors.verify(path), 8, "is not consistent with the pack's", only={8})


# -- 9 documents, 10 signed PDFs ------------------------------------------------------------------


def test_tamper_document_byte(world: World) -> None:
    members = read_pack(world.bare)
    document = manifest_of(members)["documents"][0]
    original = bytearray(members[document["path"]])
    original[200] ^= 0x01
    members[document["path"]] = bytes(original)
    path = _tamper(world, "document-byte", members)
    report = world.anchors.verify(path)
    _expect(report, 9, f"hashes to {hashlib.sha256(original).hexdigest()}", only={9, 10})
    assert "not an incremental update" in report.step(10).reason


def test_tamper_revision_byte(world: World) -> None:
    members = read_pack(world.bare)
    revision = manifest_of(members)["documents"][0]["revisions"][0]
    data = bytearray(members[revision["path"]])
    data[len(data) // 2] ^= 0x01
    members[revision["path"]] = bytes(data)
    path = _tamper(world, "revision-byte", members)
    report = world.anchors.verify(path)
    _expect(report, 9, "which is not its name", only={9, 10})


def test_tamper_pdf_changed_after_signing(world: World) -> None:
    from io import BytesIO

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    members = read_pack(world.bare)
    revision = manifest_of(members)["documents"][0]["revisions"][-1]
    writer = IncrementalPdfFileWriter(BytesIO(members[revision["path"]]))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    page["/Rotate"] = generic.NumberObject(90)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    members[revision["path"]] = out.getvalue()
    path = _tamper(world, "changed-after-signing", members)
    report = world.anchors.verify(path)
    _expect(report, 10, "", only={9, 10})
    assert "hashes to" in report.step(9).reason
    assert report.step(10).verdict.value == "FAILED"


def test_tamper_signed_bytes_of_the_final_revision(world: World) -> None:
    members = read_pack(world.bare)
    revisions = manifest_of(members)["documents"][0]["revisions"]
    final, before = members[revisions[-1]["path"]], members[revisions[-2]["path"]]
    data = bytearray(final)
    spot = len(before) + 40  # inside the bytes the document timestamp covers
    data[spot] = ord(" ") if data[spot] != ord(" ") else ord("\n")
    members[revisions[-1]["path"]] = bytes(data)
    path = _tamper(world, "signed-bytes", members)
    report = world.anchors.verify(path)
    assert report.step(10).verdict.value == "FAILED", report.step(10)
    # Decided by the signatures' own checks, not by the validator giving up on the file.
    assert "cannot be validated" not in report.step(10).reason, report.step(10)
    assert 9 in failed_steps(report)


def test_tamper_swapped_signer_certificate(world: World) -> None:
    members = read_pack(world.bare)
    first, second = sorted(n for n in members if n.startswith("certificates/signers/"))
    members[first], members[second] = members[second], members[first]
    path = _tamper(world, "swapped-certificate", members)
    _expect(world.anchors.verify(path), 10, "does not hash to its name", only={10})


def test_tamper_recorded_certificate_in_the_signing_event(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    signed = next(line for line in lines if line.envelope["type"] == "document.signed")
    signed.envelope["data"]["signature"]["serial"] = "1234"
    set_events(members, lines)
    path = _tamper(world, "recorded-serial", members)
    report = world.anchors.verify(path)
    _expect(report, 10, "the event records '1234'", only={6, 10})


def test_signer_not_chaining_to_the_auditors_root(world: World) -> None:
    root, _tsa, _key = tsa_without_eku()
    report = world.anchors.verify(world.bare, trust_roots=[root])
    assert report.step(10).verdict.value == "INDETERMINATE"
    assert report.indication is Indication.INDETERMINATE


# -- 11 workflow, 12 app signatures ---------------------------------------------------------------


def test_tamper_identity_factor_removed_from_a_signing_event(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    signed = next(line for line in lines if line.envelope["type"] == "document.signed")
    signed.envelope["identity_factors"] = []
    set_events(members, lines)
    path = _tamper(world, "no-identity", members)
    report = world.anchors.verify(path)
    # re-hashed and re-chained: events and chain hold, the log's proofs and the route do not
    _expect(report, 11, "requires a passed 'password' identity check", only={6, 11})


def test_tamper_signing_out_of_order(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    signs = [line for line in lines if line.envelope["type"] == "document.signed"]
    signs[0].envelope["data"]["step"] = "supplier"
    set_events(members, lines)
    path = _tamper(world, "out-of-order", members)
    report = world.anchors.verify(path)
    _expect(report, 11, "is not one of its participants", only={6, 11})


def test_tamper_signer_not_a_participant(world: World) -> None:
    members = read_pack(world.bare)
    lines = events_of(members)
    signed = next(line for line in lines if line.envelope["type"] == "document.signed")
    signed.envelope["actor"]["id"] = "u-6666"
    set_events(members, lines)
    path = _tamper(world, "not-participant", members)
    _expect(world.anchors.verify(path), 11, "'u-6666' acted in step 'company'", only={6, 11})


def test_tamper_app_signature_altered(world: World) -> None:
    members = read_pack(world.purchase)
    lines = events_of(members)
    signed = next(line for line in lines if "app_signature" in line.envelope)
    value = signed.envelope["app_signature"]["value"]
    head, payload, signature = value.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["data"]["text"] = "PO number PO-9999 attached"
    signed.envelope["app_signature"]["value"] = f"{head}.{_b64url(rfc8785.dumps(body))}.{signature}"
    set_events(members, lines)
    manifest = manifest_of(members)
    manifest["report"] = None
    del members["report.pdf"]
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "app-signature", members)
    _expect(world.anchors.verify(path), 12, "does not verify with the app's key", only={6, 12})


def test_app_signature_with_another_apps_key(world: World) -> None:
    jwks = json.loads(json.dumps(world.jwks))
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    jwks["keys"][0]["x"] = _b64url(
        other.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    report = world.anchors.verify(world.purchase, app_keys=jwks)
    _expect(report, 12, "does not verify with the app's key", only={12})


# -- 13 report ------------------------------------------------------------------------------------


def test_tamper_report_byte(world: World) -> None:
    members = read_pack(world.contract)
    data = bytearray(members["report.pdf"])
    data[len(data) // 3] ^= 0x01
    members["report.pdf"] = bytes(data)
    path = _tamper(world, "report-byte", members)
    _expect(world.anchors.verify(path), 13, "report", only={13})


def test_tamper_report_of_another_pack(world: World) -> None:
    members = read_pack(world.contract)
    members["report.pdf"] = read_pack(world.purchase)["report.pdf"]
    path = _tamper(world, "report-swapped", members)
    _expect(world.anchors.verify(path), 13, "embedded events.jsonl differs", only={13})


def test_tamper_manifest_after_the_report(world: World) -> None:
    members = read_pack(world.contract)
    manifest = manifest_of(members)
    manifest["title"] = "A different contract"
    members["manifest.json"] = json.dumps(manifest).encode()
    path = _tamper(world, "report-manifest", members)
    _expect(
        world.anchors.verify(path),
        13,
        "embedded manifest.json differs from the pack's in title",
        only={13},
    )


def test_verify_pack_reports_io_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        verify_pack(tmp_path / "nothing.zip")
