"""Who is calling, from where, with what signature, and whether this request was seen before.

Every route takes a :class:`Principal` from :func:`principal` (an API key in
``Authorization: Bearer``), checks its role with :func:`require`, and reaches only the
caller's tenant. Routes that store events verify the app's JWS over the body with
:func:`verified_body` before anything else happens, and run under :func:`idempotent`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from api import jws
from api.problems import Problem
from api.tenancy import AppKey, IdempotencyRecord, Principal, StaleCredentials, TenantStore
from ledger.events import AppSignature

#: Longest accepted ``Idempotency-Key``.
MAX_IDEMPOTENCY_KEY = 255
#: Largest whole number a query parameter takes (leaf indexes, tree sizes): 2^53 - 1, the
#: largest integer every JSON reader keeps exact, far below what the databases store.
MAX_QUERY_INT = 2**53 - 1
#: Largest template version (a 32-bit signed integer in every database).
MAX_TEMPLATE_VERSION = 2**31 - 1


@dataclass(frozen=True)
class ApiSettings:
    """What the HTTP layer enforces beyond the ledger's own rules."""

    #: Addresses (or networks) of reverse proxies whose ``X-Forwarded-For`` is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: How far an app's reported client time may be from the ledger's clock.
    client_time_window: timedelta = timedelta(minutes=5)
    #: Largest JSON body (bytes).
    max_body_bytes: int = 1024 * 1024
    #: Largest PDF upload (bytes).
    max_upload_bytes: int = 50 * 1024 * 1024
    #: Largest batch of events in one request.
    max_batch: int = 1000
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, default=()
    )

    def __post_init__(self) -> None:
        nets = tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)
        object.__setattr__(self, "networks", nets)


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer elk_…``; 401 without a live key."""
    tenants: TenantStore = request.app.state.tenants
    return live_principal(tenants.authenticate(bearer_token(request)))


def bearer_token(request: Request) -> str:
    """The API key of ``Authorization: Bearer …``, unchecked; 401 without one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "unauthenticated",
            "send an API key as 'Authorization: Bearer elk_…'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def live_principal(found: Principal | None) -> Principal:
    """``found``, or 401 if the key did not authenticate."""
    if found is None:
        raise not_a_live_key()
    return found


