"""Worker processes for ``evidence-ledger serve --workers N``: connections dealt out in turn.

With uvicorn's own supervisor every worker accepts from one shared listening socket, and
the event loop accepts every pending connection at once: the worker woken first takes a
burst of new connections, and a few busy keep-alive clients can all land on one worker
while the other idles (over one benchmark phase, 39 s of CPU against 5.4 s). Here the
serving process accepts instead, and hands each connection to the next worker in turn
over a Unix socket (``SCM_RIGHTS``). A worker serves what it is handed with uvicorn's HTTP
protocol through the event loop's ``connect_accepted_socket``; the connection is the
client's own TCP socket, so addresses, ``TCP_NODELAY`` and keep-alive are as before.

A worker that dies is started again (its open connections are lost, as with a shared
socket); one that fails to start stops the server. SIGTERM or SIGINT stops accepting and
lets every worker finish its requests and shut down as uvicorn does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn

APP = "api.server:app_from_environment"
#: What a worker sends once it serves; what the supervisor sends with each connection.
STARTED = b"S"
CONNECTION = b"C"
#: A worker whose server has not started in this long is taken as failed.
START_TIMEOUT = 120.0
#: On shutdown, workers that have not exited in this long are killed.
STOP_TIMEOUT = 30.0
#: uvicorn's exit status for a worker whose application failed to start.
STARTUP_FAILURE = 3
#: uvicorn's C HTTP parser and C event loop (asyncio's where uvloop does not run, as in
#: the project's dependency marker): about a fifth less CPU per request than h11 and
#: asyncio's loop (decision 0008). Named, not left to uvicorn's "auto", so that a missing
#: package stops the server at once instead of slowing it down unnoticed.
HTTP = "httptools"
LOOP = (
    "asyncio"
    if sys.platform in ("win32", "cygwin") or platform.python_implementation() == "PyPy"
    else "uvloop"
)

log = logging.getLogger("uvicorn.error")


# -- the serving process -------------------------------------------------------------------


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    channel: socket.socket
    restart: bool = False
    begun: float = field(default_factory=time.monotonic)
    started: bool = False


class Supervisor:
    """Accepts on ``listener`` and deals the connections out to ``workers`` processes."""

    def __init__(self, listener: socket.socket, workers: int, log_level: str = "info") -> None:
        if workers < 2:
            raise ValueError("a supervisor deals connections to two or more workers")
        self.listener = listener
        self.count = workers
        self.log_level = log_level
        self.workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._turn = 0
        self._stop = threading.Event()
        self._status = 0

    # Workers -------------------------------------------------------------------------

    def _spawn(self, number: int, *, restart: bool = False) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "api.workers", str(theirs.fileno()), self.log_level],
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        ours.settimeout(5.0)  # a worker that stops reading is passed over, not waited for
        log.info("Started worker %d [%d]", number, process.pid)
        return _Worker(number, process, ours, restart)

    def _deal(self, connection: socket.socket) -> None:
        """Hand ``connection`` to the next worker that serves (or, if none does yet, to the
        next one at all: it is served once that worker is up)."""
        with self._lock:
            workers = list(self.workers)
            first = self._turn
            self._turn = (self._turn + 1) % len(workers)
        ordered = workers[first:] + workers[:first]
        for worker in sorted(ordered, key=lambda w: not w.started):  # stable: keeps turns
            with contextlib.suppress(OSError):
                socket.send_fds(worker.channel, [CONNECTION], [connection.fileno()])
                return
        log.warning("no worker could take a connection; closed it")

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.01)  # e.g. out of file descriptors for a moment
                continue
            with connection:
                self._deal(connection)

    def _watch(self) -> None:
        """Note workers that serve; start dead ones again; stop if one cannot start."""
        waiting = {w.channel: w for w in self.workers if not w.started}
        if waiting:
            readable, _, _ = select.select(list(waiting), [], [], 0.2)
            for channel in readable:
                with contextlib.suppress(OSError):
                    if channel.recv(16) == STARTED:
                        worker = waiting[channel]
                        worker.started = True
                        log.info("Worker %d [%d] is serving", worker.number, worker.process.pid)
        else:
            self._stop.wait(0.2)
        for index, worker in enumerate(list(self.workers)):
            code = worker.process.poll()
            age = time.monotonic() - worker.begun
            if code is None and (worker.started or age < START_TIMEOUT):
                continue
            if not worker.started and not worker.restart:
                # A first start that fails (bad settings, database unreachable) stops the
                # server, as uvicorn does, rather than trying for ever.
                log.error("Worker %d [%d] did not start (exit status %s); stopping",
                          worker.number, worker.process.pid, code)  # fmt: skip
                self._status = STARTUP_FAILURE
                self._stop.set()
                return
            if not worker.started and age < 1.0:
                continue  # a restart that failed at once: try again after a second
            if code is None:  # a restart that hung in its startup
                worker.process.kill()
                code = worker.process.wait()
            log.warning("Worker %d [%d] exited with status %s; starting it again",
                        worker.number, worker.process.pid, code)  # fmt: skip
            replacement = self._spawn(worker.number, restart=True)
            with self._lock:
                self.workers[index] = replacement
            worker.channel.close()

    # Running ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status for the command."""
        self.listener.listen(2048)
        previous: dict[int, Callable[..., object] | int | None] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: self._stop.set())
        host, port = self.listener.getsockname()[:2]
        log.info("Started supervisor process [%d], dealing connections on %s:%d to %d workers",
                 os.getpid(), host, port, self.count)  # fmt: skip
        try:
            self.workers = [self._spawn(n) for n in range(1, self.count + 1)]
            acceptor = threading.Thread(target=self._accept, name="accept", daemon=True)
            acceptor.start()
            while not self._stop.is_set():
                self._watch()
        finally:
            self._stop.set()
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._shutdown()
            for number, handler in previous.items():
                signal.signal(number, handler)
        log.info("Stopped supervisor process [%d]", os.getpid())
        return self._status

    def _shutdown(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("Worker %d [%d] did not stop; killed it",
                            worker.number, worker.process.pid)  # fmt: skip
                worker.process.kill()
                worker.process.wait()
            worker.channel.close()


def serve(listener: socket.socket, workers: int, log_level: str = "info") -> int:
    """Run ``workers`` worker processes behind ``listener`` (bound, not yet listening)."""
    uvicorn.Config(APP, factory=True, log_level=log_level, http=HTTP, loop=LOOP)  # its loggers
    return Supervisor(listener, workers, log_level).run()


# -- a worker process ----------------------------------------------------------------------


async def _serve_handed_connections(server: uvicorn.Server, channel: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(server.serve(sockets=[]))
    while not server.started:
        if serving.done():
            await serving  # startup failed: uvicorn exits with its status
            return
        await asyncio.sleep(0.01)
    config = server.config

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )

    async def connect(connection: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(protocol, connection)
        except OSError:  # reset before it could be served
            connection.close()

    pending: set[asyncio.Task[None]] = set()

    def receive() -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(channel, 16, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:  # the supervisor is gone
                loop.remove_reader(channel.fileno())
                server.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                if server.should_exit:
                    connection.close()
                    continue
                task = loop.create_task(connect(connection))
                pending.add(task)
                task.add_done_callback(pending.discard)

    channel.setblocking(False)
    channel.send(STARTED)
    loop.add_reader(channel.fileno(), receive)
    try:
        await serving
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(channel.fileno())


def worker_main(channel_fd: int, log_level: str) -> None:
    channel = socket.socket(fileno=channel_fd)
    config = uvicorn.Config(APP, factory=True, log_level=log_level, http=HTTP, loop=LOOP)
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve_handed_connections(server, channel))


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), sys.argv[2])
