"""The Merkle log's arithmetic and its storage, against RFC answers and a naive reference.

Every proof the ledger produces is checked three ways: equal to the naive RFC 9162
reference, accepted by the independent verifier (written separately from the RFC), and
refused by it once altered.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.store import LedgerStore
from tests.factories import draft
from tests.reference_merkle import ReferenceTree
from verifier._internal import merkle as independent
from verifier.errors import ProofError

# RFC 6962 / RFC 9162 known answers: SHA-256 of the empty string, and the leaf hash of
# the empty string (as used in certificate-transparency's test vectors).
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_LEAF = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def in_memory_tree(leaves: list[bytes]) -> dict[merkle.Node, bytes]:
    """Every complete node, built by the same append path the stores use."""
    nodes: dict[merkle.Node, bytes] = {}
    merkle.append_leaves(0, nodes, [merkle.leaf_hash(x) for x in leaves])
    return nodes


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


def test_known_answers_for_empty_tree_and_empty_leaf() -> None:
    assert merkle.empty_root().hex() == EMPTY_ROOT
    assert merkle.leaf_hash(b"").hex() == EMPTY_LEAF
    assert merkle.fold_range([]) == merkle.empty_root()


def test_node_hash_has_the_interior_prefix() -> None:
    left, right = b"\x11" * 32, b"\x22" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_roots_and_proofs_match_reference_for_every_size_up_to_300() -> None:
    leaves = leaves_of(300)
    reference = ReferenceTree(leaves)
    nodes = in_memory_tree(leaves)
    for size in range(0, 301):
        ranges = [(0, size)] if size else []
        root = merkle.hash_ranges(ranges, nodes)[0] if size else merkle.empty_root()
        assert root == reference.root(size), size
        for index in range(size):
            proof = merkle.hash_ranges(merkle.inclusion_ranges(index, size), nodes)
            assert proof == reference.inclusion(index, size), (index, size)
            independent.verify_inclusion(nodes[(0, index)], index, size, proof, root)
        for old in range(1, size):
            proof = merkle.hash_ranges(merkle.consistency_ranges(old, size), nodes)
            assert proof == reference.consistency(old, size), (old, size)
            old_root = reference.root(old)
            assert merkle.verify_consistency(old, size, old_root, root, proof)
            independent.verify_consistency(old, size, old_root, root, proof)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(min_value=301, max_value=5000))
def test_random_larger_trees_match_reference(data: st.DataObject, size: int) -> None:
    leaves = leaves_of(size)
    reference = ReferenceTree(leaves)
    nodes = in_memory_tree(leaves)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    root = merkle.hash_ranges([(0, size)], nodes)[0]
    assert root == reference.root(size)
    inclusion = merkle.hash_ranges(merkle.inclusion_ranges(index, size), nodes)
    assert inclusion == reference.inclusion(index, size)
    consistency = merkle.hash_ranges(merkle.consistency_ranges(old, size), nodes)
    assert consistency == reference.consistency(old, size)
    independent.verify_inclusion(merkle.leaf_hash(leaves[index]), index, size, inclusion, root)
    independent.verify_consistency(old, size, reference.root(old), root, consistency)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 2**40), data=st.data())
def test_proofs_need_logarithmically_many_nodes(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(0, size))
    bound = 2 * size.bit_length() + 2
    assert len(merkle.nodes_for_ranges(merkle.inclusion_ranges(index, size))) <= bound
    assert len(merkle.nodes_for_ranges(merkle.consistency_ranges(old, size))) <= bound
    assert len(merkle.frontier(size)) == bin(size).count("1")


def test_ledger_consistency_check_refuses_altered_proofs() -> None:
    leaves = leaves_of(37)
    reference = ReferenceTree(leaves)
    proof = reference.consistency(13, 37)
    old_root, new_root = reference.root(13), reference.root(37)
    assert merkle.verify_consistency(13, 37, old_root, new_root, proof)
    assert not merkle.verify_consistency(13, 37, old_root, new_root, proof[:-1])
    assert not merkle.verify_consistency(13, 37, old_root, new_root, [])
    assert not merkle.verify_consistency(12, 37, old_root, new_root, proof)
    assert not merkle.verify_consistency(13, 37, new_root, new_root, proof)
    tampered = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    assert not merkle.verify_consistency(13, 37, old_root, new_root, tampered)
    assert merkle.verify_consistency(37, 37, new_root, new_root, [])
    assert not merkle.verify_consistency(37, 37, old_root, new_root, [])


def test_out_of_range_proof_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(ValueError, match="no consistency proof"):
        merkle.consistency_ranges(6, 5)


# -- the persisted log, on both backends ---------------------------------------------


def test_stored_log_serves_reference_proofs_for_every_pair(store: LedgerStore) -> None:
    streams = [uuid.uuid4() for _ in range(5)]
    receipts = []
    for i in range(70):  # batches of varying size, so leaves cross batch boundaries
        batch = [draft(streams[(i + j) % 5]) for j in range(1 + i % 3)]
        receipts.extend(store.append(batch))
    size = store.tree_size()
    assert [r.leaf_index for r in receipts] == list(range(size))
    event_hashes = [r.event_hash for r in receipts]
    entries = store.entries(0, size)
    assert [e.leaf_hash for e in entries] == event_hashes
    reference = ReferenceTree([e.canonical for e in entries])
    for n in range(1, size + 1, 7):
        root = store.root(n)
        assert root == reference.root(n)
        for index in range(n):
            proof = store.inclusion_proof(index, n)
            assert proof == reference.inclusion(index, n)
            independent.verify_inclusion(event_hashes[index], index, n, proof, root)
        for old in range(1, n):
            proof = store.consistency_proof(old, n)
            independent.verify_consistency(old, n, reference.root(old), root, proof)
    assert store.root(0) == merkle.empty_root()


def test_verifier_refuses_stored_proof_once_altered(store: LedgerStore) -> None:
    receipts = store.append([draft() for _ in range(11)])
    root = store.root(11)
    proof = store.inclusion_proof(4, 11)
    independent.verify_inclusion(receipts[4].event_hash, 4, 11, proof, root)
    bad = [proof[0], bytes(32), *proof[2:]]
    with pytest.raises(ProofError):
        independent.verify_inclusion(receipts[4].event_hash, 4, 11, bad, root)
    with pytest.raises(ProofError):
        independent.verify_inclusion(receipts[5].event_hash, 4, 11, proof, root)


def test_proof_beyond_the_tree_is_a_clear_error(store: LedgerStore) -> None:
    from ledger.errors import LogError

    store.append([draft() for _ in range(3)])
    with pytest.raises(LogError, match="outside"):
        store.inclusion_proof(3, 3)
    with pytest.raises(LogError, match="tree is smaller"):
        store.inclusion_proof(0, 10)
    with pytest.raises(LogError):
        store.consistency_proof(4, 3)


def test_proof_node_ids_are_the_nodes_of_the_rfc_ranges() -> None:
    def as_ids(ranges: list[merkle.Range]) -> list[list[int]]:
        return [[merkle.node_id(n) for n in merkle.range_nodes(a, b)] for a, b in ranges]

    for size in range(0, 300):
        for index in range(size):
            expected = as_ids(merkle.inclusion_ranges(index, size))
            assert merkle.inclusion_node_ids(index, size) == expected, (index, size)
        for old in range(0, size + 1):
            expected = as_ids(merkle.consistency_ranges(old, size))
            assert merkle.consistency_node_ids(old, size) == expected, (old, size)
    assert merkle.node_of(merkle.node_id((5, 12345))) == (5, 12345)