def not_a_live_key() -> Problem:
    """The 401 for an API key that is unknown or revoked."""
    return Problem(
        401,
        "unauthenticated",
        "the API key is unknown or revoked",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def revoked_meanwhile(exc: StaleCredentials) -> Problem:
    """The 401 for a request whose API key or app key was revoked after it was read and
    before its events were stored (none were)."""
    if exc.key_ids:
        return not_a_live_key()
    return revoked_app_key(exc.app_keys[0][1])


def revoked_app_key(kid: str) -> Problem:
    """The 401 for a body signed with a revoked app key."""
    return Problem(401, "revoked-app-key", f"app key {kid!r} was revoked")


def require(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise Problem(
            403,
            "forbidden-for-role",
            f"a {who.role!r} key may not do this; it needs one of {', '.join(sorted(roles))}",
        )


def connection_ip(request: Request, settings: ApiSettings) -> str | None:
    """The address the request came from: the peer, or the client a trusted proxy names.

    ``X-Forwarded-For`` is read right to left, skipping trusted proxies; the first address
    that is not one is the client. From an untrusted peer the header is ignored.
    """
    peer = request.client.host if request.client else None
    if peer is None:
        return None
    chain = [peer]
    if _trusted(peer, settings):
        forwarded = request.headers.get("x-forwarded-for", "")
        chain = [peer, *reversed([h.strip() for h in forwarded.split(",") if h.strip()])]
    for hop in chain:
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer if _valid(peer) else None
        if not _trusted(address, settings):
            return address
    return chain[-1] if _valid(chain[-1]) else None


def _valid(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _trusted(address: str, settings: ApiSettings) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in settings.networks)


@dataclass(frozen=True)
class SignedBody:
    """A request body whose app signature verified, with what the event keeps of it."""

    body: dict[str, Any]
    signature: AppSignature


async def raw_body(request: Request, settings: ApiSettings) -> bytes:
    return within_limit(await request.body(), settings)


def within_limit(body: bytes, settings: ApiSettings) -> bytes:
    """``body``, or 413 if it is over the limit."""
    if len(body) > settings.max_body_bytes:
        raise Problem(413, "body-too-large", f"the body is over {settings.max_body_bytes} bytes")
    return body


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "malformed-json", f"the body is not JSON: {exc}") from None


def verified_body(
    request: Request, raw: bytes, who: Principal, settings: ApiSettings, now: datetime
) -> SignedBody:
    """Check the app's JWS (``JWS-Signature`` header) over the body, its key, and the body's
    client time."""
    body = parse_json(raw)
    tenants: TenantStore = request.app.state.tenants
    keys = AppKeys(tenants, who.tenant_id)
    return verify_signed(body, request.headers.get(jws.HEADER), keys, settings, now)


class AppKeys:
    """The tenant's app keys, each looked up once per request (a batch shares them).

    ``known`` holds keys already read for this request (``None``: not registered).
    """

    def __init__(
        self, tenants: TenantStore, tenant_id: str, known: dict[str, AppKey | None] | None = None
    ) -> None:
        self._tenants = tenants
        self._tenant_id = tenant_id
        self._found: dict[str, AppKey | None] = dict(known or {})

    def get(self, kid: str) -> AppKey | None:
        if kid not in self._found:
            self._found[kid] = self._tenants.app_key(self._tenant_id, kid)
        return self._found[kid]


def verify_signed(
    body: object,
    signature: str | None,
    keys: AppKeys,
    settings: ApiSettings,
    now: datetime,
) -> SignedBody:
    """Check a detached JWS over ``body`` (from the header or a batch member), the key
    it names (registered to the tenant, not revoked), and the body's client time."""
    if not isinstance(body, dict):
        raise Problem(422, "invalid-request", "the body must be a JSON object")
    try:
        detached = jws.parse(signature)
        payload = jws.canonical_body(body)
    except jws.SignatureError as exc:
        raise Problem(401, "bad-signature", str(exc)) from None
    key = keys.get(detached.kid)
    if key is None:
        raise Problem(401, "unknown-app-key", f"no app key {detached.kid!r} is registered")
    if key.revoked:
        raise revoked_app_key(detached.kid)
    try:
        jws.verify(detached, payload, key.public_key)
    except jws.SignatureError as exc:
        raise Problem(401, "bad-signature", str(exc)) from None
    check_client_time(body.get("client_time"), settings, now)
    signature_value = AppSignature(key.app_id, key.kid, jws.ALGORITHM, detached.attached(payload))
    return SignedBody(body, signature_value)


def check_client_time(value: object, settings: ApiSettings, now: datetime) -> datetime:
    if not isinstance(value, str):
        raise Problem(422, "client-time-required", "client_time (RFC 3339, UTC) is required")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(422, "client-time-required", "client_time is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise Problem(422, "client-time-required", "client_time needs a UTC offset")
    skew = abs(moment - now)
    if skew > settings.client_time_window:
        raise Problem(
            422,
            "client-time-out-of-window",
            f"client_time is {skew.total_seconds():.0f} s from the ledger's clock; at most "
            f"{settings.client_time_window.total_seconds():.0f} s is accepted",
        )
    return moment.astimezone(UTC)


def idempotency_key(request: Request) -> str:
    """The request's ``Idempotency-Key``: 428 without one, 422 if it is malformed."""
    key = request.headers.get("idempotency-key", "").strip()
    if not key:
        raise Problem(428, "idempotency-key-required", "every POST needs an Idempotency-Key header")
    if not well_formed_idempotency_key(key):
        raise Problem(
            422,
            "invalid-idempotency-key",
            f"Idempotency-Key: 1-{MAX_IDEMPOTENCY_KEY} printable characters",
        )
    return key


def well_formed_idempotency_key(key: str) -> bool:
    """At most :data:`MAX_IDEMPOTENCY_KEY` printable characters (no NUL, no controls)."""
    return len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()


def request_fingerprint(request: Request, raw: bytes) -> str:
    """What makes two requests under one key "the same": method, path and body."""
    return hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + raw
    ).hexdigest()


def replay(record: IdempotencyRecord, digest: str) -> Response:
    """The answer to a request whose key an earlier request left ``record`` under.

    The same request gets the stored answer; a different one 422; if the first is still
    running (a claim of :func:`idempotent`), 409.
    """
    if record.request_sha256 != digest:
        raise Problem(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was used for a different request; use a new key",
        )
    if record.state == "done":
        assert record.status_code is not None and record.response is not None
        return Response(
            record.response,
            status_code=record.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    raise Problem(
        409,
        "request-in-progress",
        "a request with this Idempotency-Key is still being handled; retry shortly",
        headers={"Retry-After": "1"},
    )


def idempotent(
    request: Request,
    who: Principal,
    raw: bytes,
    run: Callable[[], tuple[int, Any]],
) -> Response:
    """Run ``run`` once per ``Idempotency-Key``; replay its answer for the same request.

    The same key with a different method, path or body is refused (422); a key whose
    first request is still running answers 409 (a claim left by a crashed worker lapses
    after :data:`~api.tenancy.PENDING_LAPSE`). A request that failed is forgotten, so its
    key may be used again.

    Event appends do without the claim: they record their answer in the append's own
    transaction (:meth:`~api.tenancy.TenantStore.record_answers_in`), and a request that
    loses a race for the key answers from the winner's record.
    """
    key = idempotency_key(request)
    digest = request_fingerprint(request, raw)
    tenants: TenantStore = request.app.state.tenants
    record = tenants.begin(who.tenant_id, key, digest)
    if record.state != "new" or record.request_sha256 != digest:
        return replay(record, digest)
    try:
        status, payload = run()
    except BaseException:
        # Refused, or failed before an answer: a retry runs afresh. If the failure came
        # after the events were stored, the retry's event ids are refused as replays.
        tenants.abandon(who.tenant_id, key)
        raise
    body = orjson.dumps(payload)
    tenants.finish(who.tenant_id, key, status, body)
    return Response(body, status_code=status, media_type="application/json")
