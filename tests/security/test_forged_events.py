"""Forged, replayed and re-signed events; revoked and rotated app keys (issue 8, point 2).

``tests/api/test_events.py`` already pins the plain cases (no signature, an unknown or
another tenant's key id, a random key, a tampered body, a revoked key, a replayed id on
``/v1/events``). These pin the attacks around them: JWS header games (``alg: none``, HMAC,
a swapped ``kid``, an attached payload, ``crit``), a captured request sent again, an event
id replayed on another route or by another tenant, a body re-signed with another key, and
key rotation. Every refusal is a specific problem and leaves the store exactly as it was.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from httpx import Response

from api import jws
from tests.api.conftest import ApiWorld, Tenant, act, create_task, now_text
from tests.api.test_events import event_body
from tests.security.conftest import assert_refused, footprint, tenant_secrets


def _post_event(
    api: ApiWorld, tenant: Tenant, body: dict[str, Any], signature: str, key: str | None = None
) -> Response:
    headers = {
        **tenant.auth("app"),
        "JWS-Signature": signature,
        "Idempotency-Key": key or uuid.uuid4().hex,
    }
    answer: Response = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    return answer


def _sign_with(private: Ed25519PrivateKey, body: dict[str, Any], header: dict[str, Any]) -> str:
    """A detached JWS over ``body`` with any protected header (RFC 7515 section 7.1)."""
    protected = jws.b64url(orjson.dumps(header))
    payload = jws.b64url(jws.canonical_body(body))
    signature = private.sign(f"{protected}.{payload}".encode())
    return f"{protected}..{jws.b64url(signature)}"


def _register(api: ApiWorld, tenant: Tenant, kid: str) -> Ed25519PrivateKey:
    """Register a further app key for ``tenant`` through the admin API; its private half."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    answer = api.client.post(
        "/v1/app-keys",
        json={"app_id": "acme-oa", "kid": kid, "public_key": jws.b64url(public)},
        headers={**tenant.auth("admin"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert answer.status_code == 201, answer.text
    return private


def test_jws_header_games_are_refused_and_store_nothing(api: ApiWorld) -> None:
    a = api.a
    body = event_body()
    good = a.sign(body)
    protected, _, signature = good.split(".")
    flipped = bytearray(jws.b64url_decode(signature))
    flipped[0] ^= 1
    attached = f"{protected}.{jws.b64url(jws.canonical_body(body))}.{signature}"
    cases = [
        # RFC 8725 section 2.1: "none" and algorithm substitution are never accepted.
        (_sign_with(a.app_key, body, {"alg": "none", "kid": a.kid}), "alg must be EdDSA"),
        (_sign_with(a.app_key, body, {"alg": "HS256", "kid": a.kid}), "alg must be EdDSA"),
        (f"{protected}..{jws.b64url(bytes(flipped))}", f"does not verify with key {a.kid!r}"),
        (f"{protected}..{signature[:-4]}", "an Ed25519 signature is 64 bytes"),
        (attached, "must be a detached compact JWS"),
        (
            _sign_with(a.app_key, body, {"alg": "EdDSA", "kid": a.kid, "crit": ["exp"]}),
            "critical extensions",
        ),
        (_sign_with(a.app_key, body, {"alg": "EdDSA"}), "needs a kid"),
        ("." * 2000, "longer than 1024 bytes"),
        (f"{jws.b64url(b'[1,2]')}..{signature}", "not a JSON object"),
        (f"{jws.b64url(b'{not json')}..{signature}", "not JSON"),
    ]
    before = footprint(api)
    for header, detail in cases:
        answer = _post_event(api, a, body, header)
        assert_refused(api, before, answer, 401, "bad-signature", detail)


def test_kid_swapped_after_signing_is_refused(api: ApiWorld) -> None:
    """A signature made under one key id, its header rewritten to name another live key."""
    a = api.a
    _register(api, a, "acme-app-2")
    body = event_body()
    original = _sign_with(a.app_key, body, {"alg": "EdDSA", "kid": a.kid})
    _, _, signature = original.split(".")
    swapped = f"{jws.b64url(orjson.dumps({'alg': 'EdDSA', 'kid': 'acme-app-2'}))}..{signature}"
    before = footprint(api)
    answer = _post_event(api, a, body, swapped)
    assert_refused(api, before, answer, 401, "bad-signature", "with key 'acme-app-2'")


def test_body_signed_by_another_tenants_app_key_under_our_kid_is_refused(api: ApiWorld) -> None:
    """Tenant b's app signs a body for a's stream and names a's key id: it does not verify."""
    a, b = api.a, api.b
    body = event_body()
    forged = _sign_with(b.app_key, body, {"alg": "EdDSA", "kid": a.kid})
    before = footprint(api)
    for sender in (a, b):  # sent with a's API key, and with b's (where a's kid is unknown)
        answer = _post_event(api, sender, body, forged)
        if sender is a:
            assert_refused(api, before, answer, 401, "bad-signature", "does not verify")
        else:
            assert_refused(
                api, before, answer, 401, "unknown-app-key", secrets=(a.tenant_id, *a.keys.values())
            )


def test_a_captured_request_sent_again_is_refused_as_a_replay(api: ApiWorld) -> None:
    """The exact bytes and signature of an accepted request, under a new Idempotency-Key."""
    body = event_body()
    signature = api.a.sign(body)
    assert _post_event(api, api.a, body, signature).status_code == 201
    before = footprint(api)
    again = _post_event(api, api.a, body, signature)
    problem = assert_refused(api, before, again, 409, "duplicate-event", body["event_id"])
    # The batch route is no way around it.
    batch = api.client.post(
        "/v1/events/batch",
        json={"events": [{"event": body, "jws": signature}]},
        headers={**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert assert_refused(api, before, batch, 409, "duplicate-event")["index"] == 0
    assert problem["detail"] == batch.json()["detail"].removeprefix("events[0]: ")


def test_an_event_id_is_refused_on_every_route_once_used(api: ApiWorld) -> None:
    """An act's event id taken by a raw event, and the other way round: one id, one event."""
    task = create_task(api, api.a)["task_id"]
    used = event_body()
    assert _post_event(api, api.a, used, api.a.sign(used)).status_code == 201
    before = footprint(api)
    answer = act(api, api.a, task, "comment", "u-chen", text="hello", event_id=used["event_id"])
    assert_refused(api, before, answer, 409, "duplicate-event", used["event_id"])

    commented = act(api, api.a, task, "comment", "u-chen", text="first")
    assert commented.status_code == 200, commented.text
    act_id = commented.json()["receipts"][0]["event_id"]
    before = footprint(api)
    raw = event_body(event_id=act_id)
    answer = _post_event(api, api.a, raw, api.a.sign(raw))
    assert_refused(api, before, answer, 409, "duplicate-event", act_id)


def test_a_captured_act_sent_again_is_refused(api: ApiWorld) -> None:
    """A signed act sent again with a fresh Idempotency-Key: an approval once the step moved
    on (the workflow refuses it), and a comment, which the workflow would take again, so
    that only its event id stops it."""
    task = create_task(api, api.a)["task_id"]
    assert act(api, api.a, task, "submit", "u-chen").status_code == 200
    body = {
        "event_id": str(uuid.uuid4()),
        "client_time": now_text(),
        "actor": {"id": "u-wong", "organisation": "ACME", "role": "user"},
        "context": {"ip": "203.0.113.7"},
        "comment": "ok",
    }
    headers = api.a.signed_headers(body)
    url = f"/v1/tasks/{task}/actions/approve"
    first = api.client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    before = footprint(api)
    replay = api.client.post(
        url, json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert_refused(api, before, replay, 403, "not-a-participant", "'u-wong' is not a participant")

    comment = {**body, "event_id": str(uuid.uuid4()), "client_time": now_text(), "text": "hi"}
    del comment["comment"]
    headers = api.a.signed_headers(comment)
    url = f"/v1/tasks/{task}/actions/comment"
    assert api.client.post(url, json=comment, headers=headers).status_code == 200
    before = footprint(api)
    replay = api.client.post(
        url, json=comment, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert_refused(api, before, replay, 409, "duplicate-event", comment["event_id"])


def test_another_tenants_event_id_answers_as_any_taken_id(api: ApiWorld) -> None:
    """Event ids are unique in the whole log, so b cannot reuse one of a's; the refusal is
    the one b gets for its own replay and shows nothing of a."""
    theirs, ours = event_body(), event_body()
    assert _post_event(api, api.a, theirs, api.a.sign(theirs)).status_code == 201
    assert _post_event(api, api.b, ours, api.b.sign(ours)).status_code == 201
    before = footprint(api)
    guesses = {}
    for name, taken in (("a", theirs), ("b", ours)):
        body = event_body(event_id=taken["event_id"])
        answer = _post_event(api, api.b, body, api.b.sign(body))
        guesses[name] = assert_refused(
            api,
            before,
            answer,
            409,
            "duplicate-event",
            secrets=(*tenant_secrets(api, "a"), theirs["stream_id"]),
        )
    assert guesses["a"]["detail"].replace(theirs["event_id"], "ID") == guesses["b"][
        "detail"
    ].replace(ours["event_id"], "ID")


def test_the_same_body_re_signed_with_another_key_is_still_a_replay(api: ApiWorld) -> None:
    """Rotation does not reopen old event ids: a stored body signed again with a second live
    key (and so a different key id and signature) is refused."""
    second = _register(api, api.a, "acme-app-2")
    body = event_body()
    assert _post_event(api, api.a, body, api.a.sign(body)).status_code == 201
    before = footprint(api)
    re_signed = _sign_with(second, body, {"alg": "EdDSA", "kid": "acme-app-2"})
    answer = _post_event(api, api.a, body, re_signed)
    assert_refused(api, before, answer, 409, "duplicate-event", body["event_id"])


def test_rotation_old_key_refused_once_revoked_new_key_accepted(api: ApiWorld) -> None:
    a = api.a
    new_key = _register(api, a, "acme-app-2")
    # Both live during the overlap.
    for private, kid in ((a.app_key, a.kid), (new_key, "acme-app-2")):
        body = event_body()
        signature = _sign_with(private, body, {"alg": "EdDSA", "kid": kid})
        assert _post_event(api, a, body, signature).status_code == 201
    revoked = api.client.delete(f"/v1/app-keys/{a.kid}", headers=a.auth("admin"))
    assert revoked.status_code == 204

    before = footprint(api)
    old = event_body()
    answer = _post_event(api, a, old, a.sign(old))
    assert_refused(api, before, answer, 401, "revoked-app-key", f"app key {a.kid!r} was revoked")
    # Nor through a task act, nor as one member of a batch.
    task_body = {"actor": {"id": "u-chen", "role": "user"}, "title": "T", "template": {"id": "x"}}
    task_body = {"event_id": str(uuid.uuid4()), "client_time": now_text(), **task_body}
    answer = api.client.post(
        "/v1/tasks",
        json=task_body,
        headers={
            **a.auth("app"),
            "JWS-Signature": a.sign(task_body),
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert_refused(api, before, answer, 401, "revoked-app-key")
    fresh = event_body()
    members = [
        {"event": fresh, "jws": _sign_with(new_key, fresh, {"alg": "EdDSA", "kid": "acme-app-2"})},
        {"event": old, "jws": a.sign(old)},
    ]
    batch = api.client.post(
        "/v1/events/batch",
        json={"events": members},
        headers={**a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert assert_refused(api, before, batch, 401, "revoked-app-key")["index"] == 1
    # A revoked key id cannot be registered again to bring it back.
    again = api.client.post(
        "/v1/app-keys",
        json={
            "app_id": "acme-oa",
            "kid": a.kid,
            "public_key": jws.b64url(
                a.app_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            ),
        },
        headers={**a.auth("admin"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_refused(api, before, again, 409, "app-key-revoked", "register the new key under a new")
    listed = api.client.get("/v1/app-keys", headers=a.auth("admin")).json()
    assert {k["kid"]: k["revoked"] for k in listed} == {a.kid: True, "acme-app-2": False}
    still = _post_event(api, a, old, a.sign(old))
    assert_refused(api, before, still, 401, "revoked-app-key")

    # The new key goes on working.
    new = event_body()
    accepted = _post_event(
        api, a, new, _sign_with(new_key, new, {"alg": "EdDSA", "kid": "acme-app-2"})
    )
    assert accepted.status_code == 201, accepted.text
    assert footprint(api).tree_size == before.tree_size + 1
