"""RFC 9162 Merkle tree hashing and proof verification, written from the RFC alone.

The steps of ``root_from_inclusion_proof`` and ``verify_consistency`` are numbered as in
RFC 9162 sections 2.1.3.2 and 2.1.4.2 so that each line can be checked against the text.
Every failure raises ``ProofError`` with the reason; nothing returns a bare boolean.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from verifier.errors import ProofError

__all__ = [
    "HASH_SIZE",
    "empty_root",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest, the only hash algorithm this verifier accepts."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def empty_root() -> bytes:
    """Return MTH({}) = SHA-256 of the empty string, the root of an empty tree (2.1.1)."""
    return hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || data) of one log entry (2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right) (2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes; a SHA-256 hash is {HASH_SIZE} bytes")


def _check_proof_hashes(proof: Sequence[bytes], what: str) -> None:
    for position, element in enumerate(proof):
        _check_hash(element, f"{what} element {position}")


def _check_size(value: int, what: str) -> None:
    if value < 0:
        raise ProofError(f"{what} {value} is negative")


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` yields for ``leaf_hash`` at ``index``, or raise.

    This is RFC 9162 section 2.1.3.2 up to, but not including, the comparison with a
    trusted root; a caller must still compare the result with a root it trusts.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_proof_hashes(proof, "inclusion proof")
    _check_size(index, "leaf index")
    _check_size(tree_size, "tree size")
    # 1. The leaf index must fall inside the tree.
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not less than tree size {tree_size}")
    # 2. fn is the leaf's position, sn the last position in the tree.
    fn, sn = index, tree_size - 1
    # 3. Start from the leaf hash.
    r = leaf_hash
    # 4. Fold in each proof element, climbing one level per element.
    for p in proof:
        # 4a. A proof longer than the path to the root is invalid.
        if sn == 0:
            raise ProofError(
                f"inclusion proof has {len(proof)} hashes, too many for leaf {index} "
                f"in a tree of size {tree_size}"
            )
        # 4b. The sibling is on the left when fn is a right child or the last node.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # 4b.ii. Skip the levels where this node is a left child with no sibling.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c. Move one level up.
        fn >>= 1
        sn >>= 1
    # 5 (first half). The path must have reached the root.
    if sn != 0:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, too few for leaf {index} "
            f"in a tree of size {tree_size}"
        )
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    RFC 9162 section 2.1.3.2; raises ``ProofError`` naming the first step that failed.
    """
    _check_hash(root, "root hash")
    computed = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)
    # 5 (second half). The computed root must equal the trusted root.
    if not hmac.compare_digest(computed, root):
        raise ProofError(
            f"inclusion proof yields root {computed.hex()}, not the given root {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the one of ``size1``/``root1``.

    RFC 9162 section 2.1.4.2 defines the check for 0 < size1 < size2. Two more cases are
    settled here: size1 == size2 holds exactly when the proof is empty and the roots are
    equal; size1 == 0 is refused, because the RFC defines no consistency proof from the
    empty tree and an empty tree commits to nothing worth proving.
    """
    _check_hash(root1, "first root hash")
    _check_hash(root2, "second root hash")
    _check_proof_hashes(proof, "consistency proof")
    _check_size(size1, "first tree size")
    _check_size(size2, "second tree size")
    if size1 == 0:
        raise ProofError(
            "first tree size is 0: RFC 9162 section 2.1.4 defines consistency proofs "
            "only from a non-empty tree"
        )
    if size1 > size2:
        raise ProofError(f"first tree size {size1} is larger than second tree size {size2}")
    if size1 == size2:
        if proof:
            raise ProofError(
                f"trees of equal size {size1} need an empty consistency proof, "
                f"got {len(proof)} hashes"
            )
        if not hmac.compare_digest(root1, root2):
            raise ProofError(f"trees of equal size {size1} have different roots")
        return
    # 1. A proof between different sizes is never empty.
    if not proof:
        raise ProofError(f"consistency proof from size {size1} to {size2} is empty")
    path = list(proof)
    # 2. When size1 is a power of two, its root is itself the first node of the path.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # 3. fn and sn are the last positions of the first and second trees.
    fn, sn = size1 - 1, size2 - 1
    # 4. Skip the levels where the first tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Both running roots start from the first path element.
    fr = sr = path[0]
    # 6. Fold in each further element.
    for c in path[1:]:
        # 6a. A proof longer than the path to the root is invalid.
        if sn == 0:
            raise ProofError(
                f"consistency proof has {len(proof)} hashes, too many for sizes {size1} to {size2}"
            )
        # 6b. A left sibling belongs to both trees; a right one only to the second.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # 6b.iii. Skip the levels where this node is a left child with no sibling.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # 6c. Move one level up.
        fn >>= 1
        sn >>= 1
    # 7. Both roots must match and the path must have reached the top of the second tree.
    if sn != 0:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, too few for sizes {size1} to {size2}"
        )
    if not hmac.compare_digest(fr, root1):
        raise ProofError(
            f"consistency proof yields first root {fr.hex()}, not the given {root1.hex()}"
        )
    if not hmac.compare_digest(sr, root2):
        raise ProofError(
            f"consistency proof yields second root {sr.hex()}, not the given {root2.hex()}"
        )
