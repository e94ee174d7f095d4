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

import enum
import fcntl
import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from api import jws, problems
from api.problems import Problem
from api.security import (
    ApiSettings,
    AppKeys,
    SignedBody,
    bearer_token,
    connection_ip,
    idempotency_key,
    live_principal,
    parse_json,
    principal,
    replay,
    request_fingerprint,
    require,
    revoked_meanwhile,
    verify_signed,
    well_formed_idempotency_key,
    within_limit,
)
from api.tenancy import (
    AppKey,
    IdempotencyRecord,
    Principal,
    StaleCredentials,
    TenantStore,
)
from ledger.errors import ConstraintViolation, DuplicateEvent, InvalidEvent, StoreUnavailable
from ledger.events import (
    Actor,
    EventDraft,
    IdentityFactor,
    RequestContext,
    new_event,
)
from ledger.log_writer import Transaction
from ledger.store import AlsoWrite, LedgerStore, Receipt

_LOG = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

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


def _stream_refusal(drafts: Sequence[EventDraft], refused: Sequence[UUID]) -> Problem:
    index = min(i for i, d in enumerate(drafts) if d.stream_id in set(refused))
    return _at(
        index if len(drafts) > 1 else None,
        Problem(
            409,
            "stream-not-yours",
            f"stream {drafts[index].stream_id} belongs to another tenant; use a new stream id",
        ),
    )


def _refusal(exc: DuplicateEvent | InvalidEvent, drafts: Sequence[EventDraft]) -> Exception:
    """The batch refusal naming the member at fault."""
    if isinstance(exc, InvalidEvent):
        return _at(
            _invalid_member(drafts), Problem(422, "invalid-event", str(exc), field=exc.field)
        )
    wanted = str(exc.event_id)
    ids = [str(d.event_id) for d in drafts]
    first = ids.index(wanted) if wanted in ids else None
    # Within the batch the second use is the replay; against the log, the first.
    index = ids.index(wanted, first + 1) if first is not None and ids.count(wanted) > 1 else first
    return _at(index, Problem(409, "duplicate-event", str(exc)))


class AnswerAfresh(Exception):
    """A request on remembered credentials that could not simply be stored: it is answered
    again as if nothing were remembered, from what the database says now."""


class _Unread(enum.Enum):
    REMEMBERED = "remembered"


#: ``looked_up`` of :func:`_store_once` for a request on remembered credentials.
REMEMBERED = _Unread.REMEMBERED


def _store_once(
    tenants: TenantStore,
    committer: GroupCommit,
    who: Principal,
    key: str,
    digest: str,
    prepare: Callable[[], list[EventDraft]],
    answer: Callable[[list[Receipt]], Any],
    batch: bool,
    looked_up: tuple[IdempotencyRecord | None] | Literal[_Unread.REMEMBERED] | None = None,
) -> Response:
    """Store what ``prepare`` makes, at most once per ``Idempotency-Key``; 201 with receipts.

    The key's record (the answer), the claims of the streams and the events are written in
    one transaction, which checks before it commits that the request's API key and app keys
    are still live (:meth:`~api.tenancy.TenantStore.claim_streams_in`): either all of them
    are stored or none is. A stream another tenant holds is found there (409, nothing
    stored), not read beforehand: concurrent requests share one transaction
    (:class:`GroupCommit`), so one check serves them all. A request whose key is already
    recorded gets the recorded answer (or 422 for a different request) and stores nothing;
    one that loses a race for its key is rolled back and answers the same. ``looked_up``
    holds the key's record if the caller has read it already
    (:meth:`~api.tenancy.TenantStore.append_lookup`), or is :data:`REMEMBERED`: then nothing
    was read, and anything but a plain append raises :class:`AnswerAfresh`.
    """
    remembered = looked_up is REMEMBERED
    record: IdempotencyRecord | None = None
    if looked_up is None:
        record = tenants.idempotency_record(who.tenant_id, key)
    elif looked_up is not REMEMBERED:
        record = looked_up[0]
    if record is not None:
        return replay(record, digest)
    drafts = prepare()
    writes = RequestWrites(who.tenant_id, who.key_id, drafts, key, digest, answer)
    try:
        committer.append(drafts, writes)
    except _UNAVAILABLE:
        raise
    except Exception as exc:
        if remembered:
            raise AnswerAfresh from exc
        if isinstance(exc, StaleCredentials):
            raise _revoked_meanwhile(exc, drafts, batch) from None
        if not isinstance(exc, DuplicateEvent | InvalidEvent | ConstraintViolation):
            raise
        # Another request with this key may have won the race: answer as it did.
        record = tenants.idempotency_record(who.tenant_id, key)
        if record is not None:
            return replay(record, digest)
        if batch and isinstance(exc, DuplicateEvent | InvalidEvent):
            raise _refusal(exc, drafts) from None
        raise
    assert writes.body is not None
    return Response(writes.body, status_code=201, media_type="application/json")


