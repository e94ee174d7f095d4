"""RFC 9162 hashing and proof verification, against public vectors and a reference tree.

The reference tree below is written straight from the recursive definitions of RFC 9162
section 2.1.1 (MTH), 2.1.3.1 (PATH) and 2.1.4.1 (PROOF/SUBPROOF); the verifier under test
uses the iterative algorithms of sections 2.1.3.2 and 2.1.4.2, so the two must agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier._internal.merkle import (
    empty_root,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from verifier.errors import ProofError, Verdict

# --- Public test vectors -------------------------------------------------------------------
# Copied from github.com/transparency-dev/merkle (Apache-2.0): the leaf inputs and root
# hashes from testonly/constants.go, the inclusion and consistency proofs from
# proof/verify_test.go. They are the RFC 6962 test tree of certificate-transparency.

EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_LEAF_HASH_HEX = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

ROOTS = {  # tree size -> root hash
    size: bytes.fromhex(h)
    for size, h in enumerate(
        (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ),
        start=1,
    )
}


def _hexes(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# (0-based leaf index, tree size, proof); verify_test.go numbers leaves from 1.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        _hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hexes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hexes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hexes(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# (size1, size2, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        _hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hexes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- Reference implementation (RFC 9162 section 2.1, recursive) ----------------------------


def _largest_power_of_two_below(n: int) -> int:
    """k in RFC 9162 section 2.1.1: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """MTH, PATH and PROOF exactly as RFC 9162 section 2.1 defines them, over leaf inputs."""

    def __init__(self, inputs: Sequence[bytes]) -> None:
        self.inputs = list(inputs)
        self._hashes: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi])."""
        if (lo, hi) not in self._hashes:
            n = hi - lo
            if n == 0:
                value = hashlib.sha256(b"").digest()
            elif n == 1:
                value = hashlib.sha256(b"\x00" + self.inputs[lo]).digest()
            else:
                k = _largest_power_of_two_below(n)
                value = hashlib.sha256(
                    b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)
                ).digest()
            self._hashes[lo, hi] = value
        return self._hashes[lo, hi]

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def leaf(self, index: int) -> bytes:
        return self.mth(index, index + 1)

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]), the inclusion proof of leaf lo + m."""
        n = hi - lo
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if whole else [self.mth(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, whole), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.subproof(size1, 0, size2, True)


def _flip(value: bytes, position: int) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


def _byte_flips(proof: list[bytes], exhaustive: bool) -> list[list[bytes]]:
    """Copies of ``proof`` with one byte changed: every byte, or first/middle/last of each."""
    flipped = []
    for element_index, element in enumerate(proof):
        positions = range(len(element)) if exhaustive else (0, 16, len(element) - 1)
        for position in positions:
            copy = list(proof)
            copy[element_index] = _flip(element, position)
            flipped.append(copy)
    return flipped


def _structural_mutations(proof: list[bytes], extra: bytes) -> list[list[bytes]]:
    """Proofs with an element removed from either end, or one added at either end."""
    mutations = [[*proof, extra], [extra, *proof], [*proof, b"\x00" * 32]]
    if proof:
        mutations += [proof[:-1], proof[1:]]
    if len(proof) > 1:
        mutations.append([proof[0], SOME_HASH, *proof[1:]])
    return mutations


def _rejected(check: object, *args: object) -> bool:
    try:
        check(*args)  # type: ignore[operator]
    except ProofError:
        return True
    return False


STANDARD_TREE = ReferenceTree(LEAF_INPUTS)
TREE_64 = ReferenceTree([i.to_bytes(2, "big") * (i % 5 + 1) for i in range(64)])


# --- Known answers -------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert empty_root().hex() == EMPTY_ROOT_HEX


def test_leaf_hash_of_empty_string_matches_rfc6962_vector() -> None:
    assert leaf_hash(b"").hex() == EMPTY_LEAF_HASH_HEX


def test_node_hash_uses_the_0x01_prefix() -> None:
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_reference_tree_reproduces_the_published_roots(size: int) -> None:
    assert STANDARD_TREE.root(size) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_published_inclusion_proofs_verify(index: int, size: int, proof: list[bytes]) -> None:
    leaf = leaf_hash(LEAF_INPUTS[index])
    assert STANDARD_TREE.inclusion_proof(index, size) == proof
    assert root_from_inclusion_proof(leaf, index, size, proof) == ROOTS[size]
    verify_inclusion(leaf, index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_published_consistency_proofs_verify(size1: int, size2: int, proof: list[bytes]) -> None:
    if size1 < size2:
        assert STANDARD_TREE.consistency_proof(size1, size2) == proof
    verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)


# --- Specific failures ---------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (2, 1), (8, 8), (-1, 8)])
def test_inclusion_rejects_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ProofError, match=r"not less than|negative"):
        verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


