"""Event appends: idempotency records and stream claims in the append's own transaction,
and group commit of concurrent requests (one transaction for many, each all or nothing).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.problems import Problem
from api.routes_events import GroupCommit, RequestWrites
from api.tenancy import StaleCredentials
from ledger.errors import DuplicateEvent, StoreUnavailable
from ledger.events import EventDraft, new_event_id
from ledger.files import host_lock_directory
from ledger.log_writer import Transaction
from ledger.postgres_store import ledger_location
from ledger.store import AlsoWrite, LedgerStore, Receipt
from tests.api.conftest import ApiWorld
from tests.api.test_events import event_body
from tests.factories import draft


def _post(api: ApiWorld, body: dict[str, Any], key: str, sign_as: Any = None) -> Any:
    tenant = sign_as or api.a
    headers = {
        **tenant.auth("app"),
        "JWS-Signature": tenant.sign(body),
        "Idempotency-Key": key,
    }
    return api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)


def _records(api: ApiWorld, key: str) -> list[tuple[Any, ...]]:
    return api.tenants._query(
        "SELECT tenant_id, state, status_code FROM api_idempotency WHERE idem_key = ?", (key,)
    )


def test_the_answer_is_recorded_with_the_events(api: ApiWorld) -> None:
    key = uuid.uuid4().hex
    first = _post(api, event_body(), key)
    assert first.status_code == 201, first.text
    assert _records(api, key) == [(api.a.tenant_id, "done", 201)]
    size = api.ledger.store.tree_size()
    again = _post(api, orjson.loads(first.request.content), key)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = _post(api, event_body(), key)
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-key-reused")
    assert api.ledger.store.tree_size() == size


def test_a_refused_append_records_nothing_and_the_key_can_be_used_again(api: ApiWorld) -> None:
    key = uuid.uuid4().hex
    size = api.ledger.store.tree_size()
    refused = _post(api, event_body(type="no.such-type"), key)
    assert refused.status_code == 422, refused.text
    assert _records(api, key) == [] and api.ledger.store.tree_size() == size
    retried = _post(api, event_body(), key)
    assert retried.status_code == 201, retried.text
    assert api.ledger.store.tree_size() == size + 1


def test_a_new_stream_is_claimed_with_its_first_event(api: ApiWorld) -> None:
    stream = uuid.uuid4()
    answer = _post(api, event_body(stream), uuid.uuid4().hex)
    assert answer.status_code == 201, answer.text
    assert api.tenants.stream_owners([stream]) == {stream: api.a.tenant_id}
    theirs = _post(api, event_body(stream), uuid.uuid4().hex, sign_as=api.b)
    assert theirs.status_code == 409 and theirs.json()["type"].endswith("stream-not-yours")


def test_racing_requests_with_one_key_store_once_and_answer_alike(api: ApiWorld) -> None:
    body, key = event_body(), uuid.uuid4().hex
    size = api.ledger.store.tree_size()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _post(api, body, key), range(8)))
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.text for a in answers}) == 1
    assert api.ledger.store.tree_size() == size + 1


def test_racing_requests_with_one_key_and_different_bodies(api: ApiWorld) -> None:
    key = uuid.uuid4().hex
    size = api.ledger.store.tree_size()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _post(api, event_body(), key), range(6)))
    assert sorted(a.status_code for a in answers) == [201] + [422] * 5
    assert api.ledger.store.tree_size() == size + 1


def test_concurrent_single_appends_all_land_each_with_its_own_receipt(api: ApiWorld) -> None:
    size = api.ledger.store.tree_size()
    bodies = [event_body() for _ in range(40)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: _post(api, b, uuid.uuid4().hex), bodies))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    receipts = [a.json() for a in answers]
    assert sorted(r["leaf_index"] for r in receipts) == list(range(size, size + 40))
    for receipt, body in zip(receipts, bodies, strict=True):
        assert receipt["event_id"] == body["event_id"]
        entry = api.ledger.store.entry_for_event(uuid.UUID(body["event_id"]))
        assert entry is not None and entry.leaf_index == receipt["leaf_index"]


# -- GroupCommit on its own --------------------------------------------------------------


class _Gate:
    """A store whose first append waits for a signal, so that later appends queue up."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.backend = store.backend
        self.entered = threading.Event()
        self.go = threading.Event()
        self.calls: list[int] = []

    def append(self, drafts: Sequence[EventDraft], *, also: AlsoWrite) -> list[Receipt]:
        self.calls.append(len(drafts))
        if len(self.calls) == 1:
            self.entered.set()
            self.go.wait(10)
        return self.store.append(drafts, also=also)


def _noop(tx: Transaction, receipts: list[Receipt]) -> None:
    pass


