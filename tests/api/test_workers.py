"""``evidence-ledger serve --workers 2``: the supervisor deals connections out in turn.

A real server on loopback (SQLite). Which worker holds which client connection is read
from ``/proc`` (each worker's socket inodes, matched in ``/proc/net/tcp``), so the test
sees the kernel's answer, not the server's account of itself.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from projections.tasks import NAME as PROJECTION
from tests.faults.harness import BIN, Deployment, Load, Server, clean_environment, free_port

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads connections from Linux's /proc"
)


def _workers_of(server: Server) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Server]:
    server = Server(Deployment(tmp_path / "data"), tmp_path / "server.log", workers=2)
    try:
        server.start(timeout=90)
        # Until a worker is up, connections go to those that are: wait for both.
        deadline = time.monotonic() + 90
        while server.log_tail(100_000).count("] is serving") < 2:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        yield server
    finally:
        try:
            server.stop()
        finally:
            assert server.process is not None
            with contextlib.suppress(ProcessLookupError):  # anything left of the group
                os.killpg(server.process.pid, signal.SIGKILL)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _holder_of_client_ports(server_port: int, workers: list[int]) -> dict[int, int]:
    """Client port -> the worker pid holding the server side of that connection."""
    by_inode = {inode: pid for pid in workers for inode in _socket_inodes(pid)}
    held: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == server_port and fields[9] in by_inode:
            held[remote_port] = by_inode[fields[9]]
    return held


def test_connections_are_dealt_to_the_workers_in_turn(serving: Server) -> None:
    workers = _workers_of(serving)
    assert len(workers) == 2, workers
    connections = [http.client.HTTPConnection("127.0.0.1", serving.port, timeout=10)
                   for _ in range(8)]  # fmt: skip
    try:
        for _ in range(2):  # all open at once, as a burst of keep-alive clients; then again
            for connection in connections:
                connection.request("GET", "/openapi.json")
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200
        ports = [connection.sock.getsockname()[1] for connection in connections]
        held = _holder_of_client_ports(serving.port, workers)
    finally:
        for connection in connections:
            connection.close()
    assert Counter(held[port] for port in ports) == {workers[0]: 4, workers[1]: 4}, held


def _loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_workers_serve_with_uvicorns_c_parser_and_event_loop(serving: Server) -> None:
    # What each worker process has mapped, not what its configuration says: httptools'
    # parser and uvloop's loop are shared objects of their own.
    for pid in _workers_of(serving):
        libraries = _loaded_libraries(pid)
        assert "httptools/parser/parser." in libraries, pid
        assert "uvloop/loop." in libraries, pid
    answer = httpx.get(f"http://127.0.0.1:{serving.port}/openapi.json", timeout=10)
    assert answer.status_code == 200


def test_a_single_process_server_serves_with_them_too(tmp_path: Path) -> None:
    server = Server(Deployment(tmp_path / "data"), tmp_path / "server.log", workers=1)
    try:
        server.start(timeout=90)
        assert server.process is not None
        libraries = _loaded_libraries(server.process.pid)
        assert "httptools/parser/parser." in libraries
        assert "uvloop/loop." in libraries
    finally:
        server.stop()


def test_a_killed_worker_is_started_again_and_the_server_keeps_answering(
    serving: Server,
) -> None:
    first, second = _workers_of(serving)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = _workers_of(serving)
        if len(workers) == 2 and first not in workers:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the worker was not started again:\n{serving.log_tail()}")
    assert second in workers
    for _ in range(6):  # new connections, dealt to both workers in turn
        assert httpx.get(f"{serving.base_url}/openapi.json", timeout=30).status_code == 200
    assert f"[{first}] exited with status -9; starting it again" in serving.log_tail(100_000)


def test_sigterm_stops_every_worker_cleanly(serving: Server) -> None:
    workers = _workers_of(serving)
    assert httpx.get(f"{serving.base_url}/openapi.json", timeout=10).status_code == 200
    assert serving.stop() == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    log = serving.log_tail(100_000)
    assert "Traceback" not in log, log[-3000:]
    assert log.count("Finished server process") == 2, log[-3000:]


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``serve`` to its end (it must end by itself); its exit status and output."""
    answer = subprocess.run(
        [str(BIN / "evidence-ledger"), "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data"), *args],
        env=clean_environment(env), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return answer.returncode, answer.stdout + answer.stderr


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    code, output = _serve(
        tmp_path, "--workers", "2", env={"EVIDENCE_LEDGER_CLIENT_TIME_WINDOW": "soon"}
    )
    assert code == 3, output[-3000:]
    assert "did not start" in output and "Stopped supervisor process" in output, output[-3000:]


def test_a_bad_trusted_proxy_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    code, output = _serve(tmp_path, "--workers", "2", "--trusted-proxy", "10.0.0.0/8,bogus")
    assert code == 2, output[-3000:]
    assert "--trusted-proxy '10.0.0.0/8,bogus' is not an address or network" in output
    assert not (tmp_path / "data").exists()


def _flock_holders(path: Path) -> set[int]:
    """The pids holding a ``flock`` on ``path``, as the kernel lists them in /proc/locks."""
    inode = path.stat().st_ino
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            holders.add(int(fields[4]))
    return holders


def _projected_and_size(deployment: Deployment) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(deployment.settings().sqlite_path)) as db:
        (position,) = db.execute(
            "SELECT position FROM proj_positions WHERE name = ?", [PROJECTION]
        ).fetchone()
        (size,) = db.execute("SELECT COUNT(*) FROM ledger_log").fetchone()
    return int(position), int(size)


def _wait_for(check: Callable[[], bool], what: str, server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}:\n{server.log_tail()}"
        time.sleep(0.05)


def test_one_worker_follows_the_log_and_another_takes_over(tmp_path: Path) -> None:
    """Only the holder of the lease folds the log into the projection; with it killed,
    another worker holds the lease and the projection keeps up with new appends (no read
    request makes it catch up here: only appends are sent)."""
    deployment = Deployment(tmp_path / "data")
    tenant = deployment.create_tenant()
    lease = deployment.settings().sqlite_path.with_name("ledger.sqlite3.projection-lock")
    server = Server(deployment, tmp_path / "server.log", workers=2)
    try:
        server.start(timeout=90)
        _wait_for(lambda: len(_workers_of(server)) == 2 and lease.exists(), "two workers", server)
        _wait_for(lambda: len(_flock_holders(lease)) == 1, "one lease holder", server)
        (follower,) = _flock_holders(lease)
        assert follower in _workers_of(server)
        load = Load(server.base_url, tenant, clients=2)
        for _ in range(2):
            with load.running():
                load.wait_for_acks(30)
            _wait_for(
                lambda: (lambda p, n: p == n)(*_projected_and_size(deployment)),
                "the projection to reach the log's size",
                server,
            )
            assert _flock_holders(lease) <= {follower}  # never two at once
            os.kill(follower, signal.SIGKILL)
            _wait_for(
                lambda killed=follower: bool(_flock_holders(lease) - {killed}),
                "another lease holder",
                server,
            )
            (follower,) = _flock_holders(lease)
            assert follower in _workers_of(server)
        _wait_for(
            lambda: f"Worker [{follower}] follows the log" in server.log_tail(100_000),
            "the holder's log line",
            server,
        )
    finally:
        server.stop()
