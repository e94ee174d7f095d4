"""Tasks over HTTP: the seed story end to end, every refusal storing nothing, idempotency,
both IP addresses, documents and listing; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from starlette.requests import Request

from api import jws
from api.security import ApiSettings, connection_ip
from evidence.local_ca import LocalCertificateAuthority, SignerIdentity
from evidence.pdf_signing import sign_pdf
from evidence.task_signing import LocalCaDocumentSigner
from evidence.testing_pdfs import make_test_pdf
from ledger.task_service import TaskService
from ledger.workflow import Placement
from tests.api.conftest import (
    ApiWorld,
    Tenant,
    act,
    actor,
    create_task,
    end_user,
    now_text,
    revoke_after_app_key_read,
    upload_pdf,
)


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


def problem(answer: Any, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["type"].endswith("/" + kind), body
    return body


def service(api: ApiWorld) -> TaskService:
    tasks: TaskService = api.client.app.state.runtime.tasks  # type: ignore[attr-defined]
    return tasks


def stored(api: ApiWorld, task_id: str) -> list[dict[str, Any]]:
    return [dict(e.envelope) for e in api.ledger.store.read_stream(uuid.UUID(task_id))]


def send_signed(
    api: ApiWorld,
    tenant: Tenant,
    path: str,
    body: dict[str, Any],
    *,
    key: str | None = None,
    client: TestClient | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Any:
    """POST exactly ``body``, signed by ``tenant``'s app key."""
    headers = {**tenant.signed_headers(body, key), **(extra_headers or {})}
    return (client or api.client).post(path, json=body, headers=headers)


def signed_body(user: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "client_time": now_text(),
        "actor": actor(user),
        "context": end_user(),
        **fields,
    }


# -- the seed story -----------------------------------------------------------------------