def _revoked_meanwhile(exc: StaleCredentials, drafts: Sequence[EventDraft], batch: bool) -> Problem:
    """:func:`~api.security.revoked_meanwhile`, with the index of a batch's first event
    signed with a revoked app key."""
    problem = revoked_meanwhile(exc)
    if exc.key_ids or not batch:
        return problem
    kid = exc.app_keys[0][1]
    index = next(
        (i for i, d in enumerate(drafts) if d.app_signature and d.app_signature.key_id == kid),
        None,
    )
    return _at(index, problem)


class RequestWrites:
    """An append request's own writes, in its events' transaction: the claims of its
    streams and the record of its answer under its ``Idempotency-Key``.

    An :data:`~ledger.log_writer.AlsoWrite`; :class:`GroupCommit` writes a whole group's
    with :meth:`write_many`, one statement each for the claims, their check and the
    records, where each request's own would cost three.
    """

    def __init__(
        self,
        tenant_id: str,
        key_id: str,
        drafts: Sequence[EventDraft],
        key: str,
        digest: str,
        answer: Callable[[list[Receipt]], Any],
    ) -> None:
        self.tenant_id = tenant_id
        self.key_id = key_id
        """The API key the request came with."""
        self.app_keys = sorted(
            {(tenant_id, d.app_signature.key_id) for d in drafts if d.app_signature}
        )
        """The app keys its events are signed with: ``(tenant_id, kid)``."""
        self.drafts = drafts
        self.streams = list(dict.fromkeys(d.stream_id for d in drafts))
        self.key = key
        self.digest = digest
        self.answer = answer
        self.body: bytes | None = None
        """The answer recorded, once written."""

    def __call__(self, tx: Transaction, receipts: list[Receipt]) -> None:
        self.write_many(tx, [(self, receipts)])

    @staticmethod
    def write_many(tx: Transaction, group: Sequence[tuple[RequestWrites, list[Receipt]]]) -> None:
        """Check the requests' keys, write their claims and answers; a key revoked since
        it was read (:class:`~api.tenancy.StaleCredentials`) or a stream another tenant
        holds (a 409 naming the first request's first such event) refuses the whole
        transaction."""
        owners = TenantStore.claim_streams_in(
            tx,
            [(writes.tenant_id, stream) for writes, _ in group for stream in writes.streams],
            [writes.key_id for writes, _ in group],
            [pair for writes, _ in group for pair in writes.app_keys],
        )
        for writes, _ in group:
            refused = [s for s in writes.streams if owners.get(s) != writes.tenant_id]
            if refused:
                raise _stream_refusal(writes.drafts, refused)
        answers: list[tuple[str, str, str, int, bytes]] = []
        for writes, receipts in group:
            body = orjson.dumps(writes.answer(receipts))
            answers.append((writes.tenant_id, writes.key, writes.digest, 201, body))
        TenantStore.record_answers_in(tx, answers)
        for (writes, _), (*_, body) in zip(group, answers, strict=True):
            writes.body = body


# -- group commit ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    drafts: Sequence[EventDraft]
    also: AlsoWrite
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    receipts: list[Receipt] = field(default_factory=list)
    error: BaseException | None = None


#: Errors that mean the database is away now, not that a request is wrong.
_UNAVAILABLE: tuple[type[Exception], ...] = (StoreUnavailable, *problems.UNAVAILABLE)