def test_inclusion_of_the_only_leaf_needs_an_empty_proof() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    with pytest.raises(ProofError, match="too many"):
        verify_inclusion(leaf, 0, 1, [SOME_HASH], leaf)


def test_inclusion_reports_a_proof_that_is_too_long() -> None:
    index, size, proof = INCLUSION_VECTORS[1]
    with pytest.raises(ProofError, match="too many"):
        verify_inclusion(leaf_hash(LEAF_INPUTS[index]), index, size, [*proof, SOME_HASH], ROOTS[8])


def test_inclusion_reports_a_proof_that_is_too_short() -> None:
    index, size, proof = INCLUSION_VECTORS[1]
    with pytest.raises(ProofError, match="too few"):
        verify_inclusion(leaf_hash(LEAF_INPUTS[index]), index, size, proof[:-1], ROOTS[8])


def test_inclusion_reports_a_root_mismatch() -> None:
    index, size, proof = INCLUSION_VECTORS[1]
    with pytest.raises(ProofError, match="not the given root"):
        verify_inclusion(leaf_hash(LEAF_INPUTS[index]), index, size, proof, ROOTS[7])


@pytest.mark.parametrize(
    ("leaf", "proof", "root", "what"),
    [
        (b"WrongLeaf", [], ROOTS[1], "leaf hash"),
        (b"", [], ROOTS[1], "leaf hash"),
        (ROOTS[1], [], b"\x00" * 31, "root hash"),
        (ROOTS[1], [], b"", "root hash"),
        (ROOTS[1], [b"\x00" * 33], ROOTS[1], "element 0"),
    ],
)
def test_inclusion_rejects_hashes_that_are_not_32_bytes(
    leaf: bytes, proof: list[bytes], root: bytes, what: str
) -> None:
    with pytest.raises(ProofError, match=f"{what} is .* bytes"):
        verify_inclusion(leaf, 0, 1, proof, root)


def test_consistency_of_equal_sizes_needs_equal_roots_and_no_proof() -> None:
    verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(3, 3, ROOTS[3], ROOTS[3], [SOME_HASH])


def test_consistency_from_the_empty_tree_is_refused_as_rfc9162_defines_none() -> None:
    # transparency-dev/merkle accepts (0, n, empty proof); RFC 9162 section 2.1.4 defines
    # PROOF(m, D_n) only for 0 < m, and so do we.
    for size2, root2 in ((0, empty_root()), (1, ROOTS[1]), (8, ROOTS[8])):
        with pytest.raises(ProofError, match="first tree size is 0"):
            verify_consistency(0, size2, empty_root(), root2, [])


@pytest.mark.parametrize(("size1", "size2"), [(1, 0), (2, 1), (8, 7)])
def test_consistency_rejects_a_tree_that_shrank(size1: int, size2: int) -> None:
    with pytest.raises(ProofError, match="larger than"):
        verify_consistency(size1, size2, ROOTS[size1], ROOTS.get(size2, empty_root()), [])


def test_consistency_between_different_sizes_rejects_an_empty_proof() -> None:
    with pytest.raises(ProofError, match="is empty"):
        verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])


def test_consistency_reports_too_long_and_too_short_proofs() -> None:
    _, _, proof = CONSISTENCY_VECTORS[2]
    with pytest.raises(ProofError, match="too many"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], [*proof, SOME_HASH])
    with pytest.raises(ProofError, match="too few"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], proof[:-1])


def test_consistency_names_which_root_does_not_match() -> None:
    _, _, proof = CONSISTENCY_VECTORS[2]
    with pytest.raises(ProofError, match="first root"):
        verify_consistency(6, 8, ROOTS[5], ROOTS[8], proof)
    with pytest.raises(ProofError, match="second root"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[7], proof)


@pytest.mark.parametrize(
    ("root1", "root2", "proof", "what"),
    [
        (b"WrongRoot", ROOTS[8], [SOME_HASH], "first root hash"),
        (ROOTS[1], b"\x00" * 33, [SOME_HASH], "second root hash"),
        (ROOTS[1], ROOTS[8], [SOME_HASH, b""], "element 1"),
    ],
)
def test_consistency_rejects_hashes_that_are_not_32_bytes(
    root1: bytes, root2: bytes, proof: list[bytes], what: str
) -> None:
    with pytest.raises(ProofError, match=f"{what} is .* bytes"):
        verify_consistency(1, 8, root1, root2, proof)


def test_proof_errors_mean_failed() -> None:
    assert ProofError("x").verdict is Verdict.FAILED


# --- Every proof of every tree up to 64 leaves ---------------------------------------------


