"""A real ``evidence-ledger serve`` under load, faults injected, and the checks after recovery.

:class:`Deployment` is one ledger (a SQLite data dir, or a PostgreSQL database) with a
tenant, API keys and a registered app signing key. :class:`Server` runs
``evidence-ledger serve`` over it as a subprocess that can be killed and started again on
the same port. :class:`Load` drives app-signed ``POST /v1/events`` from client threads,
each request with an ``Idempotency-Key`` and a timeout, and records every answer: the
receipts acknowledged, every other status, every timeout and connection error.
:class:`CheckpointWatch` polls the latest checkpoint, keeping every signed note it sees.

:func:`check_recovered` is the verdict after a fault: every request that got no receipt is
retried with its key and body (it must now be acknowledged, once); every acknowledged event
is in the log exactly once at its receipt's leaf index; leaves run 0..n-1; every
checkpoint ever seen or stored verifies against the ledger key with the independent
verifier and is consistent with the final signed tree head; ``evidence-ledger audit``
exits 0; and no request got a 5xx other than 503, nor hung past its timeout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api import jws
from api.tenancy import TenantStore
from ledger.app import Ledger, open_store
from ledger.settings import Settings
from verifier import Checkpoint, verify_consistency
from verifier._internal.note import parse_verifier_key

BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Rounds per fault scenario: small by default so CI stays fast; the campaign sets more.
ROUNDS = int(os.environ.get("FAULT_ROUNDS", "3"))

#: Every request's timeout (connect, read, write): a request that takes longer "hung".
REQUEST_TIMEOUT = 15.0


#: Every process group the harness started; the fixtures reap what a failed test left.
CHILDREN: list[subprocess.Popen[bytes]] = []


def reap_children() -> None:
    """SIGKILL every process group the harness started that is still running."""
    while CHILDREN:
        child = CHILDREN.pop()
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``EVIDENCE_LEDGER_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_LEDGER_")}
    env.update(extra or {})
    return env


@dataclass
class Tenant:
    """The tenant the load runs as: its API keys and its app's signing key."""

    tenant_id: str
    app_key: str
    auditor_key: str
    signing_key: Ed25519PrivateKey
    kid: str

    def sign(self, body: bytes) -> str:
        """Detached JWS (EdDSA) over the RFC 8785 form of ``body``'s JSON."""
        protected = jws.b64url(f'{{"alg":"EdDSA","kid":"{self.kid}"}}'.encode())
        payload = jws.b64url(jws.canonical_body(orjson.loads(body)))
        signature = self.signing_key.sign(f"{protected}.{payload}".encode())
        return f"{protected}..{jws.b64url(signature)}"


@dataclass
class Deployment:
    """One ledger's data: a data dir and, for PostgreSQL, a database URL."""

    data_dir: Path
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every command (TSA URLs, seal interval, …)."""
    tenant: Tenant | None = None

    @property
    def backend(self) -> str:
        return "postgres" if self.database_url else "sqlite"

    def settings(self) -> Settings:
        return Settings.load(
            data_dir=self.data_dir,
            database_url=self.database_url,
            environ={k: v for k, v in self.env.items() if k.startswith("EVIDENCE_LEDGER_")},
        )

    def location_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    def create_tenant(self) -> Tenant:
        """Make the ledger (keys, tables), a tenant, its keys and a registered app key."""
        with Ledger.open(self.settings()) as ledger:
            tenants = TenantStore(ledger.store)
            try:
                tenant_id = tenants.create_tenant("Faults Trading Ltd")
                app_key = tenants.create_api_key(tenant_id, "app", "load")
                auditor_key = tenants.create_api_key(tenant_id, "auditor", "checks")
                signing_key = Ed25519PrivateKey.generate()
                public = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                assert tenants.register_app_key(tenant_id, "faults-oa", "faults-1", public)
            finally:
                tenants.close()
        self.tenant = Tenant(tenant_id, app_key, auditor_key, signing_key, "faults-1")
        return self.tenant

    def run_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "evidence-ledger"), *args, *self.location_args()],
            capture_output=True,
            text=True,
            env=clean_environment(self.env),
            timeout=timeout,
        )


class Server:
    """``evidence-ledger serve`` as a subprocess (its own process group), on a fixed port."""

    def __init__(
        self,
        deployment: Deployment,
        log_path: Path,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.deployment = deployment
        self.log_path = log_path
        self.workers = workers
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts + 1} at {now_text()} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    str(BIN / "evidence-ledger"),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    *self.deployment.location_args(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_environment({**self.deployment.env, **self.extra_env}),
                start_new_session=True,
            )
        CHILDREN.append(self.process)
        self.starts += 1
        self.wait_until_up(timeout)

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the server did not come up in {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server and every worker: no shutdown code runs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """Stop cleanly (SIGTERM); SIGKILL if it does not exit within 60 s."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise AssertionError(f"the server ignored SIGTERM:\n{self.log_tail()}") from None
        return int(self.process.returncode)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