def _run_group(
    store: LedgerStore, jobs: list[tuple[list[EventDraft], AlsoWrite]]
) -> tuple[_Gate, list[Any]]:
    """Hold the first append, queue ``jobs`` behind it, then let everything commit."""
    gate = _Gate(store)
    committer = GroupCommit(gate)  # type: ignore[arg-type]
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = committer.append(*jobs[i])
        except Exception as exc:
            results[i] = exc

    first = threading.Thread(target=committer.append, args=([draft()], _noop))
    first.start()
    assert gate.entered.wait(10)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    while len(committer._waiting) < len(jobs):
        threading.Event().wait(0.01)
    gate.go.set()
    for t in [first, *threads]:
        t.join(10)
    return gate, results


def test_waiting_appends_commit_together(api: ApiWorld) -> None:
    store = api.ledger.store
    size = store.tree_size()
    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [([draft(), draft()], _noop)] + [
        ([draft()], _noop) for _ in range(5)
    ]
    gate, results = _run_group(store, jobs)
    assert gate.calls == [1, 7]  # the held one, then all six waiting in one transaction
    assert [len(r) for r in results] == [2, 1, 1, 1, 1, 1]
    for (drafts, _), receipts in zip(jobs, results, strict=True):
        assert [r.stream_id for r in receipts] == [d.stream_id for d in drafts]
    assert store.tree_size() == size + 8


def test_one_bad_request_in_a_group_fails_only_itself(api: ApiWorld) -> None:
    store = api.ledger.store
    taken = store.append([draft()])[0].event_id
    size = store.tree_size()
    recorded: list[int] = []

    def record(tx: Transaction, receipts: list[Receipt]) -> None:
        recorded.append(len(receipts))

    def refuse(tx: Transaction, receipts: list[Receipt]) -> None:
        raise Problem(409, "stream-not-yours", "no")

    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [
        ([draft()], record),
        ([draft(), draft(event_id=taken)], record),  # a replayed event id
        ([draft()], refuse),  # its own writes refuse it
        ([draft(), draft()], record),
    ]
    gate, results = _run_group(store, jobs)
    assert gate.calls[:2] == [1, 6]  # tried together, then one by one
    assert isinstance(results[1], DuplicateEvent)
    assert isinstance(results[2], Problem)
    assert [len(results[0]), len(results[3])] == [1, 2]
    assert store.tree_size() == size + 1 + 3
    # Each hook of a stored request ran in the transaction that stored it (last).
    assert recorded[-2:] == [1, 2]
    assert store._existing_event_ids([r.event_id for r in results[0] + results[3]]) == {
        r.event_id for r in results[0] + results[3]
    }


def test_replays_in_a_group_are_refused_and_the_rest_commit_together(api: ApiWorld) -> None:
    """A retry of a request already stored (its event ids taken) costs the group one more
    transaction, not one per request."""
    store = api.ledger.store
    first, second, third = (r.event_id for r in store.append([draft(), draft(), draft()]))
    size = store.tree_size()
    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [
        ([draft()], _noop),
        ([draft(), draft(event_id=second), draft(event_id=first)], _noop),  # a batch retried
        ([draft(), draft()], _noop),
        ([draft(event_id=third)], _noop),  # a single append retried
        ([draft()], _noop),
    ]
    gate, results = _run_group(store, jobs)
    assert gate.calls == [1, 8, 4]  # the held one; all together; all but the two retries
    for i in (1, 3):
        assert isinstance(results[i], DuplicateEvent)
    assert results[1].event_id == min(first, second) and results[1].taken == {first, second}
    assert results[3].event_id == third
    assert [len(results[i]) for i in (0, 2, 4)] == [1, 2, 1]
    assert store.tree_size() == size + 1 + 4
    stored = [r.event_id for i in (0, 2, 4) for r in results[i]]
    assert store._existing_event_ids(stored) == set(stored)


def test_one_id_twice_in_a_group_falls_back_to_one_by_one(api: ApiWorld) -> None:
    """Two waiting requests naming the same new event id: the first in the queue stores
    it, the other is refused, the rest are stored."""
    store = api.ledger.store
    size = store.tree_size()
    shared = new_event_id()
    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [
        ([draft(event_id=shared)], _noop),
        ([draft()], _noop),
        ([draft(event_id=shared)], _noop),
    ]
    gate, results = _run_group(store, jobs)
    assert gate.calls == [1, 3, 1, 1, 1]
    assert len(results[1]) == 1
    refused = [r for r in (results[0], results[2]) if isinstance(r, DuplicateEvent)]
    stored = [r for r in (results[0], results[2]) if isinstance(r, list)]
    assert len(refused) == 1 and refused[0].event_id == shared
    assert len(stored) == 1 and stored[0][0].event_id == shared
    assert store.tree_size() == size + 1 + 2


