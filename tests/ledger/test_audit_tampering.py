"""Tampering with the stored rows, and ``evidence-ledger audit`` catching it (invariants 1-4).

Each test builds a small real ledger (3 streams, 25 events, checkpoints at sizes 10, 18
and 25, each timestamped by the local TSA) on SQLite and on PostgreSQL. The guard tests
show that plain UPDATE, DELETE (and TRUNCATE on PostgreSQL) are refused. Every other test
then acts as an attacker with database rights: it drops or disables the guards, changes
one thing with plain SQL, and checks that the audit fails and that its *first* finding
names the bad leaf, node, checkpoint or timestamp.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse
from uuid import UUID, uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from ledger import merkle
from ledger.app import Ledger
from ledger.audit import AuditReport, Finding, audit
from ledger.checkpoints import CheckpointBody, sign_note
from ledger.events import Actor, Event, EventDraft, RequestContext, build_envelope
from ledger.keys import NoteKey
from ledger.schema import GUARDED_TABLES
from ledger.settings import Settings
from ledger.store import Receipt, join_hashes

CHECKPOINT_SIZES = (10, 18, 25)
STREAMS = 3

CLERK = Actor(id="u-7", display_name="陈静 Chen Jing", organisation="ACME", role="approver")
DESK = RequestContext(
    ip="198.51.100.23",
    user_agent="DingTalk/7.6 (Windows)",
    device_id="pc-3",
    platform="windows",
    client_time="2026-11-22T09:30:00+08:00",
    request_id="req-audit",
)

# A column each guarded table has, to aim a harmless ``SET c = c`` at.
SOME_COLUMN = {
    "stored_events": "topic",
    "ledger_log": "sequence",
    "ledger_nodes": "hash",
    "ledger_checkpoints": "note",
    "ledger_checkpoint_timestamps": "gen_time",
    "ledger_meta": "value",
}


# -- the ledger under attack -------------------------------------------------------------


def act(stream_id: UUID, number: int, first: bool) -> EventDraft:
    """The ``number``-th act of the whole ledger; its amount is ``5000 + 100 * number``."""
    return EventDraft(
        stream_id=stream_id,
        type="task.created" if first else "step.approved",
        actor=CLERK,
        context=DESK,
        data={"amount": f"{5000 + 100 * number}.00", "currency": "HKD", "act": number},
    )


@dataclass
class Built:
    """A ledger with 25 events, leaf ``i`` in stream ``i % 3``, and three checkpoints."""

    ledger: Ledger
    streams: list[UUID]
    receipts: list[Receipt]

    @property
    def settings(self) -> Settings:
        return self.ledger.settings

    def leaf(self, index: int) -> str:
        """How the audit names a leaf: ``leaf 7 (event <uuid>)``."""
        return f"leaf {index} (event {self.receipts[index].event_id})"

    def audit(self) -> AuditReport:
        return audit(self.ledger.store, self.ledger.key, self.ledger.tsa_trust_roots)

    def first_finding(self) -> Finding:
        report = self.audit()
        assert not report.passed, "the audit passed a tampered ledger"
        return report.findings[0]


@pytest.fixture
def built(ledger: Ledger) -> Built:
    streams = [uuid4() for _ in range(STREAMS)]
    receipts: list[Receipt] = []
    sealer = ledger.sealer()

    def append(count: int, batch: bool) -> None:
        drafts: list[EventDraft] = []
        for _ in range(count):
            number = len(receipts) + len(drafts)
            drafts.append(act(streams[number % STREAMS], number, number < STREAMS))
        if batch:
            receipts.extend(ledger.append(drafts))
        else:
            for one in drafts:
                receipts.extend(ledger.append([one]))

    for singles, batch in ((4, 3), (3, 0), (2, 4), (2, 0), (1, 6)):
        append(singles, batch=False)
        append(batch, batch=True)
        if len(receipts) in CHECKPOINT_SIZES:
            assert sealer.seal() is not None
    assert [r.leaf_index for r in receipts] == list(range(25))
    assert sealer.timestamp_pending() == len(CHECKPOINT_SIZES)
    assert [c.tree_size for c in ledger.store.checkpoints()] == list(CHECKPOINT_SIZES)
    return Built(ledger, streams, receipts)


# -- direct database access, as someone with rights on the database has ---------------------


def split_schema(url: str) -> tuple[str, str]:
    """The server URL without ``?schema=`` and the schema it named."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    schema = query.pop("schema")[0]
    rest = urlencode({k: v[0] for k, v in query.items()})
    return urlunparse(parsed._replace(query=rest)), schema