class GroupCommit:
    """Appends of concurrent requests in one transaction (one commit, one fsync).

    A request's append waits while another is being committed; the next commit then takes
    every append waiting (up to :attr:`max_events`) in one :meth:`LedgerStore.append`,
    each request's own writes (``also``) with it. Under no load an append commits alone,
    at once. If a combined append is refused (one request's replayed event id, a stream
    another tenant claimed, a raced idempotency key, an invalid event), nothing of it was
    stored, and each request is appended on its own: one bad request never fails another,
    each gets its own receipts or refusal, and every request stays all or nothing. (Event
    ids already stored, as a retry of a stored request sends, are found in one read: those
    requests are refused, the others committed together again.) If the
    database is unavailable, every request of the group, and every one that queued behind
    it meanwhile, gets that error (a 503) at once.
    Receipts are handed out only after the commit.
    """

    def __init__(
        self, store: LedgerStore, max_events: int = 2000, turns: Path | None = None
    ) -> None:
        self.store = store
        self.max_events = max_events
        self._lock = threading.Lock()
        self._waiting: deque[_Job] = deque()
        self._busy = False
        self._turns: int | None = None
        if turns is None and store.backend == "sqlite":
            turns = ledger_lock_file(store, "append")
        if turns is not None:
            # The workers of one ledger on this host take turns through a file lock
            # (``turns``; for SQLite, beside its file), and a worker forms its group only
            # once it has the turn. On SQLite a blocked worker is woken as soon as the
            # other commits, where SQLite's own busy handler would sleep and poll (1, 2,
            # 5, 10 ... ms) and starve it under load. On PostgreSQL the appends that
            # arrive while the other worker commits join the group, where they would
            # have waited behind a group already waiting on the table lock inside
            # PostgreSQL: fewer, larger transactions. Workers on other hosts are
            # serialised by that table lock alone.
            self._turns = os.open(turns, os.O_RDWR | os.O_CREAT, 0o600)

    def append(self, drafts: Sequence[EventDraft], also: AlsoWrite) -> list[Receipt]:
        job = _Job(drafts, also)
        with self._lock:
            self._waiting.append(job)
            if not self._busy:
                self._busy = job.lead = True
        while not job.lead and not job.finished:
            job.wake.wait()
            job.wake.clear()
        if not job.finished:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.receipts

    def _lead(self) -> None:
        """Commit the waiting appends (the leader's first), then hand the lead on."""
        group: list[_Job] = []
        turn = False
        try:
            if self._turns is not None:
                fcntl.flock(self._turns, fcntl.LOCK_EX)
                turn = True
            with self._lock:
                group.append(self._waiting.popleft())
                events = len(group[0].drafts)
                while self._waiting and events + len(self._waiting[0].drafts) <= self.max_events:
                    events += len(self._waiting[0].drafts)
                    group.append(self._waiting.popleft())
            self._commit(group)
            away = next((j.error for j in group if isinstance(j.error, _UNAVAILABLE)), None)
            if away is not None:
                # The database is away: the appends that queued meanwhile would each wait
                # out the pool's timeout again, group after group; they get its 503 now.
                with self._lock:
                    while self._waiting:
                        job = self._waiting.popleft()
                        job.error, job.finished = away, True
                        group.append(job)
        finally:
            if turn:
                assert self._turns is not None
                fcntl.flock(self._turns, fcntl.LOCK_UN)
            with self._lock:
                if not group and self._waiting:
                    group.append(self._waiting.popleft())  # the leader's own
            for job in group:
                if not job.finished:
                    job.error = job.error or RuntimeError("the group commit was interrupted")
                    job.finished = True
                job.wake.set()
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].wake.set()
                else:
                    self._busy = False

    def _commit(self, group: list[_Job]) -> None:
        if len(group) > 1:
            spans: list[tuple[_Job, int, int]] = []
            drafts: list[EventDraft] = []
            for job in group:
                spans.append((job, len(drafts), len(drafts) + len(job.drafts)))
                drafts.extend(job.drafts)

            def also(tx: Transaction, receipts: list[Receipt]) -> None:
                requests = [
                    (job.also, receipts[start:end])
                    for job, start, end in spans
                    if isinstance(job.also, RequestWrites)
                ]
                if len(requests) == len(spans):
                    RequestWrites.write_many(tx, requests)
                    return
                for job, start, end in spans:
                    job.also(tx, receipts[start:end])

            try:
                receipts = self.store.append(drafts, also=also)
            except _UNAVAILABLE as exc:
                # The database is away: one by one, each retry would wait for a connection
                # in turn (n times the pool's timeout); every request gets the 503 now.
                for job in group:
                    job.error, job.finished = exc, True
                return
            except DuplicateEvent as exc:
                # Nothing was stored. Most often a retry of a request already stored: the
                # requests with an event id already taken are refused as their own append
                # would be, and the others are committed together again.
                rest = self._without_taken(group, exc.taken)
                if rest is not None:
                    if rest:
                        self._commit(rest)
                    return
                _LOG.debug("a combined append was refused (%s); appending one by one", exc)
            except Exception as exc:
                # Nothing was stored: each request on its own, below. (Had the commit
                # itself failed after all, each retry finds its event ids taken, and its
                # route answers from the idempotency record written with them.)
                _LOG.debug("a combined append was refused (%s); appending one by one", exc)
            else:
                for job, start, end in spans:
                    job.receipts, job.finished = receipts[start:end], True
                return
        for job in group:
            try:
                job.receipts = self.store.append(job.drafts, also=job.also)
            except Exception as exc:
                job.error = exc
            job.finished = True

    @staticmethod
    def _without_taken(group: list[_Job], taken: frozenset[object]) -> list[_Job] | None:
        """The jobs of ``group`` none of whose event ids is in ``taken``; each other job
        finishes with the :class:`DuplicateEvent` its own append would raise. ``None`` if
        no job names a taken id (the group named one id twice, or nothing is taken)."""
        rest: list[_Job] = []
        refused = False
        for job in group:
            hit = [d.event_id for d in job.drafts if d.event_id is not None and d.event_id in taken]
            if hit:
                job.error, job.finished = DuplicateEvent(min(hit), frozenset(hit)), True
                refused = True
            else:
                rest.append(job)
        return rest if refused else None


