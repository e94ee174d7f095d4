"""One elected sealer per log: the holder of the sealer lock signs, the others stand by.

PostgreSQL tests run real ``evidence-ledger sealer`` processes against one schema and kill
the holder with SIGKILL; the lock is a session advisory lock, so the server releases it
when the holder's connection closes and a standby takes over within the bound below.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest

from ledger.app import Ledger
from ledger.audit import audit
from ledger.checkpoints import CheckpointBody, sign_note
from ledger.errors import SealerLockLost
from ledger.events import format_time
from ledger.postgres_store import PostgresSealerLock, sealer_lock_key
from ledger.sealer import Sealer
from ledger.settings import Settings
from ledger.store import StoredCheckpoint
from tests.conftest import TEST_DATABASE_URL
from tests.factories import draft
from verifier._internal import merkle as independent

BIN = Path(sys.executable).parent
INTERVAL = 0.1
#: How long a standby may take to sign after the holder is killed: the server notices the
#: closed socket at once, the standby tries the lock every INTERVAL, then seals one pass.
TAKEOVER_BOUND = 5.0
START_TIMEOUT = 60.0


def _schema(url: str) -> str:
    return parse_qs(urlparse(url).query)["schema"][0]


def _hold_lock_elsewhere(url: str) -> psycopg.Connection:
    """Take the log's sealer lock in a connection of our own, as another process would."""
    connection = psycopg.connect(TEST_DATABASE_URL, autocommit=True)
    taken = connection.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", sealer_lock_key(_schema(url))
    ).fetchone()
    assert taken is not None and taken[0]
    return connection


