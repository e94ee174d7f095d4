"""The event envelope: what one approval or signature act records, and its canonical bytes.

An envelope is a JSON object with a fixed set of fields. Its canonical encoding is RFC 8785
(JCS) and its event hash is the RFC 9162 leaf hash of those bytes, so the same hash serves
as the stream's chain link (``prev``) and as the event's leaf in the Merkle log.

Every envelope passes :func:`validate_envelope` before it is encoded, and again whenever
stored bytes are read back by the audit: one set of rules, applied on the way in and out.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any
from uuid import UUID

import orjson
import rfc8785

from ledger.errors import InvalidEvent
from ledger.merkle import leaf_hash

SCHEMA_VERSION = 1

#: Every kind of act the ledger records. An envelope of any other type is refused.
EVENT_TYPES: frozenset[str] = frozenset(
    {
        "task.created",
        "task.submitted",
        "document.added",
        "document.viewed",
        "document.read_to_end",
        "identity.verified",
        "step.approved",
        "step.rejected",
        "step.returned",
        "document.signed",
        "task.transferred",
        "signer.added",
        "task.reminded",
        "comment.added",
        "task.revoked",
        "task.expired",
        "task.completed",
    }
)

IDENTITY_FACTORS: frozenset[str] = frozenset(
    {"sms_otp", "email_otp", "password", "face", "id_document", "bank_card", "certificate"}
)
IDENTITY_RESULTS: frozenset[str] = frozenset({"passed", "failed"})

MAX_ENVELOPE_BYTES = 256 * 1024
MAX_DATA_DEPTH = 16
MAX_DATA_STRING = 64 * 1024
MAX_KEY_LENGTH = 128
MAX_IDENTITY_FACTORS = 16
# I-JSON (RFC 7493) integers: what every JSON parser reads back exactly.
MAX_SAFE_INTEGER = 2**53 - 1

_TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}\Z")
_UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# Code points from here up sort differently by UTF-16 code unit than by code point.
_FIRST_SURROGATE = "\ud800"

_REQUIRED_FIELDS = (
    "schema",
    "event_id",
    "stream_id",
    "sequence",
    "type",
    "server_time",
    "actor",
    "context",
    "identity_factors",
    "data",
    "prev",
)
_OPTIONAL_FIELDS = ("app_signature",)

# (field, maximum length, required) for the small string-valued objects.
_ACTOR_FIELDS = (
    ("id", 256, True),
    ("display_name", 256, True),
    ("organisation", 256, False),
    ("role", 64, True),
)
_CONTEXT_FIELDS = (
    ("ip", 45, False),
    ("user_agent", 1024, False),
    ("device_id", 256, False),
    ("platform", 64, False),
    ("client_time", 64, False),
    ("request_id", 128, False),
    ("connection_ip", 45, False),
)
_FACTOR_FIELDS = (
    ("factor", 32, True),
    ("method", 64, True),
    ("result", 16, True),
    ("provider_reference", 256, False),
    ("verified_at", 32, True),
)
_APP_SIGNATURE_FIELDS = (
    ("app_id", 128, True),
    ("key_id", 128, True),
    ("algorithm", 32, True),
    ("value", MAX_ENVELOPE_BYTES // 2, True),
)


def new_event_id() -> UUID:
    """A time-ordered UUIDv7 (RFC 9562 section 5.7): ids the ledger assigns sort by time,
    so the event-id index grows at its end."""
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")
    value = (milliseconds & (2**48 - 1)) << 80  # unix_ts_ms
    value |= 0x7 << 76  # version 7
    value |= (random >> 62 & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= random & (2**62 - 1)  # rand_b
    return UUID(int=value)


@lru_cache(maxsize=64)  # a batch stamps every event with one server time
def format_time(moment: datetime) -> str:
    """Server time as the envelope records it: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("server time must be timezone-aware")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True)
class Actor:
    """Who acted: a person or system, as the upstream app identified them."""

    id: str
    display_name: str
    role: str
    organisation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "organisation": self.organisation,
            "role": self.role,
        }


