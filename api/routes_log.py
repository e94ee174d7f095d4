"""HTTP routes: the global log for auditors, legal teams and apps (all reads).

* ``GET /log/checkpoint``: the latest signed checkpoint, C2SP ``tlog-checkpoint`` note text.
* ``GET /log/checkpoints/{tree_size}/timestamp``: that checkpoint's RFC 3161 response.
* ``GET /log/inclusion``: RFC 9162 inclusion proof of one of the caller's tenant's events.
* ``GET /log/consistency``: RFC 9162 consistency proof between two tree sizes.
* ``GET /log/entries``: a range of leaves. Every leaf's index and hash (so a mirror can
  recompute every tree head), and, for the caller's own tenant's leaves only, the event's
  canonical bytes, id and stream. Another tenant's content never leaves the ledger.

Hashes and proofs are base64 (standard alphabet, padded), as ``evidence-verify`` takes them.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.problems import Problem
from api.security import MAX_QUERY_INT, principal, require
from api.tenancy import Principal, TenantStore
from ledger.store import LedgerStore, LogEntry, StoredCheckpoint

router = APIRouter(tags=["log"])
Caller = Annotated[Principal, Depends(principal)]

#: Largest range ``GET /log/entries`` answers at once.
MAX_ENTRIES = 1000
READERS = ("auditor", "legal", "app")


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    event_id: UUID
    leaf_hash: str = Field(description="base64 RFC 9162 leaf hash (the event hash)")
    root: str = Field(description="base64 root of the tree of tree_size leaves")
    proof: list[str] = Field(description="base64 hashes, RFC 9162 section 2.1.3")
    checkpoint: str | None = Field(
        description="the signed checkpoint note of tree_size, if one was signed at that size"
    )


class ConsistencyProof(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="base64 hashes, RFC 9162 section 2.1.4")


class Entry(BaseModel):
    leaf_index: int
    leaf_hash: str
    event_id: UUID | None = Field(default=None, description="only for the caller's tenant")
    stream_id: UUID | None = Field(default=None, description="only for the caller's tenant")
    canonical: str | None = Field(
        default=None, description="base64 RFC 8785 event bytes; only for the caller's tenant"
    )


class Entries(BaseModel):
    start: int
    end: int
    tree_size: int
    entries: list[Entry]


def _store(request: Request) -> LedgerStore:
    store: LedgerStore = request.app.state.runtime.ledger.store
    return store


def _tenants(request: Request) -> TenantStore:
    tenants: TenantStore = request.app.state.tenants
    return tenants


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _no_checkpoint() -> Problem:
    return Problem(
        404,
        "no-checkpoint",
        "the ledger has signed no checkpoint yet; retry shortly",
        headers={"Retry-After": "1"},
    )


@router.get(
    "/log/checkpoint",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "C2SP signed note"}},
)
async def latest_checkpoint(request: Request, who: Caller) -> Response:
    """The latest signed checkpoint (C2SP ``tlog-checkpoint`` signed note, text)."""
    require(who, *READERS)
    checkpoint = await run_in_threadpool(_store(request).latest_checkpoint)
    if checkpoint is None:
        raise _no_checkpoint()
    return Response(checkpoint.note, media_type="text/plain; charset=utf-8")


@router.get(
    "/log/checkpoints/{tree_size}/timestamp",
    response_class=Response,
    responses={
        200: {
            "content": {"application/timestamp-reply": {}},
            "description": "RFC 3161 TimeStampResp (DER) over the checkpoint's note text",
        }
    },
)
async def checkpoint_timestamp(
    request: Request, who: Caller, tree_size: Annotated[int, Path(ge=1, le=MAX_QUERY_INT)]
) -> Response:
    """The RFC 3161 timestamp response over the checkpoint of ``tree_size`` leaves."""
    require(who, *READERS)
    stamp = await run_in_threadpool(_store(request).timestamp_for, tree_size)
    if stamp is None:
        raise Problem(
            404,
            "timestamp-not-found",
            f"no timestamped checkpoint of size {tree_size} (not signed, or its timestamp "
            "is still pending)",
        )
    return Response(stamp.response_der, media_type="application/timestamp-reply")


def _checkpoint_at(store: LedgerStore, tree_size: int) -> StoredCheckpoint | None:
    found = store.checkpoint_covering(tree_size - 1)
    return found if found is not None and found.tree_size == tree_size else None


@router.get("/log/inclusion", response_model=InclusionProof)
async def inclusion(
    request: Request,
    who: Caller,
    event_id: Annotated[UUID | None, Query()] = None,
    leaf_index: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
    tree_size: Annotated[
        int | None,
        Query(ge=1, le=MAX_QUERY_INT, description="default: the latest checkpoint's size"),
    ] = None,
) -> Response:
    """Inclusion proof of one of the tenant's events, by ``event_id`` or ``leaf_index``."""
    require(who, *READERS)
    if (event_id is None) == (leaf_index is None):
        raise Problem(422, "invalid-request", "give exactly one of event_id and leaf_index")
    store, tenants = _store(request), _tenants(request)

    def run() -> dict[str, Any]:
        entry: LogEntry | None
        if event_id is not None:
            entry = store.entry_for_event(event_id)
        else:
            assert leaf_index is not None
            found = store.entries(leaf_index, leaf_index + 1)
            entry = found[0] if found else None
        if entry is None or not tenants.owns_stream(who.tenant_id, entry.stream_id):
            what = f"event {event_id}" if event_id is not None else f"leaf {leaf_index}"
            raise Problem(404, "entry-not-found", f"the tenant has no {what} in the log")
        checkpoint: StoredCheckpoint | None
        if tree_size is None:
            checkpoint = store.latest_checkpoint()
            if checkpoint is None or checkpoint.tree_size <= entry.leaf_index:
                raise Problem(
                    409,
                    "not-yet-checkpointed",
                    f"leaf {entry.leaf_index} is in the log but no signed checkpoint covers "
                    "it yet; retry shortly",
                    headers={"Retry-After": "1"},
                )
            size, root = checkpoint.tree_size, checkpoint.root_hash
        else:
            size = tree_size
            current = store.tree_size()
            if not entry.leaf_index < size <= current:
                raise Problem(
                    422,
                    "invalid-tree-size",
                    f"tree_size must be above leaf {entry.leaf_index} and at most the "
                    f"log's size {current}",
                )
            checkpoint = _checkpoint_at(store, size)
            root = checkpoint.root_hash if checkpoint else store.root(size)
        proof = store.inclusion_proof(entry.leaf_index, size)
        return {
            "leaf_index": entry.leaf_index,
            "tree_size": size,
            "event_id": str(entry.event_id),
            "leaf_hash": b64(entry.leaf_hash),
            "root": b64(root),
            "proof": [b64(p) for p in proof],
            "checkpoint": checkpoint.note if checkpoint else None,
        }

    return _json(await run_in_threadpool(run))


