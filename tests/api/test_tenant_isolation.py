"""Tenant isolation: every route of the app, with every role of two tenants (invariant 7).

Tenant a owns a task, a document, app and API keys. Every route the app has (enumerated
from ``app.routes``, so a route added later is walked too) is called with the ids of a's
objects by every role of tenant b, and by no key at all: no answer may be a success that
shows any of a's data. Then every role of tenant a calls the same routes: the roles the
route is for get through, the others are refused with 403.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from api.tenancy import ROLES
from evidence.testing_pdfs import make_test_pdf
from tests.api.conftest import (
    DIRECTORY,
    ApiWorld,
    Tenant,
    act,
    actor,
    create_task,
    end_user,
    now_text,
    upload_pdf,
)
from tests.workflow import seed_template

SECRET_TITLE = "Acquisition of Zeta Holdings (confidential)"
ALL = frozenset(ROLES)
READERS = frozenset({"app", "legal", "auditor", "compliance"})
VIEWERS = frozenset({"compliance", "auditor", "admin"})
PACKS = frozenset({"legal", "auditor", "compliance"})

#: Who each known route is for. Routes not listed (added by other modules) are walked for
#: isolation all the same; their role rules are their own tests' business.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/documents"): frozenset({"app"}),
    ("GET", "/v1/documents/{sha256}"): frozenset({"app", "legal", "auditor"}),
    ("POST", "/v1/tasks"): frozenset({"app"}),
    ("GET", "/v1/tasks"): READERS,
    ("GET", "/v1/tasks/{task_id}"): READERS,
    ("GET", "/v1/tasks/{task_id}/timeline"): READERS,
    ("POST", "/v1/api-keys"): frozenset({"admin"}),
    ("DELETE", "/v1/api-keys/{key_id}"): frozenset({"admin"}),
    ("POST", "/v1/app-keys"): frozenset({"admin"}),
    ("GET", "/v1/app-keys"): frozenset({"admin", "app"}),
    ("DELETE", "/v1/app-keys/{kid}"): frozenset({"admin"}),
    ("POST", "/v1/templates"): frozenset({"admin"}),
    ("GET", "/v1/templates"): ALL,
    ("GET", "/v1/templates/{template_id}"): ALL,
    ("PUT", "/v1/directory"): frozenset({"admin"}),
    ("GET", "/v1/directory"): frozenset({"admin", "app"}),
    ("GET", "/v1/kpis"): VIEWERS,
    ("GET", "/v1/compliance"): VIEWERS,
    ("GET", "/v1/kpis/tables/{name}.{extension}"): VIEWERS,
    ("POST", "/v1/tasks/{task_id}/evidence-packs"): PACKS,
}
_ACTIONS = re.compile(r"^/v1/tasks/\{task_id\}/actions/([a-z-]+)$")


@dataclass
class Owned:
    """Tenant a's objects, and the strings that would betray them in an answer."""

    task_id: str
    document: str
    revision_of_b: str
    event_ids: list[str]
    leaf_indices: list[int]
    api_key_id: str
    markers: list[str]


@pytest.fixture
def owned(api: ApiWorld) -> Owned:
    a = api.a
    document = upload_pdf(api, a, make_test_pdf("Zeta term sheet"))
    created = create_task(api, a, documents=[document], title=SECRET_TITLE)
    task = created["task_id"]
    assert act(api, a, task, "submit", "u-chen").status_code == 200
    assert act(api, a, task, "comment", "u-chen", text="secret remark").status_code == 200
    events = api.ledger.store.read_stream(uuid.UUID(task))
    entries = [api.ledger.store.entry_for_event(e.event_id) for e in events]
    key_id = a.keys["auditor"].split("_")[1]
    markers = [
        task,
        document,
        SECRET_TITLE,
        "secret remark",
        a.tenant_id,
        a.kid,
        key_id,
        *(str(e.event_id) for e in events),
        *(e.hash.hex() for e in events),
    ]
    # Tenant b's own task, so b's lists are not empty by accident.
    b_doc = upload_pdf(api, api.b)
    create_task(api, api.b, documents=[b_doc])
    return Owned(
        task,
        document,
        b_doc,
        [str(e.event_id) for e in events],
        [e.leaf_index for e in entries if e is not None],
        key_id,
        markers,
    )