def test_seed_story_end_to_end_with_a_ca_signature_and_an_app_submitted_signed_pdf(
    api: ApiWorld, tmp_path: Path
) -> None:
    a = api.a
    original = make_test_pdf("Supply contract 供货合同")
    document = upload_pdf(api, a, original)
    assert document == hashlib.sha256(original).hexdigest()

    created = create_task(api, a, documents=[document])
    task = created["task_id"]
    assert created["state"]["status"] == "draft"
    assert [s["key"] for s in created["state"]["steps"]] == [
        "head",
        "finance_legal",
        "cfo",
        "sign",
        "cc",
    ]
    (receipt,) = created["receipts"]
    assert len(receipt["event_hash"]) == 64 and receipt["sequence"] == 1

    ok(act(api, a, task, "submit", "u-chen"))
    ok(act(api, a, task, "view", "u-wong", document_sha256=document))
    ok(act(api, a, task, "approve", "u-wong", comment="同意"))
    ok(act(api, a, task, "approve", "u-lee"))
    ok(act(api, a, task, "comment", "u-ho", text="Clause 4 checked"))
    state = ok(act(api, a, task, "approve", "u-ho"))["state"]
    assert state["current_step"] == "cfo" and state["pending"] == ["u-cheung"]
    ok(
        act(
            api,
            a,
            task,
            "verify-identity",
            "u-cheung",
            factor="password",
            method="sso",
            result="passed",
        )
    )
    ok(act(api, a, task, "approve", "u-cheung"))

    # The external supplier adds a second signer after themself, then signs via the local CA.
    ok(act(api, a, task, "add-signer", "ext-supplier", user="ext-witness", position="after"))
    ok(
        act(
            api,
            a,
            task,
            "verify-identity",
            "ext-supplier",
            factor="sms_otp",
            method="sms",
            result="passed",
            provider_reference="otp-778",
        )
    )
    signer = {
        "name": "Supplier Ltd signatory",
        "organisation": "Supplier Ltd",
        "phone": "+85291234567",
    }
    signed = ok(act(api, a, task, "sign", "ext-supplier", document_sha256=document, signer=signer))
    (revision,) = signed["state"]["documents"][0]["revisions"]
    assert signed["state"]["status"] == "partially_signed"

    # The witness signs with their own key, in their own software; the app uploads the PDF.
    held = api.client.get(f"/v1/documents/{revision}", headers=a.auth("app"))
    assert held.status_code == 200 and hashlib.sha256(held.content).hexdigest() == revision
    tasks = service(api)
    own_ca = LocalCertificateAuthority.load_or_create(tmp_path / "own-ca", b"own")
    own = own_ca.issue_signer(
        SignerIdentity("ext-witness", "Wong Witness", "Witness Co", email="w@witness.example")
    )
    assert isinstance(tasks.signer, LocalCaDocumentSigner)
    tasks.signer.signer_trust_roots.append(own_ca.root_certificate)
    by_witness = sign_pdf(
        held.content,
        own,
        placement=Placement(1, 320, 100, 520, 160),
        field_name="Witness",
        reason="Witnessed",
        location="Hong Kong",
        timestamp_url=api.ledger.signature_tsa_url(),
        tsa_trust_roots=api.ledger.tsa_trust_roots,
        passphrase=b"own",
    )
    witness_pdf = upload_pdf(api, a, by_witness)
    ok(
        act(
            api,
            a,
            task,
            "verify-identity",
            "ext-witness",
            factor="sms_otp",
            method="sms",
            result="passed",
        )
    )
    done = ok(
        act(
            api,
            a,
            task,
            "sign",
            "ext-witness",
            document_sha256=document,
            signed_document_sha256=witness_pdf,
        )
    )
    state = done["state"]
    assert state["status"] == "completed"
    assert [r["sequence"] for r in done["receipts"]] == [
        done["receipts"][0]["sequence"],
        done["receipts"][0]["sequence"] + 1,
    ]
    revisions = state["documents"][0]["revisions"]
    assert revisions[:2] == [revision, witness_pdf] and len(revisions) == 3

    # Every revision, the final one too, can be downloaded by the tenant, and only by it.
    for sha in (document, *revisions):
        got = api.client.get(f"/v1/documents/{sha}", headers=a.auth("legal"))
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha
        problem(
            api.client.get(f"/v1/documents/{sha}", headers=api.b.auth("legal")),
            404,
            "document-not-found",
        )

    # The stored events: the app's signature, both addresses and the signer's certificate.
    envelopes = stored(api, task)
    signed_events = [e for e in envelopes if e["type"] == "document.signed"]
    assert signed_events[0]["data"]["signature"]["level"] == "PAdES-B-T"
    assert signed_events[1]["data"]["signature"]["submitted_by_signer"] is True
    assert signed_events[1]["identity_factors"][0]["factor"] == "sms_otp"
    for envelope in envelopes:
        if envelope["type"] == "task.completed":
            assert "app_signature" not in envelope or envelope["app_signature"] is None
            continue
        signature = envelope["app_signature"]
        assert signature["key_id"] == a.kid and signature["algorithm"] == "EdDSA"
        protected, payload, sig = signature["value"].split(".")
        public = a.app_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        jws.verify(
            jws.DetachedJws(protected, a.kid, jws.b64url_decode(sig)),
            jws.b64url_decode(payload),
            public,
        )
        assert envelope["context"]["ip"] == "203.0.113.7"
        assert envelope["context"]["connection_ip"] is None  # "testclient" is no address
        assert envelope["context"]["device_id"] == "dev-1234"
    assert envelopes[1]["actor"]["display_name"] == "陈小明"

    # State, timeline and list agree with the log.
    got = ok(api.client.get(f"/v1/tasks/{task}", headers=a.auth("auditor")))
    assert got == state
    timeline = ok(api.client.get(f"/v1/tasks/{task}/timeline", headers=a.auth("legal")))
    entries = timeline["entries"]
    assert len(entries) == len(envelopes)
    leaves = [e["leaf_index"] for e in entries]
    assert leaves == sorted(leaves) and entries[0]["event_hash"] == receipt["event_hash"]
    assert entries[0]["leaf_index"] == receipt["leaf_index"]
    assert entries[-1]["type"] == "task.completed" and entries[2]["action_zh"] == "查看"
    assert entries[2]["ip"] == "203.0.113.7"
    listed = ok(api.client.get("/v1/tasks?status=completed", headers=a.auth("compliance")))
    assert [t["task_id"] for t in listed["tasks"]] == [task]
    assert listed["tasks"][0]["template"]["id"] == "purchase"
    assert ok(api.client.get("/v1/tasks", headers=api.b.auth("compliance")))["tasks"] == []


