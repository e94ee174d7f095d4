"""``evidence-ledger audit``: re-derive everything from the stored rows and check it.

The audit trusts no stored hash. It re-reads every event's bytes, re-validates and
re-hashes them, follows each stream's ``prev`` chain, rebuilds the Merkle tree leaf by
leaf (comparing every stored subtree hash with the rebuilt one), recomputes the root at
every checkpoint size, and checks each checkpoint's signature, its stored consistency
proof and its RFC 3161 token. Findings are reported in the order met, so the first one
names the first bad event or checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from cryptography import x509

from ledger import log_writer, merkle
from ledger.checkpoints import CheckpointBody, verify_note
from ledger.errors import CheckpointError, InvalidEvent, LedgerError
from ledger.events import Event, format_time
from ledger.keys import NoteKey
from ledger.store import LedgerStore, LogEntry, StoredCheckpoint
from ledger.timestamping import verify_timestamp

NODE_BATCH = 4096
MAX_FINDINGS = 100


@dataclass(frozen=True)
class Finding:
    """One thing the audit found wrong, with where it is."""

    subject: str
    """What is wrong: ``event``, ``log``, ``node``, ``checkpoint`` or ``timestamp``."""

    location: str
    """Where, e.g. ``leaf 17 (event 9b2f...)`` or ``checkpoint at size 40``."""

    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class AuditReport:
    """What the audit checked and what it found."""

    tree_size: int = 0
    events_checked: int = 0
    streams: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    timestamps_checked: int = 0
    untimestamped: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings

    def add(self, subject: str, location: str, reason: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(subject, location, reason))


Progress = Callable[[int, int], None]


class _TreeRebuilder:
    """Rebuilds the tree leaf by leaf with a stack of complete subtrees."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, int, bytes]] = []  # (level, index, hash)
        self.size = 0

    def push(self, value: bytes) -> list[tuple[merkle.Node, bytes]]:
        created: list[tuple[merkle.Node, bytes]] = [((0, self.size), value)]
        self.stack.append((0, self.size, value))
        while len(self.stack) > 1 and self.stack[-1][0] == self.stack[-2][0]:
            level, _, right = self.stack.pop()
            _, left_index, left = self.stack.pop()
            parent = (level + 1, left_index // 2, merkle.node_hash(left, right))
            self.stack.append(parent)
            created.append(((parent[0], parent[1]), parent[2]))
        self.size += 1
        return created

    def root(self) -> bytes:
        return merkle.fold_range([h for _, _, h in self.stack])


def expected_node_count(size: int) -> int:
    """How many complete subtrees above the leaves a tree of ``size`` leaves has."""
    total, level_size = 0, size // 2
    while level_size:
        total += level_size
        level_size //= 2
    return total


def audit(
    store: LedgerStore,
    key: NoteKey,
    tsa_trust_roots: Sequence[x509.Certificate],
    progress: Progress | None = None,
) -> AuditReport:
    """Check the whole ledger in ``store``; the report's ``findings`` say what is wrong."""
    report = AuditReport()
    size = report.tree_size = store.tree_size()
    checkpoints = store.checkpoints()
    by_size: dict[int, StoredCheckpoint] = {c.tree_size: c for c in checkpoints}
    rebuilt_roots: dict[int, bytes] = {}
    heads: dict[UUID, tuple[int, bytes]] = {}
    tree = _TreeRebuilder()
    pending_nodes: dict[int, bytes] = {}

    def compare_nodes() -> None:
        if not pending_nodes:
            return
        ids = sorted(pending_nodes)
        found: dict[int, bytes] = {}
        for start in range(0, len(ids), 500):
            sql, params = log_writer.select_node_ids(ids[start : start + 500])
            for key, value in store._tuples(sql, params):
                found[int(key)] = bytes(value)
        for node_key in ids:
            level, index = divmod(node_key, merkle.LEVEL_STRIDE)
            stored = found.get(node_key)
            if stored is None:
                report.add("node", f"node (level {level}, index {index})", "is missing")
            elif stored != pending_nodes[node_key]:
                report.add(
                    "node",
                    f"node (level {level}, index {index})",
                    "stored hash differs from the hash rebuilt from the events",
                )
            report.nodes_checked += 1
        pending_nodes.clear()

    for expected_index, entry in enumerate(store.iter_entries(size)):
        # Entries are read by range; a missing log row shows up as a jump in indices.
        while tree.size < entry.leaf_index:
            report.add("log", f"leaf {tree.size}", "is missing from the log (a gap)")
            tree.push(b"\x00" * merkle.HASH_SIZE)
        _check_entry(entry, report, heads)
        for node, value in tree.push(entry.leaf_hash):
            if node[0] > 0:  # leaf hashes were checked against the event just above
                pending_nodes[merkle.node_id(node)] = value
        if len(pending_nodes) >= NODE_BATCH:
            compare_nodes()
        if tree.size in by_size:
            rebuilt_roots[tree.size] = tree.root()
        report.events_checked += 1
        if progress and expected_index % 1000 == 0:
            progress(expected_index, size)
    while tree.size < size:
        report.add("log", f"leaf {tree.size}", "is missing from the log (a gap)")
        tree.push(b"\x00" * merkle.HASH_SIZE)
        if tree.size in by_size:
            rebuilt_roots[tree.size] = tree.root()
    compare_nodes()
    if progress:
        progress(size, size)
    report.streams = len(heads)

    for stream_id, sequence, canonical in store.events_without_leaves():
        try:
            named = f"event {Event.from_canonical(canonical).event_id}"
        except InvalidEvent:
            named = "an unreadable event"
        report.add(
            "event",
            f"{named} (stream {stream_id}, sequence {sequence})",
            "is stored but has no leaf in the log",
        )
    stored_events = store.count_events()
    if stored_events != size:
        report.add(
            "log",
            "stored_events",
            f"holds {stored_events} events but the log has {size} leaves",
        )
    stored_nodes = store.count_nodes()
    if stored_nodes != expected_node_count(size):
        report.add(
            "node",
            "ledger_nodes",
            f"holds {stored_nodes} nodes; a tree of {size} leaves has {expected_node_count(size)}",
        )

    _check_checkpoints(checkpoints, rebuilt_roots, size, key, report)
    _check_timestamps(store, checkpoints, tsa_trust_roots, report)
    return report


def _check_entry(
    entry: LogEntry, report: AuditReport, heads: dict[UUID, tuple[int, bytes]]
) -> None:
    where = f"leaf {entry.leaf_index} (event {entry.event_id})"
    if not entry.canonical:
        report.add("event", where, "the log names an event that is not stored")
        return
    try:
        event = Event.from_canonical(entry.canonical)
    except InvalidEvent as exc:
        report.add("event", where, f"stored bytes are not a valid canonical envelope: {exc}")
        return
    if event.hash != entry.leaf_hash:
        report.add("event", where, "the hash of the stored bytes is not the log's leaf hash")
    if (event.event_id, event.stream_id, event.sequence) != (
        entry.event_id,
        entry.stream_id,
        entry.sequence,
    ):
        report.add("event", where, "the envelope's id, stream or sequence is not the log's")
    last_sequence, last_hash = heads.get(event.stream_id, (0, None))
    if event.sequence != last_sequence + 1:
        report.add(
            "event",
            where,
            f"stream {event.stream_id} jumps from sequence {last_sequence} to {event.sequence}",
        )
    elif event.prev != last_hash:
        report.add("event", where, "prev is not the hash of the stream's previous event")
    heads[event.stream_id] = (event.sequence, event.hash)


def _check_checkpoints(
    checkpoints: Sequence[StoredCheckpoint],
    rebuilt_roots: dict[int, bytes],
    size: int,
    key: NoteKey,
    report: AuditReport,
) -> None:
    previous: StoredCheckpoint | None = None
    for checkpoint in checkpoints:
        where = f"checkpoint at size {checkpoint.tree_size}"
        report.checkpoints_checked += 1
        try:
            text = verify_note(checkpoint.note, key)
            body = CheckpointBody.parse(text)
        except CheckpointError as exc:
            report.add("checkpoint", where, str(exc))
            previous = checkpoint
            continue
        if body.origin != key.name:
            report.add("checkpoint", where, f"is for log {body.origin!r}, not {key.name!r}")
        if (body.tree_size, body.root_hash) != (checkpoint.tree_size, checkpoint.root_hash):
            report.add("checkpoint", where, "the signed note does not match the stored size/root")
        if checkpoint.tree_size > size:
            report.add(
                "checkpoint", where, f"covers {checkpoint.tree_size} leaves; the log has {size}"
            )
        elif rebuilt_roots.get(checkpoint.tree_size) != body.root_hash:
            report.add(
                "checkpoint", where, "the root rebuilt from the events is not the signed one"
            )
        expected_previous = previous.tree_size if previous else None
        if checkpoint.previous_size != expected_previous:
            report.add("checkpoint", where, "does not link to the checkpoint before it")
        elif previous is not None and not merkle.verify_consistency(
            previous.tree_size,
            checkpoint.tree_size,
            previous.root_hash,
            checkpoint.root_hash,
            checkpoint.consistency_proof,
        ):
            report.add("checkpoint", where, f"is not consistent with size {previous.tree_size}")
        previous = checkpoint


def _check_timestamps(
    store: LedgerStore,
    checkpoints: Sequence[StoredCheckpoint],
    trust_roots: Sequence[x509.Certificate],
    report: AuditReport,
) -> None:
    stamps = store.timestamps()
    notes = {c.tree_size: c.note for c in checkpoints}
    for tree_size in sorted(stamps):
        where = f"timestamp of checkpoint at size {tree_size}"
        note = notes.get(tree_size)
        if note is None:
            report.add("timestamp", where, "belongs to no stored checkpoint")
            continue
        try:
            token = verify_timestamp(stamps[tree_size].response_der, note.encode(), trust_roots)
        except LedgerError as exc:
            report.add("timestamp", where, f"does not verify: {exc}")
            continue
        if format_time(token.gen_time) != stamps[tree_size].gen_time:
            report.add("timestamp", where, "the token's time is not the stored time")
        report.timestamps_checked += 1
    report.untimestamped = [c.tree_size for c in checkpoints if c.tree_size not in stamps]