@router.get("/log/consistency", response_model=ConsistencyProof)
async def consistency(
    request: Request,
    who: Caller,
    first: Annotated[int, Query(ge=1, le=MAX_QUERY_INT)],
    second: Annotated[int, Query(ge=1, le=MAX_QUERY_INT)],
) -> Response:
    """RFC 9162 consistency proof that the tree of ``second`` leaves extends ``first``."""
    require(who, *READERS)
    if first > second:
        raise Problem(422, "invalid-tree-size", "first must not be larger than second")
    store = _store(request)

    def run() -> dict[str, Any]:
        current = store.tree_size()
        if second > current:
            raise Problem(
                422, "invalid-tree-size", f"second is {second}; the log has {current} leaves"
            )
        proof = store.consistency_proof(first, second) if first < second else []
        return {
            "first": first,
            "second": second,
            "first_root": b64(store.root(first)),
            "second_root": b64(store.root(second)),
            "proof": [b64(p) for p in proof],
        }

    return _json(await run_in_threadpool(run))


@router.get("/log/entries", response_model=Entries)
async def entries(
    request: Request,
    who: Caller,
    start: Annotated[int, Query(ge=0, le=MAX_QUERY_INT)],
    end: Annotated[int, Query(ge=1, le=MAX_QUERY_INT, description="exclusive")],
) -> Response:
    """Leaves ``[start, end)`` (at most 1000; cut at the log's size), in log order.

    Every leaf has its index and hash; the caller's own tenant's leaves also have their
    event id, stream id and canonical event bytes.
    """
    require(who, *READERS)
    if end <= start or end - start > MAX_ENTRIES:
        raise Problem(
            422,
            "invalid-range",
            f"end must be above start and at most {MAX_ENTRIES} past it",
        )
    store, tenants = _store(request), _tenants(request)

    def run() -> dict[str, Any]:
        size = store.tree_size()
        found = store.entries(start, min(end, size))
        owned = tenants.owned_streams(who.tenant_id, list({e.stream_id for e in found}))
        rows: list[dict[str, Any]] = []
        for entry in found:
            row: dict[str, Any] = {
                "leaf_index": entry.leaf_index,
                "leaf_hash": b64(entry.leaf_hash),
            }
            if entry.stream_id in owned:
                row["event_id"] = str(entry.event_id)
                row["stream_id"] = str(entry.stream_id)
                row["canonical"] = b64(entry.canonical)
            rows.append(row)
        last = max(start, min(end, size))
        return {"start": start, "end": last, "tree_size": size, "entries": rows}

    return _json(await run_in_threadpool(run))
