"""Issue 6, point 4: ``evidence-verify PACK.zip --ledger URL``, the online step "still in
the log", against the live API (FastAPI ``TestClient``, an ``httpx.Client``) and against
fake logs that rewrote history, signed with the ledger's own key.

The fake logs are built here from RFC 9162 (``tests.reference_merkle``) and sign their
checkpoints with the ledger's private key, as a compromised or misbehaving ledger would:
every signature verifies, only the tree is not the one the pack was made from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from evidence.demo import run_story
from evidence.pack import export_pack
from evidence.services import open_task_service
from ledger.app import Ledger
from ledger.events import Actor, EventDraft
from ledger.sealer import Sealer
from ledger.settings import Settings
from tests.api import conftest as api_conftest
from tests.api.conftest import ApiWorld
from tests.api.test_log import append
from tests.reference_merkle import ReferenceTree
from verifier import Checkpoint, VerifierKey
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main
from verifier.online import LogClient, add_online_step, compare_with_log
from verifier.pack import Indication, verify_pack

TESTSERVER = "http://testserver"


api_conftest_world = api_conftest.api  # registers the fixture of tests/api/conftest.py


@pytest.fixture(name="api")
def api_world(api_conftest_world: ApiWorld) -> ApiWorld:
    """The API world of tests/api/conftest.py: a live API over a real ledger."""
    return api_conftest_world


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- a fake log: any tree, checkpoints signed with a given key ---------------------------------


def sign_checkpoint(name: str, private: Ed25519PrivateKey, text: str) -> str:
    """A C2SP signed note, written here from the signed-note spec (key ID of type 0x01)."""
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    return f"{text}\n\u2014 {name} {b64(key_id + private.sign(text.encode()))}\n"


@dataclass
class FakeLog:
    """Serves ``/v1/log/checkpoint`` and ``/v1/log/consistency`` for a tree of its own."""

    name: str
    private: Ed25519PrivateKey
    leaves: list[bytes]
    size: int = -1
    requests: list[str] = field(default_factory=list)
    checkpoint_body: Callable[[], httpx.Response] | None = None
    consistency_body: Callable[[], httpx.Response] | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.leaves)

    @property
    def tree(self) -> ReferenceTree:
        return ReferenceTree(self.leaves)

    def note(self, size: int | None = None) -> str:
        size = self.size if size is None else size
        text = f"{self.name}\n{size}\n{b64(self.tree.root(size))}\n"
        return sign_checkpoint(self.name, self.private, text)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.url.path}?{request.url.query.decode()}")
        if request.url.path == "/v1/log/checkpoint":
            if self.checkpoint_body is not None:
                return self.checkpoint_body()
            return httpx.Response(200, text=self.note(), headers={"content-type": "text/plain"})
        if request.url.path == "/v1/log/consistency":
            if self.consistency_body is not None:
                return self.consistency_body()
            first, second = int(request.url.params["first"]), int(request.url.params["second"])
            tree = self.tree
            proof = tree.consistency(first, second) if first < second else []
            return httpx.Response(
                200,
                json={
                    "first": first,
                    "second": second,
                    "first_root": b64(tree.root(first)),
                    "second_root": b64(tree.root(second)),
                    "proof": [b64(p) for p in proof],
                },
            )
        return httpx.Response(404, json={"title": "not found"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))


def unreachable_client() -> httpx.Client:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.Client(transport=httpx.MockTransport(refuse))


def real_leaves(ledger: Ledger, size: int) -> list[bytes]:
    """The canonical event bytes of the ledger's first ``size`` leaves (the leaf data)."""
    leaves = [entry.canonical for entry in ledger.store.entries(0, size)]
    assert ReferenceTree(leaves).root(size) == ledger.store.root(size)
    return leaves


def other_leaves(count: int) -> list[bytes]:
    return [f"rewritten leaf {n} {uuid.uuid4()}".encode() for n in range(count)]


def seal(api: ApiWorld) -> int:
    """Sign a checkpoint over everything appended so far; its size."""
    Sealer(api.ledger.store, api.ledger.key, None).seal()
    checkpoint = api.ledger.store.latest_checkpoint()
    assert checkpoint is not None
    return checkpoint.tree_size


