"""HTTP append throughput: app-signed events through a real server on loopback.

``evidence-ledger serve --workers 2`` runs on a fresh data dir (SQLite) or a scratch
PostgreSQL database, with a tenant, an app API key and a registered Ed25519 app key made
beforehand through :class:`api.tenancy.TenantStore` on the same database. Client
processes pre-sign every request body (JWS, EdDSA over RFC 8785, as an upstream app
does) before the clock starts, then send them over keep-alive HTTP/1.1 connections:

* **batch**: ``POST /v1/events/batch`` with 100 events per request, each with its own
  signature, for ``--seconds``: events/s (issue target >= 6,000/s, every signature
  verified by the server);
* **single**: ``POST /v1/events`` with one event per request: requests/s (target >=
  1,000/s) with p50 / p99 latency.

In the same run it measures the machine's Ed25519 verification rate (one process, and one
per core at once) with libsodium, as the server verifies, and reports the batch rate as a
fraction of it: that is the ceiling of a server that verifies every signature with it on
this machine. OpenSSL's rate (``cryptography``, as the offline verifier checks) is measured
and reported beside it, the denominator of runs before decision 0009.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg import sql

from benchmarks.common import RESULTS, TASK_EVENT_TYPES, print_table, write_result

BATCH_TARGET = 6000.0
SINGLE_TARGET = 1000.0
EVENTS_PER_BATCH = 100
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = f"bench_api_{os.getpid()}"
KID = "bench-app-1"


# -- what an upstream app sends -------------------------------------------------------------


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uuid7() -> str:
    from ledger.events import new_event_id

    return str(new_event_id())


class App:
    """Signs event bodies as an upstream app does: detached JWS, EdDSA, over RFC 8785."""

    def __init__(self, private_key: bytes) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.protected = _b64url(orjson.dumps({"alg": "EdDSA", "kid": KID}))
        self.stream = str(uuid.uuid4())
        self.position = 0

    def body(self) -> dict[str, Any]:
        """The next event: tasks of ten acts, as in the append benchmark."""
        if self.position % len(TASK_EVENT_TYPES) == 0:
            self.stream = str(uuid.uuid4())
        type_ = TASK_EVENT_TYPES[self.position % len(TASK_EVENT_TYPES)]
        self.position += 1
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        factors = (
            [
                {
                    "factor": "sms_otp",
                    "method": "sms",
                    "result": "passed",
                    "verified_at": now,
                    "provider_reference": "gw-1",
                }
            ]
            if type_ in ("identity.verified", "document.signed")
            else []
        )
        return {
            "event_id": _uuid7(),
            "client_time": now,
            "stream_id": self.stream,
            "type": type_,
            "actor": {
                "id": "u-1",
                "display_name": "王芳 Wang Fang",
                "organisation": "ACME",
                "role": "approver",
            },
            "context": {
                "ip": "203.0.113.9",
                "user_agent": "Mozilla/5.0 (iPhone) DingTalk/7.6",
                "device_id": "dev-1",
                "platform": "ios",
                "request_id": "req-1",
            },
            "identity_factors": factors,
            "data": {"amount": "6000.00", "currency": "HKD", "step": self.position},
        }

    def sign(self, body: dict[str, Any]) -> str:
        import rfc8785

        payload = _b64url(rfc8785.dumps(body))
        signature = self.key.sign(f"{self.protected}.{payload}".encode())
        return f"{self.protected}..{_b64url(signature)}"


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    events: int

    def wire(self) -> bytes:
        """The request as sent: HTTP/1.1 head and body, in one piece."""
        head = [f"POST {self.path} HTTP/1.1", "Host: 127.0.0.1"]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        head.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


def presign(app: App, api_key: str, kind: str, count: int) -> list[Request]:
    requests: list[Request] = []
    for _ in range(count):
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        }
        if kind == "batch":
            members = []
            for _ in range(EVENTS_PER_BATCH):
                body = app.body()
                members.append({"event": body, "jws": app.sign(body)})
            requests.append(
                Request("/v1/events/batch", orjson.dumps({"events": members}), headers, 100)
            )
        else:
            body = app.body()
            headers["JWS-Signature"] = app.sign(body)
            requests.append(Request("/v1/events", orjson.dumps(body), headers, 1))
    return requests


# -- client processes --------------------------------------------------------------------------


class Connection:
    """A keep-alive HTTP/1.1 connection that sends whole pre-built requests and reads the
    answers (``Content-Length`` bodies, which is what the event routes send).

    The clients share the server's two vCPUs, so they stay as light as they can:
    ``http.client`` parses every answer's headers with the ``email`` package, which cost
    more of the machine than this.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, wire: bytes) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        self.sock.sendall(wire)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise OSError(f"an answer without Content-Length: {head[:300]!r}")
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _client(
    port: int,
    api_key: str,
    private_key: bytes,
    kind: str,
    count: int,
    threads: int,
    seconds: float,
    barrier: Barrier,
    results: Any,
) -> None:
    """Pre-sign ``count`` requests, wait for the others, send until the time is up."""
    app = App(private_key)
    requests = [(r.wire(), r.events) for r in presign(app, api_key, kind, count + 2 * threads)]
    warm, requests = requests[: 2 * threads], requests[2 * threads :]
    queue = iter(requests)
    lock = threading.Lock()
    latencies: list[float] = []
    events = 0
    failures: list[str] = []

    connections = [Connection(port) for _ in range(threads)]
    for i, (wire, _) in enumerate(warm):
        try:
            status, payload = connections[i % threads].exchange(wire)
        except OSError as exc:
            status, payload = 0, repr(exc).encode()
        if status != 201:
            failures.append(f"warm-up: {status} {payload[:300]!r}")
            connections[i % threads].close()
            connections[i % threads] = Connection(port)
    barrier.wait(timeout=600)
    deadline = time.perf_counter() + seconds
    cpu_at_start = time.process_time()

    def worker(conn: Connection) -> None:
        nonlocal events
        mine: list[float] = []
        done = 0
        while time.perf_counter() < deadline:
            with lock:
                request = next(queue, None)
            if request is None:
                failures.append("ran out of pre-signed requests")
                break
            wire, count = request
            start = time.perf_counter()
            try:
                status, payload = conn.exchange(wire)
            except OSError as exc:
                failures.append(repr(exc))
                break
            mine.append(time.perf_counter() - start)
            if status != 201:
                failures.append(f"{status} {payload[:300]!r}")
                break
            done += count
        with lock:
            latencies.extend(mine)
            events += done

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(c,)) for c in connections]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_at_start
    for conn in connections:
        conn.close()
    results.put(
        {
            "events": events,
            "latencies": latencies,
            "elapsed": elapsed,
            "failures": failures,
            "cpu": cpu,
        }
    )