# -- refusals -----------------------------------------------------------------------------


@pytest.fixture
def launched(api: ApiWorld) -> str:
    """A submitted seed task of tenant a, waiting for the department head."""
    task = str(create_task(api, api.a)["task_id"])
    ok(act(api, api.a, task, "submit", "u-chen"))
    return task


def test_each_refusal_has_its_status_and_type_and_stores_nothing(
    api: ApiWorld, launched: str
) -> None:
    a, path = api.a, f"/v1/tasks/{launched}/actions/approve"
    size = api.ledger.store.tree_size()

    def refused(answer: Any, status: int, kind: str) -> None:
        problem(answer, status, kind)
        assert api.ledger.store.tree_size() == size

    body = signed_body("u-wong")
    # No signature.
    headers = {**a.auth("app"), "Idempotency-Key": uuid.uuid4().hex}
    refused(api.client.post(path, json=body, headers=headers), 401, "bad-signature")
    # Unknown key id.
    headers = {
        **a.auth("app"),
        "Idempotency-Key": uuid.uuid4().hex,
        "JWS-Signature": a.sign(body, kid="no-such-key"),
    }
    refused(api.client.post(path, json=body, headers=headers), 401, "unknown-app-key")
    # Revoked key.
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert api.tenants.register_app_key(a.tenant_id, "acme-oa", "old-key", public)
    assert api.client.delete("/v1/app-keys/old-key", headers=a.auth("admin")).status_code == 204
    old = Tenant(a.tenant_id, a.keys, private, "old-key")
    refused(send_signed(api, old, path, body), 401, "revoked-app-key")
    # A signature by some other key under a's key id.
    forged = Tenant(a.tenant_id, a.keys, Ed25519PrivateKey.generate(), a.kid)
    refused(send_signed(api, forged, path, body), 401, "bad-signature")
    # The body changed after it was signed.
    headers = a.signed_headers(body)
    changed = {**body, "comment": "I did not say this"}
    refused(api.client.post(path, json=changed, headers=headers), 401, "bad-signature")
    # Client time outside the window (either way).
    for skew in (timedelta(minutes=-10), timedelta(minutes=10)):
        moment = (datetime.now(UTC) + skew).isoformat().replace("+00:00", "Z")
        refused(
            send_signed(api, a, path, {**body, "client_time": moment}),
            422,
            "client-time-out-of-window",
        )
    refused(send_signed(api, a, path, {**body, "client_time": None}), 422, "invalid-request")
    # Tenant b's app, even with a valid signature, finds no such task.
    refused(send_signed(api, api.b, path, body), 404, "task-not-found")
    refused(
        send_signed(api, a, f"/v1/tasks/{uuid.uuid4()}/actions/approve", body),
        404,
        "task-not-found",
    )
    # Workflow refusals.
    task = f"/v1/tasks/{launched}/actions"
    refused(send_signed(api, a, path, signed_body("u-lee")), 403, "not-a-participant")
    refused(send_signed(api, a, f"{task}/submit", signed_body("u-wong")), 403, "not-the-initiator")
    refused(
        send_signed(
            api,
            a,
            f"{task}/sign",
            signed_body(
                "u-wong",
                document_sha256="0" * 64,
                signer={"name": "x", "organisation": "y", "email": "x@y.example"},
            ),
        ),
        422,
        "action-refused",
    )
    refused(
        send_signed(api, a, f"{task}/return", signed_body("u-wong", to_step="nowhere", reason="r")),
        422,
        "action-refused",
    )
    refused(
        send_signed(api, a, f"{task}/remind", signed_body("u-chen", to_user="u-lee")),
        403,
        "not-a-participant",
    )
    # Now the head approves, once; a second approval of the same person is refused.
    ok(send_signed(api, a, path, body))
    size = api.ledger.store.tree_size()
    refused(send_signed(api, a, path, signed_body("u-wong")), 403, "not-a-participant")
    # The CFO may not approve before the finance step, nor without the password check.
    ok(act(api, a, launched, "approve", "u-lee"))
    ok(act(api, a, launched, "approve", "u-ho"))
    size = api.ledger.store.tree_size()
    refused(send_signed(api, a, path, signed_body("u-cheung")), 403, "identity-check-required")


