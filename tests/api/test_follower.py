"""One worker of a server follows the log for the projection; the others take over if it goes.

The lease is an exclusive ``flock``: another open of the same file stands for another
worker process (``flock`` locks belong to open files, so this holds within one process).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from api.app import FollowerLease, ProjectionFollower, follower_lease_file
from api.routes_events import postgres_lock_file
from projections import TaskProjection
from tests.api.conftest import ApiWorld
from tests.api.test_append_commit import _post
from tests.api.test_events import event_body


def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.02)


def test_a_lease_has_one_holder_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3.projection-lock"
    first, second = FollowerLease(path), FollowerLease(path)
    assert first.acquire() and first.held
    assert not second.acquire() and not second.held
    assert first.acquire()  # holding it again is a no-op
    first.release()
    assert second.acquire()
    assert not first.acquire()
    second.release()


def test_a_worker_that_cannot_open_the_lease_file_follows_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lease = FollowerLease(tmp_path / "no-such-directory" / "x" / "lease")
    (tmp_path / "no-such-directory").write_text("a file, not a directory")
    with caplog.at_level(logging.WARNING, logger="api.app"):
        assert lease.acquire() and lease.acquire()
    assert not lease.held
    warnings = [r for r in caplog.records if "no projection lease file" in r.getMessage()]
    assert len(warnings) == 1  # said once, not on every pass


def test_only_the_holder_follows_and_another_takes_over(api: ApiWorld, tmp_path: Path) -> None:
    projection: TaskProjection = api.client.app.state.runtime.projection  # type: ignore[attr-defined]
    lease_path = tmp_path / "follow.lock"
    other_worker = FollowerLease(lease_path)
    assert other_worker.acquire()
    passes: list[int | None] = []
    lock = threading.Lock()

    def after(position: int | None) -> None:
        with lock:
            passes.append(position)

    for _ in range(3):
        assert _post(api, event_body(), uuid.uuid4().hex).status_code == 201
    size = api.ledger.store.tree_size()
    follower = ProjectionFollower(
        projection, interval=0.01, after=after, lease=FollowerLease(lease_path)
    )
    follower.start()
    try:
        _until(lambda: len(passes) >= 5, "five passes")
        with lock:
            assert set(passes) == {None}  # another worker holds the lease: no catching up
        assert projection.stored_position() < size
        other_worker.release()  # that worker exits
        _until(lambda: any(p is not None for p in passes), "a pass that caught up")
        _until(lambda: projection.stored_position() == size, "the projection to catch up")
        assert follower.lease is not None and follower.lease.held
    finally:
        follower.stop()
    assert follower.lease is not None and not follower.lease.held
    assert FollowerLease(lease_path).acquire()  # stopping let go of it


def test_the_lease_file_is_the_ledgers_own(api: ApiWorld) -> None:
    store = api.ledger.store
    found = follower_lease_file(store)
    if store.backend == "sqlite":
        assert found == api.ledger.settings.sqlite_path.with_name("ledger.sqlite3.projection-lock")
    else:
        assert found is not None and found == postgres_lock_file(store.url, "projection")  # type: ignore[attr-defined]
        assert found.name.endswith(".projection-lock") and found.parent.stat().st_mode & 0o077 == 0
