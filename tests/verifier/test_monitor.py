"""Issue 6, point 4: ``evidence-verify monitor`` follows a log, alerts on a fork or a
rollback, and cosigns what it verified as a C2SP tlog-cosignature witness.

The growing log is the live API (FastAPI ``TestClient``); the rewritten logs are fakes
signed with the ledger's own key (``tests.verifier.test_online.FakeLog``). Cosignatures are
checked here against the spec's construction, recomputed byte by byte and verified with
``cryptography``, not with the verifier's own code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tests.api import conftest as api_conftest
from tests.api.conftest import ApiWorld
from tests.api.test_log import append
from tests.verifier.test_online import (
    TESTSERVER,
    FakeLog,
    b64,
    other_leaves,
    real_leaves,
    seal,
    unreachable_client,
)
from verifier import Cosigner, CosignerKey, verify_cosignature
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main
from verifier.errors import NoteSignatureError, VerifierKeyError
from verifier.monitor import Monitor, MonitorStateError
from verifier.online import LogClient

WITNESS = "witness.example/w1"


api_conftest_world = api_conftest.api  # registers the fixture of tests/api/conftest.py


@pytest.fixture(name="api")
def api_world(api_conftest_world: ApiWorld) -> ApiWorld:
    """The API world of tests/api/conftest.py: a live API over a real ledger."""
    return api_conftest_world


# The example of c2sp.org/tlog-cosignature: a checkpoint with a log signature and a witness
# cosignature, and the message the spec shows as signed for time 1679315147.
SPEC_NOTE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrD"
    "JsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_SIGNED_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def witness_key_file(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "witness.pem"
    path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path, private


def monitor_args(api: ApiWorld, state: Path, *extra: str) -> list[str]:
    return [
        "monitor", "--ledger", TESTSERVER, "--state", str(state),
        "--ledger-key", api.ledger.key.verifier_key(), *extra,
    ]  # fmt: skip


def check_cosignature_by_hand(line: str, note_body: str, public: bytes, name: str) -> int:
    """The spec's construction, recomputed here: returns the cosignature's timestamp."""
    match = re.fullmatch(r"\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})\n", line)
    assert match is not None, line
    assert match.group(1) == name
    blob = base64.b64decode(match.group(2), validate=True)
    assert len(blob) == 4 + 8 + 64, "key ID || u64 timestamp || Ed25519 signature"
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]
    assert blob[:4] == key_id
    timestamp = int.from_bytes(blob[4:12], "big")
    message = b"cosignature/v1\n" + f"time {timestamp}\n".encode() + note_body.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(blob[12:], message)
    # the same bytes with the log's type byte 0x01 in the key ID, or without the time line,
    # are not what was signed
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(public).verify(
            blob[12:], b"cosignature/v1\n" + note_body.encode()
        )
    assert key_id != hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    return timestamp


# -- a log that grows ----------------------------------------------------------------------------


def test_monitor_follows_the_growing_live_log_and_cosigns(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    key_file, witness = witness_key_file(tmp_path)
    public = witness.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    args = monitor_args(
        api, state, "--api-key", api.a.keys["auditor"],
        "--witness-key", str(key_file), "--witness-name", WITNESS,
    )  # fmt: skip

    # nothing signed yet: the ledger cannot answer, nothing is stored
    assert main(args, http_client=api.client) == EXIT_INDETERMINATE
    assert "HTTP 404" in capsys.readouterr().out and not (state / "checkpoint").exists()

    append(api, api.a, 3)
    assert seal(api) == 3
    started = int(time.time())
    assert main(args, http_client=api.client) == EXIT_PASSED
    out = capsys.readouterr().out
    assert out.startswith("PASSED: monitor: the log's latest checkpoint, size 3")
    assert "nothing verified before" in out and "(updated)" in out
    served = api.client.get("/v1/log/checkpoint", headers=api.a.auth("auditor")).text
    assert (state / "checkpoint").read_text() == served

    # the cosignature: state DIR/cosignatures/3, and the printed note carries it
    line = (state / "cosignatures" / "3").read_text()
    body = served[: served.rindex("\n\n") + 1]
    stamp = check_cosignature_by_hand(line, body, public, WITNESS)
    assert started <= stamp <= int(time.time())
    vkey = str(CosignerKey.from_ed25519(WITNESS, public))
    assert f"cosigned checkpoint (witness key {vkey}):\n{served}{line}" in out
    assert verify_cosignature(served + line, CosignerKey.from_string(vkey)) == stamp

    # the log grows: a consistency proof is fetched and checked, the state moves on
    append(api, api.b, 4)
    assert seal(api) == 7
    monkeypatch.setenv("EVIDENCE_VERIFY_API_KEY", api.b.keys["legal"])
    no_api_key = [a for a in args if a not in ("--api-key", api.a.keys["auditor"])]
    assert main([*no_api_key, "--json"], http_client=api.client) == EXIT_PASSED
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "PASSED" and result["details"]["outcome"] == "extended"
    assert "extends size 3" in result["reason"]
    assert (result["details"]["known_size"], result["details"]["latest_size"]) == (3, 7)
    served = api.client.get("/v1/log/checkpoint", headers=api.a.auth("auditor")).text
    assert (state / "checkpoint").read_text() == served
    assert result["details"]["cosigned_note"] == served + result["details"]["cosignature_line"]
    assert result["details"]["witness_key"] == vkey
    check_cosignature_by_hand(
        (state / "cosignatures" / "7").read_text(), served[: served.rindex("\n\n") + 1],
        public, WITNESS,
    )  # fmt: skip

    # nothing new: the same checkpoint again
    assert main(no_api_key, http_client=api.client) == EXIT_PASSED
    out = capsys.readouterr().out
    assert "is the one verified before, size 7" in out and "(unchanged)" in out
    assert sorted(p.name for p in (state / "cosignatures").iterdir()) == ["3", "7"]
    assert not (state / "alerts").exists()


def test_monitor_interval_mode_follows_and_stops_at_a_fork(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    append(api, api.a, 2)
    seal(api)
    rounds: list[float] = []

    def grow(seconds: float) -> None:  # between rounds the log grows
        rounds.append(seconds)
        append(api, api.a, 1)
        seal(api)

    from verifier.cli import _build_parser
    from verifier.monitor import run_monitor

    parsed = _build_parser().parse_args(
        monitor_args(api, state, "--api-key", api.a.keys["app"], "--interval", "0.5",
                     "--rounds", "3")
    )  # fmt: skip
    assert run_monitor(parsed, http_client=api.client, sleep=grow) == EXIT_PASSED
    out = capsys.readouterr().out
    assert out.count("PASSED: monitor:") == 3 and rounds == [0.5, 0.5]
    assert "size 4" in out and (state / "checkpoint").read_text().split("\n")[1] == "4"

    # a fork between rounds: the loop stops at once with exit code 1
    fake = FakeLog(api.ledger.key.name, api.ledger.key.private_key, other_leaves(9))
    parsed = _build_parser().parse_args(monitor_args(api, state, "--interval", "60"))
    assert run_monitor(parsed, http_client=fake.client(), sleep=grow) == EXIT_FAILED
    assert rounds == [0.5, 0.5], "no sleep after an alert"
    assert "FAILED: monitor: FORK" in capsys.readouterr().out


# -- a log that was rewritten ------------------------------------------------------------------


def _follow_live(api: ApiWorld, state: Path, events: int = 5) -> tuple[int, bytes]:
    """Append ``events``, seal, and let the monitor verify it; the size and stored note."""
    append(api, api.a, events)
    size = seal(api)
    args = monitor_args(api, state, "--api-key", api.a.keys["auditor"])
    assert main(args, http_client=api.client) == EXIT_PASSED
    return size, (state / "checkpoint").read_bytes()


def _alert(state: Path) -> tuple[Path, dict[str, Any]]:
    alerts = [p for p in (state / "alerts").iterdir() if not p.name.startswith(".")]
    assert len(alerts) == 1, alerts
    return alerts[0], json.loads((alerts[0] / "alert.json").read_text())


@pytest.mark.parametrize(
    "case",
    ["other tree, larger", "history rewritten at the last leaf", "other tree, same size"],
)
def test_monitor_alerts_on_a_fork(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    state = tmp_path / "state"
    size, stored = _follow_live(api, state)
    capsys.readouterr()
    known_root = b64(api.ledger.store.root(size))
    leaves = real_leaves(api.ledger, size)
    forged = {
        "other tree, larger": other_leaves(size + 4),
        "history rewritten at the last leaf": [*leaves[:-1], *other_leaves(3)],
        "other tree, same size": other_leaves(size),
    }[case]
    fake = FakeLog(api.ledger.key.name, api.ledger.key.private_key, forged)
    forged_root = b64(fake.tree.root(len(forged)))

    assert main(monitor_args(api, state), http_client=fake.client()) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out.startswith("FAILED: monitor: FORK:")
    for text in (captured.out, captured.err):
        assert f"size {len(forged)}" in text and forged_root in text
        assert known_root in text and str(size) in text
    assert "ALERT" in captured.err and "the checkpoint verified before is kept" in captured.err

    assert (state / "checkpoint").read_bytes() == stored, "the old state is kept"
    folder, summary = _alert(state)
    assert summary["kind"] == "fork" and summary["reason"].startswith("FORK:")
    assert (summary["known_size"], summary["latest_size"]) == (size, len(forged))
    assert (summary["known_root"], summary["latest_root"]) == (known_root, forged_root)
    assert (folder / "known.checkpoint").read_bytes() == stored
    assert (folder / "served.checkpoint").read_text() == fake.note()
    if len(forged) > size:
        proof = json.loads((folder / "consistency.json").read_bytes())
        assert (proof["first"], proof["second"]) == (size, len(forged))
    else:
        assert not (folder / "consistency.json").exists()
    assert folder.name.endswith(f"-fork-{size}-{len(forged)}")

    # the alert repeats until someone acts: the state still holds the verified checkpoint
    assert main(monitor_args(api, state), http_client=fake.client()) == EXIT_FAILED
    assert len(list((state / "alerts").iterdir())) == 2
    # and the real log still passes from the kept state
    capsys.readouterr()
    assert main(monitor_args(api, state, "--api-key", api.a.keys["auditor"]),
                http_client=api.client) == EXIT_PASSED  # fmt: skip


def test_monitor_alerts_on_a_rollback(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    size, stored = _follow_live(api, state)
    capsys.readouterr()
    older = FakeLog(
        api.ledger.key.name, api.ledger.key.private_key, real_leaves(api.ledger, size - 2)
    )
    assert main(monitor_args(api, state, "--json"), http_client=older.client()) == EXIT_FAILED
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["verdict"] == "FAILED" and result["details"]["outcome"] == "rollback"
    smaller_root = b64(api.ledger.store.root(size - 2))
    known_root = b64(api.ledger.store.root(size))
    assert (
        f"ROLLBACK: the log's latest signed checkpoint is size {size - 2} (root {smaller_root}), "
        f"smaller than the checkpoint verified before, size {size} (root {known_root})"
    ) in result["reason"]
    assert "ALERT: ROLLBACK" in captured.err
    assert (state / "checkpoint").read_bytes() == stored
    folder, summary = _alert(state)
    assert summary["kind"] == "rollback" and folder.name.endswith(f"-rollback-{size}-{size - 2}")
    assert (folder / "served.checkpoint").read_text() == older.note()


def test_monitor_cannot_decide_when_the_ledger_cannot_answer(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    size, stored = _follow_live(api, state)
    capsys.readouterr()
    name, private = api.ledger.key.name, api.ledger.key.private_key
    grown = FakeLog(name, private, [*real_leaves(api.ledger, size), *other_leaves(2)])
    grown.consistency_body = lambda: httpx.Response(200, text="{not json")
    stranger = FakeLog(name, Ed25519PrivateKey.generate(), other_leaves(size + 2))
    garbage = FakeLog(name, private, [])
    garbage.checkpoint_body = lambda: httpx.Response(200, text="<html>hello</html>")
    clients = {
        "unreachable": unreachable_client(),
        "garbage": garbage.client(),
        "garbage proof": grown.client(),
        "untrusted": stranger.client(),
    }
    for case, client in clients.items():
        assert main(monitor_args(api, state), http_client=client) == EXIT_INDETERMINATE, case
        out = capsys.readouterr().out
        assert out.startswith("INDETERMINATE: monitor:"), out
        assert (state / "checkpoint").read_bytes() == stored, case
    assert not (state / "alerts").exists(), "no alert without evidence of a fork"


# -- usage and state errors --------------------------------------------------------------------


def test_monitor_usage_and_state_errors(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    key_file, _ = witness_key_file(tmp_path)
    vkey = api.ledger.key.verifier_key()
    base = ["monitor", "--ledger", TESTSERVER]
    cases = {
        "the following arguments are required: --state": [*base, "--ledger-key", vkey],
        "--ledger-key: verifier key": [*base, "--state", str(state), "--ledger-key", "x"],
        "--witness-name needs --witness-key": [
            *monitor_args(api, state), "--witness-name", WITNESS
        ],
        "a PEM witness key needs --witness-name": [
            *monitor_args(api, state), "--witness-key", str(key_file)
        ],
        "--rounds needs --interval": [*monitor_args(api, state), "--rounds", "2"],
        "not allowed with argument --once": [*monitor_args(api, state), "--once",
                                             "--interval", "5"],
        "not an http:// or https:// URL": [
            "monitor", "--ledger", "testserver", "--state", str(state), "--ledger-key", vkey
        ],
    }  # fmt: skip
    for message, argv in cases.items():
        assert main(argv, http_client=api.client) == EXIT_USAGE, message
        captured = capsys.readouterr()
        assert message in captured.err, (message, captured.err)
        assert captured.out == ""

    # a state directory of another log (or another key) is refused, not overwritten
    append(api, api.a, 2)
    seal(api)
    other = Ed25519PrivateKey.generate()
    foreign = FakeLog("other.example/log", other, other_leaves(3)).note()
    state.mkdir()
    (state / "checkpoint").write_text(foreign)
    args = monitor_args(api, state, "--api-key", api.a.keys["auditor"])
    assert main(args, http_client=api.client) == EXIT_USAGE
    assert "does not verify with the given ledger key" in capsys.readouterr().err
    assert (state / "checkpoint").read_text() == foreign


def test_one_monitor_per_state_directory(tmp_path: Path) -> None:
    import fcntl

    private = Ed25519PrivateKey.generate()
    fake = FakeLog("log.example/one", private, other_leaves(3))
    from verifier import VerifierKey

    key = VerifierKey.from_ed25519(
        fake.name, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    monitor = Monitor(LogClient("https://log.example", client=fake.client()), tmp_path, [key])
    assert monitor.check().comparison.outcome == "first"
    with (tmp_path / ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(MonitorStateError, match="another monitor is using"):
            monitor.check()
    assert monitor.check().comparison.outcome == "same"


# -- cosignatures against the spec ------------------------------------------------------------


def test_cosignature_layout_of_the_spec_example() -> None:
    """The spec's example cosignature line decodes as key ID, u64 time 1679315147 (the
    time in the spec's example signed message) and a 64-byte signature."""
    line = SPEC_NOTE.splitlines()[-1]
    blob = base64.b64decode(line.split(" ")[2])
    assert len(blob) == 76 and int.from_bytes(blob[4:12], "big") == 1679315147
    from verifier._internal.cosignature import cosigned_message

    body = SPEC_NOTE[: SPEC_NOTE.index("\n\n") + 1]
    assert cosigned_message(body, 1679315147) == SPEC_SIGNED_MESSAGE.encode()


