"""The main job on the embedded default: the purchase request and supply contract story.

陈小明 (procurement) asks to buy laptops for HK$12,800. The template routes the request to
the department head, then finance and legal countersign (会签), then the CFO, because the
amount is over HK$5,000. Legal's approver is on leave and transfers (转交) to a colleague;
the CFO returns (退回) the request once for a second quotation, and finance and legal
approve again before the CFO, after a password check, approves. The supply contract is
then signed by the CFO for the company and by the supplier's signatory, who passes an SMS
one-time password first. Both signatures are PAdES with timestamps from the local TSA and
the final PDF is PAdES B-LTA. Every act is an event with its actor, IP and device.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from evidence.testing_pdfs import make_test_pdf
from ledger.events import Actor, RequestContext
from ledger.task_service import Acting, ActResult, SignerProfile, TaskService
from ledger.workflow import (
    Approve,
    Condition,
    Create,
    Directory,
    DirectoryUser,
    ParticipantRef,
    Placement,
    ReadToEnd,
    Remind,
    Return,
    StepSpec,
    Submit,
    Template,
    Transfer,
    VerifyIdentity,
    View,
    route,
)

COMPANY = "ACME Trading (HK) Ltd"
SUPPLIER_ORG = "Northwind Supplies Ltd"

DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 DingTalk/7.6"
ANDROID = "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile"


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    organisation: str
    department: str
    ip: str
    device: str
    platform: str
    agent: str
    email: str | None = None
    phone: str | None = None

    def acting(self, role: str) -> Acting:
        return Acting(
            Actor(self.id, self.name, role, self.organisation),
            RequestContext(
                ip=self.ip,
                user_agent=self.agent,
                device_id=self.device,
                platform=self.platform,
                client_time=datetime.now(UTC).isoformat(timespec="milliseconds"),
                request_id=uuid.uuid4().hex,
            ),
        )

    def profile(self) -> SignerProfile:
        return SignerProfile(self.id, self.name, self.organisation, self.email, self.phone)


CHEN = Person(
    "u-1001", "陈小明 Chen Xiaoming", COMPANY, "procurement",
    "203.0.113.24", "dev-7f3a-win", "windows", DESKTOP, email="xiaoming.chen@acme.example",
)  # fmt: skip
LI = Person(
    "u-1002", "李娜 Li Na", COMPANY, "procurement",
    "203.0.113.31", "dev-91c2-ios", "ios", IPHONE,
)  # fmt: skip
PRIYA = Person(
    "u-1007", "Priya Raman", COMPANY, "finance",
    "198.51.100.7", "dev-44d0-win", "windows", DESKTOP,
)  # fmt: skip
HO = Person(
    "u-1009", "何嘉欣 Ho Ka-yan", COMPANY, "legal",
    "2001:db8:85a3::8a2e:370:7334", "dev-0b19-and", "android", ANDROID,
)  # fmt: skip
LAU = Person(
    "u-1010", "刘德明 Lau Tak-ming", COMPANY, "legal",
    "203.0.113.52", "dev-2d77-win", "windows", DESKTOP,
)  # fmt: skip
WONG = Person(
    "u-1003", "黄美玲 Margaret Wong", COMPANY, "finance",
    "203.0.113.40", "dev-c3e8-ios", "ios", IPHONE, email="margaret.wong@acme.example",
)  # fmt: skip
SMITH = Person(
    "x-5501", "John Smith", SUPPLIER_ORG, "sales",
    "192.0.2.145", "dev-ext-5e71", "android", ANDROID, phone="+85291234567",
)  # fmt: skip


def directory() -> Directory:
    """The tenant's directory: departments, their heads, and the finance, legal and CFO roles."""
    staff = (CHEN, LI, PRIYA, HO, LAU, WONG)
    return Directory(
        users={p.id: DirectoryUser(p.name, p.organisation, p.department) for p in staff},
        roles={"finance": (PRIYA.id,), "legal": (HO.id,), "cfo": (WONG.id,)},
        department_roles={"procurement": {"department_head": (LI.id,)}},
    )


def purchase_template() -> Template:
    return Template(
        "purchase-request",
        3,
        "Purchase request 采购申请",
        (
            StepSpec(
                "head",
                "Department head 部门主管",
                "approver",
                "sequential",
                (ParticipantRef(role="department_head"),),
                deadline_hours=24,
            ),
            StepSpec(
                "finance_legal",
                "Finance and legal countersign 财务法务会签",
                "approver",
                "countersign",
                (ParticipantRef(role="finance"), ParticipantRef(role="legal")),
                deadline_hours=48,
            ),
            StepSpec(
                "cfo",
                "CFO 首席财务官",
                "approver",
                "sequential",
                (ParticipantRef(role="cfo"),),
                required_factors=("password",),
                condition=Condition("amount", ">", "5000", "HKD"),
            ),
        ),
    )


def contract_template() -> Template:
    return Template(
        "supply-contract",
        1,
        "Supply contract 供货合同",
        (
            StepSpec(
                "company",
                "ACME signs 甲方签署",
                "signer",
                "sequential",
                (ParticipantRef(role="cfo"),),
                required_factors=("password",),
                placements=(Placement(1, 72, 90, 282, 160),),
            ),
            StepSpec(
                "supplier",
                "Supplier signs 乙方签署",
                "signer",
                "sequential",
                (ParticipantRef(user=SMITH.id),),
                required_factors=("sms_otp",),
                placements=(Placement(1, 320, 90, 530, 160),),
            ),
        ),
    )


