"""A naive Merkle tree written straight from RFC 9162 section 2.1, for checking the real one.

Every function follows the RFC's recursive definitions word for word: MTH (2.1.1),
PATH (2.1.3.1) and PROOF/SUBPROOF (2.1.4.1). It is slow on purpose: clarity over speed,
with a cache on MTH so that all-pairs tests over a few hundred leaves stay quick.
"""

from __future__ import annotations

import hashlib
from functools import cache


class ReferenceTree:
    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = tuple(leaves)

    @staticmethod
    def _k(n: int) -> int:
        # "the largest power of two smaller than n (i.e., k < n <= 2k)"
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    @cache  # noqa: B019 - the tree lives as long as one test
    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + self.leaves[start]).digest()
        k = self._k(n)
        left = self.mth(start, start + k)
        right = self.mth(start + k, end)
        return hashlib.sha256(b"\x01" + left + right).digest()

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = self._k(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def inclusion(self, m: int, size: int) -> list[bytes]:
        return self.path(m, 0, size)

    def subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.mth(start, end)]
        k = self._k(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, complete), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]

    def consistency(self, m: int, size: int) -> list[bytes]:
        return self.subproof(m, 0, size, True)
