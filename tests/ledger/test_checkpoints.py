"""Signed checkpoints (C2SP tlog-checkpoint + signed-note), the sealer and its timestamps."""

from __future__ import annotations

import base64
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from ledger import merkle
from ledger.app import Ledger
from ledger.audit import audit
from ledger.checkpoints import CheckpointBody, sign_note, split_note
from ledger.errors import InconsistentCheckpoint, KeyMismatch
from ledger.keys import NoteKey, key_id, load_or_create_private_key
from ledger.local_tsa import LocalTimestampAuthority
from ledger.sealer import MAX_SEALING_DELAY, Sealer, SealerThread
from ledger.settings import Settings
from ledger.timestamping import TimestampClient, TimestampUnavailable
from tests.factories import draft
from verifier._internal import merkle as independent
from verifier._internal.note import parse_verifier_key, verify_note


def test_key_id_matches_the_c2sp_signed_note_example() -> None:
    # The example verifier key of C2SP signed-note / golang.org/x/mod/sumdb/note.
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    name, hex_id, encoded = vkey.split("+")
    public = base64.b64decode(encoded)[1:]
    assert key_id(name, public).hex() == hex_id


def test_checkpoint_note_has_the_c2sp_shape_and_verifies_independently(tmp_path: Path) -> None:
    key = NoteKey("example.org/log", load_or_create_private_key(tmp_path / "k.pem"))
    body = CheckpointBody("example.org/log", 42, bytes(range(32)))
    note = sign_note(body.text(), key)
    lines = note.split("\n")
    assert lines[:4] == [
        "example.org/log",
        "42",
        base64.b64encode(bytes(range(32))).decode(),
        "",
    ]
    assert lines[4].startswith("\u2014 example.org/log ")
    assert len(base64.b64decode(lines[4].split(" ")[2])) == 4 + 64
    text, signatures = split_note(note)
    assert CheckpointBody.parse(text) == body
    assert signatures[0][1][:4] == key.key_id
    checked = verify_note(note, [parse_verifier_key(key.verifier_key())])
    assert checked.text == body.text()


def test_ledger_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    with Ledger.open(settings) as first:
        vkey = first.key.verifier_key()
    assert settings.key_path.stat().st_mode & 0o777 == 0o600
    with Ledger.open(settings) as again:
        assert again.key.verifier_key() == vkey


def test_ledger_refuses_to_sign_with_a_different_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    Ledger.open(settings).close()
    settings.key_path.unlink()
    with pytest.raises(KeyMismatch, match="not the key"):
        Ledger.open(settings)


def test_sealer_signs_each_growth_once_with_a_checked_consistency_proof(
    ledger: Ledger,
) -> None:
    sealer = Sealer(ledger.store, ledger.key, timestamper=None)
    assert sealer.seal() is None  # nothing to seal in an empty log
    ledger.append([draft() for _ in range(5)])
    first = sealer.seal()
    assert first is not None and first.tree_size == 5 and first.previous_size is None
    assert sealer.seal() is None  # no growth, no new checkpoint
    ledger.append([draft() for _ in range(8)])
    second = sealer.seal()
    assert second is not None and second.previous_size == 5
    independent.verify_consistency(
        5, 13, first.root_hash, second.root_hash, list(second.consistency_proof)
    )
    vkey = parse_verifier_key(ledger.key.verifier_key())
    for checkpoint in (first, second):
        verify_note(checkpoint.note, [vkey])
    assert [c.tree_size for c in ledger.store.checkpoints()] == [5, 13]


