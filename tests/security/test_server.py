"""Attacks on the wire against a real ``evidence-ledger serve`` (uvicorn) on loopback.

What a test client cannot show: a body refused from its declared length while the client
is still sending it, raw CR and LF in header values where uvicorn's HTTP parser sees them,
and what the server writes to its logs (uvicorn's access log included) while keys, bad
keys and signed requests go by: no API key, no ``Authorization`` value, no private key
material may appear in any line.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api import jws
from ledger.app import Ledger
from ledger.settings import Settings
from projections.database import database_for
from tests.api.conftest import Tenant
from tests.api.test_events import event_body

BIN = Path(sys.executable).parent


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    log: Path
    tenant: Tenant
    admin_key: str
    process: subprocess.Popen[bytes]

    def counts(self) -> tuple[int, int, int]:
        """(events, idempotency records, documents), read from the server's own database."""
        with Ledger.open(Settings(data_dir=self.data_dir)) as ledger:
            database = database_for(ledger.store)
            try:
                return tuple(  # type: ignore[return-value]
                    int(database.query(f"SELECT COUNT(*) FROM {table}")[0][0])
                    for table in ("stored_events", "api_idempotency", "api_documents")
                )
            finally:
                database.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "evidence-ledger"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("served") / "data"
    env = {**os.environ, "EVIDENCE_LEDGER_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("EVIDENCE_LEDGER_DATABASE_URL", None)
    made = _cli("tenant", "create", "Acme", env=env)
    admin_key = re.search(r"(elk_[0-9a-f]{16}_[A-Za-z0-9_-]+)", made)
    assert admin_key, made
    port = _free_port()
    log = data_dir.parent / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "evidence-ledger"), "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        admin = {"Authorization": f"Bearer {admin_key.group(1)}"}
        keys = {}
        for role in ("app", "legal"):
            answer = httpx.post(
                f"{url}/v1/api-keys",
                json={"role": role, "label": f"{role} key"},
                headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert answer.status_code == 201, answer.text
            keys[role] = answer.json()["api_key"]
        keys["admin"] = admin_key.group(1)
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        registered = httpx.post(
            f"{url}/v1/app-keys",
            json={"app_id": "acme-oa", "kid": "acme-1", "public_key": jws.b64url(public)},
            headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert registered.status_code == 201, registered.text
        tenant_id = re.search(r"tenant: (\S+)", made)
        assert tenant_id
        tenant = Tenant(tenant_id.group(1), keys, private, "acme-1")
        yield Server(url, port, data_dir, log, tenant, admin_key.group(1), process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _raw(server: Server, head: bytes, body: bytes = b"", *, wait: float = 10) -> bytes:
    """Send ``head`` (and ``body``) on a fresh connection; what the server answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as connection:
        connection.sendall(head + body)
        answer = b""
        deadline = time.monotonic() + wait
        while b"\r\n\r\n" not in answer or not _complete(answer):
            if time.monotonic() > deadline:
                break
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def test_a_declared_length_over_the_limit_is_answered_before_the_body_is_sent(
    server: Server,
) -> None:
    """10 GB announced, 1 KiB sent: the 413 comes back at once, while the client would
    still be sending, and nothing is stored."""
    before = server.counts()
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + server.tenant.keys["app"].encode() + b"\r\n"
        b"Idempotency-Key: " + uuid.uuid4().hex.encode() + b"\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw(server, head, b"{" + b" " * 1023)
    assert time.monotonic() - started < 5
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Content Too Large" or status.startswith(b"HTTP/1.1 413"), answer
    assert b"content-type: application/problem+json" in rest.lower()
    body = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["type"].endswith("/body-too-large") and "1048576 bytes" in body["detail"]
    # The same for an upload announced past the upload limit.
    upload = head.replace(b"/v1/events", b"/v1/documents").replace(
        b"application/json", b"multipart/form-data; boundary=x"
    )
    answer = _raw(server, upload, b"--x\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"document-too-large" in answer
    assert server.counts() == before


@pytest.mark.parametrize(
    ("header", "refusal"),
    [
        (b"Idempotency-Key: abc\rX-Injected: 1", b"422 /invalid-idempotency-key"),
        (b"Idempotency-Key: abc\x00def", b"422 /invalid-idempotency-key"),
        (b"Idempotency-Key: abc\x1bdef", b"422 /invalid-idempotency-key"),
        (b"X-Forwarded-For: 198.51.100.7\rX-Injected: 1", b"201"),
        (b"JWS-Signature: a\x7f..b", b"401 /bad-signature"),
    ],
)
def test_raw_control_characters_in_header_values_are_refused_on_the_wire(
    server: Server, header: bytes, refusal: bytes
) -> None:
    """RFC 9110 section 5.5: CR, NUL and other controls are not allowed in field values.
    Either the server's HTTP parser refuses the request (400) before the application sees
    it, or the application refuses the value with its own problem; a garbage
    X-Forwarded-For from a peer that is no trusted proxy is ignored. Nothing is stored
    but that one event, and no injected header ever comes back."""
    before = server.counts()
    body = event_body()
    signature = server.tenant.sign(body)
    payload = orjson.dumps(body)
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + server.tenant.keys["app"].encode() + b"\r\n"
        b"JWS-Signature: " + signature.encode() + b"\r\n" + header + b"\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n"
    )
    if header.startswith(b"JWS-Signature"):
        head = head.replace(b"JWS-Signature: " + signature.encode() + b"\r\n", b"")
    if not header.startswith(b"Idempotency-Key"):
        head = head.replace(
            b"\r\n\r\n", b"\r\nIdempotency-Key: " + uuid.uuid4().hex.encode() + b"\r\n\r\n"
        )
    answer = _raw(server, head, payload)
    assert b"x-injected" not in answer.lower()
    if answer.startswith(b"HTTP/1.1 400"):
        assert server.counts() == before
        return
    status, _, kind = refusal.partition(b" ")
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    if kind:
        assert b"application/problem+json" in answer and kind + b'"' in answer, answer
        assert server.counts() == before
    else:
        assert server.counts()[0] == before[0] + 1


def test_a_line_feed_in_a_header_starts_a_new_header_never_an_answer_header(
    server: Server,
) -> None:
    """``Idempotency-Key: abc\\nX-Injected: 1``: a bare LF ends the line (RFC 9112 section 2.2
    lets a server take it as a line end), so X-Injected is just one more request header; the
    event is stored once under key ``abc`` and X-Injected appears in no answer."""
    body = event_body()
    payload = orjson.dumps(body)
    key = uuid.uuid4().hex
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + server.tenant.keys["app"].encode() + b"\r\n"
        b"JWS-Signature: " + server.tenant.sign(body).encode() + b"\r\n"
        b"Idempotency-Key: " + key.encode() + b"\nX-Injected: 1\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n"
    )
    answer = _raw(server, head, payload)
    assert answer.startswith((b"HTTP/1.1 201", b"HTTP/1.1 400")), answer
    assert b"x-injected" not in answer.lower()


def test_flows_with_good_and_bad_keys_run(server: Server) -> None:
    """Traffic for the log check below: signed events, uploads, bad keys of every shape,
    a key sent in the query string by a careless client, a revoked key."""
    t = server.tenant
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            body = event_body()
            answer = client.post("/v1/events", json=body, headers=t.signed_headers(body))
            assert answer.status_code == 201, answer.text
        good = t.keys["app"]
        key_id = good.split("_")[1]
        for bad in (
            good[:-1] + ("A" if good[-1] != "A" else "B"),
            f"elk_{key_id}_not-the-secret",
            "elk_0000000000000000_" + "s" * 40,
            "Basic " + base64.b64encode(b"admin:hunter2").decode(),
        ):
            answer = client.get("/v1/tasks", headers={"Authorization": f"Bearer {bad}"})
            assert answer.status_code == 401
        answer = client.get("/v1/tasks", params={"api_key": good})
        assert answer.status_code == 401
        answer = client.get(f"/v1/tasks?token={good}", headers=t.auth("legal"))
        assert answer.status_code == 200
        made = client.post(
            "/v1/api-keys",
            json={"role": "auditor"},
            headers={"Authorization": f"Bearer {server.admin_key}", "Idempotency-Key": "k1"},
        )
        assert made.status_code == 201
        t.keys["auditor"] = made.json()["api_key"]
        revoked = client.delete(
            f"/v1/api-keys/{t.keys['auditor'].split('_')[1]}",
            headers={"Authorization": f"Bearer {server.admin_key}"},
        )
        assert revoked.status_code == 204
        assert client.get("/v1/tasks", headers=t.auth("auditor")).status_code == 401


def test_no_secret_appears_in_the_server_log(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)
    server.process.wait(timeout=30)
    text = server.log.read_text(errors="replace")
    assert "GET /v1/tasks" in text, "the access log is on: " + text[-2000:]
    secrets = _secrets(server)
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"{len(leaked)} secrets in the log, e.g. {leaked[0][:12]}…"
    assert "elk_" not in text
    assert "Bearer" not in text and "hunter2" not in text


def _secrets(server: Server) -> list[str]:
    """Every API key and its secret half, and the private keys under the data dir."""
    found: list[str] = []
    for key in [*server.tenant.keys.values(), server.admin_key]:
        # ``prefix_keyid_secret``, and the secret (base64url) may hold "_" itself.
        found += [key, key.split("_", 2)[2]]
    raw = server.tenant.app_key.private_bytes_raw()
    found += [jws.b64url(raw), base64.b64encode(raw).decode(), raw.hex()]
    keys = server.data_dir / "keys"
    for path in keys.iterdir():
        for line in path.read_text(errors="replace").splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                found.append(line.strip())
    return found
