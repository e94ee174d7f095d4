"""Bad uploads and oversize bodies (issue 8, point 2).

``tests/api/test_tasks.py`` pins the basic upload refusals (wrong media type, bytes that do
not start with ``%PDF-``, a one-line broken PDF, one byte over the size limit). These add:
other file types sent as ``application/pdf`` with a ``.pdf`` name, truncated and encrypted
PDFs, PDF bombs (a FlateDecode content stream of 256 MiB, a cross-reference stream bomb,
nesting 100,000 deep, reference and page-tree loops, a lying page count, a tree 200 levels
deep), hostile file names, and bodies over the limit with and without a declared length,
on every kind of route. Each is refused with its own problem and stores nothing, or, for
the content bomb, accepted quickly with bounded memory and stored as the small file it is.
"""

from __future__ import annotations

import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from api.limits import MULTIPART_ALLOWANCE
from api.security import ApiSettings
from evidence.testing_pdfs import make_test_pdf
from tests.api.conftest import ApiWorld, Tenant, now_text
from tests.api.test_events import event_body
from tests.security import pdfs
from tests.security.conftest import assert_refused, footprint

SMALL_BODY = 16 * 1024
SMALL_UPLOAD = 256 * 1024


def _multipart(file_name: bytes, data: bytes, media_type: bytes = b"application/pdf") -> bytes:
    """A multipart/form-data body written by hand, so the file name goes out byte for byte."""
    return (
        b"--xYzBoUnDaRy\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + file_name + b'"\r\n'
        b"Content-Type: " + media_type + b"\r\n\r\n" + data + b"\r\n--xYzBoUnDaRy--\r\n"
    )


def _upload_raw(client: TestClient, tenant: Tenant, body: bytes) -> Response:
    headers = {
        **tenant.auth("app"),
        "Idempotency-Key": uuid.uuid4().hex,
        "Content-Type": "multipart/form-data; boundary=xYzBoUnDaRy",
    }
    answer: Response = client.post("/v1/documents", content=body, headers=headers)
    return answer


