"""The event store contract: hash-chained streams and one global RFC 9162 log, in one database.

:class:`LedgerStore` holds everything that does not depend on the database. A backend
(:mod:`ledger.sqlite_store`, :mod:`ledger.postgres_store`) supplies one write transaction
that runs under the log's writer lock, and plain reads. Within that transaction the store
reads each stream's head, builds and hashes the envelopes, inserts them through
eventsourcing's recorder, and appends their leaves and every newly complete subtree to the
log, so an event is acknowledged only once it is in the tree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from ledger import log_writer, merkle
from ledger.errors import (
    ConstraintViolation,
    DuplicateEvent,
    LogError,
    StoreUnavailable,
    StreamConflict,
)
from ledger.events import Event, EventDraft, new_event, new_event_id
from ledger.merkle import HASH_SIZE, Node

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Receipt:
    """What the caller gets back once an event is stored and in the log."""

    event_id: UUID
    stream_id: UUID
    sequence: int
    leaf_index: int
    event_hash: bytes
    server_time: str


@dataclass(frozen=True)
class LogEntry:
    """One leaf of the log with the event it stands for."""

    leaf_index: int
    event_id: UUID
    stream_id: UUID
    sequence: int
    leaf_hash: bytes
    canonical: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed tree head as stored, with the consistency proof from the one before it."""

    tree_size: int
    root_hash: bytes
    note: str
    previous_size: int | None
    consistency_proof: tuple[bytes, ...]
    signed_at: str


@dataclass(frozen=True)
class StoredTimestamp:
    """An RFC 3161 response over a checkpoint's signed note, verified when received."""

    tree_size: int
    response_der: bytes
    gen_time: str
    tsa_url: str
    tsa_name: str


class WriteReader(Protocol):
    """Reads made inside the write transaction, after the writer lock is held."""

    def head(self, stream_id: UUID) -> tuple[int, bytes] | None:
        """A stream's last ``(sequence, event hash)``, or ``None`` for a new stream."""

    def last_server_time(self) -> str | None:
        """The ``server_time`` of the log's last event, or ``None`` for an empty log."""

    def prefetch(self, stream_ids: Iterable[UUID]) -> None:
        """Read the heads of many streams at once, so :meth:`head` needs no round trip."""


BuildEvents = Callable[[WriteReader], list[Event]]

#: What :meth:`LedgerStore.append` runs in its transaction after the events are written:
#: ``(transaction, receipts)``; its writes commit with the events or not at all.
AlsoWrite = Callable[[log_writer.Transaction, list["Receipt"]], None]


def _receipts(first: int, events: Sequence[Event]) -> list[Receipt]:
    return [
        Receipt(
            event_id=event.event_id,
            stream_id=event.stream_id,
            sequence=event.sequence,
            leaf_index=first + offset,
            event_hash=event.hash,
            server_time=event.envelope["server_time"],
        )
        for offset, event in enumerate(events)
    ]


def not_before(now: datetime, last: str | None) -> datetime:
    """``now``, or the last event's server time if the clock has stepped back behind it.

    Server time never goes backwards in log order: after a clock step back (an NTP
    correction, a VM restored), events carry the last recorded time until the clock
    catches up, so the order of times agrees with the order of the log.
    """
    if last is None:
        return now
    # A stored server time, always ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: ``fromisoformat``
    # reads it as UTC, about 40x faster than ``strptime`` (this runs on every append).
    recorded = datetime.fromisoformat(last)
    return recorded if now < recorded else now


def checkpoint_row(checkpoint: StoredCheckpoint) -> list[Any]:
    """A checkpoint's ``ledger_checkpoints`` values: tree_size, root_hash, note,
    previous_size, consistency_proof, signed_at."""
    return [
        checkpoint.tree_size,
        checkpoint.root_hash,
        checkpoint.note,
        checkpoint.previous_size,
        join_hashes(checkpoint.consistency_proof),
        checkpoint.signed_at,
    ]


def join_hashes(hashes: Sequence[bytes]) -> bytes:
    """Store a list of 32-byte hashes as one blob."""
    return b"".join(hashes)


