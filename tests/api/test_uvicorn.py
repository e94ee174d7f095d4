"""The API under a real uvicorn on loopback: two workers on PostgreSQL, two clients at once.

``evidence-ledger serve --workers 2`` runs as a subprocess over a fresh PostgreSQL schema;
two client threads create and drive tasks over real HTTP at the same time. Every act the
server acknowledged must be in the log exactly once, the leaves must be gap-free, and
``evidence-ledger audit`` must pass after the server has stopped cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.tenancy import TenantStore
from ledger.app import Ledger
from ledger.settings import Settings
from ledger.workflow import Directory
from tests.api.conftest import DIRECTORY, Tenant, actor, end_user, now_text

pytestmark = pytest.mark.postgres

TASKS_PER_CLIENT = 4
STEPS = [
    {
        "key": "head",
        "title": "Head",
        "role": "approver",
        "mode": "sequential",
        "participants": [{"user": "u-wong"}],
    },
    {
        "key": "finance",
        "title": "Finance",
        "role": "approver",
        "mode": "countersign",
        "participants": [{"user": "u-lee"}, {"user": "u-ho"}],
    },
]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_tenant(settings: Settings) -> Tenant:
    with Ledger.open(settings) as ledger:
        tenants = TenantStore(ledger.store)
        try:
            tenant_id = tenants.create_tenant("Acme")
            keys = {r: tenants.create_api_key(tenant_id, r) for r in ("app", "auditor")}
            private = Ed25519PrivateKey.generate()
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            assert tenants.register_app_key(tenant_id, "acme-oa", "acme-1", public)
            tenants.put_directory(tenant_id, Directory.from_json(DIRECTORY))
        finally:
            tenants.close()
    return Tenant(tenant_id, keys, private, "acme-1")


def _post(client: httpx.Client, tenant: Tenant, path: str, fields: dict[str, Any]) -> Any:
    body = {"event_id": str(uuid.uuid4()), "client_time": now_text(), **fields}
    answer = client.post(path, json=body, headers=tenant.signed_headers(body))
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _drive(base: str, tenant: Tenant, receipts: list[dict[str, Any]], errors: list[str]) -> None:
    """Create and complete tasks; keep every receipt the server acknowledged."""
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for number in range(TASKS_PER_CLIENT):
                made = _post(
                    client,
                    tenant,
                    "/v1/tasks",
                    {
                        "actor": actor("u-chen"),
                        "context": end_user(),
                        "steps": STEPS,
                        "title": f"Concurrent task {number}",
                    },
                )
                task = made["task_id"]
                receipts += made["receipts"]
                for action, user in (
                    ("submit", "u-chen"),
                    ("approve", "u-wong"),
                    ("approve", "u-lee"),
                    ("approve", "u-ho"),
                ):
                    done = _post(
                        client,
                        tenant,
                        f"/v1/tasks/{task}/actions/{action}",
                        {"actor": actor(user), "context": end_user()},
                    )
                    receipts += done["receipts"]
                assert done["state"]["status"] == "completed"
    except BaseException as exc:  # reported by the main thread
        errors.append(repr(exc))


def _wait_until_up(base: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_two_workers_two_clients_every_acknowledged_act_is_logged_once(
    postgres_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, database_url=postgres_url)
    tenant = _make_tenant(settings)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_LEDGER_")}
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [
            str(BIN / "evidence-ledger"),
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--database-url",
            postgres_url,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        _wait_until_up(base, server)
        receipts: list[dict[str, Any]] = []
        errors: list[str] = []
        clients = [
            threading.Thread(target=_drive, args=(base, tenant, receipts, errors)) for _ in range(2)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=300)
        assert not errors, errors
        # 2 clients x tasks x (create, submit, 3 approvals, completion).
        assert len(receipts) == 2 * TASKS_PER_CLIENT * 6
        listed = httpx.get(
            f"{base}/v1/tasks?status=completed&limit=500", headers=tenant.auth("auditor")
        ).json()
        assert len(listed["tasks"]) == 2 * TASKS_PER_CLIENT
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    output = (tmp_path / "server.log").read_text(errors="replace")
    assert server.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]

    with Ledger.open(settings) as ledger:
        store = ledger.store
        size = store.tree_size()
        entries = list(store.iter_entries(size))
        assert [e.leaf_index for e in entries] == list(range(size))
        ids = [str(e.event_id) for e in entries]
        assert len(set(ids)) == len(ids) == size
        logged = {str(e.event_id): e for e in entries}
        for receipt in receipts:
            entry = logged[receipt["event_id"]]
            assert entry.leaf_index == receipt["leaf_index"]
            assert entry.leaf_hash.hex() == receipt["event_hash"]
        assert len({r["event_id"] for r in receipts}) == len(receipts) == size

    audit = subprocess.run(
        [
            str(BIN / "evidence-ledger"),
            "audit",
            "--json",
            "--data-dir",
            str(data_dir),
            "--database-url",
            postgres_url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert json.loads(audit.stdout)["passed"] is True