def test_a_database_away_fails_the_whole_group_at_once(api: ApiWorld) -> None:
    """No one-by-one retries while the database is unavailable: each would wait for a
    connection in turn, past the callers' timeouts; every request gets the 503 error now."""
    store = api.ledger.store
    size = store.tree_size()

    def disk_full(tx: Transaction, receipts: list[Receipt]) -> None:
        raise sqlite3.OperationalError("database or disk is full")  # SQLite's SQLITE_FULL

    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [
        ([draft()], _noop),
        ([draft()], disk_full),
        ([draft(), draft()], _noop),
    ]
    gate, results = _run_group(store, jobs)
    assert gate.calls == [1, 4]  # the held one, then the group once, never one by one
    # SQLite's store reports it as StoreUnavailable, PostgreSQL's passes it on: both 503
    assert all(isinstance(r, (StoreUnavailable, sqlite3.OperationalError)) for r in results)
    assert len({type(r) for r in results}) == 1, results
    assert store.tree_size() == size + 1  # only the held append


def test_appends_queued_behind_a_database_away_get_its_503_at_once(api: ApiWorld) -> None:
    """While one group waits out the pool's timeout on a database that is gone, the
    appends queued behind it are not tried one group after another, each waiting as long:
    they get the same error when it comes."""
    gate = _Gate(api.ledger.store)
    away = StoreUnavailable("cannot reach the ledger database: pool timeout")

    def unavailable(drafts: Sequence[EventDraft], *, also: AlsoWrite) -> list[Receipt]:
        gate.calls.append(len(drafts))
        gate.entered.set()
        gate.go.wait(10)
        raise away

    gate.append = unavailable  # type: ignore[method-assign]
    committer = GroupCommit(gate)  # type: ignore[arg-type]
    results: list[Any] = [None] * 4

    def run(i: int) -> None:
        try:
            results[i] = committer.append([draft()], _noop)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    threads[0].start()
    assert gate.entered.wait(10)
    for t in threads[1:]:
        t.start()
    while len(committer._waiting) < 3:
        threading.Event().wait(0.01)
    gate.go.set()
    for t in threads:
        t.join(10)
    assert gate.calls == [1]  # only the first was tried
    assert all(r is away for r in results), results
    assert not committer._busy and not committer._waiting


def test_a_groups_request_writes_go_together_and_another_tenants_stream_refuses_only_its_own(
    api: ApiWorld,
) -> None:
    store = api.ledger.store
    theirs = uuid.uuid4()
    api.tenants.claim_stream(api.b.tenant_id, theirs)
    shared = uuid.uuid4()  # new: two requests of one group claim it for the same tenant

    def writes(drafts: list[EventDraft], key: str) -> RequestWrites:
        return RequestWrites(
            api.a.tenant_id,
            api.a.keys["app"].split("_")[1],
            drafts,
            key,
            f"digest-{key}",
            lambda rs: [r.leaf_index for r in rs],
        )

    requests = [[draft(shared)], [draft(shared), draft()], [draft()]]
    keys = [uuid.uuid4().hex for _ in requests]
    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [
        (drafts, writes(drafts, key)) for drafts, key in zip(requests, keys, strict=True)
    ]
    gate, results = _run_group(store, jobs)
    assert gate.calls == [1, 4]  # one transaction for the three
    for (_, request), receipts, key in zip(jobs, results, keys, strict=True):
        assert isinstance(request, RequestWrites)
        assert request.body == orjson.dumps([r.leaf_index for r in receipts])
        assert _records(api, key) == [(api.a.tenant_id, "done", 201)]
    assert api.tenants.stream_owners([shared]) == {shared: api.a.tenant_id}

    refused_key = uuid.uuid4().hex
    requests = [[draft()], [draft(), draft(theirs)], [draft()]]
    keys = [uuid.uuid4().hex, refused_key, uuid.uuid4().hex]
    jobs = [(drafts, writes(drafts, key)) for drafts, key in zip(requests, keys, strict=True)]
    size = store.tree_size()
    gate, results = _run_group(store, jobs)
    assert gate.calls[:2] == [1, 4]  # tried together, then one by one
    assert isinstance(results[1], Problem) and results[1].kind == "stream-not-yours"
    assert results[1].extra == {"index": 1}
    assert [len(results[0]), len(results[2])] == [1, 1]
    assert store.tree_size() == size + 1 + 2
    assert _records(api, refused_key) == []
    assert api.tenants.stream_owners([theirs]) == {theirs: api.b.tenant_id}