class Database:
    """A raw connection to the ledger's tables; ``?`` placeholders on both backends."""

    def __init__(self, settings: Settings) -> None:
        self.postgres = settings.database_url is not None
        self.pg: psycopg.Connection[Any] | None = None
        self.lite: sqlite3.Connection | None = None
        if settings.database_url is not None:
            server, schema = split_schema(settings.database_url)
            self.pg = psycopg.connect(server, autocommit=True)
            self.pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            self.pg.execute("SET lock_timeout = '10s'")
        else:
            self.lite = sqlite3.connect(settings.sqlite_path, isolation_level=None, timeout=10)

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.pg is not None:
            cursor = self.pg.execute(statement.replace("?", "%s").encode(), params)
            return cursor.fetchall() if cursor.description else []
        assert self.lite is not None
        return self.lite.execute(statement, params).fetchall()

    def stream_key(self, stream_id: UUID) -> Any:
        """``stored_events.originator_id``: hex text in SQLite, ``uuid`` in PostgreSQL."""
        return stream_id if self.postgres else stream_id.hex

    def event_key(self, event_id: UUID) -> Any:
        """``ledger_log.event_id``: 16 bytes in SQLite, ``uuid`` in PostgreSQL."""
        return event_id if self.postgres else event_id.bytes

    def disable_guards(self) -> None:
        """What an attacker with DDL rights does first."""
        for table in GUARDED_TABLES:
            if self.postgres:
                self.run(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            else:
                for action in ("update", "delete"):
                    self.run(f"DROP TRIGGER IF EXISTS {table}_no_{action}")

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
        if self.lite is not None:
            self.lite.close()

    # -- rows the tests change --

    def event_state(self, receipt: Receipt) -> bytes:
        rows = self.run(
            "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version = ?",
            [self.stream_key(receipt.stream_id), receipt.sequence],
        )
        return bytes(rows[0][0])

    def set_event_state(self, receipt: Receipt, state: bytes) -> None:
        self.run(
            "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
            [state, self.stream_key(receipt.stream_id), receipt.sequence],
        )

    def insert_event(self, event: Event) -> None:
        self.run(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            [self.stream_key(event.stream_id), event.sequence, event.type, event.canonical],
        )

    def insert_leaf(self, leaf_index: int, event: Event) -> None:
        self.run(
            "INSERT INTO ledger_log (leaf_index, event_id, stream_id, sequence, leaf_hash) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                leaf_index,
                self.event_key(event.event_id),
                self.stream_key(event.stream_id),
                event.sequence,
                event.hash,
            ],
        )

    def move_leaf(self, old: int, new: int) -> None:
        self.run("UPDATE ledger_log SET leaf_index = ? WHERE leaf_index = ?", [new, old])

    def leaf_hashes(self) -> list[bytes]:
        rows = self.run("SELECT leaf_hash FROM ledger_log ORDER BY leaf_index")
        return [bytes(r[0]) for r in rows]

    def rebuild_nodes(self) -> dict[merkle.Node, bytes]:
        """Replace every stored subtree hash with the one the current leaves give."""
        nodes: dict[merkle.Node, bytes] = {}
        created = merkle.append_leaves(0, nodes, self.leaf_hashes())
        self.run("DELETE FROM ledger_nodes")
        for node, value in created:
            if node[0] == 0:  # leaf hashes live in ledger_log, not in ledger_nodes
                continue
            self.run(
                "INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)",
                [merkle.node_id(node), value],
            )
        return nodes

    def checkpoint_note(self, tree_size: int) -> str:
        rows = self.run("SELECT note FROM ledger_checkpoints WHERE tree_size = ?", [tree_size])
        return str(rows[0][0])

    def timestamp_der(self, tree_size: int) -> bytes:
        rows = self.run(
            "SELECT response_der FROM ledger_checkpoint_timestamps WHERE tree_size = ?",
            [tree_size],
        )
        return bytes(rows[0][0])

    def set_timestamp_der(self, tree_size: int, der: bytes) -> None:
        self.run(
            "UPDATE ledger_checkpoint_timestamps SET response_der = ? WHERE tree_size = ?",
            [der, tree_size],
        )


