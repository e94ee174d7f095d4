"""An API over a real ledger on each backend, with two tenants, every role and signing apps.

``api`` gives a :class:`ApiWorld`: a FastAPI test client (no background threads unless a
test starts them), and for each of tenants ``a`` and ``b`` an API key per role, a
registered Ed25519 app key, and helpers that sign bodies the way an upstream app does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from api import jws
from api.app import create_app
from api.security import ApiSettings
from api.tenancy import ROLES, TenantStore
from evidence.services import open_task_service
from ledger.app import Ledger
from tests.workflow import seed_template

DIRECTORY = {
    "users": {
        "u-chen": {"display_name": "陈小明", "organisation": "ACME", "department": "procurement"},
        "u-wong": {"display_name": "王经理", "organisation": "ACME", "department": "procurement"},
        "u-lee": {"display_name": "Li Finance", "organisation": "ACME", "department": "finance"},
        "u-ho": {"display_name": "何律师", "organisation": "ACME", "department": "legal"},
        "u-cheung": {"display_name": "张CFO", "organisation": "ACME", "department": "finance"},
        "u-ng": {"display_name": "Ng Compliance", "organisation": "ACME", "department": "legal"},
    },
    "roles": {
        "cfo": ["u-cheung"],
        "finance": ["u-lee"],
        "legal": ["u-ho"],
        "compliance": ["u-ng"],
    },
    "department_roles": {"procurement": {"department_head": ["u-wong"]}},
}


@dataclass
class Tenant:
    """One tenant as its callers see it: keys per role and an app signing key."""

    tenant_id: str
    keys: dict[str, str]
    app_key: Ed25519PrivateKey
    kid: str

    def auth(self, role: str = "app") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def sign(self, body: dict[str, Any], *, kid: str | None = None) -> str:
        """The JWS-Signature header value for ``body`` (detached, EdDSA over JCS)."""
        protected = jws.b64url(f'{{"alg":"EdDSA","kid":"{kid or self.kid}"}}'.encode())
        payload = jws.b64url(jws.canonical_body(body))
        signature = self.app_key.sign(f"{protected}.{payload}".encode())
        return f"{protected}..{jws.b64url(signature)}"

    def signed_headers(self, body: dict[str, Any], key: str | None = None) -> dict[str, str]:
        return {
            **self.auth("app"),
            "JWS-Signature": self.sign(body),
            "Idempotency-Key": key or uuid.uuid4().hex,
        }


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ApiWorld:
    client: TestClient
    ledger: Ledger
    tenants: TenantStore
    a: Tenant
    b: Tenant
    extra: dict[str, Any] = field(default_factory=dict)

    def post_signed(
        self, tenant: Tenant, path: str, body: dict[str, Any], key: str | None = None
    ) -> Any:
        body = {"client_time": now_text(), "event_id": str(uuid.uuid4()), **body}
        return self.client.post(path, json=body, headers=tenant.signed_headers(body, key))


def make_tenant(tenants: TenantStore, name: str) -> Tenant:
    tenant_id = tenants.create_tenant(name)
    keys = {role: tenants.create_api_key(tenant_id, role, f"{role} key") for role in ROLES}
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = f"{name.lower()}-app-1"
    assert tenants.register_app_key(tenant_id, f"{name.lower()}-oa", kid, public)
    return Tenant(tenant_id, keys, private, kid)


@pytest.fixture
def api(ledger: Ledger) -> Iterator[ApiWorld]:
    service = open_task_service(ledger)
    app = create_app(
        ledger, service, settings=ApiSettings(trusted_proxies=("10.0.0.0/8",)), background=False
    )
    tenants: TenantStore = app.state.tenants
    a, b = make_tenant(tenants, "Acme"), make_tenant(tenants, "Beta")
    with TestClient(app) as client:
        world = ApiWorld(client, ledger, tenants, a, b)
        for t in (a, b):
            put = client.put("/v1/directory", json=DIRECTORY, headers=t.auth("admin"))
            assert put.status_code == 200, put.text
            template = seed_template().to_json()
            made = client.post(
                "/v1/templates",
                json=template,
                headers={**t.auth("admin"), "Idempotency-Key": uuid.uuid4().hex},
            )
            assert made.status_code == 201, made.text
        yield world


# -- task helpers (tests of the task routes, tenant isolation, schemathesis) ------------


def actor(user: str, organisation: str = "ACME") -> dict[str, Any]:
    """An actor object for a signed act (the display name comes from the directory)."""
    return {"id": user, "organisation": organisation, "role": "user"}


def end_user(ip: str = "203.0.113.7") -> dict[str, Any]:
    """The end user's context as an app reports it."""
    return {
        "ip": ip,
        "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
        "device_id": "dev-1234",
        "platform": "ios",
        "request_id": uuid.uuid4().hex,
    }


def upload_pdf(world: ApiWorld, tenant: Tenant, data: bytes | None = None) -> str:
    """Upload a PDF for ``tenant``; its SHA-256."""
    from evidence.testing_pdfs import make_test_pdf

    pdf = data if data is not None else make_test_pdf(f"Contract {uuid.uuid4().hex[:8]}")
    answer = world.client.post(
        "/v1/documents",
        files={"file": ("contract.pdf", pdf, "application/pdf")},
        headers={**tenant.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sha256"])


def create_task(
    world: ApiWorld,
    tenant: Tenant,
    *,
    documents: list[str] | None = None,
    amount: str = "12800.00",
    title: str = "Purchase request: laptops",
    **extra: Any,
) -> dict[str, Any]:
    """Launch the seed purchase task for ``tenant`` (initiator u-chen); the 201 answer."""
    body = {
        "actor": actor("u-chen"),
        "context": end_user(),
        "template": {"id": "purchase", "version": 3},
        "title": title,
        "form": {
            "item": "Laptops",
            "amount": {"amount": amount, "currency": "HKD"},
            "cross_border": False,
        },
        "documents": documents if documents is not None else [upload_pdf(world, tenant)],
        **extra,
    }
    answer = world.post_signed(tenant, "/v1/tasks", body)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def act(world: ApiWorld, tenant: Tenant, task_id: str, action: str, by: str, **fields: Any) -> Any:
    """POST one signed act by user ``by``; the response (not checked)."""
    body = {"actor": actor(by), "context": end_user(), **fields}
    return world.post_signed(tenant, f"/v1/tasks/{task_id}/actions/{action}", body)


def revoke_after_app_key_read(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch, revoked: str
) -> None:
    """From now on, each read of an app key is followed by another worker (a
    :class:`TenantStore` of its own) revoking tenant a's app API key (``revoked="api
    key"``) or that app key, before the request that read it stores anything."""
    app_key = world.tenants.app_key

    def then_revoked(tenant_id: str, kid: str) -> Any:
        found = app_key(tenant_id, kid)
        other = TenantStore(world.ledger.store)
        try:
            if revoked == "api key":
                assert other.revoke_api_key(tenant_id, world.a.keys["app"].split("_")[1])
            else:
                assert other.revoke_app_key(tenant_id, kid)
        finally:
            other.close()
        return found

    monkeypatch.setattr(world.tenants, "app_key", then_revoked)