def _lock_holders(url: str) -> int:
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::oid AND objid = %s::oid AND objsubid = 2",
            sealer_lock_key(_schema(url)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_size(ledger: Ledger, size: int, timeout: float) -> float:
    """Seconds until a checkpoint covers ``size`` leaves; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        latest = ledger.store.latest_checkpoint()
        if latest is not None and latest.tree_size >= size:
            return time.monotonic() - start
        time.sleep(0.01)
    pytest.fail(f"no checkpoint covered {size} leaves within {timeout}s")


def _assert_one_consistent_chain(ledger: Ledger) -> None:
    checkpoints = ledger.store.checkpoints()
    assert checkpoints
    for before, after in itertools.pairwise(checkpoints):
        assert after.previous_size == before.tree_size
        independent.verify_consistency(
            before.tree_size,
            after.tree_size,
            before.root_hash,
            after.root_hash,
            list(after.consistency_proof),
        )
    report = audit(ledger.store, ledger.key, ledger.tsa_trust_roots)
    assert report.passed, report.findings
    assert report.checkpoints_checked == len(checkpoints)


class SealerProcess:
    """A real ``evidence-ledger sealer`` process, its output lines read as they come."""

    def __init__(self, data_dir: Path, url: str) -> None:
        env = {**os.environ, "EVIDENCE_LEDGER_SEAL_INTERVAL": str(INTERVAL)}
        self.process = subprocess.Popen(
            [
                str(BIN / "evidence-ledger"),
                "sealer",
                "--data-dir",
                str(data_dir),
                "--database-url",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.saw(text):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sealer never said {text!r}; it said: {self.lines}")
            time.sleep(0.02)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._reader.join(5)
        return code


@pytest.fixture
def pg_ledger(postgres_url: str, tmp_path: Path) -> Iterator[Ledger]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=postgres_url, seal_interval=INTERVAL
    )
    with Ledger.open(settings) as ledger:
        ledger.tsa_trust_roots  # noqa: B018 - make the local TSA once, before sealers share it
        yield ledger


@pytest.mark.postgres
def test_two_sealer_processes_one_seals_and_the_other_takes_over_when_it_is_killed(
    pg_ledger: Ledger, postgres_url: str
) -> None:
    data_dir = pg_ledger.settings.data_dir
    first = SealerProcess(data_dir, postgres_url)
    second: SealerProcess | None = None
    try:
        first.wait_for("elected: sealing")
        second = SealerProcess(data_dir, postgres_url)
        second.wait_for("standing by")
        pg_ledger.append([draft() for _ in range(10)])
        _wait_for_size(pg_ledger, 10, TAKEOVER_BOUND)
        time.sleep(20 * INTERVAL)  # many passes of both: the standby still stands by
        assert not second.saw("elected"), second.lines
        assert _lock_holders(postgres_url) == 1

        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        killed_at = time.monotonic()
        pg_ledger.append([draft() for _ in range(7)])
        takeover = _wait_for_size(pg_ledger, 17, TAKEOVER_BOUND)
        print(f"\ncheckpoint by the standby {time.monotonic() - killed_at:.2f}s after SIGKILL")
        assert takeover < TAKEOVER_BOUND
        second.wait_for("elected: sealing", timeout=1.0)
        assert _lock_holders(postgres_url) == 1

        pg_ledger.append([draft() for _ in range(3)])
        _wait_for_size(pg_ledger, 20, TAKEOVER_BOUND)
        pg_ledger.wait_for_checkpoint(19, timestamped=True, timeout=TAKEOVER_BOUND)
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.lines
    assert second.saw("sealer stopped")
    _assert_one_consistent_chain(pg_ledger)


@pytest.mark.postgres
def test_nothing_is_signed_while_another_session_holds_the_lock(
    pg_ledger: Ledger, postgres_url: str
) -> None:
    other = _hold_lock_elsewhere(postgres_url)
    try:
        pg_ledger.append([draft() for _ in range(5)])
        assert pg_ledger.sealer().seal() is None
        thread = pg_ledger.start_sealer()
        time.sleep(30 * INTERVAL)
        assert not thread.holding
        assert pg_ledger.store.checkpoints() == []
    finally:
        other.close()  # the other holder goes away: this process is elected
    released_at = time.monotonic()
    _wait_for_size(pg_ledger, 5, TAKEOVER_BOUND)
    print(f"\ncheckpoint {time.monotonic() - released_at:.2f}s after the holder's session closed")
    assert thread.holding
    _assert_one_consistent_chain(pg_ledger)


@pytest.mark.postgres
def test_a_holder_whose_lock_session_is_lost_stops_signing_at_once(
    pg_ledger: Ledger, postgres_url: str
) -> None:
    lock = PostgresSealerLock(postgres_url)
    sealer = Sealer(pg_ledger.store, pg_ledger.key, None, lock=lock)
    try:
        pg_ledger.append([draft() for _ in range(4)])
        assert sealer.seal() is not None
        pg_ledger.append([draft() for _ in range(4)])
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [lock.backend_pid])
        # The server released the lock with the session: someone else can take it now...
        deadline = time.monotonic() + TAKEOVER_BOUND
        while True:
            try:
                other = _hold_lock_elsewhere(postgres_url)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        try:
            # ...and the old holder, asked to seal, signs nothing and stores nothing.
            assert sealer.seal() is None
            assert not lock.held
            assert [c.tree_size for c in pg_ledger.store.checkpoints()] == [4]
        finally:
            other.close()
    finally:
        lock.release()


@pytest.mark.postgres
def test_a_checkpoint_is_stored_only_by_a_session_holding_the_lock(
    pg_ledger: Ledger, postgres_url: str
) -> None:
    lock = PostgresSealerLock(postgres_url)
    try:
        pg_ledger.append([draft() for _ in range(3)])
        assert lock.acquire()
        root = pg_ledger.store.root(3)
        body = CheckpointBody(pg_ledger.key.name, 3, root)
        checkpoint = StoredCheckpoint(
            tree_size=3,
            root_hash=root,
            note=sign_note(body.text(), pg_ledger.key),
            previous_size=None,
            consistency_proof=(),
            signed_at=format_time(pg_ledger.store.clock()),
        )
        # The session dies between the check before signing and the store.
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [lock.backend_pid])
        with pytest.raises(SealerLockLost):
            lock.publish(checkpoint)
        assert pg_ledger.store.checkpoints() == []
        # The session is alive but the lock was given up: still refused.
        assert lock.acquire()
        lock.release()
        with pytest.raises(SealerLockLost):
            lock.publish(checkpoint)
        assert pg_ledger.store.checkpoints() == []
    finally:
        lock.release()


def test_sealer_lock_keys_differ_per_schema_and_from_the_schema_lock() -> None:
    from ledger.postgres_store import _SCHEMA_LOCK_KEY

    keys = {sealer_lock_key(name) for name in ("", "public", "tenant_a", "tenant_b")}
    assert len(keys) == 4
    for classid, objid in keys:
        assert 0 <= classid < 2**31 and 0 <= objid < 2**31
    # The two-int form never clashes with the one-bigint form used for the schema lock.
    assert _SCHEMA_LOCK_KEY >= 2**32


def test_sqlite_ledgers_sharing_a_file_elect_one_sealer(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", seal_interval=INTERVAL)
    first = Ledger.open(settings)
    second = Ledger.open(settings)
    try:
        first_thread = first.start_sealer()
        time.sleep(5 * INTERVAL)
        second_thread = second.start_sealer()
        first.append([draft() for _ in range(3)])
        _wait_for_size(first, 3, TAKEOVER_BOUND)
        time.sleep(10 * INTERVAL)
        assert first_thread.holding and not second_thread.holding
        first.close()
        second.append([draft() for _ in range(2)])
        _wait_for_size(second, 5, TAKEOVER_BOUND)
        assert second_thread.holding
        _assert_one_consistent_chain(second)
    finally:
        first.close()
        second.close()


def test_the_seal_command_says_when_another_sealer_holds_the_lock(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", seal_interval=INTERVAL)
    holder = Ledger.open(settings)
    try:
        holder.append([draft() for _ in range(2)])
        thread = holder.start_sealer()
        _wait_for_size(holder, 2, TAKEOVER_BOUND)
        assert thread.holding
        holder.append([draft()])  # not yet sealed when the command runs, or sealed by the holder
        done = subprocess.run(
            [str(BIN / "evidence-ledger"), "seal", "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "another sealer holds the sealer lock" in done.stdout, done.stdout
        assert "signed a checkpoint" not in done.stdout
    finally:
        holder.close()