@pytest.fixture
def db(built: Built) -> Iterator[Database]:
    """A raw connection to ``built``'s database, guards still on."""
    database = Database(built.settings)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def attacker(db: Database) -> Database:
    """The same connection with the append-only guards dropped (SQLite) or disabled (PG)."""
    db.disable_guards()
    return db


def flip_byte(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def rewritten(event_bytes: bytes, *, prev: bytes | None = None, amount: str | None = None) -> Event:
    """The stored event re-encoded with another ``prev`` and/or amount: a valid envelope."""
    envelope = dict(Event.from_canonical(event_bytes).envelope)
    if prev is not None:
        envelope["prev"] = prev.hex()
    if amount is not None:
        envelope["data"] = {**envelope["data"], "amount": amount}
    return Event.from_envelope(envelope)


def new_event(stream_id: UUID, sequence: int, prev: bytes | None) -> Event:
    """A valid, correctly chained envelope an attacker writes for ``stream_id``."""
    draft = EventDraft(
        stream_id=stream_id,
        type="step.approved",
        actor=CLERK,
        context=DESK,
        data={"amount": "999999.00", "currency": "HKD", "act": "forged"},
    )
    return Event.from_envelope(
        build_envelope(
            draft,
            sequence=sequence,
            prev=prev,
            server_time=datetime.now(UTC),
            event_id=uuid4(),
        )
    )


def another_key(name: str) -> NoteKey:
    return NoteKey(name, Ed25519PrivateKey.generate())


# -- a clean ledger, and the guards --------------------------------------------------------


def test_audit_passes_a_clean_ledger(built: Built) -> None:
    report = built.audit()
    assert report.passed
    assert report.findings == []
    assert report.tree_size == report.events_checked == 25
    assert report.streams == STREAMS
    assert report.checkpoints_checked == len(CHECKPOINT_SIZES)
    assert report.timestamps_checked == len(CHECKPOINT_SIZES)
    assert report.untimestamped == []


def test_guards_refuse_update_and_delete_on_every_guarded_table(built: Built, db: Database) -> None:
    refused = (psycopg.errors.InsufficientPrivilege,) if db.postgres else (sqlite3.Error,)
    counts = {t: db.run(f"SELECT COUNT(*) FROM {t}")[0][0] for t in GUARDED_TABLES}
    assert all(counts.values())
    for table in GUARDED_TABLES:
        column = SOME_COLUMN[table]
        for statement in (
            f"UPDATE {table} SET {column} = {column}",
            f"DELETE FROM {table} WHERE {column} = {column}",
            f"DELETE FROM {table}",
        ):
            with pytest.raises(refused, match=f"{table} is append-only"):
                db.run(statement)
    assert {t: db.run(f"SELECT COUNT(*) FROM {t}")[0][0] for t in GUARDED_TABLES} == counts
    assert built.audit().passed


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_postgres_guards_refuse_truncate(built: Built, db: Database) -> None:
    for table in GUARDED_TABLES:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.run(f"TRUNCATE {table}")
    assert built.audit().passed


def test_guards_refuse_an_upsert_over_a_stored_event(built: Built, db: Database) -> None:
    receipt = built.receipts[7]
    original = db.event_state(receipt)
    forged = original.replace(b'"5700.00"', b'"5800.00"')
    refused = (psycopg.errors.InsufficientPrivilege,) if db.postgres else (sqlite3.Error,)
    with pytest.raises(refused, match="stored_events is append-only"):
        db.run(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (originator_id, originator_version) "
            "DO UPDATE SET state = excluded.state",
            [db.stream_key(receipt.stream_id), receipt.sequence, "step.approved", forged],
        )
    assert db.event_state(receipt) == original


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_guard_refuses_insert_or_replace_of_a_stored_event(
    built: Built, db: Database
) -> None:
    """``INSERT OR REPLACE`` deletes the old row without firing the DELETE trigger.

    SQLite runs a REPLACE's implicit delete through DELETE triggers only under
    ``PRAGMA recursive_triggers``, a per-connection setting the ledger cannot impose on
    other connections; so anyone who can write to the file rewrites an acknowledged event
    without DDL rights. (The audit still catches the rewrite; the guard does not.)
    """
    receipt = built.receipts[7]
    original = db.event_state(receipt)
    forged = original.replace(b'"5700.00"', b'"5800.00"')
    try:
        db.run(
            "INSERT OR REPLACE INTO stored_events "
            "(originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
            [db.stream_key(receipt.stream_id), receipt.sequence, "step.approved", forged],
        )
    except sqlite3.Error as exc:
        assert "append-only" in str(exc)
    assert db.event_state(receipt) == original, "INSERT OR REPLACE rewrote an acknowledged event"


# -- events ----------------------------------------------------------------------------------


def test_audit_names_leaf_whose_event_bytes_were_edited(built: Built, attacker: Database) -> None:
    receipt = built.receipts[7]
    state = attacker.event_state(receipt)
    edited = state.replace(b'"5700.00"', b'"5800.00"')  # one byte: 7 -> 8
    assert sum(a != b for a, b in zip(state, edited, strict=True)) == 1
    attacker.set_event_state(receipt, edited)

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("event", built.leaf(7))
    assert "hash of the stored bytes is not the log's leaf hash" in finding.reason


def test_audit_names_leaf_whose_event_bytes_are_no_longer_canonical(
    built: Built, attacker: Database
) -> None:
    receipt = built.receipts[11]
    attacker.set_event_state(receipt, attacker.event_state(receipt).replace(b"{", b"{ ", 1))

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("event", built.leaf(11))
    assert "not a valid canonical envelope" in finding.reason


def test_audit_names_leaf_whose_event_row_was_deleted(built: Built, attacker: Database) -> None:
    receipt = built.receipts[12]
    attacker.run(
        "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = ?",
        [attacker.stream_key(receipt.stream_id), receipt.sequence],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("event", built.leaf(12))
    assert "not stored" in finding.reason


def test_audit_names_leaf_whose_event_row_was_moved_to_another_stream(
    built: Built, attacker: Database
) -> None:
    receipt = built.receipts[5]
    attacker.run(
        "UPDATE stored_events SET originator_id = ? "
        "WHERE originator_id = ? AND originator_version = ?",
        [
            attacker.stream_key(uuid4()),
            attacker.stream_key(receipt.stream_id),
            receipt.sequence,
        ],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("event", built.leaf(5))


def test_audit_names_leaf_whose_log_row_names_another_event_id(
    built: Built, attacker: Database
) -> None:
    forged_id = uuid4()
    attacker.run(
        "UPDATE ledger_log SET event_id = ? WHERE leaf_index = 9", [attacker.event_key(forged_id)]
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("event", f"leaf 9 (event {forged_id})")
    assert "id, stream or sequence is not the log's" in finding.reason


def test_audit_fails_when_an_event_row_is_inserted_without_a_log_row(
    built: Built, attacker: Database
) -> None:
    stream = built.streams[0]
    head = built.receipts[24]  # leaf 24 is stream 0's ninth event
    assert (head.stream_id, head.sequence) == (stream, 9)
    attacker.insert_event(new_event(stream, 10, head.event_hash))

    report = built.audit()
    assert not report.passed
    assert ("log", "stored_events", "holds 26 events but the log has 25 leaves") in [
        (f.subject, f.location, f.reason) for f in report.findings
    ]


def test_audit_names_event_row_inserted_without_a_log_row(built: Built, attacker: Database) -> None:
    """The audit should say *which* event the log lacks, not only that counts differ."""
    head = built.receipts[24]
    forged = new_event(head.stream_id, head.sequence + 1, head.event_hash)
    attacker.insert_event(forged)

    report = built.audit()
    assert not report.passed
    named = [str(f) for f in report.findings if str(forged.event_id) in str(f)]
    assert named, f"no finding names the unlogged event {forged.event_id}: {report.findings}"


def test_audit_names_stream_successor_of_event_rewritten_with_its_leaf_hash(
    built: Built, attacker: Database
) -> None:
    """Event 7 is re-encoded validly and its leaf hash updated: stream 1's chain breaks at 10."""
    receipt = built.receipts[7]
    forged = rewritten(attacker.event_state(receipt), amount="5.00")
    attacker.set_event_state(receipt, forged.canonical)
    attacker.run("UPDATE ledger_log SET leaf_hash = ? WHERE leaf_index = 7", [forged.hash])

    finding = built.first_finding()
    assert built.receipts[10].stream_id == receipt.stream_id
    assert (finding.subject, finding.location) == ("event", built.leaf(10))
    assert "prev is not the hash of the stream's previous event" in finding.reason


def test_audit_names_checkpoint_over_fully_rewritten_stream(
    built: Built, attacker: Database
) -> None:
    """Event 7 rewritten, stream 1 re-chained after it, leaf hashes and nodes rebuilt.

    Every row is now consistent with every other; only the signed root at size 10 knows.
    """
    stream_leaves = [r.leaf_index for r in built.receipts if r.stream_id == built.streams[1]]
    prev: bytes | None = None
    for index in (i for i in stream_leaves if i >= 7):
        receipt = built.receipts[index]
        state = attacker.event_state(receipt)
        forged = rewritten(state, prev=prev, amount="5.00" if index == 7 else None)
        attacker.set_event_state(receipt, forged.canonical)
        attacker.run(
            "UPDATE ledger_log SET leaf_hash = ? WHERE leaf_index = ?", [forged.hash, index]
        )
        prev = forged.hash
    attacker.rebuild_nodes()

    report = built.audit()
    assert not report.passed
    assert [(f.subject, f.location) for f in report.findings] == [
        ("checkpoint", f"checkpoint at size {size}") for size in CHECKPOINT_SIZES
    ]
    assert "root rebuilt from the events is not the signed one" in report.findings[0].reason


# -- the log and its nodes -------------------------------------------------------------------


def test_audit_names_gap_where_a_log_row_was_deleted(built: Built, attacker: Database) -> None:
    attacker.run("DELETE FROM ledger_log WHERE leaf_index = 12")

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("log", "leaf 12")
    assert "gap" in finding.reason


def test_audit_names_checkpoint_beyond_a_deleted_last_leaf(
    built: Built, attacker: Database
) -> None:
    """Leaf 24's log row, event row and nodes are all removed: the rows agree, the log shrank."""
    last = built.receipts[24]
    attacker.run("DELETE FROM ledger_log WHERE leaf_index = 24")
    attacker.run(
        "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = ?",
        [attacker.stream_key(last.stream_id), last.sequence],
    )
    for node in merkle.nodes_completed_by_leaf(24):
        attacker.run("DELETE FROM ledger_nodes WHERE node_id = ?", [merkle.node_id(node)])
    assert built.ledger.store.tree_size() == 24

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 25")
    assert "covers 25 leaves; the log has 24" in finding.reason


def swap_leaves(db: Database, a: int, b: int) -> None:
    db.move_leaf(a, -1)
    db.move_leaf(b, a)
    db.move_leaf(-1, b)


def test_audit_names_first_of_two_swapped_leaves_of_one_stream(
    built: Built, attacker: Database
) -> None:
    assert built.receipts[3].stream_id == built.receipts[6].stream_id
    swap_leaves(attacker, 3, 6)

    finding = built.first_finding()
    assert finding.subject == "event"
    assert finding.location == f"leaf 3 (event {built.receipts[6].event_id})"
    assert "jumps from sequence 1 to 3" in finding.reason


def test_audit_names_node_of_leaves_swapped_across_streams(
    built: Built, attacker: Database
) -> None:
    """Leaves 4 and 5 belong to different streams, so both chains still read in order.

    Each leaf hash moves with its log row, so the first stored hash that disagrees with the
    rebuilt tree is the subtree over leaves 4 and 5.
    """
    assert built.receipts[4].stream_id != built.receipts[5].stream_id
    swap_leaves(attacker, 4, 5)

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("node", "node (level 1, index 2)")


def test_audit_names_checkpoint_over_leaves_swapped_with_nodes_rebuilt(
    built: Built, attacker: Database
) -> None:
    swap_leaves(attacker, 4, 5)
    attacker.rebuild_nodes()

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 10")
    assert "root rebuilt from the events is not the signed one" in finding.reason


def test_audit_names_checkpoint_over_event_inserted_inside_its_range(
    built: Built, attacker: Database
) -> None:
    """A new stream's event is slipped in at leaf 5: later leaves shift up, nodes rebuilt."""
    forged = new_event(uuid4(), 1, None)
    attacker.run("UPDATE ledger_log SET leaf_index = leaf_index + 1000 WHERE leaf_index >= 5")
    attacker.run("UPDATE ledger_log SET leaf_index = leaf_index - 999 WHERE leaf_index >= 1000")
    attacker.insert_event(forged)
    attacker.insert_leaf(5, forged)
    attacker.rebuild_nodes()
    assert built.ledger.store.tree_size() == 26

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 10")
    assert "root rebuilt from the events is not the signed one" in finding.reason


def test_audit_names_node_whose_stored_hash_was_changed(built: Built, attacker: Database) -> None:
    node_id = merkle.node_id((1, 3))  # covers leaves 6 and 7
    stored = attacker.run("SELECT hash FROM ledger_nodes WHERE node_id = ?", [node_id])[0][0]
    attacker.run(
        "UPDATE ledger_nodes SET hash = ? WHERE node_id = ?", [flip_byte(bytes(stored), 0), node_id]
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("node", "node (level 1, index 3)")
    assert "differs from the hash rebuilt" in finding.reason


# -- checkpoints -----------------------------------------------------------------------------


def test_audit_names_checkpoint_resealed_by_another_key_over_an_appended_event(
    built: Built, attacker: Database
) -> None:
    """Appending past the last checkpoint is possible; signing for it is not."""
    head = built.receipts[24]
    forged = new_event(head.stream_id, head.sequence + 1, head.event_hash)
    attacker.insert_event(forged)
    attacker.insert_leaf(25, forged)
    nodes = attacker.rebuild_nodes()
    root = merkle.hash_ranges([(0, 26)], nodes)[0]
    proof = merkle.hash_ranges(merkle.consistency_ranges(25, 26), nodes)
    latest = built.ledger.store.latest_checkpoint()
    assert latest is not None
    assert merkle.verify_consistency(25, 26, latest.root_hash, root, proof)
    impostor = another_key(built.ledger.key.name)
    body = CheckpointBody(origin=impostor.name, tree_size=26, root_hash=root)
    attacker.run(
        "INSERT INTO ledger_checkpoints "
        "(tree_size, root_hash, note, previous_size, consistency_proof, signed_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [26, root, sign_note(body.text(), impostor), 25, join_hashes(proof), latest.signed_at],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 26")
    assert "carries no signature by" in finding.reason


def test_audit_names_checkpoint_whose_note_was_edited(built: Built, attacker: Database) -> None:
    note = attacker.checkpoint_note(18)
    origin, size, root, rest = note.split("\n", 3)
    edited_root = ("B" if root[0] != "B" else "C") + root[1:]
    attacker.run(
        "UPDATE ledger_checkpoints SET note = ? WHERE tree_size = 18",
        ["\n".join([origin, size, edited_root, rest])],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 18")
    assert "does not verify" in finding.reason


@pytest.mark.parametrize(
    ("key_id", "reason"),
    [("impostor's", "carries no signature by"), ("ledger's", "does not verify")],
)
def test_audit_names_checkpoint_signed_by_another_key(
    built: Built, attacker: Database, key_id: str, reason: str
) -> None:
    """The signature line is replaced by one from another Ed25519 key of the same name."""
    note = attacker.checkpoint_note(10)
    text = note.rpartition("\n\n")[0] + "\n"
    impostor = another_key(built.ledger.key.name)
    forged = sign_note(text, impostor)
    if key_id == "ledger's":  # claim the ledger's key ID, keep the impostor's signature
        line = forged.rstrip("\n").rpartition("\n")[2]
        prefix, _, encoded = line.rpartition(" ")
        blob = built.ledger.key.key_id + base64.b64decode(encoded)[4:]
        forged = f"{text}\n{prefix} {base64.b64encode(blob).decode()}\n"
    attacker.run("UPDATE ledger_checkpoints SET note = ? WHERE tree_size = 10", [forged])

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 10")
    assert reason in finding.reason


def test_audit_names_checkpoint_whose_root_column_was_changed(
    built: Built, attacker: Database
) -> None:
    attacker.run(
        "UPDATE ledger_checkpoints SET root_hash = ? WHERE tree_size = 18",
        [built.ledger.store.root(17)],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 18")
    assert "does not match the stored size/root" in finding.reason


def test_audit_names_checkpoint_after_a_deleted_middle_checkpoint(
    built: Built, attacker: Database
) -> None:
    attacker.run("DELETE FROM ledger_checkpoint_timestamps WHERE tree_size = 18")
    attacker.run("DELETE FROM ledger_checkpoints WHERE tree_size = 18")

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 25")
    assert "does not link to the checkpoint before it" in finding.reason


def test_audit_names_checkpoint_whose_consistency_proof_was_changed(
    built: Built, attacker: Database
) -> None:
    rows = attacker.run("SELECT consistency_proof FROM ledger_checkpoints WHERE tree_size = 25")
    stored = rows[0][0]
    attacker.run(
        "UPDATE ledger_checkpoints SET consistency_proof = ? WHERE tree_size = 25",
        [flip_byte(bytes(stored), 5)],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == ("checkpoint", "checkpoint at size 25")
    assert "is not consistent with size 18" in finding.reason


# -- timestamps ------------------------------------------------------------------------------


def test_audit_names_timestamps_swapped_between_checkpoints(
    built: Built, attacker: Database
) -> None:
    first, second = attacker.timestamp_der(10), attacker.timestamp_der(18)
    attacker.set_timestamp_der(10, second)
    attacker.set_timestamp_der(18, first)

    report = built.audit()
    assert not report.passed
    assert [(f.subject, f.location) for f in report.findings] == [
        ("timestamp", "timestamp of checkpoint at size 10"),
        ("timestamp", "timestamp of checkpoint at size 18"),
    ]
    assert "does not verify" in report.findings[0].reason


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_audit_names_timestamp_with_a_corrupted_byte(
    built: Built, attacker: Database, where: str
) -> None:
    der = attacker.timestamp_der(18)
    position = {"first": 0, "middle": len(der) // 2, "last": len(der) - 1}[where]
    attacker.set_timestamp_der(18, flip_byte(der, position))

    finding = built.first_finding()
    assert (finding.subject, finding.location) == (
        "timestamp",
        "timestamp of checkpoint at size 18",
    )
    assert "does not verify" in finding.reason


def test_audit_names_timestamp_whose_stored_time_was_changed(
    built: Built, attacker: Database
) -> None:
    attacker.run(
        "UPDATE ledger_checkpoint_timestamps SET gen_time = ? WHERE tree_size = 25",
        ["2020-01-01T00:00:00.000000Z"],
    )

    finding = built.first_finding()
    assert (finding.subject, finding.location) == (
        "timestamp",
        "timestamp of checkpoint at size 25",
    )
    assert "token's time is not the stored time" in finding.reason


def test_audit_reports_checkpoint_whose_timestamp_was_deleted_as_untimestamped(
    built: Built, attacker: Database
) -> None:
    """A deleted token fabricates nothing: the checkpoint is reported as waiting for one."""
    attacker.run("DELETE FROM ledger_checkpoint_timestamps WHERE tree_size = 18")

    report = built.audit()
    assert report.passed
    assert report.untimestamped == [18]
    assert report.timestamps_checked == 2


# -- the command line --------------------------------------------------------------------------


def run_cli(settings: Settings, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "evidence-ledger"),
        "audit",
        "--data-dir",
        str(settings.data_dir),
    ]
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    return subprocess.run(
        [*command, *extra], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_audit_exits_zero_on_a_clean_ledger_and_one_naming_the_edited_leaf(
    built: Built, db: Database
) -> None:
    clean = run_cli(built.settings)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "audit passed" in clean.stdout

    attacker = db
    attacker.disable_guards()
    receipt = built.receipts[7]
    attacker.set_event_state(
        receipt, attacker.event_state(receipt).replace(b'"5700.00"', b'"5800.00"')
    )
    tampered = run_cli(built.settings)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"audit FAILED at {built.leaf(7)}" in tampered.stdout

    as_json = run_cli(built.settings, "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["passed"] is False
    assert report["findings"][0]["location"] == built.leaf(7)


def test_cli_audit_names_the_checkpoint_signed_by_another_key(
    built: Built, attacker: Database
) -> None:
    note = attacker.checkpoint_note(18)
    forged = sign_note(note.rpartition("\n\n")[0] + "\n", another_key(built.ledger.key.name))
    attacker.run("UPDATE ledger_checkpoints SET note = ? WHERE tree_size = 18", [forged])

    result = run_cli(built.settings)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "audit FAILED at checkpoint at size 18" in result.stdout


def test_opening_the_ledger_rearms_guards_an_attacker_dropped(
    built: Built, attacker: Database
) -> None:
    """Every start re-creates the triggers, so a dropped guard lasts until the next start."""
    attacker.run("UPDATE ledger_meta SET value = value")  # the guards are off
    assert run_cli(built.settings).returncode == 0
    refused = (psycopg.errors.InsufficientPrivilege,) if attacker.postgres else (sqlite3.Error,)
    for table in GUARDED_TABLES:
        with pytest.raises(refused, match=f"{table} is append-only"):
            attacker.run(f"DELETE FROM {table}")
