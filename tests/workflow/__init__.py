"""Workflow domain tests, and the seed story they share (template, directory, a task driver).

The driver turns each decided event into a real, validated envelope (``ledger.events``), so
the tests also pin that every event the rules produce is one the ledger would store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from ledger.blobs import BlobRef
from ledger.events import Actor, new_event
from ledger.workflow import (
    Command,
    Condition,
    Create,
    Directory,
    DirectoryUser,
    EventDraftData,
    ParticipantRef,
    Placement,
    StepSpec,
    Submit,
    TaskState,
    Template,
    apply,
    decide,
    route,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
STREAM = UUID("00000000-0000-4000-8000-000000000003")

INITIATOR = "u-chen"  # 陈小明, procurement
DEPT_HEAD = "u-wong"
FINANCE = "u-lee"
LEGAL = "u-ho"
CFO = "u-cheung"
COMPLIANCE = "u-ng"

DOC = "a" * 64
REV = "b" * 64
CONTRACT = BlobRef(DOC, 48_213, "application/pdf", "supply-contract.pdf")


def seed_directory() -> Directory:
    return Directory(
        users={
            INITIATOR: DirectoryUser("陈小明", "Acme HK", "procurement"),
            DEPT_HEAD: DirectoryUser("王经理", "Acme HK", "procurement"),
            FINANCE: DirectoryUser("Li Finance", "Acme HK", "finance"),
            LEGAL: DirectoryUser("何律师", "Acme HK", "legal"),
            CFO: DirectoryUser("张CFO", "Acme HK", "finance"),
            COMPLIANCE: DirectoryUser("Ng Compliance", "Acme HK", "legal"),
        },
        roles={
            "cfo": (CFO,),
            "finance": (FINANCE,),
            "legal": (LEGAL,),
            "compliance": (COMPLIANCE,),
        },
        department_roles={"procurement": {"department_head": (DEPT_HEAD,)}},
    )


def seed_template(**overrides: Any) -> Template:
    """The seeds' purchase approval: head, then finance+legal countersign, CFO over HK$5,000."""
    steps = (
        StepSpec(
            "head",
            "Department head",
            "approver",
            "sequential",
            (ParticipantRef(role="department_head"),),
        ),
        StepSpec(
            "finance_legal",
            "Finance and legal",
            "approver",
            "countersign",
            (ParticipantRef(role="finance"), ParticipantRef(role="legal")),
            deadline_hours=48,
        ),
        StepSpec(
            "cfo",
            "CFO",
            "approver",
            "sequential",
            (ParticipantRef(role="cfo"),),
            required_factors=("password",),
            condition=Condition("amount", ">", "5000", "HKD"),
        ),
        StepSpec(
            "compliance",
            "Compliance",
            "approver",
            "or_sign",
            (ParticipantRef(role="compliance"), ParticipantRef(user=LEGAL)),
            condition=Condition("cross_border", "==", True),
        ),
        StepSpec(
            "sign",
            "Supplier signs",
            "signer",
            "sequential",
            (ParticipantRef(user="ext-supplier"),),
            required_factors=("sms_otp",),
            placements=(Placement(1, 100, 100, 300, 160),),
        ),
        StepSpec("cc", "Copy to archive", "cc", "sequential", (ParticipantRef(user="u-archive"),)),
    )
    fields: dict[str, Any] = {
        "id": "purchase",
        "version": 3,
        "name": "Purchase request",
        "steps": steps,
    }
    fields.update(overrides)
    return Template(**fields)


def seed_form(amount: str = "12800.00", cross_border: bool = False) -> dict[str, Any]:
    return {
        "item": "Laptops",
        "amount": {"amount": amount, "currency": "HKD"},
        "cross_border": cross_border,
    }


@dataclass
class TaskDriver:
    """Runs commands through ``decide`` and stores the results as real, chained envelopes."""

    state: TaskState = field(default_factory=TaskState)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = T0
    prev: bytes | None = None

    def act(self, actor: str, command: Command, *, at: datetime | None = None) -> list[str]:
        """Decide and store; returns the stored event types. Raises the refusal, if any."""
        self.now = at or self.now + timedelta(minutes=1)
        drafts = decide(self.state, command, actor, self.now)
        for draft in drafts:
            self.store(draft, actor)
        return [d.type for d in drafts]

    def store(self, draft: EventDraftData, actor: str) -> None:
        event = new_event(
            draft.to_draft(STREAM, Actor(actor, actor, "user")),
            sequence=len(self.envelopes) + 1,
            prev=self.prev,
            server_time=self.now,
            event_id=UUID(int=len(self.envelopes) + 1),
        )
        self.prev = event.hash
        envelope = dict(event.envelope)
        self.envelopes.append(envelope)
        self.state = apply(self.state, envelope)


def launched(amount: str = "12800.00", cross_border: bool = False, **template: Any) -> TaskDriver:
    """A submitted seed task."""
    driver = TaskDriver()
    r = route(
        seed_template(**template), seed_form(amount, cross_border), INITIATOR, seed_directory()
    )
    driver.act(
        INITIATOR,
        Create(
            r,
            "Purchase request: laptops",
            seed_form(amount, cross_border),
            T0 + timedelta(days=7),
            documents=(CONTRACT,),
        ),
    )
    driver.act(INITIATOR, Submit())
    return driver
