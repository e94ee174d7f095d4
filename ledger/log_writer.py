"""The body of an append transaction, the same on every backend.

A backend opens the transaction and takes the writer lock; :class:`LogWriter` then reads
the tree size, builds the events, and writes the events, their leaves and every newly
complete subtree. Statements use ``?`` placeholders (a backend translates them).

Leaf hashes (level 0) live only in ``ledger_log``; ``ledger_nodes`` holds the subtrees of
level 1 and up. :func:`select_nodes` reads any mix of both in one statement.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from ledger import merkle
from ledger.events import Event
from ledger.merkle import Node

SELECT_SIZE = "SELECT MAX(leaf_index) FROM ledger_log"
SELECT_HEAD = (
    "SELECT originator_version, state FROM stored_events WHERE originator_id = ? "
    "ORDER BY originator_version DESC LIMIT 1"
)
#: Streams whose heads one :meth:`Transaction.heads` call reads.
HEADS_PER_STATEMENT = 1000
INSERT_LEAF = (
    "INSERT INTO ledger_log (leaf_index, event_id, stream_id, sequence, leaf_hash) "
    "VALUES (?, ?, ?, ?, ?)"
)
INSERT_NODE = "INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)"
#: The leaves in a range of indices, with the last one's event (the ``?`` after ``WHEN``),
#: so a writer that is behind can catch up (see :meth:`LogWriter.write`). Both bounds are
#: given: a plan made for any value of a lone lower bound expects a third of the table and
#: scans all of it, under the writer lock.
SELECT_SINCE = (
    "SELECT l.leaf_index, l.stream_id, l.sequence, l.leaf_hash, CASE WHEN l.leaf_index = ? "
    "THEN (SELECT e.state FROM stored_events e WHERE e.originator_id = l.stream_id "
    "AND e.originator_version = l.sequence) END FROM ledger_log l "
    "WHERE l.leaf_index >= ? AND l.leaf_index < ? ORDER BY l.leaf_index"
)
#: At most how many leaves of other writers a writer reads to catch up; further behind, it
#: reads its right edge afresh and forgets the heads it remembered.
MAX_CATCH_UP = 5_000
SELECT_LAST_EVENT = (
    "SELECT e.state FROM ledger_log l JOIN stored_events e "
    "ON e.originator_id = l.stream_id AND e.originator_version = l.sequence "
    "WHERE l.leaf_index = ?"
)


def size_from(rows: Sequence[Sequence[Any]]) -> int:
    """The tree size from the rows :data:`SELECT_SIZE` read."""
    return 0 if rows[0][0] is None else int(rows[0][0]) + 1


def select_nodes(nodes: Sequence[Node]) -> tuple[str, list[int]]:
    """One statement reading the hashes of ``nodes``; rows are ``(node_id, hash)``."""
    return select_node_ids({merkle.node_id(n) for n in nodes})


def select_node_ids(ids: Iterable[int]) -> tuple[str, list[int]]:
    """:func:`select_nodes` by stored node id (a leaf's id is its index)."""
    leaves = sorted(i for i in ids if i < merkle.LEVEL_STRIDE)
    upper = sorted(i for i in ids if i >= merkle.LEVEL_STRIDE)
    parts: list[str] = []
    if upper:
        marks = ",".join("?" * len(upper))
        parts.append(f"SELECT node_id, hash FROM ledger_nodes WHERE node_id IN ({marks})")
    if leaves:
        marks = ",".join("?" * len(leaves))
        parts.append(
            f"SELECT leaf_index AS node_id, leaf_hash AS hash FROM ledger_log "
            f"WHERE leaf_index IN ({marks})"
        )
    return " UNION ALL ".join(parts), upper + leaves


class Transaction(Protocol):
    """What a backend offers inside its write transaction."""

    def size(self) -> int:
        """The tree size, read under the writer lock (:data:`SELECT_SIZE`)."""
        ...

    def confirm(self) -> None:
        """Wait until every statement sent so far has run; raise what refused one (if it
        has not been raised already).

        A backend may send statements whose rows are not needed without waiting for each
        (PostgreSQL's pipeline mode): their errors are raised here at the latest.
        """
        ...

    def query(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]: ...

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...

    def insert_events(self, events: Sequence[Event]) -> None: ...

    def execute(self, sql: str, params: Sequence[Any]) -> None: ...

    def heads(self, stream_keys: Sequence[Any]) -> list[Sequence[Any]]:
        """``(stream key, last sequence, canonical bytes)`` of each given stream that has
        events, read as one index probe per stream in as few round trips as the backend
        allows."""
        ...


#: Run inside the transaction after the events and their leaves are written, before the
#: commit: ``(transaction, first leaf index, events)``. Whatever it raises rolls back all.
#: A backend may not have run those writes yet when it is called (PostgreSQL's pipeline):
#: their refusal (a replayed event id) is raised at the hook's first read, and if the hook
#: raises before it reads, in place of what it raised.
AlsoWrite = Callable[[Transaction, int, list[Event]], None]


#: How many stream heads a process remembers (least recently used go first).
MAX_REMEMBERED_HEADS = 50_000

Head = tuple[int, bytes]


@dataclass(frozen=True)
class Written:
    """What one transaction wrote, kept until it is known to have committed."""

    first: int
    events: list[Event]
    size: int
    frontier: dict[Node, bytes]
    heads: dict[UUID, Head]
    last_time: str | None


class LogWriter:
    """Appends events and their leaves; remembers the right edge between appends.

    The memory is only a shortcut: each transaction re-reads the tree size under the writer
    lock and trusts what it remembers only if the size is the one this process last
    committed. Every append grows the tree, so a write by any other process or host is
    always noticed. The writer then reads the leaves written since (at most
    :data:`MAX_CATCH_UP`; beyond that, its right edge afresh) and brings its right edge and
    the heads of their streams up to date from them in one statement, so workers
    appending in turn do not each read everything again.
    """

    def __init__(
        self,
        stream_key: Callable[[UUID], Any],
        event_key: Callable[[UUID], Any],
        stream_id: Callable[[Any], UUID],
    ) -> None:
        self.lock = threading.Lock()
        self._stream_key = stream_key
        self._event_key = event_key
        self._stream_id = stream_id
        self._size = -1
        self._frontier: dict[Node, bytes] = {}
        self._heads: OrderedDict[UUID, Head] = OrderedDict()
        self._last_time: str | None = None

    def write(
        self,
        tx: Transaction,
        build: Callable[[Any], list[Event]],
        also: AlsoWrite | None = None,
    ) -> Written:
        """The transaction body; call with :attr:`lock` held and the writer lock taken.

        ``also``, if given, runs last, in the same transaction (see :data:`AlsoWrite`).
        """
        size = tx.size()
        # Heads this transaction reads or writes go to an overlay, merged only on commit.
        overlay: dict[UUID, Head] = {}
        if self._size == size:
            frontier, last_time = dict(self._frontier), self._last_time
        else:
            behind = 0 <= self._size < size <= self._size + MAX_CATCH_UP
            caught_up = self._catch_up(tx, size, overlay) if behind else None
            if caught_up is None:
                self.forget()
                overlay.clear()
                frontier = _read_frontier(tx, size)
                last_time = _read_last_time(tx, size)
            else:
                frontier, last_time = caught_up
        events = build(_HeadReader(tx, self._heads, overlay, self._stream_key, last_time))
        tx.insert_events(events)
        tx.insert_many(
            INSERT_LEAF,
            [
                (
                    size + i,
                    self._event_key(e.event_id),
                    self._stream_key(e.stream_id),
                    e.sequence,
                    e.hash,
                )
                for i, e in enumerate(events)
            ],
        )
        created = merkle.append_leaves(size, frontier, [e.hash for e in events])
        upper = [(merkle.node_id(node), value) for node, value in created if node[0] > 0]
        if upper:
            tx.insert_many(INSERT_NODE, upper)
        if also is not None:
            # Not after a confirm, which would cost a round trip: a refusal of the rows
            # above comes at the hook's first read, or here if the hook refuses first.
            try:
                also(tx, size, events)
            except Exception:
                tx.confirm()
                raise
        new_size = size + len(events)
        for event in events:
            overlay[event.stream_id] = (event.sequence, event.hash)
        edge = {n: frontier[n] for n in merkle.frontier(new_size)}
        times = [str(e.envelope["server_time"]) for e in events]
        return Written(size, events, new_size, edge, overlay, max(times) if times else last_time)

    def _catch_up(
        self, tx: Transaction, size: int, overlay: dict[UUID, Head]
    ) -> tuple[dict[Node, bytes], str | None] | None:
        """The right edge and last server time of a tree of ``size`` leaves, from what this
        writer remembers and the leaves other writers added since; their streams' heads go
        into ``overlay``. ``None`` if the rows are not the leaves expected."""
        rows = tx.query(SELECT_SINCE, [size - 1, self._size, size])
        if len(rows) != size - self._size or rows[-1][4] is None:
            return None
        hashes: list[bytes] = []
        for offset, (index, stream, sequence, leaf_hash, _) in enumerate(rows):
            if int(index) != self._size + offset:
                return None
            value = bytes(leaf_hash)
            hashes.append(value)
            overlay[self._stream_id(stream)] = (int(sequence), value)
        known = dict(self._frontier)
        merkle.append_leaves(self._size, known, hashes)
        frontier = {n: known[n] for n in merkle.frontier(size)}
        return frontier, _server_time(rows[-1][4])

    def committed(self, written: Written) -> None:
        """Remember the right edge and heads of a transaction that committed."""
        self._size = written.size
        self._frontier = written.frontier
        self._last_time = written.last_time
        for stream_id, head in written.heads.items():
            self._heads[stream_id] = head
            self._heads.move_to_end(stream_id)
        while len(self._heads) > MAX_REMEMBERED_HEADS:
            self._heads.popitem(last=False)

    def forget(self) -> None:
        """After a failed or uncertain commit, or another writer's append, trust nothing."""
        self._size = -1
        self._frontier = {}
        self._heads.clear()
        self._last_time = None


class _HeadReader:
    """The :class:`~ledger.store.WriteReader` of one transaction."""

    def __init__(
        self,
        tx: Transaction,
        remembered: Mapping[UUID, Head],
        overlay: dict[UUID, Head],
        stream_key: Callable[[UUID], Any],
        last_time: str | None,
    ) -> None:
        self._tx = tx
        self._remembered = remembered
        self._overlay = overlay
        self._stream_key = stream_key
        self._last_time = last_time
        self._new: set[UUID] = set()

    def last_server_time(self) -> str | None:
        return self._last_time

    def prefetch(self, stream_ids: Iterable[UUID]) -> None:
        """Read the heads of the streams not yet known, many per round trip.

        A batch touching many streams (most of them new tasks) would otherwise make one
        round trip per stream; a stream found to have no events is remembered as new.
        """
        wanted = [
            s
            for s in dict.fromkeys(stream_ids)
            if s not in self._overlay and s not in self._remembered and s not in self._new
        ]
        if len(wanted) < 2:
            return  # head() reads a single stream in one statement anyway
        for start in range(0, len(wanted), HEADS_PER_STATEMENT):
            chunk = {self._stream_key(s): s for s in wanted[start : start + HEADS_PER_STATEMENT]}
            found: set[UUID] = set()
            for key, sequence, state in self._tx.heads(list(chunk)):
                stream_id = chunk[key]
                self._overlay[stream_id] = int(sequence), merkle.leaf_hash(bytes(state))
                found.add(stream_id)
            self._new.update(s for s in chunk.values() if s not in found)

    def head(self, stream_id: UUID) -> Head | None:
        known = self._overlay.get(stream_id) or self._remembered.get(stream_id)
        if known is not None:
            return known
        if stream_id in self._new:
            return None
        rows = self._tx.query(SELECT_HEAD, [self._stream_key(stream_id)])
        if not rows:
            return None
        head = int(rows[0][0]), merkle.leaf_hash(bytes(rows[0][1]))
        self._overlay[stream_id] = head
        return head


def _read_last_time(tx: Transaction, size: int) -> str | None:
    """The server time of the log's last event (``None`` for an empty log)."""
    if size == 0:
        return None
    rows = tx.query(SELECT_LAST_EVENT, [size - 1])
    if not rows:
        raise RuntimeError(f"log storage has no event for leaf {size - 1}")
    return _server_time(rows[0][0])


def _server_time(state: Any) -> str:
    """The ``server_time`` of a stored event's canonical bytes."""
    return str(json.loads(bytes(state))["server_time"])


def _read_frontier(tx: Transaction, size: int) -> dict[Node, bytes]:
    wanted = merkle.frontier(size)
    if not wanted:
        return {}
    sql, params = select_nodes(wanted)
    found = {int(r[0]): bytes(r[1]) for r in tx.query(sql, params)}
    missing = [n for n in wanted if merkle.node_id(n) not in found]
    if missing:
        raise RuntimeError(f"log storage is missing right-edge nodes {missing}")
    return {n: found[merkle.node_id(n)] for n in wanted}
