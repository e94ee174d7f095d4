"""The log over HTTP: checkpoints, timestamps, proofs and entries (issue 4, point 5).

Every proof is checked with the independent ``verifier`` package against a checkpoint
whose signature the verifier checked with the ledger's verifier key, never against what
the same answer claims. Entries by range show other tenants' leaves as hashes only, and
those hashes let the test recompute the signed root.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from httpx import Response

import verifier
from ledger.sealer import Sealer
from tests.api.conftest import ApiWorld, Tenant
from tests.api.test_events import assert_problem, event_body, post, post_batch


def b64d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash of leaf hashes, written out here from the RFC."""
    if not leaves:
        return verifier.empty_root()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return verifier.node_hash(mth(leaves[:split]), mth(leaves[split:]))


def seal(api: ApiWorld) -> None:
    assert Sealer(api.ledger.store, api.ledger.key, None).seal() is not None


def append(api: ApiWorld, tenant: Tenant, count: int) -> list[dict[str, Any]]:
    from tests.api.test_events import member

    answer = post_batch(api, tenant, [member(tenant, event_body()) for _ in range(count)])
    assert answer.status_code == 201, answer.text
    receipts: list[dict[str, Any]] = answer.json()["receipts"]
    return receipts


def trusted_checkpoint(api: ApiWorld, note: str) -> verifier.Checkpoint:
    key = verifier.VerifierKey.from_string(api.ledger.key.verifier_key())
    return verifier.Checkpoint.from_signed_note(note, [key])


def get(api: ApiWorld, tenant: Tenant, path: str, role: str = "auditor", **params: Any) -> Response:
    answer: Response = api.client.get(path, params=params, headers=tenant.auth(role))
    return answer


def test_checkpoint_and_its_timestamp(api: ApiWorld) -> None:
    assert_problem(get(api, api.a, "/v1/log/checkpoint"), 404, "no-checkpoint")
    append(api, api.a, 3)
    seal(api)
    answer = get(api, api.b, "/v1/log/checkpoint", role="legal")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    checkpoint = trusted_checkpoint(api, answer.text)
    assert checkpoint.size == 3 and checkpoint.root_hash == api.ledger.store.root(3)

    path = "/v1/log/checkpoints/3/timestamp"
    assert_problem(get(api, api.a, path), 404, "timestamp-not-found")
    assert api.ledger.sealer().timestamp_pending() == 1
    stamp = get(api, api.a, path, role="app")
    assert stamp.status_code == 200
    assert stamp.headers["content-type"] == "application/timestamp-reply"
    assert stamp.content == api.ledger.store.timestamp_for(3).response_der  # type: ignore[union-attr]
    assert_problem(get(api, api.a, "/v1/log/checkpoints/4/timestamp"), 404, "timestamp-not-found")


def test_inclusion_proofs_verify_against_the_signed_checkpoint(api: ApiWorld) -> None:
    mine = append(api, api.a, 5)
    append(api, api.b, 4)
    seal(api)
    checkpoint = trusted_checkpoint(api, get(api, api.a, "/v1/log/checkpoint").text)
    assert checkpoint.size == 9
    for receipt in mine:
        for params in ({"event_id": receipt["event_id"]}, {"leaf_index": receipt["leaf_index"]}):
            answer = get(api, api.a, "/v1/log/inclusion", **params)
            assert answer.status_code == 200, answer.text
            proof = answer.json()
            assert proof["tree_size"] == checkpoint.size
            assert trusted_checkpoint(api, proof["checkpoint"]) == checkpoint
            leaf = b64d(proof["leaf_hash"])
            assert leaf == bytes.fromhex(receipt["event_hash"])
            verifier.verify_inclusion(
                leaf,
                proof["leaf_index"],
                proof["tree_size"],
                [b64d(p) for p in proof["proof"]],
                checkpoint.root_hash,
            )
    # At an older, unsigned size: a root, no checkpoint, and still a valid proof.
    older = get(api, api.a, "/v1/log/inclusion", leaf_index=1, tree_size=3).json()
    assert older["checkpoint"] is None
    verifier.verify_inclusion(
        b64d(older["leaf_hash"]), 1, 3, [b64d(p) for p in older["proof"]], mth(_leaves(api, 3))
    )


def _leaves(api: ApiWorld, size: int) -> list[bytes]:
    return [e.leaf_hash for e in api.ledger.store.entries(0, size)]


def test_inclusion_is_only_for_the_callers_own_events(api: ApiWorld) -> None:
    theirs = append(api, api.b, 2)
    append(api, api.a, 1)
    seal(api)
    for params in (
        {"event_id": theirs[0]["event_id"]},
        {"leaf_index": theirs[1]["leaf_index"]},
        {"event_id": str(uuid.uuid4())},
        {"leaf_index": 999},
    ):
        assert_problem(get(api, api.a, "/v1/log/inclusion", **params), 404, "entry-not-found")
    both = get(api, api.a, "/v1/log/inclusion", event_id=theirs[0]["event_id"], leaf_index=0)
    assert_problem(both, 422, "invalid-request")
    too_big = get(api, api.b, "/v1/log/inclusion", leaf_index=0, tree_size=50)
    assert_problem(too_big, 422, "invalid-tree-size")


