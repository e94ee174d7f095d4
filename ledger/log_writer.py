"""The part of a write transaction that is the same on every backend.

Statements use ``?`` placeholders (a backend translates them). Given a ``query``
function, it reads the tree size and the right-edge nodes, appends the new leaves and
stores every newly complete subtree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from ledger import merkle
from ledger.events import Event
from ledger.merkle import Node

Query = Callable[[str, Sequence[Any]], list[Any]]
InsertMany = Callable[[str, list[tuple[Any, ...]]], None]

SELECT_SIZE = "SELECT MAX(leaf_index) FROM ledger_log"
SELECT_HEAD = (
    "SELECT sequence, leaf_hash FROM ledger_log WHERE stream_id = ? ORDER BY sequence DESC LIMIT 1"
)
INSERT_LEAF = (
    "INSERT INTO ledger_log (leaf_index, event_id, stream_id, sequence, leaf_hash) "
    "VALUES (?, ?, ?, ?, ?)"
)
INSERT_NODE = "INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)"


class FrontierCache:
    """The right edge of the tree as of the last commit this process made.

    Only a hint: the transaction re-reads the tree size under the writer lock and uses the
    cache only when the size still matches, so another writer is never missed.
    """

    def __init__(self) -> None:
        self.size = -1
        self.nodes: dict[Node, bytes] = {}

    def load(self, size: int, query: Query) -> dict[Node, bytes]:
        if size == self.size:
            return dict(self.nodes)
        wanted = merkle.frontier(size)
        if not wanted:
            return {}
        ids = [merkle.node_id(n) for n in wanted]
        marks = ",".join("?" * len(ids))
        rows = query(f"SELECT node_id, hash FROM ledger_nodes WHERE node_id IN ({marks})", ids)
        found = {int(r[0]): bytes(r[1]) for r in rows}
        missing = [n for n in wanted if merkle.node_id(n) not in found]
        if missing:
            raise RuntimeError(f"log storage is missing right-edge nodes {missing}")
        return {n: found[merkle.node_id(n)] for n in wanted}

    def keep(self, size: int, known: dict[Node, bytes]) -> None:
        wanted = merkle.frontier(size)
        self.size = size
        self.nodes = {n: known[n] for n in wanted}


class TransactionReader:
    """The :class:`~ledger.store.WriteReader` of one write transaction."""

    def __init__(self, query: Query, stream_key: Callable[[UUID], Any]) -> None:
        self._query = query
        self._stream_key = stream_key

    def head(self, stream_id: UUID) -> tuple[int, bytes] | None:
        rows = self._query(SELECT_HEAD, [self._stream_key(stream_id)])
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def existing_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        marks = ",".join("?" * len(event_ids))
        rows = self._query(
            f"SELECT event_id FROM ledger_log WHERE event_id IN ({marks})", list(event_ids)
        )
        return {str(r[0]) for r in rows}


def current_size(query: Query) -> int:
    rows = query(SELECT_SIZE, [])
    last = rows[0][0] if rows else None
    return 0 if last is None else int(last) + 1


def leaf_rows(
    first: int, events: Sequence[Event], stream_key: Callable[[UUID], Any]
) -> list[tuple[Any, ...]]:
    return [
        (first + i, str(e.event_id), stream_key(e.stream_id), e.sequence, e.hash)
        for i, e in enumerate(events)
    ]


def grow(size: int, known: dict[Node, bytes], events: Sequence[Event]) -> list[tuple[int, bytes]]:
    """Node rows ``(node_id, hash)`` to insert for appending ``events`` at ``size``."""
    created = merkle.append_leaves(size, known, [e.hash for e in events])
    return [(merkle.node_id(node), value) for node, value in created]