def ledger_vkey(ledger: Ledger) -> VerifierKey:
    return VerifierKey.from_string(ledger.key.verifier_key())


# -- the client and the comparison against the live API ---------------------------------------


def test_log_client_and_comparison_against_the_live_api(api: ApiWorld) -> None:
    keys = [ledger_vkey(api.ledger)]
    with LogClient(TESTSERVER, api_key=api.a.keys["auditor"], client=api.client) as client:
        first = compare_with_log(client, keys, None)
        assert first.verdict.value == "INDETERMINATE" and first.outcome == "unreachable"
        assert "HTTP 404" in first.reason and "no checkpoint yet" in first.reason

        append(api, api.a, 3)
        assert seal(api) == 3
        first = compare_with_log(client, keys, None)
        assert first.outcome == "first" and first.passed
        known = first.latest
        assert known is not None and known.size == 3

        append(api, api.b, 4)
        assert seal(api) == 7
        grown = compare_with_log(client, keys, known)
        assert grown.passed and grown.outcome == "extended", grown.reason
        assert "extends size 3" in grown.reason and grown.details["proof_hashes"] > 0
        assert json.loads(grown.consistency or b"")["first"] == 3
        assert grown.latest is not None
        same = compare_with_log(client, keys, grown.latest)
        assert same.passed and same.outcome == "same"

        answer = client.consistency(2, 7)
        assert (answer.first, answer.second, len(answer.first_root)) == (2, 7, 32)

    # an unknown key never vouches for the log; a refused API key is not a verdict
    stranger = VerifierKey.from_ed25519(
        api.ledger.key.name,
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    )
    with LogClient(TESTSERVER, api_key=api.a.keys["auditor"], client=api.client) as client:
        untrusted = compare_with_log(client, [stranger], None)
    assert untrusted.outcome == "untrusted" and untrusted.verdict.value == "INDETERMINATE"
    with LogClient(TESTSERVER + "/v1/", api_key="elk_not-a-key", client=api.client) as client:
        refused = compare_with_log(client, keys, None)
    assert refused.outcome == "unreachable" and "HTTP 401" in refused.reason


def test_log_client_refuses_what_is_not_a_log_answer() -> None:
    private = Ed25519PrivateKey.generate()
    fake = FakeLog("log.example/garbage", private, other_leaves(5))
    key = VerifierKey.from_ed25519(
        fake.name, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    known = Checkpoint(fake.name, 3, fake.tree.root(3))

    def answer(body: Any) -> Callable[[], httpx.Response]:
        return lambda: httpx.Response(200, json=body)

    garbage = {
        "not JSON": lambda: httpx.Response(200, text="<html>maintenance</html>"),
        "not a JSON object": answer([1, 2]),
        "lacks integer first and second": answer({"first": "3", "second": 5}),
        "asked for the proof 3 -> 5, got 2 -> 5": answer(
            {"first": 2, "second": 5, "first_root": "", "second_root": "", "proof": []}
        ),
        "proof element 0 is 3 bytes": answer(
            {
                "first": 3,
                "second": 5,
                "first_root": b64(bytes(32)),
                "second_root": b64(bytes(32)),
                "proof": ["AAAA"],
            }
        ),
    }
    for expected, body in garbage.items():
        fake.consistency_body = body
        with LogClient("https://log.example", client=fake.client()) as client:
            found = compare_with_log(client, [key], known)
        assert (found.verdict.value, found.outcome) == ("INDETERMINATE", "garbage"), found
        assert expected in found.reason, found.reason
    fake.checkpoint_body = lambda: httpx.Response(200, text="hello\n")
    with LogClient("https://log.example", client=fake.client()) as client:
        found = compare_with_log(client, [key], known)
    assert found.outcome == "garbage" and "not a valid signed checkpoint" in found.reason
    fake.checkpoint_body = lambda: httpx.Response(200, content=b"x" * (64 * 1024 + 1))
    with LogClient("https://log.example", client=fake.client()) as client:
        found = compare_with_log(client, [key], known)
    assert found.outcome == "garbage" and "more than 65536 bytes" in found.reason
    with pytest.raises(ValueError, match="not an http"):
        LogClient("ftp://log.example")
    assert fake.requests[0] == "/v1/log/checkpoint?"


# -- the pack's online step ----------------------------------------------------------------------


@dataclass
class PackWorld:
    pack: Path
    key: VerifierKey
    name: str
    private: Ed25519PrivateKey
    leaves: list[bytes]
    """The real log's leaf data up to the pack's checkpoint."""
    size: int
    trust_args: list[str]


@pytest.fixture(scope="module")
def pack_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackWorld]:
    root = tmp_path_factory.mktemp("online")
    with Ledger.open(Settings(data_dir=root / "data", seal_interval=0.05)) as ledger:
        ledger.start_sealer()
        service = open_task_service(ledger)
        run = run_story(service)
        ledger.wait_for_checkpoint(ledger.store.tree_size() - 1)
        pack = export_pack(ledger, service, run.contract, root / "contract.zip").path
        manifest = json.loads(zipfile.ZipFile(pack).read("manifest.json"))
        size = manifest["log"]["checkpoint_size"]
        signing, tsa = root / "signing.pem", root / "tsa.pem"
        signer_roots = service.signer.signer_trust_roots  # type: ignore[union-attr]
        signing.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in signer_roots))
        tsa.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in ledger.tsa_trust_roots))
        yield PackWorld(
            pack, ledger_vkey(ledger), ledger.key.name, ledger.key.private_key,
            real_leaves(ledger, size), size,
            ["--trust-root", str(signing), "--tsa-root", str(tsa)],
        )  # fmt: skip


