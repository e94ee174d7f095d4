"""Tenant b guessing tenant a's ids (issue 8, point 2).

``tests/api/test_tenant_isolation.py`` walks every route as every role of b and checks that
a's task ids and document hashes answer 404 like made-up ones, by status and type. This
goes further for the ids it does not reach with real values — event ids, leaf indexes and
evidence pack ids — and for document hashes used inside requests: for each, b's answer for
a's real id and b's answer for an id that exists nowhere must be the same document, word for
word once the id itself is blanked out, with the same headers, so no answer tells "exists
in another tenant" from "does not exist". Nothing is stored and nothing of a is shown.

Writes are the one place where ids are global by design: an event id or stream id taken
by anyone is refused (409) for everyone; ``test_forged_events`` pins that the refusal is
the same whoever holds the id and names nothing of the holder.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from httpx import Response

from evidence.testing_pdfs import make_test_pdf
from tests.api.conftest import ApiWorld, act, actor, create_task, end_user, upload_pdf
from tests.security.conftest import (
    assert_no_leak,
    assert_refused,
    assert_unchanged,
    footprint,
    tenant_secrets,
)

_IGNORED_HEADERS = {"date", "content-length"}


def _blank(text: str, value: str) -> str:
    """``text`` with ``value`` (as a whole word: leaf 0 is not the 0 of 404) replaced."""
    return re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", "ID", text)


def _same_answer(real: Response, made_up: Response, real_id: str, fake_id: str) -> None:
    """Both answers are equal once the guessed id is blanked out of each."""
    assert real.status_code == made_up.status_code, (real.text, made_up.text)
    assert 400 <= real.status_code < 500, real.text
    assert _blank(real.text, real_id) == _blank(made_up.text, fake_id)
    headers = {k: v for k, v in real.headers.items() if k not in _IGNORED_HEADERS}
    others = {k: v for k, v in made_up.headers.items() if k not in _IGNORED_HEADERS}
    assert headers == others


def _guess(
    api: ApiWorld,
    real_id: str,
    fake_id: str,
    request: Callable[[str], Response],
    secrets: tuple[str, ...],
) -> int:
    before = footprint(api)
    real, made_up = request(real_id), request(fake_id)
    _same_answer(real, made_up, real_id, fake_id)
    assert_no_leak(real, secrets)
    assert_unchanged(before, api)
    return real.status_code


def test_b_cannot_tell_a_s_ids_from_ids_that_do_not_exist(api: ApiWorld) -> None:
    a, b = api.a, api.b
    document = upload_pdf(api, a, make_test_pdf("Zeta merger term sheet"))
    task = create_task(api, a, documents=[document], title="Project Zeta (confidential)")
    task_id = task["task_id"]
    assert act(api, a, task_id, "submit", "u-chen").status_code == 200
    leaf = task["receipts"][0]["leaf_index"]
    event_id = task["receipts"][0]["event_id"]
    made = api.client.post(
        f"/v1/tasks/{task_id}/evidence-packs",
        headers={**a.auth("legal"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    pack_id = made.json()["pack_id"]
    secrets = (*tenant_secrets(api, "a"), "Project Zeta", made.json()["sha256"])
    b_task = create_task(api, b)["task_id"]
    never = str(uuid.uuid4())
    past_the_log = str(api.ledger.store.tree_size() + 1000)

    def get(role: str, path: str, **params: Any) -> Callable[[str], Response]:
        def send(value: str) -> Response:
            filled = {k: (value if v is None else v) for k, v in params.items()}
            answer: Response = api.client.get(
                path.format(id=value), params=filled, headers=b.auth(role)
            )
            return answer

        return send

    def signed(path: str, fields: Callable[[str], dict[str, Any]]) -> Callable[[str], Response]:
        def send(value: str) -> Response:
            return api.post_signed(
                b,
                path.format(id=value),
                {"actor": actor("u-chen"), "context": end_user(), **fields(value)},
            )

        return send

    statuses = {}
    cases: list[tuple[str, str, str, Callable[[str], Response]]] = [
        ("task", task_id, never, get("legal", "/v1/tasks/{id}")),
        ("timeline", task_id, never, get("auditor", "/v1/tasks/{id}/timeline")),
        ("inclusion by event", event_id, never, get("auditor", "/v1/log/inclusion", event_id=None)),
        (
            "inclusion by leaf",
            str(leaf),
            past_the_log,
            get("app", "/v1/log/inclusion", leaf_index=None),
        ),
        ("pack", pack_id, never, get("legal", "/v1/evidence-packs/{id}")),
        ("pack info", pack_id, never, get("auditor", "/v1/evidence-packs/{id}/info")),
        ("document", document, "e" * 64, get("app", "/v1/documents/{id}")),
        (
            "task with a's document",
            document,
            "e" * 64,
            signed(
                "/v1/tasks",
                lambda sha: {
                    "template": {"id": "purchase"},
                    "title": "Guess",
                    "form": {"amount": {"amount": "1", "currency": "HKD"}, "cross_border": False},
                    "documents": [sha],
                },
            ),
        ),
        (
            "view a's document in b's task",
            document,
            "e" * 64,
            signed(f"/v1/tasks/{b_task}/actions/view", lambda sha: {"document_sha256": sha}),
        ),
        (
            "act on a's task",
            task_id,
            never,
            signed("/v1/tasks/{id}/actions/comment", lambda _: {"text": "guess"}),
        ),
        (
            "pack of a's task",
            task_id,
            never,
            lambda value: api.client.post(
                f"/v1/tasks/{value}/evidence-packs",
                headers={**b.auth("legal"), "Idempotency-Key": uuid.uuid4().hex},
            ),
        ),
    ]
    for name, real_id, fake_id, request in cases:
        statuses[name] = _guess(api, real_id, fake_id, request, secrets)
    assert statuses == {
        "task": 404,
        "timeline": 404,
        "inclusion by event": 404,
        "inclusion by leaf": 404,
        "pack": 404,
        "pack info": 404,
        "document": 404,
        "task with a's document": 422,
        "view a's document in b's task": 422,
        "act on a's task": 404,
        "pack of a's task": 404,
    }


def test_b_uploading_a_s_bytes_learns_nothing(api: ApiWorld) -> None:
    """Documents are stored once by hash; b uploading the same bytes as a gets the answer of
    a first upload, with its own file name, and still cannot read a's task or names."""
    pdf = make_test_pdf("Board minutes")
    fresh = make_test_pdf("Something else entirely")

    def upload(data: bytes) -> Response:
        answer: Response = api.client.post(
            "/v1/documents",
            files={"file": ("b-copy.pdf", data, "application/pdf")},
            headers={**api.b.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
        )
        return answer

    first = api.client.post(
        "/v1/documents",
        files={"file": ("a-secret-minutes.pdf", pdf, "application/pdf")},
        headers={**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert first.status_code == 201
    copy, new = upload(pdf), upload(fresh)
    assert copy.status_code == new.status_code == 201
    assert copy.json()["file_name"] == new.json()["file_name"] == "b-copy.pdf"
    assert set(copy.json()) == set(new.json())
    assert_no_leak(copy, ("a-secret-minutes", *tenant_secrets(api, "a")))
    assert {k for k in copy.headers if k not in _IGNORED_HEADERS} == {
        k for k in new.headers if k not in _IGNORED_HEADERS
    }


def test_viewing_a_document_outside_the_task_is_refused(api: ApiWorld) -> None:
    """A view or read is evidence about one of the task's own documents. Before this was
    checked, any hash was recorded, a's document hash included, in b's task."""
    a_document = upload_pdf(api, api.a, make_test_pdf("A's contract"))
    b_own_other = upload_pdf(api, api.b, make_test_pdf("B's other file"))
    b_document = upload_pdf(api, api.b, make_test_pdf("B's contract"))
    task = create_task(api, api.b, documents=[b_document])["task_id"]
    before = footprint(api)
    for action in ("view", "read"):
        for sha in (a_document, b_own_other, "e" * 64):
            answer = act(api, api.b, task, action, "u-chen", document_sha256=sha)
            assert_refused(
                api,
                before,
                answer,
                422,
                "unknown-document",
                f"document {sha} is not a document of task {task}",
                secrets=tenant_secrets(api, "a"),
            )
    assert act(api, api.b, task, "view", "u-chen", document_sha256=b_document).status_code == 200
