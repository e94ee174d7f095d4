"""App-signed events over HTTP: single and batch appends, and every refusal (issue 4, point 2).

Happy paths are checked end to end: the stored event's ``app_signature.value`` is a compact
JWS that jwcrypto (a stock library, not ours) verifies with the app's public key as a JWK,
and its payload is the RFC 8785 form of the body the app sent. Every refusal answers with
the right status and problem type and leaves the log as it was.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from httpx import Response
from jwcrypto import jwk
from jwcrypto import jws as stock_jws

from api import jws
from api.tenancy import RememberedCredentials, TenantStore
from tests.api.conftest import ApiWorld, Tenant, now_text, revoke_after_app_key_read


def event_body(stream_id: uuid.UUID | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "client_time": now_text(),
        "stream_id": str(stream_id or uuid.uuid4()),
        "type": "step.approved",
        "actor": {"id": "u-wong", "display_name": "王经理", "role": "approver"},
        "context": {
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0 (iPhone) DingTalk/7.6",
            "device_id": "dev-1",
            "platform": "ios",
            "request_id": "req-1",
        },
        "identity_factors": [
            {
                "factor": "sms_otp",
                "method": "sms",
                "result": "passed",
                "verified_at": now_text(),
                "provider_reference": "gw-1",
            }
        ],
        "data": {"amount": "6000.00", "currency": "HKD", "comment": "同意 approved"},
    }
    body.update(changes)
    return body


def post(
    api: ApiWorld, tenant: Tenant, body: dict[str, Any], *, signature: str | None = None
) -> Response:
    headers = {
        **tenant.auth("app"),
        "JWS-Signature": tenant.sign(body) if signature is None else signature,
        "Idempotency-Key": uuid.uuid4().hex,
    }
    answer: Response = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    return answer


def post_batch(api: ApiWorld, tenant: Tenant, members: list[dict[str, Any]]) -> Response:
    headers = {**tenant.auth("app"), "Idempotency-Key": uuid.uuid4().hex}
    answer: Response = api.client.post(
        "/v1/events/batch", json={"events": members}, headers=headers
    )
    return answer


def member(tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    return {"event": body, "jws": tenant.sign(body)}


def public_jwk(tenant: Tenant) -> jwk.JWK:
    raw = tenant.app_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return jwk.JWK(kty="OKP", crv="Ed25519", x=x)


def stored_envelope(api: ApiWorld, leaf_index: int) -> dict[str, Any]:
    (entry,) = api.ledger.store.entries(leaf_index, leaf_index + 1)
    envelope: dict[str, Any] = orjson.loads(entry.canonical)
    return envelope


def assert_app_signed(
    api: ApiWorld, tenant: Tenant, receipt: dict[str, Any], body: dict[str, Any]
) -> None:
    """The stored event keeps a JWS a stock library verifies, over exactly what was sent."""
    envelope = stored_envelope(api, receipt["leaf_index"])
    signature = envelope["app_signature"]
    assert signature["key_id"] == tenant.kid and signature["algorithm"] == "EdDSA"
    token = stock_jws.JWS()
    token.deserialize(signature["value"])
    token.verify(public_jwk(tenant))  # raises if it does not verify
    assert token.payload == rfc8785.dumps(body)
    assert envelope["event_id"] == body["event_id"] == receipt["event_id"]
    assert envelope["stream_id"] == body["stream_id"] == receipt["stream_id"]
    assert envelope["context"]["client_time"] == body["client_time"]
    assert envelope["context"]["ip"] == body["context"]["ip"]
    assert "connection_ip" in envelope["context"]
    assert envelope["data"] == body["data"]


def assert_problem(answer: Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json()
    assert problem["type"].endswith("/" + kind), problem
    return problem


# -- happy paths -------------------------------------------------------------------------


def test_single_event_is_stored_with_a_stock_verifiable_signature(api: ApiWorld) -> None:
    before = api.ledger.store.tree_size()
    body = event_body()
    answer = post(api, api.a, body)
    assert answer.status_code == 201, answer.text
    receipt = answer.json()
    assert receipt["sequence"] == 1 and receipt["leaf_index"] == before
    assert api.ledger.store.tree_size() == before + 1
    (entry,) = api.ledger.store.entries(before, before + 1)
    assert bytes.fromhex(receipt["event_hash"]) == entry.leaf_hash
    assert receipt["server_time"].endswith("Z")
    assert_app_signed(api, api.a, receipt, body)
    assert api.tenants.owns_stream(api.a.tenant_id, uuid.UUID(body["stream_id"]))

    # A second event on the same stream chains onto the first.
    second = event_body(uuid.UUID(body["stream_id"]), type="comment.added")
    chained = post(api, api.a, second)
    assert chained.status_code == 201 and chained.json()["sequence"] == 2
    envelope = stored_envelope(api, chained.json()["leaf_index"])
    assert envelope["prev"] == receipt["event_hash"]


def test_connection_ip_comes_from_a_trusted_proxy_only(api: ApiWorld) -> None:
    from fastapi.testclient import TestClient

    app: Any = api.client.app
    with TestClient(app, client=("10.0.0.5", 50000)) as proxied:
        body = event_body()
        headers = {**api.a.signed_headers(body), "X-Forwarded-For": "198.51.100.7"}
        answer = proxied.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert answer.status_code == 201, answer.text
    envelope = stored_envelope(api, answer.json()["leaf_index"])
    assert envelope["context"]["connection_ip"] == "198.51.100.7"
    assert envelope["context"]["ip"] == "203.0.113.9"


def test_same_idempotency_key_replays_the_receipt(api: ApiWorld) -> None:
    body = event_body()
    headers = api.a.signed_headers(body)
    first = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    size = api.ledger.store.tree_size()
    again = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.ledger.store.tree_size() == size


def test_batch_is_stored_with_each_members_own_signature(api: ApiWorld) -> None:
    before = api.ledger.store.tree_size()
    stream = uuid.uuid4()
    bodies = [
        event_body(stream, type="task.created"),
        event_body(stream, type="step.approved"),
        event_body(type="document.signed"),
    ]
    answer = post_batch(api, api.a, [member(api.a, b) for b in bodies])
    assert answer.status_code == 201, answer.text
    receipts = answer.json()["receipts"]
    assert [r["leaf_index"] for r in receipts] == [before, before + 1, before + 2]
    assert [r["sequence"] for r in receipts] == [1, 2, 1]
    for receipt, body in zip(receipts, bodies, strict=True):
        assert_app_signed(api, api.a, receipt, body)


# -- refusals: nothing stored ------------------------------------------------------------


def _refused(api: ApiWorld, answer: Response, status: int, kind: str, size: int) -> dict[str, Any]:
    problem = assert_problem(answer, status, kind)
    assert api.ledger.store.tree_size() == size
    return problem


def test_unsigned_unknown_revoked_and_forged_are_refused(api: ApiWorld) -> None:
    size = api.ledger.store.tree_size()
    body = event_body()
    headers = {**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex}
    unsigned = api.client.post("/v1/events", json=body, headers=headers)
    _refused(api, unsigned, 401, "bad-signature", size)

    unknown = post(api, api.a, body, signature=api.a.sign(body, kid="no-such-key"))
    _refused(api, unknown, 401, "unknown-app-key", size)

    # Another tenant's key id is unknown here, even though it is registered there.
    foreign = post(api, api.a, body, signature=api.b.sign(body))
    _refused(api, foreign, 401, "unknown-app-key", size)

    forger = Tenant(api.a.tenant_id, api.a.keys, Ed25519PrivateKey.generate(), api.a.kid)
    forged = post(api, api.a, body, signature=forger.sign(body))
    _refused(api, forged, 401, "bad-signature", size)

    altered = {**body, "data": {**body["data"], "amount": "60000.00"}}
    tampered = post(api, api.a, altered, signature=api.a.sign(body))
    _refused(api, tampered, 401, "bad-signature", size)

    garbage = post(api, api.a, body, signature="not-a-jws")
    _refused(api, garbage, 401, "bad-signature", size)

    revoked = api.client.delete(f"/v1/app-keys/{api.a.kid}", headers=api.a.auth("admin"))
    assert revoked.status_code == 204
    after_revocation = post(api, api.a, body)
    _refused(api, after_revocation, 401, "revoked-app-key", size)


def test_replayed_event_id_is_refused(api: ApiWorld) -> None:
    body = event_body()
    assert post(api, api.a, body).status_code == 201
    size = api.ledger.store.tree_size()
    # A fresh Idempotency-Key and a fresh signature: the event id alone is the replay.
    replay = post(api, api.a, {**body, "client_time": now_text()})
    problem = _refused(api, replay, 409, "duplicate-event", size)
    assert body["event_id"] in problem["detail"]


@pytest.mark.parametrize("offset", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_client_time_outside_the_window_is_refused(api: ApiWorld, offset: timedelta) -> None:
    size = api.ledger.store.tree_size()
    moment = (datetime.now(UTC) + offset).isoformat().replace("+00:00", "Z")
    answer = post(api, api.a, event_body(client_time=moment))
    _refused(api, answer, 422, "client-time-out-of-window", size)
    missing = event_body()
    del missing["client_time"]
    _refused(api, post(api, api.a, missing), 422, "client-time-required", size)


def test_another_tenants_stream_is_refused_without_naming_it(api: ApiWorld) -> None:
    body = event_body()
    assert post(api, api.b, body).status_code == 201
    size = api.ledger.store.tree_size()
    theirs = event_body(uuid.UUID(body["stream_id"]))
    problem = _refused(api, post(api, api.a, theirs), 409, "stream-not-yours", size)
    assert api.b.tenant_id not in problem["detail"]
    batch = post_batch(api, api.a, [member(api.a, event_body()), member(api.a, theirs)])
    assert _refused(api, batch, 409, "stream-not-yours", size)["index"] == 1


def test_invalid_envelopes_are_refused(api: ApiWorld) -> None:
    size = api.ledger.store.tree_size()
    cases = [
        (event_body(type="task.hacked"), "type"),
        ({**event_body(), "stream_id": "not-a-uuid"}, "stream_id"),
        (event_body(actor={"id": "u-1"}), "actor.display_name"),
        (event_body(context={"ip": "not an ip"}), "context.ip"),
        (event_body(context={"connection_ip": "192.0.2.1"}), "context"),
        (event_body(extra="x"), "body"),
        (event_body(data=["not", "an", "object"]), "data"),
    ]
    for body, field in cases:
        problem = _refused(api, post(api, api.a, body), 422, "invalid-event", size)
        assert field in problem["detail"], problem
    # A float cannot even be signed in the ledger's format: it is refused as a signature.
    with_float = event_body(data={"amount": 6000.5})
    protected = jws.b64url(f'{{"alg":"EdDSA","kid":"{api.a.kid}"}}'.encode())
    signing_input = f"{protected}.{jws.b64url(rfc8785.dumps(with_float))}".encode()
    signature = f"{protected}..{jws.b64url(api.a.app_key.sign(signing_input))}"
    floats = post(api, api.a, with_float, signature=signature)
    assert "float" in _refused(api, floats, 401, "bad-signature", size)["detail"]


def test_roles_other_than_app_may_not_append(api: ApiWorld) -> None:
    body = event_body()
    for role in ("auditor", "legal", "compliance", "admin"):
        headers = {**api.a.signed_headers(body), **api.a.auth(role)}
        answer = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
        assert_problem(answer, 403, "forbidden-for-role")
    answer = api.client.post("/v1/events", content=orjson.dumps(body), headers={})
    assert_problem(answer, 401, "unauthenticated")


# -- batches: all or nothing -------------------------------------------------------------


def test_batch_with_one_bad_member_stores_nothing(api: ApiWorld) -> None:
    size = api.ledger.store.tree_size()
    good = [event_body() for _ in range(4)]
    existing = event_body()
    assert post(api, api.a, existing).status_code == 201
    size = api.ledger.store.tree_size()
    forged_body = event_body()
    forger = Tenant(api.a.tenant_id, api.a.keys, Ed25519PrivateKey.generate(), api.a.kid)
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    bad_members: list[tuple[dict[str, Any], int, str]] = [
        ({"event": forged_body, "jws": forger.sign(forged_body)}, 401, "bad-signature"),
        ({"event": good[0], "jws": api.a.sign(good[1])}, 401, "bad-signature"),
        (member(api.a, event_body(client_time=old)), 422, "client-time-out-of-window"),
        (member(api.a, {**existing, "client_time": now_text()}), 409, "duplicate-event"),
        (member(api.a, event_body(type="no.such.type")), 422, "invalid-event"),
        (member(api.a, good[0]), 409, "duplicate-event"),  # the same id twice in one batch
        ({"event": event_body()}, 422, "invalid-request"),
    ]
    for bad, status, kind in bad_members:
        members = [member(api.a, b) for b in good]
        members.insert(2, bad)
        if kind == "duplicate-event" and bad["event"] is good[0]:
            members = [member(api.a, good[0]), member(api.a, good[1]), bad]
        problem = _refused(api, post_batch(api, api.a, members), status, kind, size)
        assert problem["index"] == 2, problem
        assert problem["detail"].startswith("events[2]"), problem
    for body in good:
        assert api.ledger.store.entry_for_event(uuid.UUID(body["event_id"])) is None


def test_batch_shape_and_size_limits(api: ApiWorld) -> None:
    size = api.ledger.store.tree_size()
    shapes: list[Any] = [{"events": []}, {"events": "x"}, {"items": []}, []]
    for body in shapes:
        headers = {**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex}
        answer = api.client.post("/v1/events/batch", json=body, headers=headers)
        _refused(api, answer, 422, "invalid-request", size)
    limit = api.client.app.state.runtime.settings.max_batch  # type: ignore[attr-defined]
    members = [{"event": {}, "jws": ""}] * (limit + 1)
    _refused(api, post_batch(api, api.a, members), 422, "batch-too-large", size)


def test_append_lookup_reads_what_the_three_separate_lookups_read(api: ApiWorld) -> None:
    """The caller, its app key and its Idempotency-Key's record, read at once, are exactly
    what ``authenticate``, ``app_key`` and ``idempotency_record`` give, and nothing of
    them comes back beside a key that does not authenticate."""
    tenants = api.tenants
    body = event_body()
    headers = api.a.signed_headers(body, key="once")
    stored = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert stored.status_code == 201
    revoked = tenants.create_api_key(api.a.tenant_id, "app", "revoked")
    assert tenants.revoke_api_key(api.a.tenant_id, revoked.split("_")[1])
    spare = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert tenants.register_app_key(api.a.tenant_id, "acme-oa", "acme-app-old", spare)
    assert tenants.revoke_app_key(api.a.tenant_id, "acme-app-old")
    key_a = api.a.keys["app"]
    tokens = [
        key_a,
        api.b.keys["app"],
        api.a.keys["auditor"],
        revoked,
        key_a[:-2] + ("xx" if not key_a.endswith("xx") else "yy"),  # a wrong secret
        "elk_0000000000000000_nothing",
        "not-a-key",
    ]
    kids = [api.a.kid, api.b.kid, "acme-app-old", "no-such-kid", None]
    for token in tokens:
        who = tenants.authenticate(token)
        for kid in kids:
            for idem in ("once", "never", None):
                found = tenants.append_lookup(token, kid, idem)
                assert found.principal == who
                if who is None:
                    assert found.app_key is None and found.record is None
                    continue
                expected_key = tenants.app_key(who.tenant_id, kid) if kid else None
                expected_record = tenants.idempotency_record(who.tenant_id, idem) if idem else None
                assert found.app_key == expected_key
                assert found.record == expected_record
    assert tenants.append_lookup(key_a, api.a.kid, "once").record is not None
    assert tenants.append_lookup(key_a, "acme-app-old", None).app_key.revoked  # type: ignore[union-attr]


def _counted_reads(api: ApiWorld, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the app's tenancy store reads from now on (outside transactions)."""
    reads: list[str] = []
    query = api.tenants._query

    def counted(sql: str, params: Any = ()) -> Any:
        reads.append(sql)
        return query(sql, params)

    monkeypatch.setattr(api.tenants, "_query", counted)
    return reads