def _pack_json(
    world: PackWorld, client: httpx.Client, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    args = [str(world.pack), "--ledger-key", str(world.key), *world.trust_args, *extra]
    code = main(
        [*args, "--ledger", "https://ledger.example", "--api-key", "elk_x", "--json"],
        http_client=client,
    )
    out = json.loads(capsys.readouterr().out)
    return code, out


def test_pack_passes_against_a_log_that_only_grew(
    pack_world: PackWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world = pack_world
    grown = FakeLog(world.name, world.private, [*world.leaves, *other_leaves(5)])
    code, out = _pack_json(world, grown.client(), capsys)
    assert code == EXIT_PASSED, out["reason"]
    assert out["indication"] == "TOTAL_PASSED" and len(out["steps"]) == 14
    step = out["steps"][13]
    assert (step["step"], step["name"], step["verdict"]) == (14, "still in the log", "PASSED")
    assert f"extends size {world.size}" in step["reason"]
    assert grown.requests == [
        "/v1/log/checkpoint?",
        f"/v1/log/consistency?first={world.size}&second={world.size + 5}",
    ]
    same = FakeLog(world.name, world.private, list(world.leaves))
    code, out = _pack_json(world, same.client(), capsys)
    assert code == EXIT_PASSED and "is the one verified before" in out["steps"][13]["reason"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("other tree, larger", "FORK: the log's signed checkpoint, size {big}"),
        ("history rewritten at the pack's last leaf", "is not consistent with the checkpoint"),
        ("other tree, same size", "FORK: the log's signed checkpoint of size {size} has root"),
        ("rolled back", "ROLLBACK: the log's latest signed checkpoint is size {small}"),
    ],
)
def test_pack_fails_against_a_rewritten_log(
    pack_world: PackWorld, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    world = pack_world
    leaves = {
        "other tree, larger": other_leaves(world.size + 3),
        "history rewritten at the pack's last leaf": [
            *world.leaves[:-1], *other_leaves(4)
        ],
        "other tree, same size": other_leaves(world.size),
        "rolled back": world.leaves[:-2],
    }[case]  # fmt: skip
    fake = FakeLog(world.name, world.private, leaves)
    code, out = _pack_json(world, fake.client(), capsys)
    assert code == EXIT_FAILED
    assert out["indication"] == "TOTAL_FAILED" and out["sub_indication"] == "HASH_FAILURE"
    step = out["steps"][13]
    assert step["verdict"] == "FAILED" and step["sub_indication"] == "HASH_FAILURE"
    message = expected.format(big=len(leaves), size=world.size, small=world.size - 2)
    assert message in step["reason"], step["reason"]
    assert out["reason"].startswith("step 14 (still in the log) failed")
    assert b64(ReferenceTree(world.leaves).root(world.size)) in step["reason"]
    # every other step still passed: only the online step objects
    assert [s["verdict"] for s in out["steps"][:13]] == ["PASSED"] * 13


def test_pack_online_step_is_indeterminate_when_the_ledger_cannot_answer(
    pack_world: PackWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world = pack_world
    code, out = _pack_json(world, unreachable_client(), capsys)
    assert code == EXIT_INDETERMINATE and out["indication"] == "INDETERMINATE"
    assert out["sub_indication"] == "TRY_LATER"
    assert "cannot reach https://ledger.example/v1/log/checkpoint" in out["reason"]

    stranger = FakeLog(world.name, Ed25519PrivateKey.generate(), list(world.leaves))
    code, out = _pack_json(world, stranger.client(), capsys)
    assert code == EXIT_INDETERMINATE
    assert out["steps"][13]["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"
    assert "not signed by a given ledger key" in out["steps"][13]["reason"]

    down = FakeLog(world.name, world.private, list(world.leaves))
    down.checkpoint_body = lambda: httpx.Response(503, json={"detail": "database is down"})
    code, out = _pack_json(world, down.client(), capsys)
    assert code == EXIT_INDETERMINATE
    assert "HTTP 503: database is down" in out["steps"][13]["reason"]

    # no ledger key: the pack's checkpoint is not verified, so there is nothing to follow
    report = verify_pack(world.pack)
    with LogClient("https://ledger.example", client=down.client()) as client:
        online = add_online_step(report, client, [])
    assert online.step(14).verdict.value == "INDETERMINATE"
    assert "step 5" in online.step(14).reason and online.indication is Indication.INDETERMINATE


def test_pack_online_usage_errors(
    pack_world: PackWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = str(pack_world.pack)
    assert main([pack, "--api-key", "elk_x"]) == EXIT_USAGE
    assert "--api-key needs --ledger" in capsys.readouterr().err
    assert main([pack, "--ledger", "file:///etc/passwd"]) == EXIT_USAGE
    assert "not an http:// or https:// URL" in capsys.readouterr().err
    assert capsys.readouterr().out == ""


def test_pack_still_in_the_live_api_log(
    api: ApiWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real thing: a pack of the API's own ledger, checked against the API as it grows."""
    ledger = api.ledger
    ledger.start_sealer()
    service = open_task_service(ledger)
    run = run_story(service)
    ledger.wait_for_checkpoint(ledger.store.tree_size() - 1)
    pack = export_pack(ledger, service, run.contract, tmp_path / "c.zip").path
    key = ledger.key.verifier_key()
    monkeypatch.setenv("EVIDENCE_VERIFY_API_KEY", api.b.keys["legal"])
    args = [str(pack), "--ledger-key", key, "--ledger", TESTSERVER, "--json"]

    code = main(args, http_client=api.client)
    out = json.loads(capsys.readouterr().out)
    step = out["steps"][13]
    assert step["verdict"] == "PASSED", step
    assert step["details"]["ledger"] == TESTSERVER and code == EXIT_INDETERMINATE  # no roots

    ledger.append([EventDraft(uuid.uuid4(), "comment.added", Actor("u-9", "Audit", "auditor"))])
    ledger.wait_for_checkpoint(ledger.store.tree_size() - 1, timestamped=False)
    main([*args, "--api-key", api.a.keys["auditor"]], http_client=api.client)
    step = json.loads(capsys.readouterr().out)["steps"][13]
    assert step["verdict"] == "PASSED" and "consistency proof of" in step["reason"], step
    assert step["details"]["latest_size"] > step["details"]["known_size"]

    monkeypatch.setenv("EVIDENCE_VERIFY_API_KEY", "elk_wrong")
    assert main(args, http_client=api.client) == EXIT_INDETERMINATE
    step = json.loads(capsys.readouterr().out)["steps"][13]
    assert step["sub_indication"] == "TRY_LATER" and "HTTP 401" in step["reason"]

    # the human output names the step too
    monkeypatch.delenv("EVIDENCE_VERIFY_API_KEY")
    main([str(pack), "--ledger-key", key, "--ledger", TESTSERVER, "--api-key",
          api.a.keys["app"]], http_client=api.client)  # fmt: skip
    assert "14. still in the log: PASSED" in capsys.readouterr().out
