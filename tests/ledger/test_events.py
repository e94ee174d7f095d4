"""The event envelope: canonical bytes, the event hash, and refusal of bad envelopes."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidEvent
from ledger.events import (
    Actor,
    Event,
    EventDraft,
    RequestContext,
    build_envelope,
    canonical_bytes,
    new_event,
)
from ledger.store import LedgerStore
from tests.factories import ALICE, PHONE, draft, otp_passed

MOMENT = datetime(2026, 11, 22, 2, 30, 0, 123456, tzinfo=UTC)


def envelope(d: EventDraft | None = None, **overrides: Any) -> dict[str, Any]:
    built = build_envelope(
        d or draft(),
        sequence=1,
        prev=None,
        server_time=MOMENT,
        event_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    )
    built.update(overrides)
    return built


def test_canonical_bytes_are_rfc8785_and_hash_is_the_rfc9162_leaf_hash() -> None:
    fields = envelope()
    event = Event.from_envelope(fields)
    assert event.canonical == rfc8785.dumps(fields)
    assert event.hash == hashlib.sha256(b"\x00" + event.canonical).digest()
    # For envelopes without floats or non-BMP keys, JCS equals sorted-key compact JSON
    # with UTF-8 text unescaped: an independent cross-check of the encoding.
    plain = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event.canonical == plain.encode("utf-8")
    assert "王芳 Wang Fang" in event.canonical.decode("utf-8")


def test_jcs_sorts_keys_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3 orders keys by UTF-16 code units, not code points: U+10000
    # (surrogates D800 DC00) sorts before U+FB01 although its code point is larger.
    event = Event.from_envelope(envelope(data={"\ufb01": 1, "\U00010000": 2}))
    text = event.canonical.decode("utf-8")
    assert text.index("\U00010000") < text.index("\ufb01")


def test_server_time_is_utc_with_microseconds() -> None:
    assert envelope()["server_time"] == "2026-11-22T02:30:00.123456Z"


def test_stored_bytes_round_trip_and_non_canonical_bytes_are_refused() -> None:
    event = Event.from_envelope(envelope())
    assert Event.from_canonical(event.canonical).hash == event.hash
    pretty = json.dumps(envelope(), indent=1, ensure_ascii=False).encode()
    with pytest.raises(InvalidEvent, match="canonical"):
        Event.from_canonical(pretty)


def test_identity_factors_are_recorded_without_secrets() -> None:
    d = replace(draft(), identity_factors=(otp_passed(),))
    event = Event.from_envelope(envelope(d))
    factor = event.envelope["identity_factors"][0]
    assert factor == {
        "factor": "sms_otp",
        "method": "sms",
        "result": "passed",
        "provider_reference": "gw-1",
        "verified_at": "2026-11-22T02:00:00.000000Z",
    }


def test_ipv6_is_recorded_in_normal_form() -> None:
    d = replace(draft(), context=replace(PHONE, ip="2001:DB8:0:0:0:0:0:1"))
    assert Event.from_envelope(envelope(d)).envelope["context"]["ip"] == "2001:db8::1"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


BAD_ENVELOPES: list[tuple[str, dict[str, Any], str]] = [
    ("float amount", {"data": {"amount": 6000.5}}, "float"),
    ("nested float", {"data": {"items": [{"price": 1.0}]}}, "float"),
    ("huge integer", {"data": {"n": 2**60}}, "2\\^53"),
    ("unknown type", {"type": "task.teleported"}, "not a known event type"),
    ("missing actor", {"actor": None}, "actor: is required"),
    ("blank actor id", {"actor": {**ALICE.to_json(), "id": " "}}, "actor.id"),
    ("oversize name", {"actor": {**ALICE.to_json(), "display_name": "x" * 257}}, "257"),
    ("oversize user agent", {"context": {**PHONE.to_json(), "user_agent": "u" * 1025}}, "1025"),
    ("malformed ip", {"context": {**PHONE.to_json(), "ip": "300.1.2.3"}}, "context.ip"),
    (
        "malformed connection ip",
        {"context": {**PHONE.to_json(), "connection_ip": "10.0.0"}},
        "context.connection_ip",
    ),
    (
        "connection ip not in normal form",
        {"context": {**PHONE.to_json(), "connection_ip": "2001:DB8::1"}},
        "normal form",
    ),
    ("extra field", {"colour": "blue"}, "unknown fields"),
    ("bad uuid", {"event_id": "not-a-uuid"}, "event_id"),
    ("upper-case uuid", {"stream_id": str(uuid.uuid4()).upper()}, "canonical lowercase"),
    ("zero sequence", {"sequence": 0}, "sequence"),
    ("boolean sequence", {"sequence": True}, "sequence"),
    ("local time", {"server_time": "2026-11-22T10:30:00+08:00"}, "server_time"),
    ("prev on first event", {"prev": "00" * 32}, "prev"),
    ("deep data", {"data": nested(20)}, "deeper"),
    ("lone surrogate", {"data": {"note": "\ud800"}}, "surrogate"),
    ("oversize envelope", {"data": {f"k{i}": "v" * 60000 for i in range(5)}}, "more than"),
    ("unknown identity factor", {"identity_factors": [{
        "factor": "telepathy", "method": "m", "result": "passed",
        "provider_reference": None, "verified_at": "2026-11-22T02:00:00.000000Z"}]}, "factor"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "overrides", "message"), BAD_ENVELOPES, ids=[c[0] for c in BAD_ENVELOPES]
)
def test_bad_envelope_is_refused_with_a_clear_error(
    case: str, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidEvent, match=message):
        Event.from_envelope(envelope(**overrides))


def test_later_event_needs_prev_hash() -> None:
    with pytest.raises(InvalidEvent, match="prev"):
        Event.from_envelope(envelope(sequence=2, prev=None))
    with pytest.raises(InvalidEvent, match="prev"):
        Event.from_envelope(envelope(sequence=2, prev="XYZ"))
    Event.from_envelope(envelope(sequence=2, prev="ab" * 32))


def test_canonical_bytes_refuse_non_json_values() -> None:
    with pytest.raises(InvalidEvent):
        canonical_bytes({"when": datetime.now(UTC)})


REFUSED_DRAFTS = [
    ("float", draft(data={"amount": 1.5}), "float"),
    ("bad ip", draft(context=RequestContext(ip="10.0.0.256")), "IPv4 or IPv6"),
    ("unknown type", replace(draft(), type="invoice.paid"), "not a known event type"),
    ("missing actor", replace(draft(), actor=None), "actor"),  # type: ignore[arg-type]
    ("oversize field", draft(actor=Actor(id="a" * 300, display_name="n", role="r")), "300"),
]


@pytest.mark.parametrize(
    ("case", "bad", "message"), REFUSED_DRAFTS, ids=[c[0] for c in REFUSED_DRAFTS]
)
def test_refused_event_stores_nothing_even_in_a_batch(
    store: LedgerStore, case: str, bad: EventDraft, message: str
) -> None:
    stream = uuid.uuid4()
    store.append([draft(stream)])
    before = (store.tree_size(), store.count_events(), store.count_nodes())
    with pytest.raises(InvalidEvent, match=message):
        store.append([draft(stream), draft(), bad])
    assert (store.tree_size(), store.count_events(), store.count_nodes()) == before
    assert len(store.read_stream(stream)) == 1


# -- the fast canonical encoder against the rfc8785 package ----------------------------

json_keys = st.text(max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(data=st.dictionaries(json_keys, json_values, max_size=6))
def test_event_encoding_equals_rfc8785_for_any_data(data: dict[str, Any]) -> None:
    """Whatever the data, including keys that sort differently in UTF-16, the bytes are JCS."""
    event = Event.from_envelope(envelope(data=data))
    assert event.canonical == rfc8785.dumps(event.envelope)


@settings(max_examples=200, deadline=None)
@given(
    high=st.text(alphabet=st.characters(min_codepoint=0xE000, max_codepoint=0x10FFFF,
                                         exclude_categories=("Cs",)), min_size=1, max_size=3),
    low=st.text(alphabet=st.characters(max_codepoint=0xD7FF), min_size=1, max_size=3),
)  # fmt: skip
def test_keys_beyond_the_bmp_sort_by_utf16_code_units(high: str, low: str) -> None:
    event = Event.from_envelope(envelope(data={high: 1, low: 2, high + low: 3}))
    assert event.canonical == rfc8785.dumps(event.envelope)


# -- the quick checks of a draft's data against the field-naming ones ------------------

any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)  # lone surrogates included
    | st.sampled_from(["x" * 70_000, b"bytes", {1, 2}, datetime(2026, 1, 1)]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(data=st.dictionaries(st.text(max_size=4), any_values, max_size=4))
def test_data_is_judged_alike_by_the_quick_and_the_field_naming_checks(
    data: dict[str, Any],
) -> None:
    """The quick walk and the walk that names fields accept, refuse and sort alike."""
    from ledger.events import _check_json_value, _check_named_json_value

    def outcome(check: Any) -> object:
        try:
            return check("data", data, 0)
        except InvalidEvent as exc:
            return ("refused", str(exc))

    assert outcome(_check_json_value) == outcome(_check_named_json_value)


def test_a_refused_value_deep_in_the_data_is_named() -> None:
    with pytest.raises(InvalidEvent, match=r"data\.items\[1\]\.price: is a float"):
        Event.from_envelope(envelope(data={"items": [{"price": "1"}, {"price": 1.5}]}))
    bad = draft(data={"items": [{"note": "ok"}, {"note": "\ud800"}]})
    with pytest.raises(InvalidEvent, match=r"data\.items\[1\]\.note: contains a lone surrogate"):
        new_event(bad, sequence=1, prev=None, server_time=MOMENT, event_id=uuid.uuid4())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stream_id": "not-a-uuid"}, "stream_id"),
        ({"stream_id": "1B4E28BA-2FA1-11D2-883F-0016D3CCA427"}, "canonical lowercase"),
        ({"sequence": 0}, "sequence"),
        ({"sequence": 2, "prev": b"\x01" * 31}, "prev"),
        ({"sequence": 1, "prev": b"\x01" * 32}, "prev"),
    ],
)
def test_a_new_event_from_values_not_of_the_ledgers_own_types_is_checked_whole(
    change: dict[str, Any], message: str
) -> None:
    """The ledger's own fields are trusted only when made from the values it makes them
    from (a UUID, a whole sequence, a 32-byte hash); any other value is checked as if
    read from outside."""
    values: dict[str, Any] = {"sequence": 1, "prev": None}
    d = draft()
    if "stream_id" in change:
        d = replace(d, stream_id=change["stream_id"])
    values.update({k: v for k, v in change.items() if k != "stream_id"})
    with pytest.raises(InvalidEvent, match=message):
        new_event(d, server_time=MOMENT, event_id=uuid.uuid4(), **values)
    # The same draft with the ledger's own values goes through.
    good = new_event(draft(), sequence=2, prev=b"\x01" * 32, server_time=MOMENT,
                     event_id=uuid.uuid4())  # fmt: skip
    assert good.envelope["prev"] == "01" * 32