# -- load --------------------------------------------------------------------------------


@dataclass
class Request:
    """One append as the client sent it (kept to retry with the same key and body)."""

    event_id: str
    key: str
    body: bytes
    signature: str
    started: float = 0.0
    elapsed: float = 0.0
    outcome: str = ""
    """``acked``, ``http <status> <problem type>``, ``timeout`` or ``connection``."""
    receipt: dict[str, Any] | None = None
    replayed: bool = False
    """The receipt came from the idempotency record: an earlier try had been stored."""


def event_body(stream_id: str, number: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "client_time": now_text(),
        "stream_id": stream_id,
        "type": "step.approved",
        "actor": {"id": "u-wong", "display_name": "王经理", "role": "approver"},
        "context": {
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0 (iPhone) DingTalk/7.6",
            "device_id": "dev-1",
            "platform": "ios",
            "request_id": f"req-{number}",
        },
        "data": {"amount": f"{5000 + number}.00", "currency": "HKD", "comment": "同意 approved"},
    }


class Load:
    """Client threads appending app-signed events as fast as the server answers."""

    def __init__(
        self,
        base_url: str,
        tenant: Tenant,
        *,
        clients: int = 4,
        streams_per_client: int = 3,
        pause_after_error: float = 0.05,
    ) -> None:
        self.base_url = base_url
        self.tenant = tenant
        self.clients = clients
        self.streams_per_client = streams_per_client
        self.pause_after_error = pause_after_error
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counter = 0

    # Sending -----------------------------------------------------------------------

    def new_request(self, stream_id: str) -> Request:
        with self._lock:
            self._counter += 1
            number = self._counter
        body = event_body(stream_id, number)
        raw = orjson.dumps(body)
        request = Request(body["event_id"], body["event_id"], raw, self.tenant.sign(raw))
        with self._lock:
            self.requests.append(request)
        return request

    def send(self, client: httpx.Client, request: Request) -> None:
        """POST ``request`` once and record what happened."""
        request.started = time.monotonic()
        headers = {
            "Authorization": f"Bearer {self.tenant.app_key}",
            "Content-Type": "application/json",
            "JWS-Signature": request.signature,
            "Idempotency-Key": request.key,
        }
        try:
            answer = client.post("/v1/events", content=request.body, headers=headers)
        except httpx.TimeoutException:
            request.outcome = "timeout"
            return
        except httpx.TransportError:
            request.outcome = "connection"
            return
        finally:
            request.elapsed = time.monotonic() - request.started
        if answer.status_code == 201:
            request.outcome = "acked"
            request.receipt = answer.json()
            request.replayed = answer.headers.get("idempotent-replayed") == "true"
            return
        kind = ""
        if answer.headers.get("content-type", "").startswith("application/problem+json"):
            kind = str(answer.json().get("type", "")).rsplit("/", 1)[-1]
        request.outcome = f"http {answer.status_code} {kind}".strip()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        streams = [str(uuid.uuid4()) for _ in range(self.streams_per_client)]
        client = self._client()
        try:
            while not self._stop.is_set():
                request = self.new_request(rng.choice(streams))
                self.send(client, request)
                if request.outcome != "acked":
                    # A dead server refuses at once: do not spin, and start a fresh
                    # connection rather than reuse one the server dropped.
                    client.close()
                    client = self._client()
                    self._stop.wait(self.pause_after_error)
        finally:
            client.close()

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)
            assert not thread.is_alive(), "a load client is stuck"

    @contextmanager
    def running(self) -> Iterator[Load]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # Results ------------------------------------------------------------------------

    def acknowledged(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "acked")

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.requests)

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        """Block until ``count`` more appends than now are acknowledged."""
        target = self.acknowledged() + count
        deadline = time.monotonic() + timeout
        while self.acknowledged() < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the load got no {count} acknowledgements in {timeout}s: {self.outcomes()}"
                )
            time.sleep(0.02)