@pytest.mark.parametrize("size", range(1, 65))
def test_every_inclusion_proof_verifies_and_no_mutation_does(size: int) -> None:
    tree, root = TREE_64, TREE_64.root(size)
    for index in range(size):
        leaf, proof = tree.leaf(index), tree.inclusion_proof(index, size)
        verify_inclusion(leaf, index, size, proof, root)
        assert root_from_inclusion_proof(leaf, index, size, proof) == root

        for bad_proof in _byte_flips(proof, exhaustive=size <= 16):
            assert _rejected(verify_inclusion, leaf, index, size, bad_proof, root)
        for bad_proof in _structural_mutations(proof, root):
            assert _rejected(verify_inclusion, leaf, index, size, bad_proof, root)
        assert _rejected(verify_inclusion, _flip(leaf, 0), index, size, proof, root)
        assert _rejected(verify_inclusion, leaf, index, size, proof, _flip(root, 31))
        for other in range(size):
            if other != index:
                assert _rejected(verify_inclusion, leaf, other, size, proof, root)
        for other_size in range(index + 1, 65):
            if other_size != size and tree.inclusion_proof(index, other_size) != proof:
                other_root = tree.root(other_size)
                assert _rejected(verify_inclusion, leaf, index, other_size, proof, other_root)


@pytest.mark.parametrize("size2", range(1, 65))
def test_every_consistency_proof_verifies_and_no_mutation_does(size2: int) -> None:
    tree, root2 = TREE_64, TREE_64.root(size2)
    for size1 in range(1, size2 + 1):
        root1, proof = tree.root(size1), tree.consistency_proof(size1, size2)
        verify_consistency(size1, size2, root1, root2, proof)

        for bad_proof in _byte_flips(proof, exhaustive=size2 <= 16):
            assert _rejected(verify_consistency, size1, size2, root1, root2, bad_proof)
        for bad_proof in _structural_mutations(proof, root1):
            assert _rejected(verify_consistency, size1, size2, root1, root2, bad_proof)
        assert _rejected(verify_consistency, size1, size2, _flip(root1, 0), root2, proof)
        assert _rejected(verify_consistency, size1, size2, root1, _flip(root2, 31), proof)
        if size1 != size2:
            assert _rejected(verify_consistency, size1, size2, root2, root1, proof)
        for other1 in (size1 - 1, size1 + 1, size1 ^ 2):
            if 0 < other1 <= size2 and other1 != size1:
                other_root1 = tree.root(other1)
                assert _rejected(verify_consistency, other1, size2, other_root1, root2, proof)
        for other2 in (size2 - 1, size2 + 1, size2 * 2, size2 // 2):
            if other2 < size1 or other2 == size2:
                continue
            if other2 > 64:
                assert _rejected(verify_consistency, size1, other2, root1, root2, proof)
            elif tree.consistency_proof(size1, other2) != proof:
                other_root2 = tree.root(other2)
                assert _rejected(verify_consistency, size1, other2, root1, other_root2, proof)


# --- Random trees --------------------------------------------------------------------------


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[ReferenceTree, int, int]:
    size = draw(st.integers(min_value=1, max_value=700))
    seed = draw(st.binary(min_size=0, max_size=8))
    tree = ReferenceTree([seed + i.to_bytes(4, "big") for i in range(size)])
    return tree, draw(st.integers(min_value=0, max_value=size - 1)), size


@settings(max_examples=60, deadline=None)
@given(case=_tree_and_index(), data=st.data())
def test_random_inclusion_proofs_verify_and_reject_a_changed_byte(
    case: tuple[ReferenceTree, int, int], data: st.DataObject
) -> None:
    tree, index, size = case
    leaf, proof, root = tree.leaf(index), tree.inclusion_proof(index, size), tree.root(size)
    verify_inclusion(leaf, index, size, proof, root)
    if proof:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        position = data.draw(st.integers(min_value=0, max_value=31))
        mask = data.draw(st.integers(min_value=1, max_value=255))
        bad = list(proof)
        bad[element] = bytes(b ^ mask if i == position else b for i, b in enumerate(bad[element]))
        assert _rejected(verify_inclusion, leaf, index, size, bad, root)


@settings(max_examples=60, deadline=None)
@given(case=_tree_and_index(), data=st.data())
def test_random_consistency_proofs_verify_and_reject_a_changed_byte(
    case: tuple[ReferenceTree, int, int], data: st.DataObject
) -> None:
    tree, index, size2 = case
    size1 = index + 1
    root1, root2 = tree.root(size1), tree.root(size2)
    proof = tree.consistency_proof(size1, size2)
    verify_consistency(size1, size2, root1, root2, proof)
    if proof:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        position = data.draw(st.integers(min_value=0, max_value=31))
        bad = list(proof)
        bad[element] = _flip(bad[element], position)
        assert _rejected(verify_consistency, size1, size2, root1, root2, bad)