def test_cosigner_keys_and_signatures(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cosigner = Cosigner(WITNESS, private)
    vkey = str(cosigner.key)
    name, hex_id, material = vkey.split("+", 2)  # base64 may hold "+"
    assert name == WITNESS
    assert (
        bytes.fromhex(hex_id) == hashlib.sha256(WITNESS.encode() + b"\n\x04" + public).digest()[:4]
    )
    assert base64.b64decode(material) == b"\x04" + public
    assert CosignerKey.from_string(vkey) == cosigner.key

    # both key file forms load the same key; the PRIVATE+KEY form carries its name
    string = cosigner.private_key_string()
    assert string.startswith(f"PRIVATE+KEY+{WITNESS}+{hex_id}+")
    assert Cosigner.from_key_file(string.encode() + b"\n", None).key == cosigner.key
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    assert Cosigner.from_key_file(pem, WITNESS).key == cosigner.key
    with pytest.raises(VerifierKeyError, match="differs"):
        Cosigner.from_key_file(string.encode(), "someone-else")
    with pytest.raises(VerifierKeyError, match="neither"):
        Cosigner.from_key_file(b"not a key", WITNESS)
    with pytest.raises(VerifierKeyError, match="not an Ed25519 cosignature key"):
        CosignerKey.from_string(vkey.replace(material, b64(b"\x01" + public)))

    note = FakeLog("log.example/x", Ed25519PrivateKey.generate(), other_leaves(4)).note()
    body = note[: note.index("\n\n") + 1]
    line = cosigner.cosign(body, 1700000000)
    assert check_cosignature_by_hand(line, body, public, WITNESS) == 1700000000
    assert verify_cosignature(note + line, cosigner.key) == 1700000000
    with pytest.raises(NoteSignatureError, match="carries no cosignature"):
        verify_cosignature(note, cosigner.key)
    tampered = note.replace("\n4\n", "\n5\n", 1) + line
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_cosignature(tampered, cosigner.key)
    with pytest.raises(ValueError, match="outside"):
        cosigner.cosign(body, 2**63)


def test_a_fork_is_reported_even_when_its_evidence_cannot_be_written(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    name = "log.example/two"
    from verifier import VerifierKey

    key = VerifierKey.from_ed25519(
        name, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    honest = FakeLog(name, private, other_leaves(4))
    assert Monitor(LogClient("https://l.example", client=honest.client()), tmp_path, [key]).check()
    (tmp_path / "alerts").write_text("not a directory")
    forked = FakeLog(name, private, other_leaves(4))
    found = Monitor(LogClient("https://l.example", client=forked.client()), tmp_path, [key]).check()
    assert found.exit_code == EXIT_FAILED and found.alert_dir is None
    reason = found.result(tmp_path).reason
    assert reason.startswith("FORK:") and "the evidence could not be written" in reason
    assert (tmp_path / "checkpoint").read_text() == honest.note()