def _upload(api: ApiWorld, data: bytes, name: str = "contract.pdf") -> Response:
    answer: Response = api.client.post(
        "/v1/documents",
        files={"file": (name, data, "application/pdf")},
        headers={**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    return answer


@pytest.fixture
def small(api: ApiWorld) -> Iterator[TestClient]:
    """A second app over the same ledger and tenants, with small body and upload limits."""
    runtime = api.client.app.state.runtime  # type: ignore[attr-defined]
    settings = ApiSettings(max_body_bytes=SMALL_BODY, max_upload_bytes=SMALL_UPLOAD)
    app = create_app(api.ledger, runtime.tasks, settings=settings, background=False)
    with TestClient(app) as client:
        yield client


# -- not a PDF, or a broken one ----------------------------------------------------------


def _zip() -> bytes:
    return b"PK\x03\x04" + b"\0" * 26 + b"evil.exe" + b"PK\x05\x06" + b"\0" * 18


NOT_PDFS = {
    "zip": _zip(),
    "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
    "html": b"<!doctype html><script>alert(1)</script>",
    "empty": b"",
    "pdf magic late": b"\n\n%PDF-1.7\n",
}


@pytest.mark.parametrize("kind", sorted(NOT_PDFS))
def test_other_files_named_pdf_are_refused(api: ApiWorld, kind: str) -> None:
    before = footprint(api)
    answer = _upload(api, NOT_PDFS[kind], "contract.pdf")
    assert_refused(
        api, before, answer, 422, "document-refused", "is not a PDF (it does not start with %PDF-)"
    )


def test_truncated_and_encrypted_pdfs_are_refused(api: ApiWorld) -> None:
    whole = make_test_pdf("Truncated contract", pages=3)
    cases = {
        "header only": (b"%PDF-1.7\n", "not a readable PDF"),
        "first half": (whole[: len(whole) // 2], "not a readable PDF"),
        "no trailer": (whole[: whole.rindex(b"trailer")], "not a readable PDF"),
        "xref offset wrong": (whole.replace(b"startxref\n", b"startxref\n9", 1), "not a readable"),
        "encrypted": (pdfs.encrypted(), "the PDF is encrypted"),
        "no page": (pdfs.build(_no_pages()), "has no page"),
    }
    before = footprint(api)
    for name, (data, detail) in cases.items():
        answer = _upload(api, data)
        assert answer.status_code == 422, (name, answer.text)
        assert_refused(api, before, answer, 422, "document-refused", detail)


def _no_pages() -> dict[int, bytes]:
    return {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [] /Count 0 >>"}


# -- bombs and loops -----------------------------------------------------------------------


BROKEN_TREES = {
    "cross-reference stream bomb": (
        lambda: pdfs.xref_stream_bomb(64 * 1024 * 1024),
        "the file is not a readable PDF: Decoded stream data exceeds the limit",
    ),
    "arrays nested 100,000 deep": (
        lambda: pdfs.nested_arrays(100_000),
        "the file is not a readable PDF: maximum recursion depth",
    ),
    "self reference": (pdfs.self_reference, "the file is not a readable PDF"),
    "page tree loop": (pdfs.page_tree_loop, "page tree is broken: the page tree reaches object"),
    "page count lie": (
        lambda: pdfs.lying_page_count(10**12),
        "declares /Count 1000000000000 but holds 1 pages",
    ),
    "page tree 200 deep": (
        lambda: pdfs.deep_page_tree(200),
        "the page tree is deeper than 64 levels",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_TREES))
def test_pdf_bombs_and_loops_are_refused_fast_with_bounded_memory(api: ApiWorld, name: str) -> None:
    make, detail = BROKEN_TREES[name]
    data = make()  # type: ignore[operator]
    assert len(data) < 1024 * 1024
    before = footprint(api)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        answer = _upload(api, data)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_refused(api, before, answer, 422, "document-refused", detail)
    assert elapsed < 10, f"{name}: the check took {elapsed:.1f} s"
    assert peak < 32 * 1024 * 1024, f"{name}: {peak} bytes at the peak"


def test_a_content_stream_bomb_is_stored_as_is_never_inflated(api: ApiWorld) -> None:
    """256 MiB of zeros in a 256 KiB FlateDecode stream: the upload check reads the file's
    structure, not its page contents, so it answers at once, within a few MB, and the blob
    is the small file itself."""
    data = pdfs.content_bomb(256 * 1024 * 1024)
    assert len(data) < 512 * 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        answer = _upload(api, data)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer.status_code == 201, answer.text
    assert answer.json()["size"] == len(data)
    assert elapsed < 10 and peak < 32 * 1024 * 1024, (elapsed, peak)
    blobs = api.client.app.state.runtime.tasks.blobs  # type: ignore[attr-defined]
    assert blobs.path_of(answer.json()["sha256"]).stat().st_size == len(data)


# -- file names ----------------------------------------------------------------------------


NAMES: dict[str, tuple[bytes, str]] = {
    "parent dirs": (b"../../../../etc/passwd.pdf", "passwd.pdf"),
    "windows parent dirs": (b"..\\..\\windows\\win.ini.pdf", "win.ini.pdf"),
    "absolute": (b"/var/lib/evidence/blobs/aa/x.pdf", "x.pdf"),
    "nul": (b"contract.pdf\x00.exe", "contract.pdf.exe"),
    "control characters": (b"con\x01tr\x1bact\x7f.pdf", "contract.pdf"),
    "right-to-left override": ("invoice\u202efdp.exe".encode(), "invoicefdp.exe"),
    "zero width and bidi isolates": ("a\u200bb\u2066c\u2069.pdf".encode(), "abc.pdf"),
    "very long": (b"A" * 1000 + b".pdf", "A" * 255),
}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_hostile_file_names_are_sanitised_and_never_become_paths(api: ApiWorld, case: str) -> None:
    raw, expected = NAMES[case]
    pdf = make_test_pdf(f"Name test {case}")
    before = footprint(api)
    answer = _upload_raw(api.client, api.a, _multipart(raw, pdf))
    assert answer.status_code == 201, answer.text
    stored = answer.json()
    assert stored["file_name"] == expected
    database = api.client.app.state.runtime.database  # type: ignore[attr-defined]
    rows = database.query(
        "SELECT file_name FROM api_documents WHERE tenant_id = ? AND sha256 = ?",
        (api.a.tenant_id, stored["sha256"]),
    )
    assert rows == [(expected,)]
    # The only new file is the blob, named by its hash.
    sha = stored["sha256"]
    new_files = footprint(api).files - before.files
    assert new_files == {f"blobs/{sha[:2]}/{sha}"}, new_files


@pytest.mark.parametrize("raw", [b"..", b".", b"/", b"\x00", b"\\..\\", "\u202e".encode()])
def test_file_names_with_nothing_usable_are_refused(api: ApiWorld, raw: bytes) -> None:
    before = footprint(api)
    answer = _upload_raw(api.client, api.a, _multipart(raw, make_test_pdf("No name")))
    assert_refused(api, before, answer, 422, "document-refused", "has no usable name in it")


def test_a_line_break_inside_a_file_name_cannot_add_headers(api: ApiWorld) -> None:
    """CR LF in the quoted name ends the part's header line early: the line after it is a
    header of the part (here a second Content-Type), never of the ledger's answer, and the
    upload is refused for what that header says."""
    pdf = make_test_pdf("Injected")
    before = footprint(api)
    body = _multipart(b'evil.pdf"\r\nContent-Type: text/html\r\nX-Evil: "1', pdf)
    answer = _upload_raw(api.client, api.a, body)
    assert_refused(api, before, answer, 415, "unsupported-media-type", "as application/pdf")
    assert "x-evil" not in answer.headers


def test_a_part_header_too_long_for_the_form_parser_is_a_clean_400(api: ApiWorld) -> None:
    before = footprint(api)
    answer = _upload_raw(api.client, api.a, _multipart(b"A" * 20_000 + b".pdf", b"%PDF-1.7"))
    assert_refused(api, before, answer, 400, "http-error", "Invalid multipart data")


# -- oversize bodies -----------------------------------------------------------------------


def test_oversize_json_bodies_are_refused_before_the_route_runs(
    api: ApiWorld, small: TestClient
) -> None:
    """Every kind of route: the signed event, the typed task body, admin bodies; each 413
    with the limit in the detail, nothing stored, not even an idempotency record."""
    a = api.a
    padding = "x" * (SMALL_BODY + 1)
    event = event_body(data={"note": padding})
    task_body = {
        "event_id": str(uuid.uuid4()),
        "client_time": now_text(),
        "actor": {"id": "u-chen"},
        "title": padding,
        "template": {"id": "purchase"},
    }
    requests: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", "/v1/events", {**a.signed_headers(event)}, orjson.dumps(event)),
        ("POST", "/v1/events/batch", a.auth("app"), orjson.dumps({"events": [padding]})),
        ("POST", "/v1/tasks", {**a.signed_headers(task_body)}, orjson.dumps(task_body)),
        (
            "POST",
            f"/v1/tasks/{uuid.uuid4()}/actions/comment",
            a.auth("app"),
            b"[" + b" " * SMALL_BODY + b"]",
        ),
        ("POST", "/v1/templates", a.auth("admin"), orjson.dumps({"id": padding})),
        ("PUT", "/v1/directory", a.auth("admin"), orjson.dumps({"users": padding})),
        ("POST", "/v1/app-keys", a.auth("admin"), orjson.dumps({"kid": padding})),
        (
            "POST",
            f"/v1/tasks/{uuid.uuid4()}/evidence-packs",
            a.auth("legal"),
            b" " * (SMALL_BODY + 1),
        ),
    ]
    before = footprint(api)
    for method, path, headers, body in requests:
        answer = small.request(
            method,
            path,
            content=body,
            headers={
                **headers,
                "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": "application/json",
            },
        )
        assert_refused(
            api, before, answer, 413, "body-too-large", f"the body is over {SMALL_BODY} bytes"
        )
    # Unauthenticated callers get the same 413 before their key is even looked at.
    answer = small.post("/v1/events", content=b"{" + b" " * SMALL_BODY + b"}")
    assert_refused(api, before, answer, 413, "body-too-large")


def test_oversize_bodies_without_a_declared_length_are_cut_off(
    api: ApiWorld, small: TestClient
) -> None:
    """A chunked body is counted as it arrives and refused at the first chunk past the limit."""
    sent = [0]

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            sent[0] += 1
            yield b" " * 4096

    before = footprint(api)
    headers = {**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex}
    answer = small.post(
        "/v1/events", content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in answer.request.headers}
    assert_refused(api, before, answer, 413, "body-too-large")

    def upload_chunks() -> Iterator[bytes]:
        yield _multipart(b"big.pdf", b"%PDF-1.7\n")[:-20]
        for _ in range(128):
            yield b"0" * 4096

    answer = small.post(
        "/v1/documents",
        content=upload_chunks(),
        headers={**headers, "Content-Type": "multipart/form-data; boundary=xYzBoUnDaRy"},
    )
    assert_refused(
        api,
        before,
        answer,
        413,
        "document-too-large",
        f"the document is over {SMALL_UPLOAD + MULTIPART_ALLOWANCE} bytes",
    )


def test_oversize_uploads_are_refused_with_nothing_stored(api: ApiWorld, small: TestClient) -> None:
    before = footprint(api)
    # Past the route's own limit (the file) but within the framing allowance.
    body = _multipart(b"big.pdf", b"%PDF-1.7\n" + b"0" * SMALL_UPLOAD)
    answer = _upload_raw(small, api.a, body)
    assert_refused(
        api, before, answer, 413, "document-too-large", f"the document is over {SMALL_UPLOAD} bytes"
    )
    # Past the framing allowance too: refused from the declared length alone.
    body = _multipart(b"big.pdf", b"%PDF-1.7\n" + b"0" * (SMALL_UPLOAD + MULTIPART_ALLOWANCE))
    answer = _upload_raw(small, api.a, body)
    assert_refused(api, before, answer, 413, "document-too-large")
    # Many small parts in one request are no way around it.
    parts: list[Any] = [
        ("file", (f"{i}.pdf", b"%PDF-" + b"0" * 8192, "application/pdf")) for i in range(64)
    ]
    answer = small.post(
        "/v1/documents",
        files=parts,
        headers={**api.a.auth("app"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_refused(api, before, answer, 413, "document-too-large")
