"""Tenant administration over HTTP: API keys, app keys, templates, directory; problem+json."""

from __future__ import annotations

import base64
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.api.conftest import ApiWorld


def idem() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def test_no_or_bad_key_is_401_problem_json(api: ApiWorld) -> None:
    for headers in ({}, {"Authorization": "Bearer elk_0000000000000000_nope"}):
        answer = api.client.get("/v1/templates", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("/unauthenticated")


def test_roles_are_enforced(api: ApiWorld) -> None:
    answer = api.client.post(
        "/v1/api-keys", json={"role": "app"}, headers={**api.a.auth("app"), **idem()}
    )
    assert answer.status_code == 403
    assert "needs one of admin" in answer.json()["detail"]


def test_api_keys_are_made_once_and_revoked(api: ApiWorld) -> None:
    headers = {**api.a.auth("admin"), **idem()}
    made = api.client.post("/v1/api-keys", json={"role": "auditor"}, headers=headers)
    assert made.status_code == 201
    key = made.json()["api_key"]
    again = api.client.post("/v1/api-keys", json={"role": "auditor"}, headers=headers)
    assert again.json() == made.json() and again.headers["Idempotent-Replayed"] == "true"
    other = api.client.post("/v1/api-keys", json={"role": "legal"}, headers=headers)
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-key-reused")
    assert api.client.get("/v1/templates", headers={"Authorization": f"Bearer {key}"}).is_success
    # Tenant b's admin cannot revoke tenant a's key.
    key_id = made.json()["key_id"]
    assert (
        api.client.delete(f"/v1/api-keys/{key_id}", headers=api.b.auth("admin")).status_code == 404
    )
    assert (
        api.client.delete(f"/v1/api-keys/{key_id}", headers=api.a.auth("admin")).status_code == 204
    )
    gone = api.client.get("/v1/templates", headers={"Authorization": f"Bearer {key}"})
    assert gone.status_code == 401
    assert api.tenants.authenticate(key) is None


def _public_key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_app_keys_register_list_and_revoke(api: ApiWorld) -> None:
    public = _public_key()
    body = {"app_id": "oa", "kid": "oa-2", "public_key": base64.urlsafe_b64encode(public).decode()}
    made = api.client.post("/v1/app-keys", json=body, headers={**api.a.auth("admin"), **idem()})
    assert made.status_code == 201, made.text
    clash = api.client.post(
        "/v1/app-keys",
        json={**body, "public_key": base64.b64encode(_public_key()).decode()},
        headers={**api.a.auth("admin"), **idem()},
    )
    assert clash.status_code == 409
    bad = api.client.post(
        "/v1/app-keys",
        json={**body, "kid": "oa-3", "public_key": "AAAA"},
        headers={**api.a.auth("admin"), **idem()},
    )
    assert bad.status_code == 422
    listed = api.client.get("/v1/app-keys", headers=api.a.auth("admin")).json()
    assert {k["kid"] for k in listed} == {api.a.kid, "oa-2"}
    assert api.client.get("/v1/app-keys", headers=api.b.auth("admin")).json()[0]["kid"] == api.b.kid
    assert api.client.delete("/v1/app-keys/oa-2", headers=api.a.auth("admin")).status_code == 204
    assert api.client.delete("/v1/app-keys/oa-2", headers=api.a.auth("admin")).status_code == 404


def test_an_app_key_no_signer_can_hold_is_refused(api: ApiWorld) -> None:
    """32 bytes that are not a usable point: the identity (under which OpenSSL verifies
    forged signatures), a point of order 8, a non-canonical encoding, no point at all."""
    for raw in (
        bytes([1]) + bytes(31),
        bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        bytes([0xED]) + b"\xff" * 30 + bytes([0x7F]),
        bytes([2]) + bytes(31),
    ):
        answer = api.client.post(
            "/v1/app-keys",
            json={"app_id": "oa", "kid": "oa-bad", "public_key": base64.b64encode(raw).decode()},
            headers={**api.a.auth("admin"), **idem()},
        )
        assert answer.status_code == 422, raw.hex()
        assert answer.json()["type"].endswith("/invalid-public-key")
        assert "prime-order subgroup" in answer.json()["detail"]
    assert api.tenants.app_key(api.a.tenant_id, "oa-bad") is None


def test_templates_are_versioned_and_per_tenant(api: ApiWorld) -> None:
    got = api.client.get("/v1/templates/purchase", headers=api.a.auth("app"))
    assert got.status_code == 200 and got.json()["version"] == 3
    changed = {**got.json(), "name": "Renamed"}
    clash = api.client.post(
        "/v1/templates", json=changed, headers={**api.a.auth("admin"), **idem()}
    )
    assert clash.status_code == 409
    newer = api.client.post(
        "/v1/templates", json={**changed, "version": 4}, headers={**api.a.auth("admin"), **idem()}
    )
    assert newer.status_code == 201
    assert (
        api.client.get("/v1/templates/purchase", headers=api.a.auth("app")).json()["version"] == 4
    )
    assert (
        api.client.get("/v1/templates/purchase", headers=api.b.auth("app")).json()["version"] == 3
    )
    invalid = api.client.post(
        "/v1/templates", json={**changed, "steps": []}, headers={**api.a.auth("admin"), **idem()}
    )
    assert invalid.status_code == 422 and "steps" in invalid.json()["detail"]


def test_idempotency_key_is_required_on_post(api: ApiWorld) -> None:
    answer = api.client.post("/v1/api-keys", json={"role": "app"}, headers=api.a.auth("admin"))
    assert answer.status_code == 428


def test_nul_in_a_path_or_query_is_refused_at_the_door(api: ApiWorld) -> None:
    for url in ("/v1/templates/pur%00chase", "/v1/tasks?status=draft%00"):
        answer = api.client.get(url, headers=api.a.auth("app"))
        assert answer.status_code == 400, url
        assert answer.json()["type"].endswith("/invalid-request")
