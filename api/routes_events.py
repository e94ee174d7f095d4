"""HTTP routes: app-signed events, one at a time or in all-or-nothing batches.

An upstream app (role ``app``) sends an event body and a detached JWS over its RFC 8785
form (see :mod:`api.jws`). Before anything is stored the ledger checks the signature, the
key (registered to the caller's tenant, not revoked), the client time window, the body's
shape, and that the stream is the tenant's or new; the event id doubles as replay
protection (a second event with the same id is refused). What the app signed is kept in
the event's ``app_signature`` as an attached compact JWS, so a stock JWS library can
verify the evidence later.

The hot path avoids pydantic: bodies are parsed with orjson and checked by hand here and
by the envelope rules of :mod:`ledger.events`; the OpenAPI document still describes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from api.problems import Problem
from api.security import (
    ApiSettings,
    AppKeys,
    SignedBody,
    connection_ip,
    idempotent,
    parse_json,
    principal,
    raw_body,
    require,
    verify_signed,
)
from api.tenancy import Principal, TenantStore
from ledger.errors import DuplicateEvent, InvalidEvent
from ledger.events import (
    Actor,
    EventDraft,
    IdentityFactor,
    RequestContext,
    new_event,
)
from ledger.store import LedgerStore, Receipt

router = APIRouter(tags=["events"])
Caller = Annotated[Principal, Depends(principal)]

_BODY_FIELDS = frozenset(
    {"event_id", "client_time", "stream_id", "type", "actor", "context", "identity_factors", "data"}
)
_REQUIRED_BODY_FIELDS = ("event_id", "client_time", "stream_id", "type", "actor", "context", "data")
_ACTOR_FIELDS = frozenset({"id", "display_name", "role", "organisation"})
_CONTEXT_FIELDS = frozenset({"ip", "user_agent", "device_id", "platform", "request_id"})
_FACTOR_FIELDS = frozenset({"factor", "method", "result", "verified_at", "provider_reference"})

_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
EVENT_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "SignedEventBody",
    "description": "The event as the app signed it: the JWS payload is the RFC 8785 form of "
    "exactly this object. Floats are refused; send amounts as decimal strings.",
    "required": list(_REQUIRED_BODY_FIELDS),
    "additionalProperties": False,
    "properties": {
        "event_id": {
            "type": "string",
            "format": "uuid",
            "description": "Chosen by the app (UUIDv7 preferred); a replay is refused.",
        },
        "client_time": {
            "type": "string",
            "format": "date-time",
            "description": "When the app sent it (RFC 3339 with offset); must be within the "
            "ledger's window of its own clock.",
        },
        "stream_id": {
            "type": "string",
            "format": "uuid",
            "description": "The stream (task) to chain onto: the tenant's own, or new.",
        },
        "type": {"type": "string", "description": "One of the ledger's event types."},
        "actor": {
            "type": "object",
            "required": ["id", "display_name", "role"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "display_name": {"type": "string"},
                "role": {"type": "string"},
                "organisation": _NULLABLE_STRING,
            },
        },
        "context": {
            "type": "object",
            "description": "The end user's side as the app reports it. The connecting "
            "address is recorded by the ledger itself as context.connection_ip.",
            "additionalProperties": False,
            "properties": {name: _NULLABLE_STRING for name in sorted(_CONTEXT_FIELDS)},
        },
        "identity_factors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["factor", "method", "result", "verified_at"],
                "additionalProperties": False,
                "properties": {
                    "factor": {"type": "string"},
                    "method": {"type": "string"},
                    "result": {"type": "string", "enum": ["passed", "failed"]},
                    "verified_at": {"type": "string", "format": "date-time"},
                    "provider_reference": _NULLABLE_STRING,
                },
            },
        },
        "data": {"type": "object"},
    },
}
_SIGNATURE_HEADER = {
    "name": "JWS-Signature",
    "in": "header",
    "required": True,
    "description": "Detached compact JWS (EdDSA, kid = a registered app key) over the RFC "
    "8785 form of the body: BASE64URL(header)..BASE64URL(signature).",
    "schema": {"type": "string"},
}
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "maxLength": 255},
}
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "SignedEventBatch",
    "required": ["events"],
    "additionalProperties": False,
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["event", "jws"],
                "additionalProperties": False,
                "properties": {
                    "event": EVENT_BODY_SCHEMA,
                    "jws": {
                        "type": "string",
                        "description": "Detached compact JWS over the RFC 8785 form of "
                        "this event, as in the JWS-Signature header of a single append.",
                    },
                },
            },
        }
    },
}


class EventReceipt(BaseModel):
    event_id: UUID
    stream_id: UUID
    sequence: int
    leaf_index: int
    event_hash: str
    server_time: str


class BatchReceipt(BaseModel):
    receipts: list[EventReceipt]


def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.runtime.settings
    return settings


def _tenants(request: Request) -> TenantStore:
    tenants: TenantStore = request.app.state.tenants
    return tenants


def _store(request: Request) -> LedgerStore:
    store: LedgerStore = request.app.state.runtime.ledger.store
    return store


# -- from a signed body to a draft ---------------------------------------------------------


def _invalid(field: str, reason: str) -> Problem:
    return Problem(422, "invalid-event", f"invalid event: {field}: {reason}", field=field)


def _uuid(body: Mapping[str, Any], name: str) -> UUID:
    value = body[name]
    if not isinstance(value, str):
        raise _invalid(name, "must be a UUID string")
    try:
        return UUID(value)
    except ValueError:
        raise _invalid(name, f"{value!r} is not a UUID") from None


def _strings(
    name: str, value: object, allowed: frozenset[str], required: Sequence[str] = ()
) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise _invalid(name, "must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise _invalid(name, f"has unknown fields {sorted(unknown)}")
    for key in required:
        if value.get(key) is None:
            raise _invalid(f"{name}.{key}", "is required")
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            raise _invalid(f"{name}.{key}", f"must be a string, not {type(item).__name__}")
    return value


def _factor(name: str, value: object) -> IdentityFactor:
    fields = _strings(name, value, _FACTOR_FIELDS, ("factor", "method", "result", "verified_at"))
    text = fields["verified_at"]
    assert text is not None
    try:
        verified_at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"{name}.verified_at", "is not an RFC 3339 time") from None
    if verified_at.tzinfo is None:
        raise _invalid(f"{name}.verified_at", "needs a UTC offset")
    return IdentityFactor(
        factor=str(fields["factor"]),
        method=str(fields["method"]),
        result=str(fields["result"]),
        verified_at=verified_at,
        provider_reference=fields.get("provider_reference"),
    )


def draft_from(signed: SignedBody, connecting_ip: str | None) -> EventDraft:
    """The draft a verified body asks for; 422 ``invalid-event`` naming the field at fault.

    The envelope rules (event types, factor names, lengths, IP forms, floats) are checked
    when the store builds the envelope; this checks the shape the app must send.
    """
    body = signed.body
    unknown = set(body) - _BODY_FIELDS
    if unknown:
        raise _invalid("body", f"has unknown fields {sorted(unknown)}")
    for name in _REQUIRED_BODY_FIELDS:
        if name not in body:
            raise _invalid(name, "is required")
    if not isinstance(body["type"], str):
        raise _invalid("type", "must be a string")
    actor = _strings("actor", body["actor"], _ACTOR_FIELDS, ("id", "display_name", "role"))
    context = _strings("context", body["context"], _CONTEXT_FIELDS)
    factors = body.get("identity_factors") or []
    if not isinstance(factors, list):
        raise _invalid("identity_factors", "must be a list")
    if not isinstance(body["data"], dict):
        raise _invalid("data", "must be a JSON object")
    return EventDraft(
        stream_id=_uuid(body, "stream_id"),
        type=body["type"],
        actor=Actor(
            id=str(actor["id"]),
            display_name=str(actor["display_name"]),
            role=str(actor["role"]),
            organisation=actor.get("organisation"),
        ),
        context=RequestContext(
            ip=context.get("ip"),
            user_agent=context.get("user_agent"),
            device_id=context.get("device_id"),
            platform=context.get("platform"),
            client_time=body["client_time"],
            request_id=context.get("request_id"),
            connection_ip=connecting_ip,
        ),
        data=body["data"],
        identity_factors=tuple(_factor(f"identity_factors[{i}]", f) for i, f in enumerate(factors)),
        app_signature=signed.signature,
        event_id=_uuid(body, "event_id"),
    )


def _receipt(receipt: Receipt) -> dict[str, Any]:
    return {
        "event_id": str(receipt.event_id),
        "stream_id": str(receipt.stream_id),
        "sequence": receipt.sequence,
        "leaf_index": receipt.leaf_index,
        "event_hash": receipt.event_hash.hex(),
        "server_time": receipt.server_time,
    }


def _at(index: int | None, problem: Problem) -> Problem:
    """``problem`` as the refusal of batch member ``index`` (unchanged for a single event)."""
    if index is None:
        return problem
    return Problem(
        problem.status,
        problem.kind,
        f"events[{index}]: {problem.detail}",
        title=problem.title,
        headers=problem.headers,
        **{**problem.extra, "index": index},
    )


def _claim_streams(tenants: TenantStore, who: Principal, drafts: Sequence[EventDraft]) -> None:
    """Make every draft's stream the tenant's; 409 if one is another tenant's."""
    first_use: dict[UUID, int] = {}
    for i, draft in enumerate(drafts):
        first_use.setdefault(draft.stream_id, i)
    owned = tenants.owned_streams(who.tenant_id, list(first_use))
    wanted = [s for s in first_use if s not in owned]
    refused = tenants.claim_streams(who.tenant_id, wanted) if wanted else []
    if refused:
        index = min(first_use[s] for s in refused)
        raise _at(
            index if len(drafts) > 1 else None,
            Problem(
                409,
                "stream-not-yours",
                f"stream {drafts[index].stream_id} belongs to another tenant; use a new stream id",
            ),
        )