class CheckpointWatch:
    """Polls ``GET /v1/log/checkpoint`` and keeps every distinct signed note it sees."""

    def __init__(self, base_url: str, tenant: Tenant, interval: float = 0.05) -> None:
        self.base_url = base_url
        self.tenant = tenant
        self.interval = interval
        self.notes: dict[int, str] = {}
        self.latest_size = 0
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.tenant.auditor_key}"}
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT) as client:
            while not self._stop.is_set():
                try:
                    answer = client.get("/v1/log/checkpoint", headers=headers)
                except httpx.TimeoutException:
                    self.failures["timeout"] += 1
                except httpx.TransportError:
                    self.failures["connection"] += 1
                else:
                    if answer.status_code == 200:
                        size = int(answer.text.split("\n")[1])
                        self.notes.setdefault(size, answer.text)
                        self.latest_size = max(self.latest_size, size)
                    else:
                        self.failures[f"http {answer.status_code}"] += 1
                self._stop.wait(self.interval)

    def wait_for_new(self, timeout: float = 30) -> int:
        """Block until a checkpoint larger than the latest seen appears; return its size."""
        seen = self.latest_size
        deadline = time.monotonic() + timeout
        while self.latest_size <= seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no new checkpoint after size {seen} in {timeout}s")
            time.sleep(0.005)
        return self.latest_size

    def __enter__(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT * 2)


# -- the verdict ---------------------------------------------------------------------------


@dataclass
class Verdict:
    """What :func:`check_recovered` found: numbers for the record."""

    requests: int
    acknowledged_first_time: int
    retried: int
    replayed: int
    tree_size: int
    checkpoints: int
    outcomes: Counter[str]

    def line(self) -> str:
        failed = {k: v for k, v in self.outcomes.items() if k != "acked"}
        return (
            f"{self.requests} requests, {self.acknowledged_first_time} acknowledged at once, "
            f"{self.retried} retried and acknowledged after recovery ({self.replayed} of them "
            f"had been stored before the fault: first answer replayed); {self.tree_size} leaves, "
            f"{self.checkpoints} checkpoints verified; failures: {failed or 'none'}"
        )


#: Answers a caller may get while a fault is on: the service is unavailable (503), or its
#: idempotent request is still being answered by the request before it (409).
ALLOWED_STATUSES = ("http 503", "http 409")


def check_answers(load: Load, *, server_killed: bool, allow_timeouts: bool = False) -> None:
    """Every failed request got a clear 503/409, or (only if the test killed the server) a
    refused or reset connection; none hung past its timeout unless ``allow_timeouts``."""
    for request in load.requests:
        outcome = request.outcome
        if outcome == "acked" or outcome.startswith(ALLOWED_STATUSES):
            continue
        if outcome == "connection" and server_killed:
            continue
        if outcome == "timeout" and allow_timeouts:
            continue
        raise AssertionError(
            f"request {request.event_id} got {outcome!r}, not a receipt, a 503/409 or a "
            f"refused connection; all outcomes: {load.outcomes()}"
        )


def retry_unacknowledged(load: Load, server: Server) -> int:
    """Send every request without a receipt again, same key and body: each must now be
    acknowledged (stored once, or its first answer replayed). Returns how many."""
    retried = 0
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
        for request in list(load.requests):
            if request.outcome == "acked":
                continue
            first = request.outcome
            load.send(client, request)
            assert request.outcome == "acked", (
                f"retrying {request.event_id} (first {first!r}) after recovery got "
                f"{request.outcome!r}"
            )
            retried += 1
    return retried


