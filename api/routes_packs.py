"""HTTP routes: evidence packs for legal teams, auditors and compliance officers.

``POST /v1/tasks/{task_id}/evidence-packs`` exports the task's pack (``evidence.pack``,
format in ``docs/evidence-pack.md``) into the data dir and records it for the tenant;
``GET /v1/evidence-packs/{pack_id}`` streams it back. Packs are files written once (to a
temporary name, then renamed), so a download never sees half a pack.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from api.problems import Problem
from api.security import idempotent, principal, raw_body, require
from api.tenancy import Principal
from evidence.pack import PackError, export_pack
from ledger.events import format_time
from projections.database import Database

if TYPE_CHECKING:
    from api.app import Runtime

router = APIRouter(tags=["evidence packs"])
#: Who may export and download packs (compliance officers from the dashboard's drill-down).
PACK_ROLES = ("legal", "auditor", "compliance")
Caller = Annotated[Principal, Depends(principal)]

_CHUNK = 256 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_packs (
    pack_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size {int} NOT NULL,
    events {int} NOT NULL,
    checkpoint_size {int} NOT NULL,
    created_at TEXT NOT NULL
)
"""
_COLUMNS = (
    "pack_id",
    "tenant_id",
    "task_id",
    "file_name",
    "sha256",
    "size",
    "events",
    "checkpoint_size",
    "created_at",
)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def ensure_schema(db: Database) -> None:
    """Create the packs table (once per start; harmless if it exists)."""
    with db.transaction(lock_schema=True) as tx:
        integer = "BIGINT" if db.backend == "postgres" else "INTEGER"
        tx.execute(_SCHEMA.format(int=integer))


def _pack_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pack_id": row["pack_id"],
        "task_id": row["task_id"],
        "sha256": row["sha256"],
        "size": row["size"],
        "events": row["events"],
        "checkpoint_size": row["checkpoint_size"],
        "created_at": row["created_at"],
        "download": f"/v1/evidence-packs/{row['pack_id']}",
    }


@router.post("/tasks/{task_id}/evidence-packs", status_code=201)
async def create_pack(
    request: Request,
    task_id: UUID,
    who: Caller,
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
) -> Response:
    """Export the task's evidence pack (legal, auditor); answers where to download it."""
    require(who, *PACK_ROLES)
    runtime = _runtime(request)
    raw = await raw_body(request, runtime.settings)

    def run() -> tuple[int, Any]:
        if not runtime.tenants.owns_stream(who.tenant_id, task_id):
            raise Problem(404, "task-not-found", f"there is no task {task_id}")
        pack_id = str(uuid.uuid4())
        folder = runtime.ledger.settings.data_dir / "packs" / who.tenant_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{pack_id}.zip"
        try:
            summary = export_pack(runtime.ledger, runtime.tasks, task_id, path, timezone=timezone)
        except PackError as exc:
            raise Problem(409, "pack-not-ready", str(exc)) from None
        except ValueError as exc:  # an unknown time zone
            raise Problem(422, "invalid-request", str(exc)) from None
        row = {
            "pack_id": pack_id,
            "tenant_id": who.tenant_id,
            "task_id": str(task_id),
            "file_name": path.name,
            "sha256": _sha256(path),
            "size": summary.size,
            "events": summary.events,
            "checkpoint_size": summary.checkpoint_size,
            "created_at": format_time(runtime.ledger.store.clock()),
        }
        with runtime.database.transaction() as tx:
            tx.execute(
                f"INSERT INTO api_packs ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                [row[c] for c in _COLUMNS],
            )
        return 201, _pack_json(row)

    response: Response = await run_in_threadpool(idempotent, request, who, raw, run)
    return response


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _find(runtime: Runtime, tenant_id: str, pack_id: str) -> dict[str, Any]:
    rows = runtime.database.query(
        f"SELECT {', '.join(_COLUMNS)} FROM api_packs WHERE pack_id = ? AND tenant_id = ?",
        [pack_id, tenant_id],
    )
    if not rows:
        raise Problem(404, "pack-not-found", f"there is no evidence pack {pack_id}")
    return dict(zip(_COLUMNS, rows[0], strict=True))


@router.get("/evidence-packs/{pack_id}/info")
async def pack_info(request: Request, pack_id: UUID, who: Caller) -> dict[str, Any]:
    """What a pack holds and its SHA-256 (legal, auditor)."""
    require(who, *PACK_ROLES)
    row = await run_in_threadpool(_find, _runtime(request), who.tenant_id, str(pack_id))
    return _pack_json(row)


@router.get(
    "/evidence-packs/{pack_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
async def download_pack(request: Request, pack_id: UUID, who: Caller) -> StreamingResponse:
    """The pack itself, streamed (legal, auditor)."""
    require(who, *PACK_ROLES)
    runtime = _runtime(request)
    row = await run_in_threadpool(_find, runtime, who.tenant_id, str(pack_id))
    path = runtime.ledger.settings.data_dir / "packs" / who.tenant_id / str(row["file_name"])

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            yield from iter(lambda: handle.read(_CHUNK), b"")

    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={
            "Content-Length": str(row["size"]),
            "Content-Disposition": f'attachment; filename="evidence-{row["task_id"]}.zip"',
            "Digest": f"sha-256={row['sha256']}",
        },
    )