def _fill(path: str, owned: Owned, names: dict[str, str] | None = None) -> str:
    """``path`` with each parameter set to an id of tenant a's objects."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if names and name in names:
            return names[name]
        lowered = name.lower()
        if "sha" in lowered or "document" in lowered or "blob" in lowered:
            return owned.document
        if "event" in lowered:
            return owned.event_ids[0]
        if "index" in lowered or "leaf" in lowered:
            return str(owned.leaf_indices[0])
        if "size" in lowered or "start" in lowered or "end" in lowered:
            return str(max(owned.leaf_indices) + 1)
        if lowered == "kid":
            return "acme-app-1"
        if lowered == "key_id":
            return owned.api_key_id
        if lowered == "name":
            return "breaches"
        if lowered == "extension":
            return "csv"
        if "template" in lowered:
            return "purchase"
        return owned.task_id

    return re.sub(r"\{([^}]+)\}", value, path)


def _body(path: str, owned: Owned) -> dict[str, Any]:
    """A body that would be accepted from tenant a for this route (signed fields fresh)."""
    signed = {"event_id": str(uuid.uuid4()), "client_time": now_text(), "context": end_user()}
    action = _ACTIONS.match(path)
    if action is not None:
        fields: dict[str, Any] = {
            "submit": {},
            "view": {"document_sha256": owned.document},
            "read": {"document_sha256": owned.document},
            "verify-identity": {"factor": "password", "method": "sso", "result": "passed"},
            "approve": {"comment": "ok"},
            "reject": {"reason": "no"},
            "return": {"to_step": "head", "reason": "again"},
            "transfer": {"to_user": "u-other"},
            "add-signer": {"user": "u-other", "position": "after"},
            "remind": {"to_user": "u-wong"},
            "comment": {"text": "hello"},
            "revoke": {"reason": "stop"},
            "sign": {
                "document_sha256": owned.document,
                "signer": {"name": "W", "organisation": "ACME", "email": "w@acme.example"},
            },
        }[action.group(1)]
        user = (
            "u-chen" if action.group(1) in ("submit", "remind", "revoke", "comment") else "u-wong"
        )
        return {**signed, "actor": actor(user), **fields}
    if path == "/v1/tasks":
        return {
            **signed,
            "actor": actor("u-chen"),
            "task_id": owned.task_id,
            "template": {"id": "purchase"},
            "title": "Taken id",
            "form": {"amount": {"amount": "1", "currency": "HKD"}, "cross_border": False},
            "documents": [owned.document],
        }
    if path == "/v1/api-keys":
        return {"role": "auditor"}
    if path == "/v1/app-keys":
        return {"app_id": "x", "kid": f"k-{uuid.uuid4().hex[:8]}", "public_key": "A" * 43}
    if path == "/v1/templates":
        return seed_template().to_json()
    if path == "/v1/directory":
        return DIRECTORY
    # A route of another module: a signed body naming a's objects in the usual fields.
    return {
        **signed,
        "actor": actor("u-chen"),
        "task_id": owned.task_id,
        "stream_id": owned.task_id,
        "document_sha256": owned.document,
        "type": "comment.added",
        "data": {"text": "x"},
        "events": [],
    }


_PUBLIC = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


def _routes(api: ApiWorld) -> Iterator[tuple[str, str]]:
    """Every (method, path) the app serves, routers included, except FastAPI's own docs."""
    for context in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        path, methods = context.path, context.methods
        if path is None or not methods or path in _PUBLIC:
            continue
        for method in sorted(methods - {"HEAD"}):
            yield method, path


