"""One contract for every event-store backend, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import log_writer
from ledger.errors import ConstraintViolation, DuplicateEvent, StoreError, StreamConflict
from ledger.log_writer import Transaction
from ledger.store import LedgerStore, Receipt
from tests.factories import BOB, draft
from tests.reference_merkle import ReferenceTree

MakeStore = Callable[[], LedgerStore]


class LedgerStoreContract:
    """Behaviour every backend must show. Subclasses provide ``make_store``."""

    @pytest.fixture
    def make_store(self) -> Iterator[MakeStore]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, make_store: MakeStore) -> LedgerStore:
        return make_store()

    def test_appends_get_consecutive_leaves_in_commit_order(self, store: LedgerStore) -> None:
        first = store.append([draft(), draft()])
        second = store.append([draft()])
        assert [r.leaf_index for r in first + second] == [0, 1, 2]
        assert store.tree_size() == 3
        assert [e.event_id for e in store.entries(0, 3)] == [r.event_id for r in first + second]

    def test_each_stream_is_a_hash_chain(self, store: LedgerStore) -> None:
        stream = uuid.uuid4()
        receipts = [store.append([draft(stream)])[0] for _ in range(4)]
        receipts += store.append([draft(stream), draft(stream, actor=BOB)])
        events = store.read_stream(stream)
        assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
        assert events[0].prev is None
        for before, after in itertools.pairwise(events):
            assert after.prev == before.hash
        assert [e.hash for e in events] == [r.event_hash for r in receipts]

    def test_stale_expected_sequence_is_a_conflict_and_stores_nothing(
        self, store: LedgerStore
    ) -> None:
        stream = uuid.uuid4()
        store.append([draft(stream)], expected={stream: 0})
        with pytest.raises(StreamConflict, match="sequence 1"):
            store.append([draft(stream), draft()], expected={stream: 0})
        assert store.tree_size() == 1
        store.append([draft(stream)], expected={stream: 1})
        assert len(store.read_stream(stream)) == 2

    def test_racing_writers_on_one_stream_never_both_win(self, make_store: MakeStore) -> None:
        writers = [make_store(), make_store()]
        stream = uuid.uuid4()
        writers[0].append([draft(stream)])
        for round_ in range(15):
            seen = len(writers[0].read_stream(stream))
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def write(store: LedgerStore, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    store.append([draft(stream)], expected={stream: seen})  # noqa: B023
                    outcomes.append("won")  # noqa: B023
                except StreamConflict:
                    outcomes.append("conflict")  # noqa: B023

            threads = [threading.Thread(target=write, args=(w,)) for w in writers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes) == ["conflict", "won"], round_
            assert len(writers[1].read_stream(stream)) == seen + 1
        size = writers[0].tree_size()
        assert size == 16 and writers[0].count_events() == 16

    def test_concurrent_writers_lose_nothing_and_leave_no_gap(self, make_store: MakeStore) -> None:
        writers = [make_store() for _ in range(4)]
        streams = [uuid.uuid4() for _ in range(3)]
        acknowledged: list[uuid.UUID] = []
        lock = threading.Lock()

        def write(store: LedgerStore, worker: int) -> None:
            for i in range(25):
                receipts = store.append(
                    [draft(streams[(worker + i) % 3]) for _ in range(i % 3 + 1)]
                )
                with lock:
                    acknowledged.extend(r.event_id for r in receipts)

        threads = [threading.Thread(target=write, args=(w, n)) for n, w in enumerate(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store = writers[0]
        size = store.tree_size()
        entries = store.entries(0, size)
        assert [e.leaf_index for e in entries] == list(range(size))
        assert sorted(e.event_id for e in entries) == sorted(acknowledged)
        assert len(set(acknowledged)) == len(acknowledged) == store.count_events()
        for stream in streams:
            events = store.read_stream(stream)
            for before, after in itertools.pairwise(events):
                assert after.prev == before.hash
        assert store.root(size) == ReferenceTree([e.canonical for e in entries]).root(size)

    def test_a_second_process_view_extends_the_same_tree(self, make_store: MakeStore) -> None:
        one, two = make_store(), make_store()
        one.append([draft() for _ in range(5)])
        two.append([draft() for _ in range(3)])  # two's right-edge cache is cold
        one.append([draft() for _ in range(4)])  # one's cache is stale: must re-read
        entries = one.entries(0, 12)
        assert one.root(12) == ReferenceTree([e.canonical for e in entries]).root(12)
        assert two.root(12) == one.root(12)

    def test_writers_in_turn_catch_up_from_each_others_leaves(
        self, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        one, two = make_store(), make_store()
        shared = [uuid.uuid4() for _ in range(3)]
        moment = datetime(2026, 12, 7, 1, 0, 0, tzinfo=UTC)
        one.clock = lambda: moment + timedelta(seconds=5)
        two.clock = lambda: moment  # behind one's clock: must not write an earlier time
        one.append([draft(s) for s in shared])
        two.append([draft(shared[0])])
        fresh_reads: list[int] = []
        read_frontier = log_writer._read_frontier

        def counted(tx: Transaction, size: int) -> object:
            fresh_reads.append(size)
            return read_frontier(tx, size)

        monkeypatch.setattr(log_writer, "_read_frontier", counted)
        # From here on each writer is behind by the other's leaves, and catches up from them.
        for turn in range(6):
            writer = (one, two)[turn % 2]
            writer.append([draft(shared[turn % 3]), draft(shared[(turn + 1) % 3]), draft()])
        assert fresh_reads == []
        size = 4 + 6 * 3
        entries = one.entries(0, size)
        assert one.root(size) == two.root(size)
        assert one.root(size) == ReferenceTree([e.canonical for e in entries]).root(size)
        for stream in shared:
            events = two.read_stream(stream)
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert [e.prev for e in events] == [None] + [e.hash for e in events[:-1]]
        times = [json.loads(e.canonical)["server_time"] for e in entries]
        assert times == sorted(times)
        assert set(times[3:]) == {"2026-12-07T01:00:05.000000Z"}

        # Further behind than a writer catches up from: it reads everything again.
        monkeypatch.setattr(log_writer, "MAX_CATCH_UP", 2)
        one.append([draft(), draft(), draft()])
        receipt = two.append([draft(shared[0])])[0]
        assert fresh_reads == [size, size + 3]  # each was 3 leaves behind
        assert receipt.sequence == len(two.read_stream(shared[0]))
        assert one.root(size + 4) == two.root(size + 4)

    def test_a_batch_over_many_known_and_new_streams_chains_each_onto_its_stored_head(
        self, make_store: MakeStore
    ) -> None:
        one, two = make_store(), make_store()
        streams = [uuid.uuid4() for _ in range(1200)]  # more than one statement's worth
        one.append([draft(s) for s in streams for _ in range(2)])
        one.append([draft(s) for s in streams[:5]])
        # two remembers no heads: it reads them, hundreds per statement, under the lock.
        fresh = [uuid.uuid4() for _ in range(30)]
        receipts = two.append([draft(s) for s in [*streams, *fresh, streams[0]]])
        sequences = [r.sequence for r in receipts]
        assert sequences == [4] * 5 + [3] * 1195 + [1] * 30 + [5]
        for stream in (streams[0], streams[4], streams[5], streams[-1], fresh[0]):
            events = two.read_stream(stream)
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert [e.prev for e in events] == [None] + [e.hash for e in events[:-1]]

    def test_duplicate_event_id_is_refused_and_stores_nothing(self, store: LedgerStore) -> None:
        event_id = uuid.uuid4()
        store.append([draft(event_id=event_id)])
        with pytest.raises(DuplicateEvent, match=str(event_id)):
            store.append([draft(), draft(event_id=event_id)])
        other = uuid.uuid4()
        with pytest.raises(DuplicateEvent, match=str(other)):
            store.append([draft(event_id=other), draft(event_id=other)])
        assert store.tree_size() == 1 and store.count_events() == 1

    def test_events_survive_reopening(self, make_store: MakeStore) -> None:
        first = make_store()
        receipts = first.append([draft() for _ in range(9)])
        root = first.root(9)
        first.close()
        again = make_store()
        assert again.tree_size() == 9
        assert again.root(9) == root
        entry = again.entry_for_event(receipts[4].event_id)
        assert entry is not None and entry.leaf_index == 4
        assert entry.leaf_hash == receipts[4].event_hash
        assert again.entry_for_event(uuid.uuid4()) is None

    def test_log_tables_refuse_update_and_delete(self, store: LedgerStore) -> None:
        store.append([draft(), draft()])  # two leaves: one node above them
        for statement in (
            "UPDATE ledger_log SET sequence = 7",
            "DELETE FROM ledger_nodes",
            "UPDATE stored_events SET topic = 'x'",
            "DELETE FROM stored_events",
        ):
            with pytest.raises(StoreError, match="append-only"):
                store._execute(statement)
        assert store.tree_size() == 2 and store.count_nodes() == 1

    def test_also_writes_commit_with_the_events_or_not_at_all(self, store: LedgerStore) -> None:
        store._execute("CREATE TABLE IF NOT EXISTS hook_rows (k TEXT PRIMARY KEY, n INTEGER)")
        store.append([draft()])
        seen: list[Receipt] = []

        def also(tx: Transaction, receipts: list[Receipt]) -> None:
            # Runs after the events are written: it sees them, and the receipts' places.
            seen.extend(receipts)
            count = tx.query("SELECT COUNT(*) FROM ledger_log", [])
            tx.execute("INSERT INTO hook_rows (k, n) VALUES (?, ?)", ["a", count[0][0]])

        receipts = store.append([draft(), draft()], also=also)
        assert seen == receipts and [r.leaf_index for r in receipts] == [1, 2]
        assert [tuple(r) for r in store._tuples("SELECT k, n FROM hook_rows", [])] == [("a", 3)]

        def clash(tx: Transaction, receipts: list[Receipt]) -> None:
            tx.execute("INSERT INTO hook_rows (k, n) VALUES (?, ?)", ["b", 0])
            tx.execute("INSERT INTO hook_rows (k, n) VALUES (?, ?)", ["a", 0])

        with pytest.raises(ConstraintViolation):
            store.append([draft(), draft()], also=clash)

        def refuse(tx: Transaction, receipts: list[Receipt]) -> None:
            tx.execute("INSERT INTO hook_rows (k, n) VALUES (?, ?)", ["c", 0])
            raise LookupError("the caller says no")

        with pytest.raises(LookupError, match="says no"):
            store.append([draft()], also=refuse)
        # Neither the events nor the hook's rows of a refused append were kept, and the
        # next append still lands right after the last committed leaf.
        assert store.tree_size() == 3 and store.count_events() == 3
        assert [r[0] for r in store._tuples("SELECT k FROM hook_rows", [])] == ["a"]
        (after,) = store.append([draft()])
        assert after.leaf_index == 3
        entries = store.entries(0, 4)
        assert store.root(4) == ReferenceTree([e.canonical for e in entries]).root(4)

    def test_a_refusal_of_the_rows_comes_before_the_hooks_own(self, store: LedgerStore) -> None:
        """PostgreSQL sends the inserts without waiting for them: a replayed event id is
        refused at the hook's first read, or in place of a refusal the hook raises before
        it reads; never the hook's own refusal instead."""
        (stored,) = store.append([draft()])
        reached: list[str] = []

        def reads_first(tx: Transaction, receipts: list[Receipt]) -> None:
            tx.query("SELECT COUNT(*) FROM ledger_log", [])
            reached.append("read")
            raise LookupError("the hook went on past a refused insert")

        def refuses_at_once(tx: Transaction, receipts: list[Receipt]) -> None:
            raise LookupError("the hook's own refusal")

        for hook in (reads_first, refuses_at_once):
            with pytest.raises(DuplicateEvent, match=str(stored.event_id)):
                store.append([draft(), draft(event_id=stored.event_id)], also=hook)
        assert reached == []
        assert store.tree_size() == 1 and store.count_events() == 1
        with pytest.raises(LookupError, match="own refusal"):  # nothing else refused
            store.append([draft()], also=refuses_at_once)
        assert store.tree_size() == 1 and store.count_events() == 1

    def test_server_time_never_goes_back_in_log_order(self, store: LedgerStore) -> None:
        moment = datetime(2026, 11, 22, 3, 0, 0, 123456, tzinfo=UTC)
        store.clock = lambda: moment
        first = store.append([draft()])[0]
        store.clock = lambda: moment - timedelta(hours=1)  # the clock steps back
        second = store.append([draft()])[0]
        assert first.server_time == second.server_time == "2026-11-22T03:00:00.123456Z"
        store.clock = lambda: moment + timedelta(seconds=1)
        assert store.append([draft()])[0].server_time == "2026-11-22T03:00:01.123456Z"

    def test_metadata_is_claimed_once(self, store: LedgerStore) -> None:
        assert store.claim_meta("origin", "log-a") == "log-a"
        assert store.claim_meta("origin", "log-b") == "log-a"
        assert store.meta("origin") == "log-a"
        assert store.meta("missing") is None