def split_hashes(blob: bytes) -> tuple[bytes, ...]:
    """Inverse of :func:`join_hashes`."""
    if len(blob) % HASH_SIZE:
        raise LogError("stored hash list is not a whole number of 32-byte hashes")
    return tuple(blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE))


#: Subtrees of this level and up are cached in memory once read (``_fetch_node_ids``); the
#: cache holds at most MAX_CACHED_NODES hashes (about 136 bytes each, 40 MB in all), which
#: covers every node from level 2 up of a log of a million events.
CACHED_LEVEL = 2
MAX_CACHED_NODES = 300_000


#: Checkpoints above a size (the first two parameters) with no token, smallest first.
UNTIMESTAMPED = (
    "SELECT c.* FROM ledger_checkpoints c WHERE c.tree_size > ? AND NOT EXISTS ("
    "SELECT 1 FROM ledger_checkpoint_timestamps t "
    "WHERE t.tree_size = c.tree_size AND t.tree_size > ?"
    ") ORDER BY c.tree_size LIMIT ?"
)


class LedgerStore(ABC):
    """Events, their hash chains and the Merkle log over them, for one database."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._node_cache: dict[int, bytes] = {}

    # -- backend -------------------------------------------------------------------

    _writer: log_writer.LogWriter

    @abstractmethod
    def _write_transaction(
        self, build: BuildEvents, also: log_writer.AlsoWrite | None = None
    ) -> log_writer.Written:
        """Open a write transaction, take the writer lock, run :attr:`_writer`, commit."""

    def _write(
        self, build: BuildEvents, also: log_writer.AlsoWrite | None = None
    ) -> tuple[int, list[Event]]:
        """Run ``build`` and store its events in one transaction under the writer lock.

        Returns the leaf index of the first event and the events stored. Raises what
        ``build`` raises, :class:`~ledger.errors.ConstraintViolation` if the database's own
        uniqueness checks refuse the rows, or :class:`~ledger.errors.StoreUnavailable`.
        Whatever fails, the writer forgets what it remembered of the tree.
        """
        with self._writer.lock:
            try:
                written = self._write_transaction(build, also)
            except IntegrityError as exc:
                self._writer.forget()
                raise ConstraintViolation(f"the ledger database refused the rows: {exc}") from exc
            except PersistenceError as exc:
                self._writer.forget()
                raise StoreUnavailable(f"the ledger database refused the write: {exc}") from exc
            except BaseException:
                self._writer.forget()
                raise
            self._writer.committed(written)
        return written.first, written.events

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one read-only statement (``?`` placeholders) and return its rows."""

    @abstractmethod
    def _tuples(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """Like :meth:`_rows`, as plain tuples, by the backend's fastest read route."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one write statement in its own committed transaction."""

    @abstractmethod
    def _stream_key(self, stream_id: UUID) -> Any:
        """The stream id as the backend stores it."""

    @abstractmethod
    def _stream_id(self, stored: Any) -> UUID:
        """Inverse of :meth:`_stream_key`."""

    @abstractmethod
    def _event_key(self, event_id: UUID) -> Any:
        """An event id as the log stores it (16 bytes)."""

    @abstractmethod
    def _event_id(self, stored: Any) -> UUID:
        """Inverse of :meth:`_event_key`."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    @property
    @abstractmethod
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgres"``."""

    # -- appending -----------------------------------------------------------------

    def append(
        self,
        drafts: Sequence[EventDraft],
        *,
        expected: Mapping[UUID, int] | None = None,
        also: AlsoWrite | None = None,
    ) -> list[Receipt]:
        """Store ``drafts`` as one all-or-nothing batch, chained onto their streams.

        ``expected`` maps a stream to the sequence its caller last saw (0 for a new
        stream); if the stream has moved on, :class:`StreamConflict` is raised and nothing
        is stored. Streams not named in ``expected`` are appended at their current head.

        ``also``, if given, runs in the same transaction once the events and their leaves
        are written, with the receipts they will have (statements take ``?``
        placeholders); whatever it raises rolls the whole append back and is raised here
        (a row the database refuses: :class:`~ledger.errors.ConstraintViolation`).
        """
        if not drafts:
            return []
        expected = dict(expected or {})

        def build(reader: WriteReader) -> list[Event]:
            server_time = not_before(self.clock(), reader.last_server_time())
            heads: dict[UUID, tuple[int, bytes | None]] = {}
            events: list[Event] = []
            reader.prefetch(draft.stream_id for draft in drafts)
            for draft in drafts:
                if draft.stream_id not in heads:
                    current = reader.head(draft.stream_id)
                    sequence, last_hash = current if current else (0, None)
                    wanted = expected.get(draft.stream_id)
                    if wanted is not None and wanted != sequence:
                        raise StreamConflict(draft.stream_id, wanted + 1)
                    heads[draft.stream_id] = (sequence, last_hash)
                sequence, prev = heads[draft.stream_id]
                event = new_event(
                    draft,
                    sequence=sequence + 1,
                    prev=prev,
                    server_time=server_time,
                    event_id=draft.event_id or new_event_id(),
                )
                heads[draft.stream_id] = (sequence + 1, event.hash)
                events.append(event)
            ids = [str(e.event_id) for e in events]
            if len(set(ids)) != len(ids):
                raise DuplicateEvent(next(i for i in ids if ids.count(i) > 1))
            return events

        hook: log_writer.AlsoWrite | None = None
        if also is not None:
            run_also = also

            def hook(tx: log_writer.Transaction, first: int, events: list[Event]) -> None:
                run_also(tx, _receipts(first, events))

        try:
            first, events = self._write(build, hook)
        except ConstraintViolation:
            # The unique key on event ids refused a replay: say which one. Checked only on
            # this path so that appends pay for no extra query.
            wanted = [d.event_id for d in drafts if d.event_id is not None]
            taken = self._existing_event_ids(wanted) if wanted else set()
            if taken:
                raise DuplicateEvent(min(taken), frozenset(taken)) from None
            raise
        return _receipts(first, events)

    # -- the tree --------------------------------------------------------------------

    def tree_size(self) -> int:
        rows = self._rows("SELECT MAX(leaf_index) AS last FROM ledger_log")
        last = rows[0]["last"] if rows else None
        return 0 if last is None else int(last) + 1

    def fetch_nodes(self, nodes: Sequence[Node], *, fresh: bool = False) -> dict[Node, bytes]:
        """Stored subtree hashes (leaves from the log, the rest from the nodes) in one read."""
        found = self._fetch_node_ids([merkle.node_id(n) for n in nodes], fresh)
        return {n: found[merkle.node_id(n)] for n in nodes}

    def _fetch_node_ids(self, ids: Sequence[int], fresh: bool = False) -> dict[int, bytes]:
        """Hashes by stored node id, in one read at most.

        Subtrees of level :data:`CACHED_LEVEL` and up are remembered once read: a stored
        subtree hash never changes, and the upper levels serve almost every proof.
        ``fresh`` reads everything from storage (the sealer's checks before it signs).
        """
        cache = self._node_cache
        found: dict[int, bytes] = {}
        missing: set[int] = set()
        if fresh:
            missing.update(ids)
        else:
            for i in ids:
                value = cache.get(i)
                if value is None:
                    missing.add(i)
                else:
                    found[i] = value
        if missing:
            sql, params = log_writer.select_node_ids(missing)
            for key, value in self._tuples(sql, params):
                found[int(key)] = bytes(value)
            absent = missing - found.keys()
            if absent:
                node = merkle.node_of(min(absent))
                raise LogError(f"the log has no node {node}: the tree is smaller than asked")
            if not fresh and len(cache) < MAX_CACHED_NODES:
                # Once full, the cache keeps what it has: the upper levels, which every
                # proof touches, arrive first and stay.
                floor = CACHED_LEVEL * merkle.LEVEL_STRIDE
                for i in missing:
                    if i >= floor:
                        cache[i] = found[i]
        return found

    def _hash_ranges(self, ranges: Sequence[merkle.Range], fresh: bool = False) -> list[bytes]:
        return self._hash_runs([merkle.range_node_ids(a, b) for a, b in ranges], fresh)

    def _hash_runs(self, runs: Sequence[list[int]], fresh: bool = False) -> list[bytes]:
        stored = self._fetch_node_ids([i for run in runs for i in run], fresh)
        return [
            stored[run[0]] if len(run) == 1 else merkle.fold_range([stored[i] for i in run])
            for run in runs
        ]

    def root(self, size: int, *, fresh: bool = False) -> bytes:
        """The tree head (MTH) of the first ``size`` leaves (``fresh``: bypass the cache)."""
        if size == 0:
            return merkle.empty_root()
        return self._hash_ranges([(0, size)], fresh)[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        try:
            runs = merkle.inclusion_node_ids(index, size)
        except ValueError as exc:
            raise LogError(str(exc)) from exc
        return self._hash_runs(runs)

    def consistency_proof(
        self, old_size: int, new_size: int, *, fresh: bool = False
    ) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old_size`` to ``new_size`` leaves."""
        try:
            runs = merkle.consistency_node_ids(old_size, new_size)
        except ValueError as exc:
            raise LogError(str(exc)) from exc
        return self._hash_runs(runs, fresh)

    # -- reading events ----------------------------------------------------------------

    def _entry(self, row: Row) -> LogEntry:
        return LogEntry(
            leaf_index=int(row["leaf_index"]),
            event_id=self._event_id(row["event_id"]),
            stream_id=self._stream_id(row["stream_id"]),
            sequence=int(row["sequence"]),
            leaf_hash=bytes(row["leaf_hash"]),
            # A log row whose event row is gone joins to NULL: the audit names it.
            canonical=b"" if row["state"] is None else bytes(row["state"]),
        )

    _ENTRY_SELECT = (
        "SELECT l.leaf_index, l.event_id, l.stream_id, l.sequence, l.leaf_hash, e.state "
        "FROM ledger_log l LEFT JOIN stored_events e "
        "ON e.originator_id = l.stream_id AND e.originator_version = l.sequence "
    )

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Leaves ``[start, end)`` with their events' canonical bytes, in log order."""
        rows = self._rows(
            self._ENTRY_SELECT + "WHERE l.leaf_index >= ? AND l.leaf_index < ? "
            "ORDER BY l.leaf_index",
            [start, end],
        )
        return [self._entry(r) for r in rows]

    def iter_entries(self, end: int, batch: int = 5000) -> Iterator[LogEntry]:
        """Leaves ``[0, end)`` in log order, read in batches so memory stays flat."""
        for start in range(0, end, batch):
            yield from self.entries(start, min(end, start + batch))

    def entry_for_event(self, event_id: UUID) -> LogEntry | None:
        rows = self._rows(self._ENTRY_SELECT + "WHERE l.event_id = ?", [self._event_key(event_id)])
        return self._entry(rows[0]) if rows else None

    def read_stream(self, stream_id: UUID) -> list[Event]:
        """Every event of one stream, in sequence order, decoded and re-validated."""
        rows = self._rows(
            "SELECT state FROM stored_events WHERE originator_id = ? ORDER BY originator_version",
            [self._stream_key(stream_id)],
        )
        return [Event.from_canonical(bytes(r["state"])) for r in rows]

    def events_without_leaves(self, limit: int = 100) -> list[tuple[UUID, int, bytes]]:
        """Stored events the log has no leaf for: ``(stream, sequence, canonical bytes)``."""
        rows = self._rows(
            "SELECT e.originator_id AS stream_id, e.originator_version AS sequence, e.state "
            "FROM stored_events e LEFT JOIN ledger_log l "
            "ON l.stream_id = e.originator_id AND l.sequence = e.originator_version "
            "WHERE l.leaf_index IS NULL ORDER BY e.originator_id, e.originator_version LIMIT ?",
            [limit],
        )
        return [
            (self._stream_id(r["stream_id"]), int(r["sequence"]), bytes(r["state"])) for r in rows
        ]

    def _existing_event_ids(self, event_ids: Sequence[UUID]) -> set[UUID]:
        marks = ",".join("?" * len(event_ids))
        rows = self._rows(
            f"SELECT event_id FROM ledger_log WHERE event_id IN ({marks})",
            [self._event_key(e) for e in event_ids],
        )
        return {self._event_id(r["event_id"]) for r in rows}

    def count_events(self) -> int:
        rows = self._rows("SELECT COUNT(*) AS n FROM stored_events")
        return int(rows[0]["n"])

    def count_nodes(self) -> int:
        rows = self._rows("SELECT COUNT(*) AS n FROM ledger_nodes")
        return int(rows[0]["n"])

    # -- checkpoints -----------------------------------------------------------------

    def _checkpoint(self, row: Row) -> StoredCheckpoint:
        previous = row["previous_size"]
        return StoredCheckpoint(
            tree_size=int(row["tree_size"]),
            root_hash=bytes(row["root_hash"]),
            note=str(row["note"]),
            previous_size=None if previous is None else int(previous),
            consistency_proof=split_hashes(bytes(row["consistency_proof"])),
            signed_at=str(row["signed_at"]),
        )

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self._rows("SELECT * FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1")
        return self._checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._rows("SELECT * FROM ledger_checkpoints ORDER BY tree_size")
        return [self._checkpoint(r) for r in rows]

    def checkpoint_covering(self, leaf_index: int) -> StoredCheckpoint | None:
        """The smallest checkpoint whose tree contains ``leaf_index``."""
        rows = self._rows(
            "SELECT * FROM ledger_checkpoints WHERE tree_size > ? ORDER BY tree_size LIMIT 1",
            [leaf_index],
        )
        return self._checkpoint(rows[0]) if rows else None

    def insert_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._execute(
            "INSERT INTO ledger_checkpoints "
            "(tree_size, root_hash, note, previous_size, consistency_proof, signed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            checkpoint_row(checkpoint),
        )

    def _timestamp(self, row: Row) -> StoredTimestamp:
        return StoredTimestamp(
            tree_size=int(row["tree_size"]),
            response_der=bytes(row["response_der"]),
            gen_time=str(row["gen_time"]),
            tsa_url=str(row["tsa_url"]),
            tsa_name=str(row["tsa_name"]),
        )

    def insert_timestamp(self, stamp: StoredTimestamp) -> None:
        self._execute(
            "INSERT INTO ledger_checkpoint_timestamps "
            "(tree_size, response_der, gen_time, tsa_url, tsa_name) VALUES (?, ?, ?, ?, ?)",
            [stamp.tree_size, stamp.response_der, stamp.gen_time, stamp.tsa_url, stamp.tsa_name],
        )

    def timestamps(self) -> dict[int, StoredTimestamp]:
        rows = self._rows("SELECT * FROM ledger_checkpoint_timestamps")
        return {int(r["tree_size"]): self._timestamp(r) for r in rows}

    def timestamp_for(self, tree_size: int) -> StoredTimestamp | None:
        rows = self._rows(
            "SELECT * FROM ledger_checkpoint_timestamps WHERE tree_size = ?", [tree_size]
        )
        return self._timestamp(rows[0]) if rows else None

    def untimestamped_checkpoints(self, limit: int = 100, after: int = 0) -> list[StoredCheckpoint]:
        """Checkpoints of size above ``after`` with no timestamp token yet, smallest first.

        Both tables are read by key from ``after`` on, so the read costs what lies above
        it, not the whole log's history of checkpoints: a caller that knows every
        checkpoint up to some size has its token (the sealer does) passes that size.
        """
        rows = self._rows(UNTIMESTAMPED, [after, after, limit])
        return [self._checkpoint(r) for r in rows]

    # -- metadata ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM ledger_meta WHERE key = ?", [key])
        return str(rows[0]["value"]) if rows else None

    @abstractmethod
    def claim_meta(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless a value is already there; return the stored one."""