def _call(
    api: ApiWorld,
    tenant: Tenant | None,
    role: str | None,
    method: str,
    path: str,
    owned: Owned,
    names: dict[str, str] | None = None,
) -> Any:
    url = _fill(path, owned, names)
    headers: dict[str, str] = {"Idempotency-Key": uuid.uuid4().hex}
    if tenant is not None and role is not None:
        headers.update(tenant.auth(role))
    if method == "GET":
        return api.client.get(url, headers=headers)
    if method == "DELETE":
        return api.client.delete(url, headers=headers)
    if path == "/v1/documents":
        pdf = make_test_pdf(f"Upload {uuid.uuid4().hex}")
        files = {"file": ("x.pdf", pdf, "application/pdf")}
        return api.client.request(method, url, files=files, headers=headers)
    body = _body(path, owned)
    if tenant is not None:
        headers["JWS-Signature"] = tenant.sign(body)
    return api.client.request(method, url, json=body, headers=headers)


def _reveals(answer: Any, owned: Owned) -> list[str]:
    text = answer.text
    return [m for m in owned.markers if m in text]


def test_tenant_b_and_strangers_never_see_tenant_a(api: ApiWorld, owned: Owned) -> None:
    """Every route, every role of b (and no key): never a success showing a's data."""
    walked = 0
    for method, path in _routes(api):
        for role in (None, *sorted(ROLES)):
            tenant = api.b if role is not None else None
            answer = _call(api, tenant, role, method, path, owned)
            where = f"{method} {path} as b/{role}: {answer.status_code} {answer.text[:300]}"
            assert answer.status_code < 500, where
            if path.startswith("/v1/") and role is None:
                assert answer.status_code == 401, where
            if answer.is_success:
                assert not _reveals(answer, owned), where
            walked += 1
    assert walked >= 19 * 6
    # a's objects are untouched by all of that.
    task = api.client.get(f"/v1/tasks/{owned.task_id}", headers=api.a.auth("app")).json()
    assert task["title"] == SECRET_TITLE and task["status"] == "in_progress"
    assert [k["kid"] for k in api.client.get("/v1/app-keys", headers=api.a.auth("app")).json()] == [
        api.a.kid
    ]
    assert api.tenants.authenticate(api.a.keys["auditor"]) is not None


def test_tenant_b_gets_404_not_403_for_a_s_objects(api: ApiWorld, owned: Owned) -> None:
    """Refusals do not reveal that a's object exists: the same 404 as a made-up id."""
    checked = 0
    for method, path in _routes(api):
        if not ({"task_id", "sha256"} & set(re.findall(r"\{([^}:]+)", path))):
            continue
        if (method, path) not in ALLOWED and not _ACTIONS.match(path):
            continue
        allowed = ALLOWED.get((method, path), frozenset({"app"}))
        for role in allowed:
            real = _call(api, api.b, role, method, path, owned)
            made_up = _call(
                api,
                api.b,
                role,
                method,
                path,
                owned,
                {"task_id": str(uuid.uuid4()), "sha256": "f" * 64},
            )
            assert real.status_code == made_up.status_code == 404, (method, path, role, real.text)
            assert real.json()["type"] == made_up.json()["type"]
            checked += 1
    assert checked >= 16


def test_tenant_a_roles_get_what_their_role_allows(api: ApiWorld, owned: Owned) -> None:
    for method, path in _routes(api):
        allowed = ALLOWED.get((method, path))
        if allowed is None and _ACTIONS.match(path):
            allowed = frozenset({"app"})
        for role in sorted(ROLES):
            names = {"kid": "no-such-kid", "key_id": "0" * 16} if method == "DELETE" else None
            answer = _call(api, api.a, role, method, path, owned, names)
            where = f"{method} {path} as a/{role}: {answer.status_code} {answer.text[:300]}"
            assert answer.status_code < 500, where
            assert answer.status_code != 401, where
            if allowed is None:
                continue
            kind = answer.json().get("type", "") if not answer.is_success else ""
            if role in allowed:
                assert not kind.endswith("/forbidden-for-role"), where
                if method == "GET":
                    assert answer.status_code == 200, where
            else:
                assert answer.status_code == 403 and kind.endswith("/forbidden-for-role"), where
    # a's readers see a's task.
    for role in READERS:
        listed = api.client.get("/v1/tasks", headers=api.a.auth(role)).json()
        assert owned.task_id in [t["task_id"] for t in listed["tasks"]]