def load(
    port: int,
    api_key: str,
    private_key: bytes,
    kind: str,
    *,
    clients: int,
    threads: int,
    seconds: float,
    ceiling: float,
    cpu_of: int | None = None,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``clients`` processes of ``threads`` connections each for ``seconds``.

    With ``cpu_of`` (the server's pid), the CPU its processes use while the clients send
    (not while they pre-sign) goes into ``cpu``, with the machine's busy share.
    """
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients + 1)
    results = context.Queue()
    per_request = EVENTS_PER_BATCH if kind == "batch" else 1
    count = int(ceiling * seconds / per_request / clients) + 1
    processes = [
        context.Process(
            target=_client,
            args=(port, api_key, private_key, kind, count, threads, seconds, barrier, results),
        )
        for _ in range(clients)
    ]
    for p in processes:
        p.start()
    barrier.wait(timeout=600)
    started = time.perf_counter()
    if cpu_of is not None and cpu is not None:
        with cpu_account(cpu_of, cpu):
            parts = [results.get(timeout=seconds + 300) for _ in processes]
    else:
        parts = [results.get(timeout=seconds + 300) for _ in processes]
    elapsed = time.perf_counter() - started
    for p in processes:
        p.join()
    latencies = sorted(x for part in parts for x in part["latencies"])
    events = sum(part["events"] for part in parts)
    failures = [f for part in parts for f in part["failures"]]
    requests = len(latencies)
    client_cpu = sum(part["cpu"] for part in parts)
    return {
        "kind": kind,
        "clients": clients,
        "connections": clients * threads,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "events": events,
        "events_per_s": round(events / elapsed, 1),
        "requests_per_s": round(requests / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p90_ms": round(_percentile(latencies, 0.90) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else 0.0,
        "client_cpu_s": round(client_cpu, 2),
        "client_cpu_us_per_request": round(client_cpu / requests * 1e6) if requests else None,
        "failures": failures[:5],
    }


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- Ed25519 verification: the ceiling -------------------------------------------------------


def _verify_for(seconds: float, library: str, results: Any) -> None:
    from api.jws import ed25519_verify

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    app = App(key.private_bytes_raw())
    body = app.body()
    message = f"{app.protected}.{_b64url(orjson.dumps(body))}".encode()
    signature = key.sign(message)
    done = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        if library == "libsodium":
            for _ in range(200):
                assert ed25519_verify(raw, signature, message)
        else:
            for _ in range(200):
                public.verify(signature, message)
        done += 200
    results.put(done / (time.perf_counter() - start))


def verification_rate(processes: int, seconds: float = 3.0, library: str = "libsodium") -> float:
    """Ed25519 verifications/s of a realistic signing input, ``processes`` at once.

    ``libsodium`` is what the server verifies with (``api.jws.ed25519_verify``); ``openssl``
    is ``cryptography``, which the offline verifier uses.
    """
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    pool = [
        context.Process(target=_verify_for, args=(seconds, library, results))
        for _ in range(processes)
    ]
    for p in pool:
        p.start()
    rates = [results.get(timeout=seconds + 60) for _ in pool]
    for p in pool:
        p.join()
    return float(sum(rates))


# -- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    port: int
    api_key: str
    private_key: bytes
    backend: str
    process: subprocess.Popen[bytes]
    log: Path


def _prepare(data_dir: Path, database_url: str | None) -> tuple[str, bytes]:
    """Make the ledger's tables, a tenant, an app API key and a registered app key."""
    from api.tenancy import TenantStore
    from ledger.app import Ledger
    from ledger.settings import Settings

    with Ledger.open(Settings(data_dir=data_dir, database_url=database_url)) as ledger:
        tenants = TenantStore(ledger.store)
        try:
            tenant = tenants.create_tenant("Bench")
            api_key = tenants.create_api_key(tenant, "app", "benchmark")
            private = Ed25519PrivateKey.generate()
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            assert tenants.register_app_key(tenant, "bench-oa", KID, public)
        finally:
            tenants.close()
    return api_key, private.private_bytes_raw()


@contextmanager
def server(backend: str, postgres_url: str, workers: int) -> Iterator[Server]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="api-", dir=RESULTS))
    database_url: str | None = None
    if backend == "postgres":
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
            )
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        database_url = urlparse(postgres_url)._replace(path=f"/{DATABASE}").geturl()
    process: subprocess.Popen[bytes] | None = None
    try:
        api_key, private_key = _prepare(directory / "data", database_url)
        port = _free_port()
        command = [
            str(Path(sys.executable).with_name("evidence-ledger")),
            "serve",
            "--workers",
            str(workers),
            "--port",
            str(port),
            "--data-dir",
            str(directory / "data"),
        ]
        if database_url:
            command += ["--database-url", database_url]
        log = directory / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_LEDGER_")}
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        _wait_ready(port, api_key, process)
        yield Server(port, api_key, private_key, backend, process, log)
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)
        if backend == "postgres":
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(DATABASE)
                    )
                )