def test_a_replayed_event_id_is_refused_by_the_store(api: ApiWorld, launched: str) -> None:
    path = f"/v1/tasks/{launched}/actions/comment"
    body = signed_body("u-chen", text="Please hurry")
    ok(send_signed(api, api.a, path, body))
    size = api.ledger.store.tree_size()
    again = send_signed(api, api.a, path, body)  # a new Idempotency-Key: a replay
    problem(again, 409, "duplicate-event")
    assert api.ledger.store.tree_size() == size
    # The same event id under another tenant's task is refused too.
    other = create_task(api, api.b)["task_id"]
    replay = send_signed(
        api, api.b, f"/v1/tasks/{other}/actions/comment", {**body, "actor": actor("u-chen")}
    )
    problem(replay, 409, "duplicate-event")


def _sign_step_task(api: ApiWorld) -> tuple[str, str]:
    """An ad hoc task of tenant a, submitted, waiting for u-lee to sign its document."""
    document = upload_pdf(api, api.a)
    step = {"key": "sign", "title": "Sign", "role": "signer", "mode": "or_sign"}
    steps = [{**step, "participants": [{"user": "u-lee"}]}]
    body = signed_body("u-chen", steps=steps, title="Sign this", documents=[document])
    task = ok(send_signed(api, api.a, "/v1/tasks", body), 201)["task_id"]
    ok(act(api, api.a, task, "submit", "u-chen"))
    return task, document


@pytest.mark.parametrize("revoked", ["api key", "app key"])
@pytest.mark.parametrize("action", ["create", "comment", "sign"])
def test_a_key_revoked_after_it_was_read_stores_no_act(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch, revoked: str, action: str
) -> None:
    """A revocation that commits after an act's keys were read, before its events are
    stored, refuses the act: its own transaction checks the keys again."""
    if action == "create":
        path = "/v1/tasks"
        body = signed_body(
            "u-chen",
            template={"id": "purchase", "version": 3},
            title="Laptops",
            form={
                "item": "Laptops",
                "amount": {"amount": "10.00", "currency": "HKD"},
                "cross_border": False,
            },
            documents=[upload_pdf(api, api.a)],
        )
    elif action == "comment":
        task = str(create_task(api, api.a)["task_id"])
        path, body = f"/v1/tasks/{task}/actions/comment", signed_body("u-chen", text="Hello")
    else:
        task, document = _sign_step_task(api)
        signer = {"name": "Lee", "organisation": "ACME", "email": "lee@example.com"}
        path = f"/v1/tasks/{task}/actions/sign"
        body = signed_body("u-lee", document_sha256=document, signer=signer)
    size = api.ledger.store.tree_size()
    revoke_after_app_key_read(api, monkeypatch, revoked)
    kind = "unauthenticated" if revoked == "api key" else "revoked-app-key"
    problem(send_signed(api, api.a, path, body), 401, kind)
    assert api.ledger.store.tree_size() == size
    assert api.ledger.store.entry_for_event(uuid.UUID(body["event_id"])) is None


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    api: ApiWorld, launched: str
) -> None:
    path = f"/v1/tasks/{launched}/actions/approve"
    body = signed_body("u-wong", comment="ok")
    first = send_signed(api, api.a, path, body, key="approve-1")
    assert first.status_code == 200, first.text
    size = api.ledger.store.tree_size()
    again = send_signed(api, api.a, path, body, key="approve-1")
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.ledger.store.tree_size() == size
    other = send_signed(api, api.a, path, {**body, "comment": "changed"}, key="approve-1")
    problem(other, 422, "idempotency-key-reused")
    # Without a key: refused before anything else.
    headers = api.a.signed_headers(body)
    del headers["Idempotency-Key"]
    problem(api.client.post(path, json=body, headers=headers), 428, "idempotency-key-required")
    assert api.ledger.store.tree_size() == size
    # Task creation too: the same key gives the same task, stored once.
    create = signed_body(
        "u-chen",
        template={"id": "purchase"},
        title="Chairs",
        form={
            "item": "Chairs",
            "amount": {"amount": "100", "currency": "HKD"},
            "cross_border": False,
        },
    )
    made = send_signed(api, api.a, "/v1/tasks", create, key="create-1")
    assert made.status_code == 201, made.text
    size = api.ledger.store.tree_size()
    assert send_signed(api, api.a, "/v1/tasks", create, key="create-1").json() == made.json()
    assert api.ledger.store.tree_size() == size


