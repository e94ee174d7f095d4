"""PostgreSQL restarted in the middle of load: 503 while it is away, recovery by itself.

The test runs a PostgreSQL cluster of its own (``initdb`` in a temporary directory, as the
``postgres`` OS user, on a free port), never the shared one. Under load it stops the
cluster the hard way (``pg_ctl stop -m immediate``: every backend killed, crash recovery
on the next start), keeps it down for a while, and starts it again; the server is never
restarted. While the database is away every append must be answered at once with 503
(``Retry-After``), not hang and not 500; once it is back, appends are acknowledged again
without anyone touching the server, and the usual checks hold.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import scratch_database
from tests.faults.harness import (
    IN_CI,
    ROUNDS,
    CheckpointWatch,
    Deployment,
    Load,
    Server,
    check_recovered,
    free_port,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: Longer than the connection pool's wait (10 s), so requests run out of it and answer.
DOWN_SECONDS = float(os.environ.get("FAULTS_PG_DOWN", "12"))


def _missing() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (set FAULTS_PG_BIN)"
    if shutil.which("runuser") is None or os.geteuid() != 0:
        return "a private PostgreSQL cluster needs root (to run it as the postgres user)"
    return None


class PrivateCluster:
    """A throwaway PostgreSQL cluster on loopback, run as the ``postgres`` OS user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        os.chmod(self.root, 0o755)
        shutil.chown(self.root, "postgres", "postgres")

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def init(self) -> None:
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "postgres.log"), "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    reason = _missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: fault tests must run, not skip)")
        pytest.skip(reason)
    made = PrivateCluster()
    try:
        made.init()
        made.start()
        yield made
    finally:
        made.remove()


def test_postgres_restart_under_load_answers_503_then_recovers_unattended(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    restarts = max(1, ROUNDS // 4)
    with scratch_database(cluster.url) as url:
        deployment = Deployment(tmp_path / "data", url)
        tenant = deployment.create_tenant()
        server = Server(deployment, tmp_path / "server.log")
        server.start()
        load = Load(server.base_url, tenant, clients=int(os.environ.get("FAULTS_PG_CLIENTS", "4")))
        refused_while_down: list[int] = []
        slowest_503 = 0.0
        with CheckpointWatch(server.base_url, tenant) as watch, load.running():
            for _ in range(restarts):
                load.wait_for_acks(10)
                cluster.stop("immediate")
                before = len(load.requests)
                time.sleep(DOWN_SECONDS)
                answered = [r for r in load.requests[before:] if r.outcome]
                cluster.start()
                # While it was away: clear 503s, at once (and no receipt claimed).
                assert answered, "no request was answered while PostgreSQL was down"
                statuses = {r.outcome for r in answered}
                assert statuses <= {"http 503 store-unavailable"}, statuses
                refused_while_down.append(len(answered))
                slowest = max(r.elapsed for r in answered)
                slowest_503 = max(slowest_503, slowest)
                load.wait_for_acks(10, timeout=60)  # recovered: nobody restarted the server
        assert server.process is not None and server.process.poll() is None
        assert server.starts == 1
        verdict = check_recovered(deployment, server, load, watch.notes)
    print(
        f"postgres: {restarts} restarts ({DOWN_SECONDS:g}s down each); 503s while down "
        f"{refused_while_down}, the slowest after {slowest_503:.1f}s; {verdict.line()}"
    )
