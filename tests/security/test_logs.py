"""No secret in any log record, at DEBUG, across the API's flows (issue 8, point 2).

Every logger (the ledger's, the API's, pyHanko's, httpx's, the TSA client's) is captured
at DEBUG while a tenant's admin makes and revokes keys, an app signs events and acts,
uploads and signs a document, legal exports a pack, and callers try bad, revoked and
malformed keys. No API key (nor its secret half), no ``Authorization`` value and no
private key material (the app's signing key, the ledger key and local CA files under the
data dir) may appear in any record's message, arguments or traceback. The real server's
own output, uvicorn's access log included, is checked in ``test_server.py``; the filter
that keeps keys sent in a query string out of that log is checked here too.
"""

from __future__ import annotations

import base64
import logging
import uuid

import pytest

from api import jws
from api.log_redaction import REDACTED, redact
from tests.api.conftest import ApiWorld, act, create_task
from tests.api.test_events import event_body


def _secrets(api: ApiWorld, extra: list[str]) -> list[str]:
    found: list[str] = []
    for tenant in (api.a, api.b):
        for key in tenant.keys.values():
            found += [key, key.split("_", 2)[2]]
        raw = tenant.app_key.private_bytes_raw()
        found += [jws.b64url(raw), base64.b64encode(raw).decode(), raw.hex()]
    for key in extra:
        found += [key, key.split("_", 2)[2]]
    for path in (api.ledger.settings.data_dir / "keys").iterdir():
        for line in path.read_text(errors="replace").splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                found.append(line.strip())
    return found


def test_no_secret_in_any_log_record_at_debug(
    api: ApiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = api.a
    admin = {**a.auth("admin"), "Idempotency-Key": uuid.uuid4().hex}
    made = api.client.post("/v1/api-keys", json={"role": "auditor"}, headers=admin)
    assert made.status_code == 201
    new_key = made.json()["api_key"]
    key_id = new_key.split("_")[1]
    assert api.client.delete(f"/v1/api-keys/{key_id}", headers=a.auth("admin")).status_code == 204
    revoked = api.client.get("/v1/tasks", headers={"Authorization": f"Bearer {new_key}"})
    assert revoked.status_code == 401

    task = create_task(api, a)["task_id"]
    assert act(api, a, task, "submit", "u-chen").status_code == 200
    assert act(api, a, task, "approve", "u-wong", comment="ok").status_code == 200
    body = event_body()
    assert (
        api.client.post("/v1/events", json=body, headers=a.signed_headers(body)).status_code == 201
    )
    forged = api.client.post(
        "/v1/events", json=body, headers={**a.signed_headers(body), "JWS-Signature": "x..y"}
    )
    assert forged.status_code == 401
    for bad in (a.keys["app"][:-2], "elk_" + "0" * 16 + "_" + a.keys["app"].split("_", 2)[2]):
        answer = api.client.get("/v1/tasks", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401
    # A key in the wrong place: the query string (the API never reads it there).
    assert api.client.get("/v1/tasks", params={"api_key": a.keys["legal"]}).status_code == 401
    pack = api.client.post(
        f"/v1/tasks/{task}/evidence-packs",
        headers={**a.auth("legal"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert pack.status_code == 201, pack.text

    assert caplog.records, "DEBUG capture saw nothing"
    secrets = _secrets(api, [new_key])
    for record in caplog.records:
        if record.name in ("httpx", "httpx2") and "http://testserver/" in record.getMessage():
            continue  # the test's own client logging what it sent, not the ledger
        text = " ".join(
            [record.getMessage(), repr(record.args), record.exc_text or "", str(record.exc_info)]
        )
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{record.name}: {text[:300]}"
        assert "Bearer elk_" not in text, f"{record.name}: {text[:300]}"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1:5 - "GET /v1/tasks?api_key=elk_0123456789abcdef_s3cr-et_x HTTP/1.1" 401',
            f'127.0.0.1:5 - "GET /v1/tasks?api_key={REDACTED} HTTP/1.1" 401',
        ),
        (
            "GET /v1/log/inclusion?leaf_index=3&token=abc&access_key=q HTTP/1.1",
            f"GET /v1/log/inclusion?leaf_index=3&token={REDACTED}&access_key={REDACTED} HTTP/1.1",
        ),
        ("GET /v1/tasks?status=done HTTP/1.1", "GET /v1/tasks?status=done HTTP/1.1"),
        ("key elk_0123456789abcdef_abc in text", f"key {REDACTED} in text"),
    ],
)
def test_access_log_lines_are_redacted(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_redaction_filter_rewrites_uvicorns_access_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from api import log_redaction

    log_redaction.install()
    log_redaction.install()  # once only
    access = logging.getLogger("uvicorn.access")
    assert sum(isinstance(f, log_redaction.RedactCredentials) for f in access.filters) == 1
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:1",
            "GET",
            "/v1/tasks?api_key=elk_0123456789abcdef_secret",
            "1.1",
            401,
        )
    assert caplog.records[-1].getMessage() == (
        f'127.0.0.1:1 - "GET /v1/tasks?api_key={REDACTED} HTTP/1.1" 401'
    )