def test_a_revoked_key_in_a_group_refuses_only_its_own_request(api: ApiWorld) -> None:
    """The group's transaction checks every request's API key in the read of the streams'
    owners; a request whose key was revoked meanwhile gets StaleCredentials, alone."""
    store = api.ledger.store
    live = api.a.keys["app"].split("_")[1]
    revoked = api.tenants.create_api_key(api.a.tenant_id, "app", "soon revoked").split("_")[1]
    assert api.tenants.revoke_api_key(api.a.tenant_id, revoked)

    def writes(drafts: list[EventDraft], key_id: str, key: str) -> RequestWrites:
        return RequestWrites(api.a.tenant_id, key_id, drafts, key, "d", lambda rs: [])

    keys = [uuid.uuid4().hex for _ in range(3)]
    requests = [[draft()], [draft(), draft()], [draft()]]
    jobs: list[tuple[list[EventDraft], AlsoWrite]] = [
        (drafts, writes(drafts, key_id, key))
        for drafts, key_id, key in zip(requests, [live, revoked, live], keys, strict=True)
    ]
    size = store.tree_size()
    gate, results = _run_group(store, jobs)
    assert gate.calls[:2] == [1, 4]  # tried together, then one by one
    assert isinstance(results[1], StaleCredentials)
    assert results[1].key_ids == [revoked] and results[1].app_keys == []
    assert [len(results[0]), len(results[2])] == [1, 1]
    assert store.tree_size() == size + 1 + 2
    assert _records(api, keys[1]) == []


def test_appends_waiting_for_the_turn_join_one_group(api: ApiWorld, tmp_path: Path) -> None:
    """While another worker of the ledger holds the turn, appends queue up in this one and
    then commit as one group: a worker forms its group only once it has the turn."""
    counting = _Gate(api.ledger.store)
    counting.go.set()  # counts the appends, holds none
    turns = tmp_path / "ledger.append-lock"
    committer = GroupCommit(counting, turns=turns)  # type: ignore[arg-type]
    size = api.ledger.store.tree_size()
    other_worker = os.open(turns, os.O_RDWR)
    fcntl.flock(other_worker, fcntl.LOCK_EX)
    threads = [threading.Thread(target=committer.append, args=([draft()], _noop)) for _ in range(5)]
    try:
        for t in threads:
            t.start()
        while len(committer._waiting) < len(threads):
            threading.Event().wait(0.01)
    finally:
        fcntl.flock(other_worker, fcntl.LOCK_UN)
        os.close(other_worker)
    for t in threads:
        t.join(10)
    assert counting.calls == [5]
    assert api.ledger.store.tree_size() == size + 5


def test_a_servers_workers_take_turns_through_a_file_of_their_ledger(api: ApiWorld) -> None:
    """SQLite: beside the database file. PostgreSQL: in a private directory on this host,
    named after the ledger's location (never its credentials), so that workers of other
    ledgers do not wait and other hosts never do."""
    assert _post(api, event_body(), uuid.uuid4().hex).status_code == 201
    committer = api.client.app.state.group_commit  # type: ignore[attr-defined]
    assert committer._turns is not None
    settings = api.ledger.settings
    if api.ledger.store.backend == "sqlite":
        assert settings.sqlite_path.with_name("ledger.sqlite3.append-lock").exists()
    else:
        directory = host_lock_directory()
        assert directory is not None and directory.stat().st_mode & 0o777 == 0o700
        digest = hashlib.sha256(ledger_location(api.ledger.store.url).encode()).hexdigest()
        turns = directory / f"postgres-{digest[:16]}.append-lock"
        assert os.path.samestat(os.fstat(committer._turns), turns.stat())
        assert not list(settings.data_dir.glob("*.append-lock"))
    assert ledger_location("postgresql://u:s3cret@db.example:5433/ledger?schema=t1") == (
        "db.example:5433/ledger/t1"
    )
    assert ledger_location("postgresql://db.example/ledger") == "db.example:5432/ledger/"


def test_a_lock_directory_another_user_could_open_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = host_lock_directory()
    assert made == tmp_path / f"evidence-ledger-{os.getuid()}"
    assert made.stat().st_mode & 0o777 == 0o700
    made.chmod(0o755)
    assert host_lock_directory() is None
    made.rmdir()
    made.write_text("not a directory")
    assert host_lock_directory() is None


def test_without_a_private_lock_directory_appends_go_on(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A host where no private lock directory can be had (say, another user's directory of
    that name) still takes appends: PostgreSQL workers form their groups without turns,
    SQLite's take them beside the database file as ever."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / f"evidence-ledger-{os.getuid()}").mkdir(mode=0o755)
    assert host_lock_directory() is None
    answer = _post(api, event_body(), uuid.uuid4().hex)
    assert answer.status_code == 201, answer.text
    turns = api.client.app.state.group_commit._turns  # type: ignore[attr-defined]
    assert (turns is None) == (api.ledger.store.backend == "postgres")