_COMMITTERS_LOCK = threading.Lock()


def _committer(request: Request) -> GroupCommit:
    """The app's :class:`GroupCommit` (one per worker process and store)."""
    state = request.app.state
    committer: GroupCommit | None = getattr(state, "group_commit", None)
    store = _store(request)
    if committer is None or committer.store is not store:
        with _COMMITTERS_LOCK:
            committer = getattr(state, "group_commit", None)
            if committer is None or committer.store is not store:
                committer = GroupCommit(store, turns=_turns_file(store))
                state.group_commit = committer
    return committer


def _turns_file(store: LedgerStore) -> Path | None:
    """Where this host's workers of a PostgreSQL ledger take turns (SQLite's file sits
    beside its database), if the file can be made there."""
    if store.backend != "postgres":
        return None
    turns = ledger_lock_file(store, "append")
    if turns is not None:
        try:
            os.close(os.open(turns, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError:
            pass
        else:
            return turns
    _LOG.warning("no private lock file on this host: this worker's appends do not take turns")
    return None


def ledger_lock_file(store: LedgerStore, purpose: str) -> Path | None:
    """The lock file (``purpose``: ``append``, ``projection``) shared by this host's
    workers of ``store``: beside a SQLite database, or :func:`postgres_lock_file`
    (``None``: there is no such place)."""
    path = getattr(store, "path", None)
    if store.backend == "sqlite" and isinstance(path, Path):
        return path.with_name(f"{path.name}.{purpose}-lock")
    url = getattr(store, "url", None)
    if store.backend == "postgres" and isinstance(url, str):
        return postgres_lock_file(url, purpose)
    return None


def postgres_lock_file(url: str, purpose: str) -> Path | None:
    """A lock file (``purpose``: ``append``, ``projection``) shared by this host's workers of
    the PostgreSQL ledger at ``url``: named after the ledger's location, never its
    credentials, in a host-local directory of this user's (``None``: there is none). Not in
    the data directory, which may be shared storage, where a lock would be one more round
    trip and would hold back the workers of other hosts too."""
    from ledger.files import host_lock_directory
    from ledger.postgres_store import ledger_location

    directory = host_lock_directory()
    if directory is None:
        return None
    digest = hashlib.sha256(ledger_location(url).encode()).hexdigest()[:16]
    return directory / f"postgres-{digest}.{purpose}-lock"


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
async def append_event(request: Request) -> Response:
    """Append one app-signed event (app); the receipt says where it is in the log."""
    raw = await request.body()
    # Everything else, the caller's key included, in one trip to the thread pool.
    return await run_in_threadpool(_append_event, request, raw)


def _append_event(request: Request, raw: bytes) -> Response:
    tenants = _tenants(request)
    header = request.headers.get("jws-signature")
    kid = _signing_kid(header)
    token = bearer_token(request)
    remembered = tenants.remembered
    who = remembered.caller(token)
    app_key = remembered.app_key(who.tenant_id, kid) if who is not None and kid else None
    if who is not None and kid is not None and app_key is not None:
        # Both keys were seen live lately: nothing is read before the append, whose
        # transaction checks them again. Anything but a plain append (a refusal, a
        # replay, a key revoked since) is answered below as if nothing were remembered.
        try:
            return _append_signed(request, raw, who, header, {kid: app_key}, REMEMBERED)
        except (Problem, AnswerAfresh):
            remembered.forget(token, who.tenant_id, kid)
    # The caller, its app key and its Idempotency-Key's record in one read; each is
    # checked below where the request would otherwise have looked it up.
    idem = request.headers.get("idempotency-key", "").strip()
    found = tenants.append_lookup(
        token, kid, idem if idem and well_formed_idempotency_key(idem) else None
    )
    who = live_principal(found.principal)
    if who.role == "app":
        remembered.remember(token, who, found.app_key)
    known = {kid: found.app_key} if kid else None
    return _append_signed(request, raw, who, header, known, (found.record,))


def _append_signed(
    request: Request,
    raw: bytes,
    who: Principal,
    header: str | None,
    known: dict[str, AppKey | None] | None,
    looked_up: tuple[IdempotencyRecord | None] | Literal[_Unread.REMEMBERED],
) -> Response:
    """A single append by ``who``; ``known`` has the app key ``header`` names, if it
    parses, as looked up or remembered (``None``: not registered)."""
    require(who, "app")
    settings = _settings(request)
    within_limit(raw, settings)
    address = connection_ip(request, settings)
    key = idempotency_key(request)
    tenants = _tenants(request)

    def prepare() -> list[EventDraft]:
        body = parse_json(raw)
        keys = AppKeys(tenants, who.tenant_id, known)
        signed = verify_signed(body, header, keys, settings, datetime.now(UTC))
        return [draft_from(signed, address)]

    return _store_once(
        tenants,
        _committer(request),
        who,
        key,
        request_fingerprint(request, raw),
        prepare,
        lambda receipts: _receipt(receipts[0]),
        batch=False,
        looked_up=looked_up,
    )


def _signing_kid(header: str | None) -> str | None:
    """The key id the ``JWS-Signature`` header names, if it parses (else the signature
    check refuses it later, with the reason)."""
    try:
        return jws.parse(header).kid
    except jws.SignatureError:
        return None


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
async def append_batch(request: Request) -> Response:
    """Append app-signed events all or nothing (app): one refused member stores none.

    Each member carries its own detached JWS, so every stored event keeps the signature
    over exactly its own body. A refusal's problem document has the member's ``index``.
    """
    raw = await request.body()
    return await run_in_threadpool(_append_batch, request, raw)


def _append_batch(request: Request, raw: bytes) -> Response:
    who = principal(request)
    require(who, "app")
    settings = _settings(request)
    within_limit(raw, settings)
    tenants = _tenants(request)
    address = connection_ip(request, settings)
    key = idempotency_key(request)

    def prepare() -> list[EventDraft]:
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
        return drafts

    return _store_once(
        tenants,
        _committer(request),
        who,
        key,
        request_fingerprint(request, raw),
        prepare,
        lambda receipts: {"receipts": [_receipt(r) for r in receipts]},
        batch=True,
    )


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