def test_both_addresses_are_recorded_and_labelled(api: ApiWorld, launched: str) -> None:
    app = api.client.app
    via_proxy = TestClient(app, client=("10.0.0.5", 40000))
    direct = TestClient(app, client=("198.51.100.9", 40000))
    path = f"/v1/tasks/{launched}/actions/comment"
    spoof = {"X-Forwarded-For": "192.0.2.66, 203.0.113.20"}
    ok(
        send_signed(
            api,
            api.a,
            path,
            signed_body("u-chen", text="via proxy"),
            client=via_proxy,
            extra_headers=spoof,
        )
    )
    ok(
        send_signed(
            api,
            api.a,
            path,
            signed_body("u-chen", text="direct"),
            client=direct,
            extra_headers=spoof,
        )
    )
    by_proxy, by_direct = stored(api, launched)[-2:]
    # Behind the trusted proxy: the address the proxy saw; the end user's IP as reported.
    assert by_proxy["context"]["connection_ip"] == "203.0.113.20"
    assert by_proxy["context"]["ip"] == "203.0.113.7"
    # From an untrusted peer, X-Forwarded-For is ignored.
    assert by_direct["context"]["connection_ip"] == "198.51.100.9"
    assert by_direct["context"]["user_agent"].startswith("Mozilla/5.0")
    timeline = ok(api.client.get(f"/v1/tasks/{launched}/timeline", headers=api.a.auth("app")))
    assert timeline["entries"][-1]["ip"] == "203.0.113.7"


def _request(peer: str | None, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope: dict[str, Any] = {"type": "http", "headers": headers, "client": None}
    if peer is not None:
        scope["client"] = (peer, 1234)
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.5", "203.0.113.9, 10.1.1.1", "203.0.113.9"),
        ("10.0.0.5", "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        ("10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.5", "not-an-ip", "10.0.0.5"),
        ("198.51.100.9", "203.0.113.9", "198.51.100.9"),
        ("2001:db8::1", "203.0.113.9", "2001:db8::1"),
        ("testclient", None, None),
        (None, "203.0.113.9", None),
    ],
)
def test_connection_ip_believes_forwarded_for_only_from_trusted_proxies(
    peer: str | None, forwarded: str | None, expected: str | None
) -> None:
    settings = ApiSettings(trusted_proxies=("10.0.0.0/8",))
    assert connection_ip(_request(peer, forwarded), settings) == expected


# -- documents, creation and listing ------------------------------------------------------


