"""Header injection and header garbage (issue 8, point 2).

Control characters in ``Idempotency-Key``; ``X-Forwarded-For`` garbage from an untrusted
peer and from a trusted proxy; the headers the ledger writes itself (a pack's
``Content-Disposition``, a document's ``ETag``) for a task whose title and document name
are hostile. CR and LF sent raw on the wire, where the HTTP parser sees them, are tried
against a real server in ``test_server.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from evidence.testing_pdfs import make_test_pdf
from tests.api.conftest import ApiWorld, act, create_task
from tests.api.test_events import event_body
from tests.security.conftest import assert_refused, footprint
from tests.security.test_uploads import _multipart, _upload_raw


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("abc\x00def", "NUL"),
        ("abc\x01def", "SOH"),
        ("abc\x1b[31mred", "an escape sequence"),
        ("abc\x7fdef", "DEL"),
        ("abc\tdef", "a tab"),
        ("k" * 256, "256 characters"),
    ],
)
def test_idempotency_keys_with_control_characters_are_refused(
    api: ApiWorld, key: str, why: str
) -> None:
    body = event_body()
    headers = {**api.a.signed_headers(body), "Idempotency-Key": key}
    before = footprint(api)
    answer = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    problem = assert_refused(
        api, before, answer, 422, "invalid-idempotency-key", "1-255 printable characters"
    )
    assert key not in problem["detail"], why  # never echoed back
    # The same on an upload and on a signed act.
    upload = api.client.post(
        "/v1/documents",
        files={"file": ("x.pdf", make_test_pdf("Key test"), "application/pdf")},
        headers={**api.a.auth("app"), "Idempotency-Key": key},
    )
    assert_refused(api, before, upload, 422, "invalid-idempotency-key")


@pytest.mark.parametrize("kid", ["a\\u0000b", "a\\u001bb", "a\\u007fb", "a\\nb"])
def test_a_key_id_with_control_characters_is_a_bad_signature(api: ApiWorld, kid: str) -> None:
    """A JWS kid is a key's name; one with a NUL or another control character is refused
    as a bad signature before any lookup (PostgreSQL text cannot even hold a NUL)."""
    body = event_body()
    headers = {**api.a.signed_headers(body), "JWS-Signature": api.a.sign(body, kid=kid)}
    before = footprint(api)
    answer = api.client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert_refused(api, before, answer, 401, "bad-signature", "needs a kid")
    member = {"event": event_body(), "jws": ""}
    member["jws"] = api.a.sign(member["event"], kid=kid)
    batch = api.client.post(
        "/v1/events/batch",
        json={"events": [member]},
        headers={**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_refused(api, before, batch, 401, "bad-signature", "needs a kid")


def _event_through(client: TestClient, api: ApiWorld, forwarded: str | None) -> dict[str, Any]:
    """Append one event through ``client`` with ``X-Forwarded-For: forwarded``; the stored
    envelope's context."""
    body = event_body()
    headers = api.a.signed_headers(body)
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    answer = client.post("/v1/events", content=orjson.dumps(body), headers=headers)
    assert answer.status_code == 201, answer.text
    (entry,) = api.ledger.store.entries(
        answer.json()["leaf_index"], answer.json()["leaf_index"] + 1
    )
    context: dict[str, Any] = orjson.loads(entry.canonical)["context"]
    if forwarded is not None and forwarded not in ("198.51.100.7",):
        # Garbage is never copied into the evidence.
        for junk in ("not-an-ip", "999.999", "<script>", "DROP TABLE", "1111111111", ":4431"):
            if junk in forwarded:
                assert junk not in entry.canonical.decode(), forwarded
    return context


GARBAGE = [
    "not-an-ip",
    "999.999.999.999",
    "198.51.100.7:4431",
    "[2001:db8::1]",
    "198.51.100.7\x00",
    "unknown, 198.51.100.7",
    ",,,,",
    "1" * 4000,
    ", ".join(["198.51.100.7"] * 2000),
    "<script>alert(1)</script>",
    "198.51.100.7; DROP TABLE api_keys",
]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(api: ApiWorld) -> None:
    app: Any = api.client.app
    with TestClient(app, client=("192.0.2.44", 50000)) as direct:
        for forwarded in ["198.51.100.7", "10.0.0.5, 198.51.100.7", *GARBAGE]:
            context = _event_through(direct, api, forwarded)
            assert context["connection_ip"] == "192.0.2.44", forwarded


def test_forwarded_for_garbage_from_a_trusted_proxy_names_the_proxy(api: ApiWorld) -> None:
    """A trusted proxy (10.0.0.0/8 here) that forwards garbage: the ledger records the
    address it saw, the proxy's, never the garbage, and stores the event as usual."""
    app: Any = api.client.app
    with TestClient(app, client=("10.0.0.5", 50000)) as proxied:
        assert _event_through(proxied, api, "198.51.100.7")["connection_ip"] == "198.51.100.7"
        # Right to left: the last untrusted hop is the client, whatever is left of it.
        chain = "203.0.113.66, 198.51.100.7, 10.0.0.9"
        assert _event_through(proxied, api, chain)["connection_ip"] == "198.51.100.7"
        for forwarded in GARBAGE:
            context = _event_through(proxied, api, forwarded)
            expected = "198.51.100.7" if forwarded.startswith("198.51.100.7,") else "10.0.0.5"
            if forwarded.startswith("unknown, "):
                expected = "198.51.100.7"
            assert context["connection_ip"] == expected, forwarded


def test_headers_the_ledger_writes_carry_nothing_a_caller_chose(api: ApiWorld) -> None:
    """A task whose title and document name hold CR LF, quotes and header text: the pack's
    Content-Disposition is built from the task's UUID only, the document's ETag from its hash."""
    hostile = 'x.pdf"\r\nSet-Cookie: session=stolen\r\nX-Evil: "1'
    upload = _upload_raw(
        api.client, api.a, _multipart(hostile.encode(), make_test_pdf("Hostile names"))
    )
    # The CR LF inside the part's header ends the name there; the rest is refused or dropped.
    assert upload.status_code in (201, 400, 415), upload.text
    pdf = make_test_pdf("Hostile title")
    made = api.client.post(
        "/v1/documents",
        files={"file": ('evil"\r\nX-Evil: 1.pdf', pdf, "application/pdf")},
        headers={**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    assert "\r" not in made.json()["file_name"] and "\n" not in made.json()["file_name"]
    document = made.json()["sha256"]
    title = 'Contract"\r\nContent-Disposition: attachment; filename="evil.exe'
    task = create_task(api, api.a, documents=[document], title=title)["task_id"]
    assert act(api, api.a, task, "submit", "u-chen").status_code == 200
    pack = api.client.post(
        f"/v1/tasks/{task}/evidence-packs",
        headers={**api.a.auth("legal"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert pack.status_code == 201, pack.text
    download = api.client.get(pack.json()["download"], headers=api.a.auth("legal"))
    assert download.status_code == 200
    assert download.headers["content-disposition"] == f'attachment; filename="evidence-{task}.zip"'
    got = api.client.get(f"/v1/documents/{document}", headers=api.a.auth("app"))
    assert got.headers["etag"] == f'"{document}"'
    for answer in (download, got, pack, made):
        for name, value in answer.headers.items():
            assert "\r" not in value and "\n" not in value, (name, value)
            assert name.lower() not in ("set-cookie", "x-evil"), name