def _append(store: LedgerStore, drafts: Sequence[EventDraft], batch: bool) -> list[Receipt]:
    """Store ``drafts`` all or nothing; a refusal names the batch member at fault."""
    try:
        return store.append(drafts)
    except DuplicateEvent as exc:
        if not batch:
            raise
        wanted = str(exc.event_id)
        ids = [str(d.event_id) for d in drafts]
        first = ids.index(wanted) if wanted in ids else None
        # Within the batch the second use is the replay; against the log, the first.
        index = (
            ids.index(wanted, first + 1) if first is not None and ids.count(wanted) > 1 else first
        )
        raise _at(index, Problem(409, "duplicate-event", str(exc))) from None
    except InvalidEvent as exc:
        if not batch:
            raise
        raise _at(
            _invalid_member(drafts), Problem(422, "invalid-event", str(exc), field=exc.field)
        ) from None


def _invalid_member(drafts: Sequence[EventDraft]) -> int | None:
    """Which draft the envelope rules refuse (only run once a batch was refused)."""
    now = datetime.now(UTC)
    for i, draft in enumerate(drafts):
        try:
            new_event(
                draft,
                sequence=1,
                prev=None,
                server_time=now,
                event_id=draft.event_id or UUID(int=0),
            )
        except InvalidEvent:
            return i
    return None