@dataclass(frozen=True)
class RequestContext:
    """Where and on what the act happened.

    ``ip``, ``user_agent``, ``device_id``, ``platform`` and ``client_time`` are the end
    user's, as the upstream app reports them; ``connection_ip`` is the address the ledger
    itself saw the request come from (the app's server, or the client behind a trusted
    proxy), so the two are never confused.
    """

    ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    platform: str | None = None
    client_time: str | None = None
    request_id: str | None = None
    connection_ip: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ip": _normalise_ip(self.ip),
            "user_agent": self.user_agent,
            "device_id": self.device_id,
            "platform": self.platform,
            "client_time": self.client_time,
            "request_id": self.request_id,
            "connection_ip": _normalise_ip(self.connection_ip, "context.connection_ip"),
        }


@dataclass(frozen=True)
class IdentityFactor:
    """One identity check the actor passed or failed. Never the secret itself."""

    factor: str
    method: str
    result: str
    verified_at: datetime
    provider_reference: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "method": self.method,
            "result": self.result,
            "provider_reference": self.provider_reference,
            "verified_at": format_time(self.verified_at),
        }


@dataclass(frozen=True)
class AppSignature:
    """The upstream app's signature over the event body it sent (kept as evidence)."""

    app_id: str
    key_id: str
    algorithm: str
    value: str

    def to_json(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "value": self.value,
        }


@dataclass(frozen=True)
class EventDraft:
    """What a caller asks the ledger to record; the ledger adds sequence, time and ``prev``."""

    stream_id: UUID
    type: str
    actor: Actor
    context: RequestContext = field(default_factory=RequestContext)
    data: Mapping[str, Any] = field(default_factory=dict)
    identity_factors: Sequence[IdentityFactor] = ()
    app_signature: AppSignature | None = None
    event_id: UUID | None = None


@dataclass(frozen=True)
class Event:
    """An acknowledged-form event: its envelope, canonical bytes and event hash."""

    envelope: Mapping[str, Any]
    canonical: bytes
    hash: bytes

    @cached_property
    def event_id(self) -> UUID:
        return UUID(self.envelope["event_id"])

    @cached_property
    def stream_id(self) -> UUID:
        return UUID(self.envelope["stream_id"])

    @property
    def sequence(self) -> int:
        value: int = self.envelope["sequence"]
        return value

    @property
    def type(self) -> str:
        value: str = self.envelope["type"]
        return value

    @property
    def prev(self) -> bytes | None:
        value: str | None = self.envelope["prev"]
        return bytes.fromhex(value) if value is not None else None

    @classmethod
    def from_envelope(cls, envelope: Mapping[str, Any], *, _parts_checked: bool = False) -> Event:
        """Validate an envelope and encode it."""
        keys_sort_alike = validate_envelope(envelope, _parts_checked=_parts_checked)
        canonical = _encode(envelope, keys_sort_alike)
        if len(canonical) > MAX_ENVELOPE_BYTES:
            raise InvalidEvent(
                "envelope", f"is {len(canonical)} bytes, more than {MAX_ENVELOPE_BYTES}"
            )
        return cls(envelope=envelope, canonical=canonical, hash=leaf_hash(canonical))

    @classmethod
    def from_canonical(cls, data: bytes) -> Event:
        """Read stored bytes back, refusing anything that is not a canonical valid envelope."""
        try:
            envelope = json.loads(data.decode("utf-8"), parse_float=_refuse_float)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidEvent("envelope", f"is not valid JSON: {exc}") from exc
        if not isinstance(envelope, dict):
            raise InvalidEvent("envelope", "is not a JSON object")
        event = cls.from_envelope(envelope)
        if event.canonical != data:
            raise InvalidEvent("envelope", "stored bytes are not the RFC 8785 canonical form")
        return event


def _refuse_float(text: str) -> Any:
    raise InvalidEvent("envelope", f"contains the float {text}; floats are not allowed")