def _wait_ready(port: int, api_key: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v1/log/entries?start=0&end=1", headers=_auth(api_key))
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer within 60 s")


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def tree_size(port: int, api_key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/v1/log/entries?start=0&end=1", headers=_auth(api_key))
    size: int = orjson.loads(conn.getresponse().read())["tree_size"]
    conn.close()
    return size


# -- where the CPU went -------------------------------------------------------------------------


def _server_pids(root: int) -> list[int]:
    """``root`` and its descendants (the uvicorn workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def _machine_busy() -> tuple[float, float]:
    """CPU seconds (busy, total) of the whole machine since boot."""
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / ticks, sum(values) / ticks


@contextmanager
def cpu_account(root: int, into: dict[str, Any]) -> Iterator[None]:
    """Record the server's CPU (each worker) and the machine's busy share while it runs."""
    pids = _server_pids(root)
    before, machine = _cpu_seconds(pids), _machine_busy()
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    after, machine_after = _cpu_seconds(pids), _machine_busy()
    per = [round(after[p] - before.get(p, 0.0), 2) for p in pids if p in after]
    into["server_cpu_s"] = round(sum(per), 2)
    into["server_cpu_per_process_s"] = per
    into["machine_busy_share"] = round(
        (machine_after[0] - machine[0]) / max(machine_after[1] - machine[1], 1e-9), 3
    )
    into["accounted_s"] = round(elapsed, 2)


# -- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    nproc = os.cpu_count() or 1
    print("Ed25519 verification, 3 s each ...", flush=True)
    one_core = verification_rate(1)
    all_cores = verification_rate(nproc)
    print(
        f"  libsodium (the server's): 1 process {one_core:,.0f}/s; "
        f"{nproc} processes {all_cores:,.0f}/s",
        flush=True,
    )
    openssl_one = verification_rate(1, library="openssl")
    openssl_all = verification_rate(nproc, library="openssl")
    print(
        f"  OpenSSL (cryptography, the verifier's): 1 process {openssl_one:,.0f}/s; "
        f"{nproc} processes {openssl_all:,.0f}/s",
        flush=True,
    )
    results: dict[str, Any] = {
        "verify_library": "libsodium",
        "verify_one_core": round(one_core, 1),
        "verify_all_cores": round(all_cores, 1),
        "openssl_verify_one_core": round(openssl_one, 1),
        "openssl_verify_all_cores": round(openssl_all, 1),
        "workers": args.api_workers,
        "seconds": args.api_seconds,
    }
    rows: list[list[Any]] = []
    backends = ["sqlite"] if args.skip_postgres else ["sqlite", "postgres"]
    code = 0
    for backend in backends:
        try:
            context = server(backend, args.postgres_url, args.api_workers)
            srv = context.__enter__()
        except (psycopg.Error, OSError, RuntimeError) as exc:
            print(f"{backend}: skipped, cannot set up: {exc}")
            results[backend] = {"skipped": str(exc)}
            continue
        try:
            measured: dict[str, Any] = {}
            for kind, clients, threads, ceiling in (
                ("batch", args.api_clients, 1, 14_000.0),
                ("single", args.api_clients, args.api_threads, 3_000.0),
            ):
                before = tree_size(srv.port, srv.api_key)
                print(f"{backend} {kind}: pre-signing, then {args.api_seconds} s ...", flush=True)
                cpu: dict[str, Any] = {}
                row = load(
                    srv.port,
                    srv.api_key,
                    srv.private_key,
                    kind,
                    clients=clients,
                    threads=threads,
                    seconds=args.api_seconds,
                    ceiling=ceiling,
                    cpu_of=srv.process.pid,
                    cpu=cpu,
                )
                row.update(cpu)
                if row["events"]:
                    per_event = cpu["server_cpu_s"] / row["events"]
                    row["server_cpu_us_per_event"] = round(per_event * 1e6)
                grown = tree_size(srv.port, srv.api_key) - before
                warm = clients * threads * 2 * (EVENTS_PER_BATCH if kind == "batch" else 1)
                row["log_grew_by"] = grown
                row["log_matches"] = grown == row["events"] + warm
                if kind == "batch":
                    row["target"] = BATCH_TARGET
                    row["target_met"] = row["events_per_s"] >= BATCH_TARGET
                    row["of_verify_all_cores"] = round(row["events_per_s"] / all_cores, 3)
                    row["of_verify_one_core"] = round(row["events_per_s"] / one_core, 3)
                    row["of_openssl_verify_all_cores"] = round(row["events_per_s"] / openssl_all, 3)
                    rate = f"{row['events_per_s']:,.0f} events/s"
                else:
                    row["target"] = SINGLE_TARGET
                    row["target_met"] = row["requests_per_s"] >= SINGLE_TARGET
                    rate = f"{row['requests_per_s']:,.0f} requests/s"
                if row["failures"] or not row["log_matches"]:
                    code = 1
                print(
                    f"  {rate}, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; server CPU "
                    f"{row.get('server_cpu_per_process_s')} s, clients' CPU "
                    f"{row['client_cpu_us_per_request']} µs per request, machine busy "
                    f"{row.get('machine_busy_share', 0):.0%}"
                    f"{'; FAILURES ' + str(row['failures']) if row['failures'] else ''}",
                    flush=True,
                )
                measured[kind] = row
                rows.append(
                    [
                        backend,
                        kind,
                        row["connections"],
                        row["events_per_s"],
                        row["requests_per_s"],
                        row["p50_ms"],
                        row["p99_ms"],
                        "yes" if row["target_met"] else "NO",
                        row.get("of_verify_all_cores", "-"),
                    ]
                )
            results[backend] = measured
        finally:
            context.__exit__(None, None, None)
    print()
    print_table(
        [
            "backend",
            "kind",
            "conns",
            "events/s",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "target",
            "÷ verify",
        ],
        rows,
    )
    path = write_result("api", results)
    print(f"\nwrote {path}")
    return code
