"""RFC 9162 Merkle tree arithmetic, independent of storage.

The log stores the hash of every *complete* subtree: the node at ``(level, index)`` covers
leaves ``[index * 2**level, (index + 1) * 2**level)``. Any range that RFC 9162's recursive
definitions (section 2.1.1, MTH; 2.1.3, PATH; 2.1.4, SUBPROOF) ever ask for is a run of at most
``log2(n)`` such nodes, so a root, an inclusion proof or a consistency proof needs
``O(log n)`` stored hashes and never the whole tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

#: ``node_id = level * LEVEL_STRIDE + index``; 2**48 leaves is far beyond any one log.
LEVEL_STRIDE = 1 << 48

Node = tuple[int, int]
"""A complete subtree as ``(level, index)``."""

Range = tuple[int, int]
"""A half-open leaf range ``(start, end)``."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 section 2.1.1: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 section 2.1.1: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def empty_root() -> bytes:
    """The root of the empty tree: the hash of the empty string."""
    return hashlib.sha256(b"").digest()


def node_id(node: Node) -> int:
    """The integer key a node is stored under."""
    level, index = node
    return level * LEVEL_STRIDE + index


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162's ``k``: the largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees, left to right, whose fold is ``MTH(D[start:end])``.

    ``start`` must be aligned as RFC 9162's recursion aligns it (a multiple of the
    smallest power of two that is at least ``end - start``), which holds for every range
    the proofs and roots below ask for.
    """
    remaining = end - start
    if remaining & (remaining - 1) == 0 and remaining:  # one complete subtree: most ranges
        level = remaining.bit_length() - 1
        return [(level, start >> level)]
    nodes: list[Node] = []
    position = start
    while remaining:
        level = remaining.bit_length() - 1
        nodes.append((level, position >> level))
        position += 1 << level
        remaining -= 1 << level
    return nodes


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """Combine a range's complete-subtree hashes (left to right) into its MTH."""
    if not hashes:
        return empty_root()
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form ``PATH(index, D[0:size])``, in proof order (bottom up)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The ranges whose hashes form ``PROOF(old_size, D[0:new_size])`` (RFC 9162 2.1.4.1).

    The proof between equal sizes, or from the empty tree, is empty.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[Range] = []
    start, end = 0, new_size
    remaining_old = old_size
    is_first_subtree = True
    while remaining_old != end - start:
        k = _largest_power_of_two_below(end - start)
        if remaining_old <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            remaining_old -= k
            is_first_subtree = False
    if not is_first_subtree:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def range_node_ids(start: int, end: int) -> list[int]:
    """:func:`range_nodes` as stored node ids: the form the proof path works in."""
    remaining = end - start
    if remaining & (remaining - 1) == 0 and remaining:  # one complete subtree: most ranges
        level = remaining.bit_length() - 1
        return [level * LEVEL_STRIDE + (start >> level)]
    ids: list[int] = []
    position = start
    while remaining:
        level = remaining.bit_length() - 1
        ids.append(level * LEVEL_STRIDE + (position >> level))
        position += 1 << level
        remaining -= 1 << level
    return ids


def inclusion_node_ids(index: int, size: int) -> list[list[int]]:
    """Per element of ``PATH(index, D[0:size])``, bottom up, the ids of the nodes it folds.

    The same walk as :func:`inclusion_ranges`, producing node ids directly: a left sibling
    is always one complete subtree, and only right siblings on the right edge are runs.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[list[int]] = []
    start, end = 0, size
    while end - start > 1:
        k_level = (end - start - 1).bit_length() - 1
        middle = start + (1 << k_level)
        if index < middle:
            path.append(range_node_ids(middle, end))
            end = middle
        else:
            path.append([k_level * LEVEL_STRIDE + (start >> k_level)])
            start = middle
    path.reverse()
    return path


def consistency_node_ids(old_size: int, new_size: int) -> list[list[int]]:
    """Per element of ``PROOF(old_size, D[0:new_size])``, the ids of the nodes it folds.

    The same walk as :func:`consistency_ranges`, producing node ids directly.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    path: list[list[int]] = []
    start, end = 0, new_size
    remaining_old = old_size
    is_first_subtree = True
    while remaining_old != end - start:
        k_level = (end - start - 1).bit_length() - 1
        k = 1 << k_level
        if remaining_old <= k:
            path.append(range_node_ids(start + k, end))
            end = start + k
        else:
            path.append([k_level * LEVEL_STRIDE + (start >> k_level)])
            start += k
            remaining_old -= k
            is_first_subtree = False
    if not is_first_subtree:
        path.append(range_node_ids(start, end))
    path.reverse()
    return path


def node_of(node_key: int) -> Node:
    """Inverse of :func:`node_id`."""
    level, index = divmod(node_key, LEVEL_STRIDE)
    return level, index


def nodes_for_ranges(ranges: Iterable[Range]) -> list[Node]:
    """Every stored node needed to hash the given ranges (may repeat)."""
    return [node for start, end in ranges for node in range_nodes(start, end)]


def hash_ranges(ranges: Sequence[Range], stored: Mapping[Node, bytes]) -> list[bytes]:
    """Hash each range from already-fetched complete-subtree hashes."""
    return [fold_range([stored[n] for n in range_nodes(start, end)]) for start, end in ranges]


def frontier(size: int) -> list[Node]:
    """The complete subtrees along the right edge of a tree of ``size`` leaves."""
    return range_nodes(0, size)


def nodes_completed_by_leaf(index: int) -> list[Node]:
    """The nodes above the leaf that become complete when leaf ``index`` is appended.

    The leaf itself, ``(0, index)``, is always first.
    """
    completed: list[Node] = [(0, index)]
    level, position = 0, index
    while position & 1:
        level += 1
        position >>= 1
        completed.append((level, position))
    return completed


def append_leaves(
    size: int, known: dict[Node, bytes], leaf_hashes: Sequence[bytes]
) -> list[tuple[Node, bytes]]:
    """Append leaves to a tree of ``size`` leaves; return every newly complete node.

    ``known`` must hold the hashes of :func:`frontier` (``size``); it is updated in place
    with the new nodes, so a caller can keep it as the frontier of the grown tree.
    """
    created: list[tuple[Node, bytes]] = []
    for offset, value in enumerate(leaf_hashes):
        index = size + offset
        known[(0, index)] = value
        created.append(((0, index), value))
        for level, position in nodes_completed_by_leaf(index)[1:]:
            left = known[(level - 1, position * 2)]
            right = known[(level - 1, position * 2 + 1)]
            parent = node_hash(left, right)
            known[(level, position)] = parent
            created.append(((level, position), parent))
    return created


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, used before the ledger signs a new checkpoint.

    Kept separate from the independent verifier on purpose: the ledger refuses to sign
    with its own check, and auditors check again with theirs.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:  # step 1: an empty path never proves growth
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # old tree is a complete subtree: prepend its root
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