class TestSQLiteStore(LedgerStoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[MakeStore]:
        from ledger.sqlite_store import SQLiteLedgerStore

        opened: list[LedgerStore] = []

        def make() -> LedgerStore:
            opened.append(SQLiteLedgerStore(tmp_path / "ledger.sqlite3"))
            return opened[-1]

        yield make
        for s in opened:
            s.close()

    def test_sqlite_writes_are_fully_durable(self, store: LedgerStore) -> None:
        rows = store._rows("PRAGMA synchronous")
        assert rows[0][0] == 2  # FULL: the WAL is fsynced at every commit
        assert store._rows("PRAGMA journal_mode")[0][0] == "wal"


@pytest.mark.postgres
class TestPostgresStore(LedgerStoreContract):
    @pytest.fixture
    def make_store(self, postgres_url: str) -> Iterator[MakeStore]:
        from ledger.postgres_store import PostgresLedgerStore

        opened: list[LedgerStore] = []

        def make() -> LedgerStore:
            opened.append(PostgresLedgerStore(postgres_url))
            return opened[-1]

        yield make
        for s in opened:
            s.close()

    def test_postgres_refuses_truncate(self, store: LedgerStore) -> None:
        store.append([draft()])
        with pytest.raises(StoreError, match="append-only"):
            store._execute("TRUNCATE ledger_log")
        assert store.tree_size() == 1