def test_uploads_are_checked_for_size_type_and_pdf_and_need_a_key(api: ApiWorld) -> None:
    a = api.a

    def upload(data: bytes, media_type: str = "application/pdf", **headers: str) -> Any:
        return api.client.post(
            "/v1/documents",
            files={"file": ("x.pdf", data, media_type)},
            headers={**a.auth("app"), "Idempotency-Key": uuid.uuid4().hex, **headers},
        )

    problem(upload(b"hello", "text/plain"), 415, "unsupported-media-type")
    problem(upload(b"not a pdf"), 422, "document-refused")
    problem(upload(b"%PDF-1.7\nbroken"), 422, "document-refused")
    limit = ApiSettings().max_upload_bytes
    problem(upload(b"%PDF-" + b"0" * limit), 413, "document-too-large")
    pdf = make_test_pdf("Same")
    key = uuid.uuid4().hex
    first = upload(pdf, **{"Idempotency-Key": key})
    again = upload(pdf, **{"Idempotency-Key": key})
    assert first.status_code == 201 and again.json() == first.json()
    assert first.json()["media_type"] == "application/pdf"
    problem(
        upload(make_test_pdf("Other"), **{"Idempotency-Key": key}), 422, "idempotency-key-reused"
    )
    no_key = api.client.post(
        "/v1/documents", files={"file": ("x.pdf", pdf, "application/pdf")}, headers=a.auth("app")
    )
    problem(no_key, 428, "idempotency-key-required")
    headers = {**a.auth("legal"), "Idempotency-Key": uuid.uuid4().hex}
    forbidden = api.client.post(
        "/v1/documents", files={"file": ("x.pdf", pdf, "application/pdf")}, headers=headers
    )
    problem(forbidden, 403, "forbidden-for-role")
    # Tenant b cannot read a's upload, nor put it in a task, even knowing its hash.
    sha = first.json()["sha256"]
    problem(
        api.client.get(f"/v1/documents/{sha}", headers=api.b.auth("app")), 404, "document-not-found"
    )
    body = signed_body(
        "u-chen",
        template={"id": "purchase"},
        title="t",
        form={"amount": "1", "currency": "HKD", "cross_border": False},
        documents=[sha],
    )
    problem(send_signed(api, api.b, "/v1/tasks", body), 422, "unknown-document")
    problem(
        api.client.get(f"/v1/documents/{sha}", headers=a.auth("compliance")),
        403,
        "forbidden-for-role",
    )


def test_create_ad_hoc_and_refusals(api: ApiWorld) -> None:
    a = api.a
    steps = [
        {
            "key": "ok",
            "title": "OK?",
            "role": "approver",
            "mode": "or_sign",
            "participants": [{"user": "u-lee"}, {"role": "legal"}],
        },
    ]
    task_id = str(uuid.uuid4())
    body = signed_body(
        "u-chen",
        task_id=task_id,
        steps=steps,
        title="Quick one",
        cc=["u-ng"],
        reminder_policy={"first_after_hours": 4, "every_hours": 8, "max_reminders": 2},
    )
    made = ok(send_signed(api, a, "/v1/tasks", body), 201)
    assert made["task_id"] == task_id and made["state"]["template"]["id"] == "ad-hoc"
    assert made["state"]["steps"][0]["participants"][1]["user"] == "u-ho"
    size = api.ledger.store.tree_size()
    # Another tenant may not take the id, and is not told whose it is.
    taken = send_signed(api, api.b, "/v1/tasks", {**body, "event_id": str(uuid.uuid4())})
    assert "Acme" not in problem(taken, 409, "task-id-taken")["detail"]
    # Nor may the same tenant create it twice.
    problem(
        send_signed(api, a, "/v1/tasks", {**body, "event_id": str(uuid.uuid4())}),
        409,
        "task-exists",
    )
    fresh = {**body, "task_id": None}
    problem(
        send_signed(api, a, "/v1/tasks", {**fresh, "steps": [{"key": "x"}]}),
        422,
        "invalid-template",
    )
    problem(
        send_signed(api, a, "/v1/tasks", {**fresh, "template": {"id": "purchase"}}),
        422,
        "invalid-request",
    )
    del fresh["steps"]
    problem(
        send_signed(api, a, "/v1/tasks", {**fresh, "template": {"id": "nope"}}),
        422,
        "template-not-found",
    )
    problem(
        send_signed(api, a, "/v1/tasks", {**fresh, "template": {"id": "purchase"}}),
        422,
        "routing-failed",
    )
    problem(
        send_signed(api, a, "/v1/tasks", {**body, "actor": {"id": "u-chen", "x": 1}}),
        422,
        "invalid-request",
    )
    assert api.ledger.store.tree_size() == size