@dataclass(frozen=True)
class DemoRun:
    purchase: uuid.UUID
    contract: uuid.UUID
    contract_document: str
    results: list[ActResult]
    supplier_signed: ActResult


def run_story(service: TaskService, say: Callable[[str], None] = lambda _: None) -> DemoRun:
    """Record the whole story through the task service; returns the two task ids."""
    results: list[ActResult] = []
    purchase, contract = uuid.uuid4(), uuid.uuid4()

    def act(task: uuid.UUID, command: object, who: Person, role: str = "approver") -> None:
        results.append(service.act(task, command, who.acting(role)))  # type: ignore[arg-type]

    # The purchase request: 12,800 HKD is over 5,000, so the route ends with the CFO.
    form = {
        "item": "20 laptops for the Kowloon office",
        "amount": {"amount": "12800.00", "currency": "HKD"},
        "cross_border": False,
        "cost_centre": "HK-PROC-4410",
    }
    request_pdf = make_test_pdf(
        "Purchase request PR-2026-0815",
        "Purchase of 20 laptops for the Kowloon office, HKD 12,800.00, from Northwind "
        "Supplies Ltd; quotation NW-Q-2291 attached.",
    )
    request = service.upload(request_pdf, "采购申请-PR-2026-0815.pdf")
    purchase_route = route(purchase_template(), form, CHEN.id, directory())
    deadline = datetime.now(UTC) + timedelta(days=5)
    title = "采购申请 Purchase request PR-2026-0815: 20 laptops"
    results.append(
        service.create(
            purchase,
            Create(
                purchase_route,
                title,
                form,
                deadline,
                documents=(request,),
                department=CHEN.department,
            ),
            CHEN.acting("initiator"),
        )
    )
    steps = " → ".join(s.key for s in purchase_route.steps)
    say(f"purchase request {purchase}: HK$12,800.00 routes {steps}")
    act(purchase, Submit(), CHEN, "initiator")
    act(purchase, View(request.sha256), LI)
    act(purchase, Approve("同意 Agreed"), LI)
    act(purchase, View(request.sha256), PRIYA)
    act(purchase, Approve("Budget line HK-PROC-4410 has room"), PRIYA)
    act(purchase, Remind(HO.id), CHEN, "initiator")
    act(purchase, Transfer(LAU.id, "休假中 on leave this week"), HO)
    say(f"{HO.name} transferred the legal review to {LAU.name}")
    act(purchase, Approve("合同条款无异议 No objection"), LAU)
    act(purchase, View(request.sha256), WONG)
    act(
        purchase,
        Return("finance_legal", "请补充第二份报价 Please attach a second quotation"),
        WONG,
    )
    say(f"{WONG.name} returned the request to finance and legal once")
    act(purchase, Approve("Second quotation NW-Q-2291b checked"), PRIYA)
    act(purchase, Approve("同意"), LAU)
    act(purchase, VerifyIdentity("password", "sso", "passed", "sso-7c1e42"), WONG)
    act(purchase, Approve("Approved 批准"), WONG)
    say(f"purchase request {results[-1].state.status}")

    # The supply contract: the CFO signs for ACME, then the supplier after an SMS OTP.
    contract_pdf = make_test_pdf(
        "Supply contract NW-2026-112",
        "Northwind Supplies Ltd delivers 20 laptops to ACME Trading (HK) Ltd for HKD "
        "12,800.00 within ten working days; payment within thirty days of delivery.",
    )
    document = service.upload(contract_pdf, "Supply contract NW-2026-112.pdf")
    contract_route = route(contract_template(), {}, CHEN.id, directory())
    results.append(
        service.create(
            contract,
            Create(
                contract_route,
                "供货合同 Supply contract NW-2026-112",
                {"purchase_request": str(purchase)},
                deadline,
                documents=(document,),
                department=CHEN.department,
            ),
            CHEN.acting("initiator"),
        )
    )
    act(contract, Submit(), CHEN, "initiator")
    act(contract, View(document.sha256), WONG, "signer")
    act(contract, VerifyIdentity("password", "sso", "passed", "sso-7c1e57"), WONG, "signer")
    results.append(
        service.sign(contract, document.sha256, WONG.acting("signer"), profile=WONG.profile())
    )
    say(f"{WONG.name} signed the contract for {COMPANY}")
    act(contract, View(document.sha256), SMITH, "signer")
    act(contract, ReadToEnd(document.sha256), SMITH, "signer")
    act(
        contract,
        VerifyIdentity("sms_otp", "sms to +852 ****4567", "passed", "sms-gw-7d21c9"),
        SMITH,
        "signer",
    )
    signed = service.sign(
        contract, document.sha256, SMITH.acting("signer"), profile=SMITH.profile()
    )
    results.append(signed)
    say(f"{SMITH.name} signed for {SUPPLIER_ORG}; the contract is {signed.state.status}")
    return DemoRun(purchase, contract, document.sha256, results, signed)