def canonical_bytes(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 (JCS) encoding of a JSON object."""
    return _encode(value, keys_sort_alike=False)


def _encode(value: Mapping[str, Any], keys_sort_alike: bool) -> bytes:
    """RFC 8785 bytes, by the fastest route that yields exactly them.

    For a validated envelope (no floats, integers within 2^53) JCS differs from compact,
    key-sorted, unescaped-UTF-8 JSON in one respect only: JCS orders object keys by UTF-16
    code units and Python by code points, which disagree only for keys holding a code
    point of U+D800 or above. When validation saw no such key, ``orjson`` with sorted keys
    gives the same bytes (compact, UTF-8 unescaped, the same short escapes; pinned against
    ``rfc8785`` by property tests in ``tests/ledger/test_events.py``); otherwise the
    ``rfc8785`` package encodes.
    """
    if keys_sort_alike:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:
            raise InvalidEvent("envelope", f"cannot be canonicalised: {exc}") from exc
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidEvent("envelope", f"cannot be canonicalised: {exc}") from exc


def build_envelope(
    draft: EventDraft,
    *,
    sequence: int,
    prev: bytes | None,
    server_time: datetime,
    event_id: UUID,
) -> dict[str, Any]:
    """The envelope of ``draft`` as the ``sequence``-th event of its stream.

    The actor, context, identity factors and app signature are checked here, as they are
    turned into JSON (each distinct one once: they recur event after event).
    """
    if not isinstance(draft.actor, Actor):
        raise InvalidEvent("actor", "is required")
    envelope: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "event_id": str(event_id),
        "stream_id": str(draft.stream_id),
        "sequence": sequence,
        "type": draft.type,
        "server_time": format_time(server_time),
        "actor": _checked(_checked_actor, draft.actor),
        "context": _checked(_checked_context, draft.context),
        "identity_factors": [_checked(_checked_factor, f) for f in draft.identity_factors],
        "data": dict(draft.data),
        "prev": prev.hex() if prev is not None else None,
    }
    if draft.app_signature is not None:
        envelope["app_signature"] = _checked(_checked_app_signature, draft.app_signature)
    return envelope


def new_event(
    draft: EventDraft,
    *,
    sequence: int,
    prev: bytes | None,
    server_time: datetime,
    event_id: UUID,
) -> Event:
    """Build, check and encode the ``sequence``-th event of the draft's stream."""
    envelope = build_envelope(
        draft, sequence=sequence, prev=prev, server_time=server_time, event_id=event_id
    )
    # The ledger's own fields are left unchecked only when they come from values of the
    # types it makes them from; anything else has the whole envelope checked.
    made = (
        isinstance(event_id, UUID)
        and isinstance(draft.stream_id, UUID)
        and type(sequence) is int
        and 1 <= sequence <= MAX_SAFE_INTEGER
        and (prev is None if sequence == 1 else type(prev) is bytes and len(prev) == 32)
    )
    event = Event.from_envelope(envelope, _parts_checked=made)
    # Already known as objects: spare the properties from parsing them back.
    event.__dict__["event_id"] = event_id
    event.__dict__["stream_id"] = draft.stream_id
    return event


def _checked(check: Callable[[Any], dict[str, Any]], part: Any) -> dict[str, Any]:
    """The checked JSON of ``part``, one object per distinct part.

    Envelopes built from the same actor or context share that object: envelopes are
    read-only once built (``Event.envelope`` is a ``Mapping``), so sharing is safe.
    """
    try:
        return check(part)
    except TypeError:  # an unhashable field: check it uncached, which names the field
        result: dict[str, Any] = check.__wrapped__(part)  # type: ignore[attr-defined]
        return result


@lru_cache(maxsize=4096)
def _checked_actor(actor: Actor) -> dict[str, Any]:
    value = actor.to_json()
    _check_string_object("actor", value, _ACTOR_FIELDS)
    return value


@lru_cache(maxsize=4096)
def _checked_context(context: RequestContext) -> dict[str, Any]:
    value = context.to_json()
    _check_context(value)
    return value


@lru_cache(maxsize=4096)
def _checked_factor(factor: IdentityFactor) -> dict[str, Any]:
    value = factor.to_json()
    _check_identity_factor("identity_factors[]", value)
    return value


@lru_cache(maxsize=4096)
def _checked_app_signature(signature: AppSignature) -> dict[str, Any]:
    value = signature.to_json()
    _check_string_object("app_signature", value, _APP_SIGNATURE_FIELDS)
    return value


def _normalise_ip(value: str | None, name: str = "context.ip") -> str | None:
    if value is None:
        return None
    try:
        return _normal_ip(value)
    except InvalidEvent:
        raise InvalidEvent(name, f"{value!r} is not an IPv4 or IPv6 address") from None


@lru_cache(maxsize=4096)
def _normal_ip(value: str) -> str:
    """An address in normal form; cached, since the same addresses act again and again."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError as exc:
        raise InvalidEvent("context.ip", f"{value!r} is not an IPv4 or IPv6 address") from exc


def validate_envelope(envelope: Mapping[str, Any], *, _parts_checked: bool = False) -> bool:
    """Check every rule of the envelope schema; raise :class:`InvalidEvent` on the first break.

    Returns whether every object key sorts the same by code point as by UTF-16 code unit
    (see :func:`_encode`). ``_parts_checked`` is for :func:`new_event` only, whose
    :func:`build_envelope` has already checked actor, context, factors and app signature,
    and made the fields the ledger itself sets (ids, sequence, time, ``prev``) from values
    of their own types: only the type and the data, which come from the draft, are left.
    """
    if _parts_checked:
        return _check_draft_parts(envelope)
    for name in _REQUIRED_FIELDS:
        if name not in envelope:
            raise InvalidEvent(name, "is required")
    unknown = set(envelope) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS)
    if unknown:
        raise InvalidEvent("envelope", f"has unknown fields {sorted(unknown)}")
    if envelope["schema"] != SCHEMA_VERSION or isinstance(envelope["schema"], bool):
        raise InvalidEvent("schema", f"must be {SCHEMA_VERSION}")
    for name in ("event_id", "stream_id"):
        _check_uuid(name, envelope[name])
    sequence = envelope["sequence"]
    if not _is_int(sequence) or not 1 <= sequence <= MAX_SAFE_INTEGER:
        raise InvalidEvent("sequence", "must be a whole number from 1")
    _check_type(envelope["type"])
    _check_time("server_time", envelope["server_time"])
    if envelope["actor"] is None:
        raise InvalidEvent("actor", "is required")
    _check_string_object("actor", envelope["actor"], _ACTOR_FIELDS)
    _check_context(envelope["context"])
    _check_identity_factors(envelope["identity_factors"])
    data = envelope["data"]
    if not isinstance(data, Mapping):
        raise InvalidEvent("data", "must be a JSON object")
    keys_sort_alike = _check_json_value("data", data, depth=0)
    prev = envelope["prev"]
    if sequence == 1:
        if prev is not None:
            raise InvalidEvent("prev", "must be null for the first event of a stream")
    elif not isinstance(prev, str) or not _HASH_PATTERN.match(prev):
        raise InvalidEvent("prev", "must be the previous event's hash as 64 lowercase hex digits")
    if "app_signature" in envelope:
        _check_string_object("app_signature", envelope["app_signature"], _APP_SIGNATURE_FIELDS)
    return keys_sort_alike


def _check_type(kind: object) -> None:
    if kind not in EVENT_TYPES:
        raise InvalidEvent("type", f"{kind!r} is not a known event type")


def _check_draft_parts(envelope: Mapping[str, Any]) -> bool:
    """:func:`validate_envelope` for an envelope :func:`build_envelope` made."""
    _check_type(envelope["type"])
    if len(envelope["identity_factors"]) > MAX_IDENTITY_FACTORS:
        raise InvalidEvent("identity_factors", f"has more than {MAX_IDENTITY_FACTORS} entries")
    return _check_json_value("data", envelope["data"], depth=0)


def _check_context(context: object) -> None:
    _check_string_object("context", context, _CONTEXT_FIELDS)
    assert isinstance(context, Mapping)
    for name in ("ip", "connection_ip"):
        if (
            context[name] is not None
            and _normalise_ip(context[name], f"context.{name}") != context[name]
        ):
            raise InvalidEvent(f"context.{name}", f"{context[name]!r} is not in normal form")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_uuid(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidEvent(name, "must be a UUID string")
    if _UUID_PATTERN.match(value):
        return
    try:
        UUID(value)
    except ValueError as exc:
        raise InvalidEvent(name, f"{value!r} is not a UUID") from exc
    raise InvalidEvent(name, f"{value!r} is not in canonical lowercase UUID form")


def _check_time(name: str, value: object) -> None:
    if not isinstance(value, str) or not _TIME_PATTERN.match(value):
        raise InvalidEvent(name, "must be UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEvent(name, f"{value!r} is not a real time") from exc


def _check_text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise InvalidEvent(name, f"must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise InvalidEvent(name, f"is {len(value)} characters, more than {limit}")
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEvent(name, "contains a lone surrogate, which is not valid text") from exc


def _check_string_object(name: str, value: object, fields: Sequence[tuple[str, int, bool]]) -> None:
    if not isinstance(value, Mapping):
        raise InvalidEvent(name, "must be a JSON object")
    allowed = {f for f, _, _ in fields}
    unknown = set(value) - allowed
    if unknown:
        raise InvalidEvent(name, f"has unknown fields {sorted(unknown)}")
    for key, limit, required in fields:
        if key not in value:
            raise InvalidEvent(f"{name}.{key}", "is required (use null when unknown)")
        item = value[key]
        if item is None:
            if required:
                raise InvalidEvent(f"{name}.{key}", "is required")
            continue
        _check_text(f"{name}.{key}", item, limit)
        if required and not item.strip():
            raise InvalidEvent(f"{name}.{key}", "must not be blank")


def _check_identity_factors(value: object) -> None:
    if not isinstance(value, list):
        raise InvalidEvent("identity_factors", "must be a list")
    if len(value) > MAX_IDENTITY_FACTORS:
        raise InvalidEvent("identity_factors", f"has more than {MAX_IDENTITY_FACTORS} entries")
    for i, factor in enumerate(value):
        _check_identity_factor(f"identity_factors[{i}]", factor)


def _check_identity_factor(name: str, factor: object) -> None:
    _check_string_object(name, factor, _FACTOR_FIELDS)
    assert isinstance(factor, Mapping)
    if factor["factor"] not in IDENTITY_FACTORS:
        raise InvalidEvent(f"{name}.factor", f"{factor['factor']!r} is not a known factor")
    if factor["result"] not in IDENTITY_RESULTS:
        raise InvalidEvent(f"{name}.result", "must be 'passed' or 'failed'")
    _check_time(f"{name}.verified_at", factor["verified_at"])


class _Unfit(Exception):
    """Raised by :func:`_json_alike` for a value its plain types do not settle."""


def _check_json_value(name: str, value: object, depth: int) -> bool:
    """Check a JSON value; return whether all its keys sort alike in JCS and in Python."""
    try:
        return _json_alike(value, depth)
    except (_Unfit, UnicodeEncodeError):
        # Something is wrong, or of a type the quick walk leaves alone: the walk that
        # names each field decides, and names the field it refuses.
        return _check_named_json_value(name, value, depth)


def _json_alike(value: object, depth: int) -> bool:
    """:func:`_check_json_value` for JSON of the plain Python types, without naming fields.

    Raises :class:`_Unfit` (or ``UnicodeEncodeError``) at anything it does not accept.
    """
    if depth > MAX_DATA_DEPTH:
        raise _Unfit
    kind = type(value)
    if kind is str:
        if len(value) > MAX_DATA_STRING:  # type: ignore[arg-type]
            raise _Unfit
        if not value.isascii():  # type: ignore[attr-defined]
            value.encode("utf-8")  # type: ignore[attr-defined]
        return True
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
            return True
        raise _Unfit
    if value is None or kind is bool:
        return True
    alike = True
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or len(key) > MAX_KEY_LENGTH:
                raise _Unfit
            if not key.isascii():
                key.encode("utf-8")
                if max(key) >= _FIRST_SURROGATE:
                    alike = False
            if not _json_alike(item, depth + 1):
                alike = False
        return alike
    if kind is list or kind is tuple:
        for item in value:  # type: ignore[attr-defined]
            if not _json_alike(item, depth + 1):
                alike = False
        return alike
    raise _Unfit


def _check_named_json_value(name: str, value: object, depth: int) -> bool:
    """:func:`_check_json_value`, naming the field it refuses."""
    if depth > MAX_DATA_DEPTH:
        raise InvalidEvent(name, f"is nested deeper than {MAX_DATA_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, float):
        raise InvalidEvent(name, "is a float; use a decimal string for amounts")
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidEvent(name, "is an integer beyond 2^53-1; use a decimal string")
        return True
    if isinstance(value, str):
        _check_text(name, value, MAX_DATA_STRING)
        return True
    alike = True
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEvent(name, "has a key that is not a string")
            _check_text(f"{name} key", key, MAX_KEY_LENGTH)
            if not key.isascii() and max(key) >= _FIRST_SURROGATE:
                alike = False
            alike = _check_named_json_value(f"{name}.{key}", item, depth + 1) and alike
        return alike
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            alike = _check_named_json_value(f"{name}[{i}]", item, depth + 1) and alike
        return alike
    raise InvalidEvent(name, f"has a {type(value).__name__}, which JSON cannot carry")