def verify_checkpoints(
    notes: Mapping[int, str], vkey: str, final_size: int, final_root: bytes, store: Any
) -> int:
    """Each signed note verifies against the ledger key with the independent verifier, and
    is consistent (RFC 9162) with the final signed tree head. Returns how many."""
    key = parse_verifier_key(vkey)
    for size, note in sorted(notes.items()):
        checkpoint = Checkpoint.from_signed_note(note, [key])
        assert checkpoint.size == size
        proof = store.consistency_proof(size, final_size) if size < final_size else []
        verify_consistency(size, final_size, checkpoint.root_hash, final_root, proof)
    return len(notes)


def wait_until_sealed(deployment: Deployment, timeout: float = 90) -> None:
    """Block until the running server itself has signed the whole tree and timestamped
    every checkpoint (recovery without an operator; the TSA's backoff is at most 60 s)."""
    store = open_store(deployment.settings())
    try:
        deadline = time.monotonic() + timeout
        while True:
            latest = store.latest_checkpoint()
            size = store.tree_size()
            waiting = store.untimestamped_checkpoints(limit=1)
            if latest is not None and latest.tree_size == size and not waiting:
                return
            assert time.monotonic() < deadline, (
                f"after {timeout:.0f}s the server has not sealed and timestamped the log "
                f"(size {size}, latest checkpoint {latest and latest.tree_size}, first "
                f"untimestamped {waiting and waiting[0].tree_size})"
            )
            time.sleep(0.1)
    finally:
        store.close()


def check_recovered(
    deployment: Deployment,
    server: Server,
    load: Load,
    seen_notes: Mapping[int, str],
    *,
    server_killed: bool = False,
    allow_timeouts: bool = False,
) -> Verdict:
    """The invariants after a fault and recovery (the server is up, the load stopped).

    ``server_killed``: the test killed the server, so refused connections were expected.
    """
    outcomes = load.outcomes()
    first_acks = outcomes.get("acked", 0)
    check_answers(load, server_killed=server_killed, allow_timeouts=allow_timeouts)
    retried = retry_unacknowledged(load, server)
    wait_until_sealed(deployment)

    stopped = server.stop()
    # uvicorn re-raises the SIGTERM it handled once shut down (one process: -15).
    assert stopped in (0, -signal.SIGTERM), (
        f"the server exited with {stopped}:\n{server.log_tail()}"
    )
    assert "Application shutdown complete" in server.log_tail(2000), server.log_tail()
    sealed = deployment.run_cli("seal")
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    vkey = deployment.run_cli("key")
    assert vkey.returncode == 0, vkey.stderr

    receipts = {r.event_id: r.receipt for r in load.requests if r.receipt is not None}
    assert len(receipts) == len(load.requests)
    with Ledger.open(deployment.settings()) as ledger:
        store = ledger.store
        size = store.tree_size()
        entries = list(store.iter_entries(size))
        assert [e.leaf_index for e in entries] == list(range(size)), "the log has gaps"
        ids = [str(e.event_id) for e in entries]
        assert len(set(ids)) == len(ids), "an event id is in the log twice"
        by_id = {str(e.event_id): e for e in entries}
        for event_id, receipt in receipts.items():
            assert receipt is not None
            entry = by_id.get(event_id)
            assert entry is not None, f"acknowledged event {event_id} is not in the log"
            assert entry.leaf_index == receipt["leaf_index"], event_id
            assert entry.leaf_hash.hex() == receipt["event_hash"], event_id
        stored = {c.tree_size: c.note for c in store.checkpoints()}
        latest = store.latest_checkpoint()
        assert latest is not None and latest.tree_size == size
        for seen_size, note in seen_notes.items():
            assert stored.get(seen_size) == note, f"checkpoint {seen_size} seen but not kept"
        count = verify_checkpoints(
            {**stored, **seen_notes}, vkey.stdout.strip(), size, latest.root_hash, store
        )
        untimestamped = store.untimestamped_checkpoints()
        assert not untimestamped, (
            f"{len(untimestamped)} checkpoints never got a timestamp, the first at size "
            f"{untimestamped[0].tree_size}"
        )

    audit = deployment.run_cli("audit", "--json")
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
    assert json.loads(audit.stdout)["passed"] is True
    log = server.log_path.read_text(errors="replace")
    assert "unexpected error on" not in log, log[log.index("unexpected error on") :][:6000]
    replayed = sum(1 for r in load.requests if r.replayed)
    return Verdict(len(load.requests), first_acks, retried, replayed, size, count, outcomes)