def test_inclusion_waits_for_a_checkpoint(api: ApiWorld) -> None:
    (receipt,) = append(api, api.a, 1)
    answer = get(api, api.a, "/v1/log/inclusion", event_id=receipt["event_id"])
    assert_problem(answer, 409, "not-yet-checkpointed")
    assert answer.headers["Retry-After"] == "1"


def test_consistency_between_signed_checkpoints(api: ApiWorld) -> None:
    append(api, api.a, 3)
    seal(api)
    first = trusted_checkpoint(api, get(api, api.a, "/v1/log/checkpoint").text)
    append(api, api.b, 6)
    append(api, api.a, 2)
    seal(api)
    second = trusted_checkpoint(api, get(api, api.b, "/v1/log/checkpoint").text)
    answer = get(api, api.a, "/v1/log/consistency", first=first.size, second=second.size)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    proof = [b64d(p) for p in body["proof"]]
    verifier.verify_consistency(first.size, second.size, first.root_hash, second.root_hash, proof)
    with pytest.raises(verifier.ProofError):
        verifier.verify_consistency(first.size, second.size, b"\0" * 32, second.root_hash, proof)
    same = get(api, api.a, "/v1/log/consistency", first=3, second=3).json()
    assert same["proof"] == [] and b64d(same["first_root"]) == first.root_hash
    cases: list[tuple[dict[str, Any], str]] = [
        ({"first": 5, "second": 3}, "invalid-tree-size"),
        ({"first": 3, "second": 999}, "invalid-tree-size"),
        ({"first": 0, "second": 3}, "invalid-request"),
    ]
    for params, kind in cases:
        assert_problem(get(api, api.a, "/v1/log/consistency", **params), 422, kind)


def test_entries_hide_other_tenants_content_but_let_auditors_recompute_the_root(
    api: ApiWorld,
) -> None:
    mine = {r["leaf_index"] for r in append(api, api.a, 4)}
    append(api, api.b, 3)
    single = event_body()
    assert post(api, api.a, single).status_code == 201
    mine.add(7)
    seal(api)
    checkpoint = trusted_checkpoint(api, get(api, api.a, "/v1/log/checkpoint").text)
    answer = get(api, api.a, "/v1/log/entries", start=0, end=100)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert (page["start"], page["end"], page["tree_size"]) == (0, 8, 8)
    leaves = []
    for entry in page["entries"]:
        leaf = b64d(entry["leaf_hash"])
        leaves.append(leaf)
        if entry["leaf_index"] in mine:
            canonical = b64d(entry["canonical"])
            assert verifier.leaf_hash(canonical) == leaf
            envelope = orjson.loads(canonical)
            assert envelope["stream_id"] == entry["stream_id"]
            assert envelope["event_id"] == entry["event_id"]
        else:
            assert set(entry) == {"leaf_index", "leaf_hash"}, entry
    assert [e["leaf_index"] for e in page["entries"]] == list(range(8))
    assert mth(leaves) == checkpoint.root_hash
    # b sees the mirror image.
    theirs = get(api, api.b, "/v1/log/entries", start=0, end=8, role="legal").json()["entries"]
    assert [("canonical" in e) for e in theirs] == [i not in mine for i in range(8)]
    # Raw bytes of a's events appear nowhere in b's answer.
    raw = get(api, api.b, "/v1/log/entries", start=0, end=8).text
    assert single["event_id"] not in raw and "陈" not in raw

    assert (
        get(api, api.a, "/v1/log/entries", start=6, end=7).json()["entries"][0]["leaf_index"] == 6
    )
    assert get(api, api.a, "/v1/log/entries", start=20, end=30).json()["entries"] == []
    ranges: list[dict[str, Any]] = [{"start": 5, "end": 5}, {"start": 0, "end": 1001}]
    for params in ranges:
        assert_problem(get(api, api.a, "/v1/log/entries", **params), 422, "invalid-range")


def test_log_reads_need_a_reading_role(api: ApiWorld) -> None:
    for path in (
        "/v1/log/checkpoint",
        "/v1/log/checkpoints/1/timestamp",
        "/v1/log/inclusion?leaf_index=0",
        "/v1/log/consistency?first=1&second=1",
        "/v1/log/entries?start=0&end=1",
    ):
        for role in ("compliance", "admin"):
            assert_problem(
                api.client.get(path, headers=api.a.auth(role)), 403, "forbidden-for-role"
            )
        assert_problem(api.client.get(path), 401, "unauthenticated")