def test_sealer_refuses_to_sign_after_the_stored_tree_was_rewritten(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    with Ledger.open(settings) as ledger:
        ledger.append([draft() for _ in range(6)])
        sealer = Sealer(ledger.store, ledger.key, timestamper=None)
        assert sealer.seal() is not None
        # An attacker with database rights drops the guard and rewrites the subtree over
        # leaves 4-5, one of the two nodes of the signed root at size 6. (A rewrite deeper
        # down leaves the signed nodes intact; the audit, which rebuilds every node,
        # catches that.)
        rewritten = merkle.node_id((1, 2))
        with sqlite3.connect(settings.sqlite_path) as raw:
            raw.execute("DROP TRIGGER ledger_nodes_no_update")
            raw.execute(
                "UPDATE ledger_nodes SET hash = zeroblob(32) WHERE node_id = ?", [rewritten]
            )
        ledger.append([draft()])
        with pytest.raises(InconsistentCheckpoint, match="refusing to sign"):
            sealer.seal()
        assert [c.tree_size for c in ledger.store.checkpoints()] == [6]


def test_sealing_delay_is_bounded_while_the_sealer_runs(ledger: Ledger) -> None:
    thread = SealerThread(Sealer(ledger.store, ledger.key, timestamper=None), interval=0.2)
    thread.start()
    try:
        delays = []
        for burst in range(6):
            receipts = ledger.append([draft() for _ in range(burst + 1)])
            started = time.monotonic()
            while ledger.store.checkpoint_covering(receipts[-1].leaf_index) is None:
                assert time.monotonic() - started < 5, "no checkpoint after 5 s"
                time.sleep(0.01)
            delays.append(time.monotonic() - started)
            time.sleep(0.07 * burst)  # land at different points of the interval
        assert max(delays) <= MAX_SEALING_DELAY, delays
    finally:
        thread.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tsa_outage_leaves_checkpoints_untimestamped_then_retries(tmp_path: Path) -> None:
    authority = LocalTimestampAuthority.load_or_create(tmp_path / "tsa")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with Ledger.open(Settings(data_dir=tmp_path / "d")) as ledger:
        client = TimestampClient([url], [authority.root_certificate], timeout=2)
        sealer = Sealer(ledger.store, ledger.key, client)
        ledger.append([draft() for _ in range(3)])
        checkpoint = sealer.seal()
        assert checkpoint is not None
        with pytest.raises(TimestampUnavailable):
            sealer.timestamp_pending()
        # Fails closed: nothing stands in for the missing token.
        assert ledger.store.timestamps() == {}
        assert [c.tree_size for c in ledger.store.untimestamped_checkpoints()] == [3]
        report = audit(ledger.store, ledger.key, [authority.root_certificate])
        assert report.passed and report.untimestamped == [3]

        with authority.serve(port=port):
            assert sealer.timestamp_pending() == 1
        stamp = ledger.store.timestamp_for(3)
        assert stamp is not None and stamp.tsa_url == url
        report = audit(ledger.store, ledger.key, [authority.root_certificate])
        assert report.passed and report.timestamps_checked == 1 and not report.untimestamped


def test_sealer_thread_recovers_when_the_tsa_comes_back(tmp_path: Path) -> None:
    authority = LocalTimestampAuthority.load_or_create(tmp_path / "tsa")
    port = free_port()
    with Ledger.open(Settings(data_dir=tmp_path / "d")) as ledger:
        client = TimestampClient(
            [f"http://127.0.0.1:{port}/"], [authority.root_certificate], timeout=2
        )
        thread = SealerThread(Sealer(ledger.store, ledger.key, client), interval=0.05)
        thread.start()
        try:
            ledger.append([draft()])
            deadline = time.monotonic() + 5
            while thread.last_error is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert isinstance(thread.last_error, TimestampUnavailable)
            assert ledger.store.timestamps() == {}
            with authority.serve(port=port):
                deadline = time.monotonic() + 10
                while not ledger.store.timestamps() and time.monotonic() < deadline:
                    time.sleep(0.05)
                    thread.notify()
            assert list(ledger.store.timestamps()) == [1]
        finally:
            thread.stop()


def test_demo_ledger_checkpoints_are_timestamped_by_the_local_tsa_over_http(
    ledger: Ledger,
) -> None:
    ledger.start_sealer()
    receipts = ledger.append([draft() for _ in range(4)])
    checkpoint = ledger.wait_for_checkpoint(receipts[-1].leaf_index, timestamped=True)
    stamp = ledger.store.timestamp_for(checkpoint.tree_size)
    assert stamp is not None
    assert stamp.tsa_url.startswith("http://127.0.0.1:")
    assert "Local TSA" in stamp.tsa_name
    report = audit(ledger.store, ledger.key, ledger.tsa_trust_roots)
    assert report.passed, report.findings