def test_listing_filters_pages_and_keeps_to_the_tenant(api: ApiWorld) -> None:
    a, b = api.a, api.b
    document = upload_pdf(api, a)
    mine = [str(create_task(api, a, documents=[document])["task_id"]) for _ in range(5)]
    for task in mine[:2]:
        ok(act(api, a, task, "submit", "u-chen"))
    theirs = [str(create_task(api, b)["task_id"]) for _ in range(4)]
    seen: list[str] = []
    after: str | None = None
    while True:
        query = f"/v1/tasks?limit=2{'&after=' + after if after else ''}"
        page = ok(api.client.get(query, headers=a.auth("app")))
        assert len(page["tasks"]) <= 2
        seen += [t["task_id"] for t in page["tasks"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(mine)
    pending = ok(api.client.get("/v1/tasks?pending_user=u-wong", headers=a.auth("auditor")))
    assert sorted(t["task_id"] for t in pending["tasks"]) == sorted(mine[:2])
    assert pending["tasks"][0]["pending"] == ["u-wong"]
    drafts = ok(api.client.get("/v1/tasks?status=draft&initiator=u-chen", headers=b.auth("app")))
    assert sorted(t["task_id"] for t in drafts["tasks"]) == sorted(theirs)
    problem(api.client.get("/v1/tasks?limit=0", headers=a.auth("app")), 422, "invalid-request")
    problem(api.client.get("/v1/tasks", headers=a.auth("admin")), 403, "forbidden-for-role")


def test_reading_another_tenants_task_is_404(api: ApiWorld, launched: str) -> None:
    for path in (f"/v1/tasks/{launched}", f"/v1/tasks/{launched}/timeline"):
        problem(api.client.get(path, headers=api.b.auth("auditor")), 404, "task-not-found")
        assert api.client.get(path, headers=api.a.auth("auditor")).status_code == 200
    problem(
        api.client.get(f"/v1/tasks/{uuid.uuid4()}", headers=api.a.auth("app")),
        404,
        "task-not-found",
    )


def test_reject_return_transfer_remind_and_revoke(api: ApiWorld, launched: str) -> None:
    a, task = api.a, launched
    ok(act(api, a, task, "remind", "u-chen", to_user="u-wong"))
    ok(act(api, a, task, "approve", "u-wong"))
    ok(act(api, a, task, "transfer", "u-lee", to_user="u-lee2", reason="on leave"))
    state = ok(act(api, a, task, "return", "u-ho", to_step="head", reason="missing quote"))
    state = state["state"]
    assert state["current_step"] == "head" and state["pending"] == ["u-wong"]
    problem(act(api, a, task, "read", "u-ng"), 403, "not-a-participant")
    state = ok(act(api, a, task, "reject", "u-wong", reason="too expensive"))["state"]
    assert state["status"] == "rejected"
    problem(act(api, a, task, "revoke", "u-chen", reason="x"), 409, "task-finished")
    other = str(create_task(api, a)["task_id"])
    ok(act(api, a, other, "submit", "u-chen"))
    assert ok(act(api, a, other, "revoke", "u-chen", reason="no budget"))["state"]["status"] == (
        "revoked"
    )