# -- routes ----------------------------------------------------------------------------------


@router.post(
    "/events",
    status_code=201,
    response_model=EventReceipt,
    openapi_extra={
        "parameters": [_SIGNATURE_HEADER, _IDEMPOTENCY_HEADER],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EVENT_BODY_SCHEMA}},
        },
    },
    responses={
        401: {"description": "No, malformed or forged signature; unknown or revoked key"},
        409: {"description": "Replayed event id, or another tenant's stream"},
        422: {"description": "Invalid event, or client time outside the window"},
    },
)
async def append_event(request: Request, who: Caller) -> Response:
    """Append one app-signed event (app); the receipt says where it is in the log."""
    require(who, "app")
    settings = _settings(request)
    raw = await raw_body(request, settings)
    header = request.headers.get("jws-signature")
    tenants, store = _tenants(request), _store(request)
    address = connection_ip(request, settings)

    def run() -> tuple[int, Any]:
        body = parse_json(raw)
        keys = AppKeys(tenants, who.tenant_id)
        signed = verify_signed(body, header, keys, settings, datetime.now(UTC))
        draft = draft_from(signed, address)
        _claim_streams(tenants, who, [draft])
        (receipt,) = _append(store, [draft], batch=False)
        return 201, _receipt(receipt)

    return await run_in_threadpool(idempotent, request, who, raw, run)


@router.post(
    "/events/batch",
    status_code=201,
    response_model=BatchReceipt,
    openapi_extra={
        "parameters": [_IDEMPOTENCY_HEADER],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BATCH_SCHEMA}},
        },
    },
    responses={
        401: {"description": "A member's signature or key is refused (the problem's index)"},
        409: {"description": "A replayed event id, or another tenant's stream"},
        422: {"description": "A member is invalid, or the batch is empty or too large"},
    },
)
async def append_batch(request: Request, who: Caller) -> Response:
    """Append app-signed events all or nothing (app): one refused member stores none.

    Each member carries its own detached JWS, so every stored event keeps the signature
    over exactly its own body. A refusal's problem document has the member's ``index``.
    """
    require(who, "app")
    settings = _settings(request)
    raw = await raw_body(request, settings)
    tenants, store = _tenants(request), _store(request)
    address = connection_ip(request, settings)

    def run() -> tuple[int, Any]:
        members = _members(parse_json(raw), settings.max_batch)
        keys = AppKeys(tenants, who.tenant_id)
        now = datetime.now(UTC)
        drafts: list[EventDraft] = []
        for i, (event, signature) in enumerate(members):
            try:
                signed = verify_signed(event, signature, keys, settings, now)
                drafts.append(draft_from(signed, address))
            except Problem as problem:
                raise _at(i, problem) from None
        _claim_streams(tenants, who, drafts)
        receipts = _append(store, drafts, batch=True)
        return 201, {"receipts": [_receipt(r) for r in receipts]}

    return await run_in_threadpool(idempotent, request, who, raw, run)


def _members(body: object, limit: int) -> list[tuple[object, str | None]]:
    if not isinstance(body, dict) or set(body) != {"events"}:
        raise Problem(422, "invalid-request", 'the body must be {"events": [...]}')
    events = body["events"]
    if not isinstance(events, list) or not events:
        raise Problem(422, "invalid-request", "events must be a non-empty list")
    if len(events) > limit:
        raise Problem(
            422, "batch-too-large", f"a batch holds at most {limit} events, not {len(events)}"
        )
    members: list[tuple[object, str | None]] = []
    for i, member in enumerate(events):
        if not isinstance(member, dict) or set(member) != {"event", "jws"}:
            raise Problem(
                422,
                "invalid-request",
                f'events[{i}]: each member must be {{"event": {{...}}, "jws": "..."}}',
                index=i,
            )
        signature = member["jws"]
        members.append((member["event"], signature if isinstance(signature, str) else None))
    return members
