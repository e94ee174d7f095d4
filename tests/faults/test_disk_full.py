"""The disk full under a SQLite ledger: clear 503s, nothing acknowledged lost, recovery.

The data dir lives on a small tmpfs mounted for the test (root only; where mounting is not
permitted the test skips, or fails with ``CI=true``). Under load a filler file takes every
free byte; appends must then be refused with 503 (the database is out of space), never a
500 and never a receipt for an event that was not stored. The filler is removed and the
same server, never restarted, acknowledges appends again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import (
    IN_CI,
    ROUNDS,
    CheckpointWatch,
    Deployment,
    Load,
    Server,
    check_recovered,
)

pytestmark = pytest.mark.slow

TMPFS_SIZE = "48m"
FULL_SECONDS = 3.0


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A tmpfs of :data:`TMPFS_SIZE`, unmounted afterwards."""
    mount_point = Path(tempfile.mkdtemp(prefix="faults-disk-"))
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        mount_point.rmdir()
        reason = f"cannot mount a tmpfs here: {made.stderr.strip() or made.returncode}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: fault tests must run, not skip)")
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        with contextlib.suppress(OSError):
            mount_point.rmdir()


def fill(path: Path) -> int:
    """Write ``path`` until the file system has no byte left; return how many were written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as filler:
        while True:
            try:
                written += filler.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 16] or b"\0"
    return written


def test_disk_full_under_sqlite_answers_503_and_recovers_when_space_returns(
    small_disk: Path, tmp_path: Path
) -> None:
    deployment = Deployment(small_disk / "data")
    tenant = deployment.create_tenant()
    server = Server(deployment, tmp_path / "server.log")
    server.start()
    load = Load(server.base_url, tenant)
    refused: list[int] = []
    filler = small_disk / "filler"
    with CheckpointWatch(server.base_url, tenant) as watch, load.running():
        for _ in range(max(1, ROUNDS // 2)):
            load.wait_for_acks(20)
            fill(filler)
            before = len(load.requests)
            time.sleep(FULL_SECONDS)
            answered = [r for r in load.requests[before:] if r.outcome]
            statuses = {r.outcome for r in answered}
            # A few appends may still fit in pages SQLite already holds; the rest are 503.
            assert "http 503 store-unavailable" in statuses, load.outcomes()
            assert statuses <= {"acked", "http 503 store-unavailable"}, statuses
            refused.append(sum(1 for r in answered if r.outcome != "acked"))
            os.unlink(filler)
            load.wait_for_acks(20, timeout=60)  # recovered, the same server
    assert server.starts == 1
    verdict = check_recovered(deployment, server, load, watch.notes)
    print(
        f"sqlite: disk filled {len(refused)} times for {FULL_SECONDS:g}s; 503s while full "
        f"{refused}; {verdict.line()}"
    )
