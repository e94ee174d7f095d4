"""Small builders for events used across the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ledger.events import Actor, EventDraft, IdentityFactor, RequestContext

ALICE = Actor(id="u-1", display_name="王芳 Wang Fang", organisation="ACME", role="approver")
BOB = Actor(id="u-2", display_name="Bob Lee", organisation="Northwind", role="signer")
PHONE = RequestContext(
    ip="203.0.113.9",
    user_agent="Mozilla/5.0 (iPhone) DingTalk/7.6",
    device_id="dev-1",
    platform="ios",
    client_time="2026-11-22T10:00:00+08:00",
    request_id="req-1",
)


def draft(
    stream_id: uuid.UUID | None = None,
    type_: str = "step.approved",
    *,
    actor: Actor = ALICE,
    context: RequestContext = PHONE,
    data: dict[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
) -> EventDraft:
    return EventDraft(
        stream_id=stream_id or uuid.uuid4(),
        type=type_,
        actor=actor,
        context=context,
        data={"amount": "6000.00", "currency": "HKD"} if data is None else data,
        event_id=event_id,
    )


def otp_passed() -> IdentityFactor:
    return IdentityFactor(
        factor="sms_otp",
        method="sms",
        result="passed",
        verified_at=datetime(2026, 11, 22, 2, 0, tzinfo=UTC),
        provider_reference="gw-1",
    )
