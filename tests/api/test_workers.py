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
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads connections from Linux's /proc"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serving:
    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_LEDGER_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "evidence-ledger"), "serve", "--workers", "2",
                 "--port", str(self.port), "--data-dir", str(tmp_path / "data")],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()[-3000:]
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not come up:\n{self.log()[-3000:]}")

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise AssertionError(f"the server ignored SIGTERM:\n{self.log()[-3000:]}") from None
        return int(self.process.returncode)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    server = Serving(tmp_path)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)  # anything left of the group


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


def test_connections_are_dealt_to_the_workers_in_turn(serving: Serving) -> None:
    workers = serving.workers()
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


def test_a_killed_worker_is_started_again_and_the_server_keeps_answering(
    serving: Serving,
) -> None:
    first, second = serving.workers()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = serving.workers()
        if len(workers) == 2 and first not in workers:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the worker was not started again:\n{serving.log()[-3000:]}")
    assert second in workers
    for _ in range(6):  # new connections, dealt to both workers in turn
        assert httpx.get(f"{serving.base}/openapi.json", timeout=30).status_code == 200
    assert f"[{first}] exited with status -9; starting it again" in serving.log()


def test_sigterm_stops_every_worker_cleanly(serving: Serving) -> None:
    workers = serving.workers()
    assert httpx.get(f"{serving.base}/openapi.json", timeout=10).status_code == 200
    assert serving.stop() == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    log = serving.log()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("Finished server process") == 2, log[-3000:]