def test_a_single_append_reads_the_tenancy_tables_once(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API key, the app key and the Idempotency-Key's record come in one read (apart
    from the append's own transaction), and a replay needs no other."""
    reads = _counted_reads(api, monkeypatch)
    body = event_body()
    headers = api.a.signed_headers(body)
    first = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert first.status_code == 201
    assert len(reads) == 1, reads
    again = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert len(reads) == 2, reads


def test_a_remembered_caller_appends_without_reading_first(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its keys were seen live, a caller's next appends read nothing before their
    own transaction; the events are stored and chained as any other."""
    reads = _counted_reads(api, monkeypatch)
    assert post(api, api.a, event_body()).status_code == 201
    assert len(reads) == 1, reads
    stream = uuid.uuid4()
    for _ in range(3):
        answer = post(api, api.a, event_body(stream))
        assert answer.status_code == 201, answer.text
    assert len(reads) == 1, reads
    assert answer.json()["sequence"] == 3
    # Another tenant's caller is remembered apart: its first append reads.
    assert post(api, api.b, event_body()).status_code == 201
    assert len(reads) == 2, reads


def _other_worker(api: ApiWorld) -> TenantStore:
    """The tenancy tables as another worker process sees them (its own store)."""
    return TenantStore(api.ledger.store)


def test_an_api_key_revoked_while_remembered_stores_nothing(api: ApiWorld) -> None:
    assert post(api, api.a, event_body()).status_code == 201  # remembered now
    key_id = api.a.keys["app"].split("_")[1]
    other = _other_worker(api)
    try:
        assert other.revoke_api_key(api.a.tenant_id, key_id)
    finally:
        other.close()
    size = api.ledger.store.tree_size()
    _refused(api, post(api, api.a, event_body()), 401, "unauthenticated", size)


def test_an_app_key_revoked_while_remembered_stores_nothing(api: ApiWorld) -> None:
    assert post(api, api.a, event_body()).status_code == 201  # remembered now
    other = _other_worker(api)
    try:
        assert other.revoke_app_key(api.a.tenant_id, api.a.kid)
    finally:
        other.close()
    size = api.ledger.store.tree_size()
    _refused(api, post(api, api.a, event_body()), 401, "revoked-app-key", size)


def test_a_replay_on_a_remembered_caller_gets_the_first_answer(api: ApiWorld) -> None:
    """Remembered keys skip the Idempotency-Key's read, not its answer: the same request
    replays, a different one under the key is refused, and nothing more is stored."""
    body = event_body()
    headers = api.a.signed_headers(body)
    first = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert first.status_code == 201
    size = api.ledger.store.tree_size()
    again = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = event_body()
    reused = {**api.a.signed_headers(other), "Idempotency-Key": headers["Idempotency-Key"]}
    answer = api.client.post("/v1/events", content=orjson.dumps(other), headers=reused)
    _refused(api, answer, 422, "idempotency-key-reused", size)


@pytest.mark.parametrize("revoked", ["api key", "app key"])
def test_a_key_revoked_after_it_was_read_stores_nothing(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch, revoked: str
) -> None:
    """A revocation that commits after a request read its keys but before its events are
    stored refuses them: the append's own transaction checks the keys again."""
    lookup = api.tenants.append_lookup

    def then_revoked(token: str, kid: str | None, idem: str | None) -> Any:
        found = lookup(token, kid, idem)
        other = _other_worker(api)
        try:
            if revoked == "api key":
                assert other.revoke_api_key(api.a.tenant_id, token.split("_")[1])
            else:
                assert kid is not None and other.revoke_app_key(api.a.tenant_id, kid)
        finally:
            other.close()
        return found

    monkeypatch.setattr(api.tenants, "append_lookup", then_revoked)
    size = api.ledger.store.tree_size()
    kind = "unauthenticated" if revoked == "api key" else "revoked-app-key"
    _refused(api, post(api, api.a, event_body()), 401, kind, size)


def test_a_batch_whose_app_key_is_revoked_after_it_was_read_stores_nothing(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoke_after_app_key_read(api, monkeypatch, "app key")
    size = api.ledger.store.tree_size()
    members = [member(api.a, event_body()) for _ in range(3)]
    problem = _refused(api, post_batch(api, api.a, members), 401, "revoked-app-key", size)
    assert problem["index"] == 0


def test_remembered_credentials_lapse_and_keep_no_secret(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    remembered = RememberedCredentials()
    token = api.a.keys["app"]
    who = api.tenants.authenticate(token)
    key = api.tenants.app_key(api.a.tenant_id, api.a.kid)
    assert who is not None and key is not None
    remembered.remember(token, who, key)
    assert remembered.caller(token) == who
    assert remembered.app_key(api.a.tenant_id, api.a.kid) == key
    # The same key id with another secret is not the remembered caller.
    assert remembered.caller(token[:-2] + ("xx" if not token.endswith("xx") else "yy")) is None
    assert remembered.app_key(api.b.tenant_id, api.a.kid) is None
    secret = token.split("_", 2)[2]
    assert secret not in repr(vars(remembered))
    # Another tenant's live app key is never remembered beside this caller.
    other = api.tenants.app_key(api.b.tenant_id, api.b.kid)
    assert other is not None
    remembered.remember(token, who, other)
    assert remembered.app_key(api.b.tenant_id, api.b.kid) is None
    later = time.monotonic() + remembered.max_age + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert remembered.caller(token) is None
    assert remembered.app_key(api.a.tenant_id, api.a.kid) is None
