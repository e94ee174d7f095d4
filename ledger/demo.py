"""The main job on the embedded default: a realistic approval and signing stream.

A procurement request over HK$5,000 (so it routes to the CFO) is approved by a
countersign pair, then the supply contract is signed by the buyer and by an external
supplier who first passes an SMS one-time password. Every act is an event with its actor,
IP and device. The demo then waits for a signed, timestamped checkpoint and proves one
event's inclusion.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ledger.events import Actor, EventDraft, IdentityFactor, RequestContext


@dataclass(frozen=True)
class Person:
    actor: Actor
    context: RequestContext


def _person(
    id: str, name: str, org: str, role: str, ip: str, device: str, platform: str, agent: str
) -> Person:
    return Person(
        Actor(id=id, display_name=name, organisation=org, role=role),
        RequestContext(
            ip=ip,
            user_agent=agent,
            device_id=device,
            platform=platform,
            request_id=uuid.uuid4().hex,
        ),
    )


DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 DingTalk/7.6"
ANDROID = "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile"

INITIATOR = _person(
    "u-1001", "陈晓明 Chen Xiaoming", "ACME Trading (HK) Ltd", "initiator",
    "203.0.113.24", "dev-7f3a-win", "windows", DESKTOP,
)  # fmt: skip
DEPT_HEAD = _person(
    "u-1002", "李娜 Li Na", "ACME Trading (HK) Ltd", "approver",
    "203.0.113.31", "dev-91c2-ios", "ios", IPHONE,
)  # fmt: skip
FINANCE_1 = _person(
    "u-1007", "Priya Raman", "ACME Trading (HK) Ltd", "approver",
    "198.51.100.7", "dev-44d0-win", "windows", DESKTOP,
)  # fmt: skip
FINANCE_2 = _person(
    "u-1008", "张伟 Zhang Wei", "ACME Trading (HK) Ltd", "approver",
    "2001:db8:85a3::8a2e:370:7334", "dev-0b19-and", "android", ANDROID,
)  # fmt: skip
CFO = _person(
    "u-1003", "黄美玲 Margaret Wong", "ACME Trading (HK) Ltd", "approver",
    "203.0.113.40", "dev-c3e8-ios", "ios", IPHONE,
)  # fmt: skip
SUPPLIER = _person(
    "x-5501", "John Smith", "Northwind Supplies Ltd", "signer",
    "192.0.2.145", "dev-ext-5e71", "android", ANDROID,
)  # fmt: skip


def _draft(
    stream: uuid.UUID,
    type_: str,
    who: Person,
    data: dict[str, object],
    factors: tuple[IdentityFactor, ...] = (),
) -> EventDraft:
    return EventDraft(
        stream_id=stream,
        type=type_,
        actor=who.actor,
        context=who.context,
        data=data,
        identity_factors=factors,
    )


def procurement_scenario() -> tuple[uuid.UUID, uuid.UUID, list[EventDraft]]:
    """The approval task, the contract-signing task and their events in order."""
    approval = uuid.uuid4()
    signing = uuid.uuid4()
    now = datetime.now(UTC)
    request_pdf = b"%PDF-1.7 purchase request PR-2026-0815 (demo bytes)\n"
    contract_pdf = b"%PDF-1.7 supply contract NW-2026-112 (demo bytes)\n"
    request_doc = {
        "sha256": hashlib.sha256(request_pdf).hexdigest(),
        "size": len(request_pdf),
        "media_type": "application/pdf",
        "file_name": "采购申请-PR-2026-0815.pdf",
    }
    contract_doc = {
        "sha256": hashlib.sha256(contract_pdf).hexdigest(),
        "size": len(contract_pdf),
        "media_type": "application/pdf",
        "file_name": "Supply contract NW-2026-112.pdf",
    }
    otp = IdentityFactor(
        factor="sms_otp",
        method="sms to +44 7700 900123",
        result="passed",
        verified_at=now - timedelta(seconds=40),
        provider_reference="sms-gw-7d21c9",
    )
    events = [
        _draft(approval, "task.created", INITIATOR, {
            "title": "采购申请 Purchase request PR-2026-0815: 20 laptops",
            "template": {"id": "procurement", "version": 3},
            "form": {"amount": "186400.00", "currency": "HKD", "cross_border": False},
            "route": ["department_head", "finance_countersign", "cfo"],
            "route_reason": "amount 186400.00 HKD > 5000 HKD adds the CFO step",
        }),
        _draft(approval, "document.added", INITIATOR, {"document": request_doc}),
        _draft(approval, "task.submitted", INITIATOR, {"step": "department_head"}),
        _draft(approval, "document.viewed", DEPT_HEAD, {"document": request_doc["sha256"]}),
        _draft(approval, "step.approved", DEPT_HEAD, {
            "step": "department_head", "comment": "同意",
        }),
        _draft(approval, "step.approved", FINANCE_1, {
            "step": "finance_countersign", "mode": "countersign", "comment": "Budget line 4410 ok",
        }),
        _draft(approval, "task.reminded", INITIATOR, {
            "step": "finance_countersign", "to": "u-1008",
        }),
        _draft(approval, "step.approved", FINANCE_2, {
            "step": "finance_countersign", "mode": "countersign", "comment": "已核对报价",
        }),
        _draft(approval, "step.approved", CFO, {"step": "cfo", "comment": "Approved."}),
        _draft(approval, "task.completed", INITIATOR, {"outcome": "approved"}),
        _draft(signing, "task.created", INITIATOR, {
            "title": "Supply contract NW-2026-112 / 供货合同",
            "order": "sequential",
            "signers": ["u-1003", "x-5501"],
            "related_task": str(approval),
        }),
        _draft(signing, "document.added", INITIATOR, {"document": contract_doc}),
        _draft(signing, "document.viewed", CFO, {"document": contract_doc["sha256"]}),
        _draft(signing, "document.signed", CFO, {
            "document": contract_doc["sha256"],
            "placement": {"page": 3, "rect": [72, 90, 252, 150]},
        }),
        _draft(signing, "document.viewed", SUPPLIER, {"document": contract_doc["sha256"]}),
        _draft(signing, "document.read_to_end", SUPPLIER, {"document": contract_doc["sha256"]}),
        _draft(signing, "identity.verified", SUPPLIER, {"factor": "sms_otp"}, (otp,)),
        _draft(signing, "document.signed", SUPPLIER, {
            "document": contract_doc["sha256"],
            "placement": {"page": 3, "rect": [320, 90, 500, 150]},
        }, (otp,)),
        _draft(signing, "task.completed", INITIATOR, {"outcome": "signed"}),
    ]  # fmt: skip
    return approval, signing, events
