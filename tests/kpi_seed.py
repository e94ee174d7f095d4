"""A realistic, deterministic multi-month history for one tenant, for the KPI views and pages.

:func:`seed` writes it into a fresh data dir, in process, before any server starts. Time
moves with the store's clock: the finished history lies in the three calendar months
before the current one (days 2 to 26, so every task is created and finished in one month),
and the open tasks in the last two days before now, so their deadlines are real to a server
started right afterwards. The story, month by month:

* expense claims (费用报销: department head, then finance) from procurement and marketing;
* purchase requests (采购申请: head, finance and legal countersign, the CFO over HK$5,000);
  some returned (退回) by the CFO or by finance, one rejected by the CFO;
* two supply contracts signed by the CFO and the supplier (PAdES, so "electronic");
* breaches: a marketing head approving on the initiator's own phone (one device, two
  actors), a finance approval after the step's deadline, and an approval appended straight
  to the log by someone whose turn it was not (out of order);
* open tasks: two due within a few hours (at risk), one in no hurry, one draft, and one
  whose deadline passed yesterday and which the scheduler expired, as a server would have.

Mobile acts are those from the iOS and Android people. :class:`Seeded` carries the ids and
the numbers the tests expect.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.tenancy import TenantStore
from evidence.demo import contract_template, purchase_template
from evidence.services import open_task_service
from evidence.testing_pdfs import make_test_pdf
from ledger.app import Ledger
from ledger.events import Actor, RequestContext
from ledger.scheduler import SCHEDULER
from ledger.settings import Settings
from ledger.task_service import Acting, SignerProfile, TaskService
from ledger.workflow import (
    Approve,
    Create,
    Directory,
    DirectoryUser,
    Expire,
    ParticipantRef,
    Reject,
    Return,
    StepSpec,
    Submit,
    Template,
    VerifyIdentity,
    route,
)
from ledger.workflow.decide import decide

COMPANY = "ACME Trading (HK) Ltd"
SUPPLIER = "Northwind Supplies Ltd"
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 DingTalk/7.6"
ANDROID = "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile"
MOBILE = ("ios", "android")


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    department: str
    platform: str
    ip: str
    organisation: str = COMPANY

    @property
    def device(self) -> str:
        return f"dev-{self.id}-{self.platform}"

    @property
    def agent(self) -> str:
        return {"ios": IPHONE, "android": ANDROID}.get(self.platform, DESKTOP)


CHEN = Person("u-1001", "陈小明 Chen Xiaoming", "procurement", "windows", "203.0.113.24")
LI = Person("u-1002", "李娜 Li Na", "procurement", "ios", "203.0.113.31")
ZHOU = Person("u-1011", "周杰 Zhou Jie", "marketing", "android", "203.0.113.61")
TAN = Person("u-1012", "Tan Mei Ling 陈美玲", "marketing", "windows", "203.0.113.62")
PRIYA = Person("u-1007", "Priya Raman", "finance", "windows", "198.51.100.7")
HO = Person("u-1009", "何嘉欣 Ho Ka-yan", "legal", "android", "2001:db8:85a3::8a2e:370:7334")
WONG = Person("u-1003", "黄美玲 Margaret Wong", "finance", "ios", "203.0.113.40")
SMITH = Person("x-5501", "John Smith", "sales", "android", "192.0.2.145", SUPPLIER)
STAFF = (CHEN, LI, ZHOU, TAN, PRIYA, HO, WONG)


def directory() -> Directory:
    return Directory(
        users={p.id: DirectoryUser(p.name, p.organisation, p.department) for p in STAFF},
        roles={"finance": (PRIYA.id,), "legal": (HO.id,), "cfo": (WONG.id,)},
        department_roles={
            "procurement": {"department_head": (LI.id,)},
            "marketing": {"department_head": (TAN.id,)},
        },
    )


def expense_template() -> Template:
    return Template(
        "expense-claim",
        1,
        "Expense claim 费用报销",
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
                "finance",
                "Finance 财务",
                "approver",
                "sequential",
                (ParticipantRef(role="finance"),),
                deadline_hours=48,
            ),
        ),
    )


TEMPLATES = {t.id: t for t in (expense_template(), purchase_template(), contract_template())}


@dataclass
class SeededTask:
    task_id: str
    story: str
    template_id: str
    department: str
    created_at: datetime
    finished_at: datetime | None = None
    status: str = "in_progress"


@dataclass
class Seeded:
    """What :func:`seed` made: the tenant, its keys, and the numbers the tests expect."""

    data_dir: Path
    tenant_id: str
    keys: dict[str, str]
    """An API key secret per role: compliance, legal, auditor, admin."""
    now: datetime
    """The moment the history ends (the real time when it was seeded)."""
    tasks: dict[str, SeededTask] = field(default_factory=dict)
    """By task id."""
    months: list[str] = field(default_factory=list)
    """The three calendar months of finished history, oldest first (``YYYY-MM``)."""

    def ids(self, story: str) -> list[str]:
        return [t.task_id for t in self.tasks.values() if t.story == story]

    def completed_by_month(self, **where: str) -> dict[str, int]:
        counted = Counter(
            t.finished_at.strftime("%Y-%m")
            for t in self._matching(where)
            if t.status == "completed" and t.finished_at is not None
        )
        return dict(sorted(counted.items()))

    def by_status(self, **where: str) -> dict[str, int]:
        return dict(Counter(t.status for t in self._matching(where)))

    def _matching(self, where: dict[str, str]) -> list[SeededTask]:
        return [
            t
            for t in self.tasks.values()
            if all(getattr(t, name) == value for name, value in where.items())
        ]


class _World:
    """The ledger, the task service on a movable clock, and the tenant's bookkeeping."""

    def __init__(self, ledger: Ledger, tenants: TenantStore, tenant_id: str) -> None:
        self.now = datetime(2000, 1, 1, tzinfo=UTC)
        self.ledger = ledger
        self.tenants = tenants
        self.tenant_id = tenant_id
        self.service: TaskService = open_task_service(ledger)
        self.service.clock = self.clock
        ledger.store.clock = self.clock
        self.tasks: dict[str, SeededTask] = {}

    def clock(self) -> datetime:
        return self.now

    def acting(
        self, who: Person, role: str = "approver", *, device: Person | None = None
    ) -> Acting:
        place = device or who
        return Acting(
            Actor(who.id, who.name, role, who.organisation),
            RequestContext(
                ip=place.ip,
                user_agent=place.agent,
                device_id=place.device,
                platform=place.platform,
                client_time=self.now.isoformat(timespec="milliseconds"),
                request_id=uuid.uuid4().hex,
            ),
        )

    def record(self, task: uuid.UUID, result_status: str) -> None:
        seeded = self.tasks[str(task)]
        seeded.status = result_status
        if result_status in ("completed", "rejected", "expired", "revoked"):
            seeded.finished_at = self.now


# One timed step of one task's story: (when, order, what).
Step = tuple[datetime, int, Callable[[_World], None]]


class _Story:
    """Builds one task's timed steps; the world runs every story's steps in time order."""

    counter = 0

    def __init__(
        self,
        story: str,
        template_id: str,
        initiator: Person,
        start: datetime,
        form: dict[str, Any],
        title: str,
        deadline_days: float = 10,
    ) -> None:
        self.task = uuid.UUID(int=uuid.uuid5(uuid.NAMESPACE_URL, title).int)
        self.story = story
        self.template = TEMPLATES[template_id]
        self.initiator = initiator
        self.form = form
        self.title = title
        self.at = start
        self.deadline = start + timedelta(days=deadline_days)
        self.steps: list[Step] = []
        self._add(start, self._create)

    def _add(self, at: datetime, run: Callable[[_World], None]) -> None:
        _Story.counter += 1
        self.steps.append((at, _Story.counter, run))

    def _create(self, world: _World) -> None:
        routed = route(self.template, self.form, self.initiator.id, directory())
        documents = ()
        if self.template.id == "supply-contract":
            pdf = make_test_pdf(self.title, f"{SUPPLIER} supplies {COMPANY}: {self.title}.")
            documents = (world.service.upload(pdf, f"{self.title}.pdf"),)
        world.tasks[str(self.task)] = SeededTask(
            str(self.task), self.story, self.template.id, self.initiator.department, world.now
        )
        made = world.service.create(
            self.task,
            Create(
                routed,
                self.title,
                self.form,
                self.deadline,
                documents=documents,
                department=self.initiator.department,
            ),
            world.acting(self.initiator, "initiator"),
        )
        world.record(self.task, made.state.status)
        world.tenants.claim_stream(world.tenant_id, self.task)

    def then(self, hours: float, command: object, who: Person, **how: Any) -> _Story:
        """``who`` gives ``command`` ``hours`` after the previous step."""
        self.at += timedelta(hours=hours)
        role = "initiator" if who is self.initiator else "approver"

        def run(world: _World) -> None:
            result = world.service.act(self.task, command, world.acting(who, role, **how))  # type: ignore[arg-type]
            world.record(self.task, result.state.status)

        self._add(self.at, run)
        return self

    def sign(self, hours: float, who: Person, factor: tuple[str, str]) -> _Story:
        """``who`` passes an identity check and signs the contract."""
        self.then(hours, VerifyIdentity(factor[0], factor[1], "passed", f"ref-{who.id}"), who)
        self.at += timedelta(minutes=3)

        def run(world: _World) -> None:
            document = world.service.existing(self.task).documents[0].sha256
            email = f"{who.id}@{who.organisation.split()[0].lower()}.example"
            profile = SignerProfile(who.id, who.name, who.organisation, email=email)
            result = world.service.sign(
                self.task, document, world.acting(who, "signer"), profile=profile
            )
            world.record(self.task, result.state.status)

        self._add(self.at, run)
        return self

    def out_of_turn(self, hours: float, pending: Person, intruder: Person) -> _Story:
        """``intruder`` approves straight into the log while it is ``pending``'s turn."""
        self.at += timedelta(hours=hours)

        def run(world: _World) -> None:
            state = world.service.existing(self.task)
            drafts = decide(state, Approve("approved early"), pending.id, world.now)
            acting = world.acting(intruder)
            events = [replace(d, actor=acting.actor) for d in acting.drafts(self.task, drafts)]
            world.ledger.store.append(events, expected={self.task: state.last_sequence})

        self._add(self.at, run)
        return self

    def expire(self, hours: float) -> _Story:
        """The scheduler ends the task ``hours`` later, its effective deadline passed."""
        self.at += timedelta(hours=hours)

        def run(world: _World) -> None:
            result = world.service.act(self.task, Expire(), SCHEDULER)
            world.record(self.task, result.state.status)

        self._add(self.at, run)
        return self


def _money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "HKD"}


def _expense(n: int, who: Person, start: datetime, amount: str, story: str = "expense") -> _Story:
    form = {"item": f"Client visit expenses #{n}", "amount": _money(amount)}
    return _Story(story, "expense-claim", who, start, form, f"报销 Expense claim EC-{n:04d}")


def _purchase(n: int, who: Person, start: datetime, amount: str, story: str = "purchase") -> _Story:
    form = {"item": f"Office equipment lot {n}", "amount": _money(amount), "cross_border": False}
    return _Story(story, "purchase-request", who, start, form, f"采购申请 Purchase PR-{n:04d}")


def _approved_purchase(story: _Story, over_limit: bool, head: Person, pace: float) -> _Story:
    """Head, finance and legal countersign, then the CFO after a password check."""
    story.then(0.2, Submit(), story.initiator).then(3 * pace, Approve("同意"), head)
    story.then(9 * pace, Approve("Budget checked"), PRIYA).then(5 * pace, Approve("OK"), HO)
    if over_limit:
        story.then(6 * pace, VerifyIdentity("password", "sso", "passed", "sso-ref"), WONG)
        story.then(0.05, Approve("Approved 批准"), WONG)
    return story


def _month_start(now: datetime, back: int) -> datetime:
    year, month = now.year, now.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=UTC)


def _stories(now: datetime) -> list[_Story]:
    """Every task of the history, finished ones in the three months before ``now``'s."""
    stories: list[_Story] = []
    number = 0
    for back, per_month in ((3, 3), (2, 4), (1, 5)):
        month = _month_start(now, back)
        for i in range(per_month):
            number += 1
            day = month + timedelta(days=2 + 4 * i, hours=9)
            who, head = ((CHEN, LI), (ZHOU, TAN))[i % 2]
            pace = 1 + (number % 4) / 2  # cycle times differ from task to task
            claim = _expense(number, who, day, f"{800 + 150 * number}.00")
            claim.then(0.1, Submit(), who).then(4 * pace, Approve("同意"), head)
            claim.then(6 * pace, Approve("Paid next run"), PRIYA)
            stories.append(claim)
            if i < 3:
                over = (number % 2) == 1
                amount = f"{6000 + 900 * number}.00" if over else "3200.00"
                buy = _purchase(number, who, day + timedelta(hours=2), amount)
                stories.append(_approved_purchase(buy, over, head, pace))
    m1, m2, m3 = (_month_start(now, b) for b in (3, 2, 1))

    # Returns (退回): the CFO asks for a second quotation; finance sends a claim back.
    returned = _purchase(101, CHEN, m2 + timedelta(days=15, hours=10), "15800.00", "returned")
    _approved_purchase(returned, False, LI, 1)
    returned.then(5, VerifyIdentity("password", "sso", "passed", "sso-r1"), WONG)
    returned.then(0.05, Return("finance_legal", "请补充第二份报价 second quotation"), WONG)
    returned.then(20, Approve("Second quotation checked"), PRIYA).then(4, Approve("同意"), HO)
    returned.then(7, VerifyIdentity("password", "sso", "passed", "sso-r2"), WONG)
    returned.then(0.05, Approve("Approved 批准"), WONG)
    sent_back = _expense(102, ZHOU, m3 + timedelta(days=11, hours=9), "2480.00", "returned")
    sent_back.then(0.1, Submit(), ZHOU).then(3, Approve("同意"), TAN)
    sent_back.then(5, Return("head", "收据不清 receipts unreadable"), PRIYA)
    sent_back.then(18, Approve("receipts re-scanned"), TAN).then(6, Approve("OK"), PRIYA)
    stories += [returned, sent_back]

    # A rejection by the CFO.
    rejected = _purchase(103, ZHOU, m3 + timedelta(days=6, hours=11), "48000.00", "rejected")
    _approved_purchase(rejected, False, TAN, 1)
    rejected.then(8, VerifyIdentity("password", "sso", "passed", "sso-x"), WONG)
    rejected.then(0.05, Reject("超出年度预算 over the annual budget"), WONG)
    stories.append(rejected)

    # Two contracts signed electronically by the CFO and the supplier.
    for n, month in ((104, m2), (105, m3)):
        contract = _Story(
            "signed",
            "supply-contract",
            CHEN,
            month + timedelta(days=20, hours=10),
            {"purchase_request": f"PR-{n:04d}"},
            f"供货合同 Supply contract NW-{n}",
        )
        contract.then(0.2, Submit(), CHEN)
        contract.sign(5, WONG, ("password", "sso")).sign(26, SMITH, ("sms_otp", "sms"))
        stories.append(contract)

    # Breaches: one device, two actors; after the deadline; out of order.
    shared = _expense(106, ZHOU, m1 + timedelta(days=23, hours=9), "1210.00", "shared_device")
    shared.then(0.1, Submit(), ZHOU).then(1, Approve("同意"), TAN, device=ZHOU)
    shared.then(7, Approve("OK"), PRIYA)
    late = _expense(107, CHEN, m2 + timedelta(days=24, hours=9), "940.00", "late")
    late.then(0.1, Submit(), CHEN).then(5, Approve("同意"), LI)
    late.then(70, Approve("sorry, late"), PRIYA)
    early = _purchase(108, CHEN, m3 + timedelta(days=18, hours=9), "2100.00", "out_of_order")
    early.then(0.1, Submit(), CHEN).out_of_turn(2, LI, HO).then(3, Approve("同意"), LI)
    early.then(4, Approve("OK"), PRIYA).then(2, Approve("OK"), HO)
    stories += [shared, late, early]

    # Open tasks, in the two days before now.
    at_risk_1 = _expense(201, ZHOU, now - timedelta(hours=21), "660.00", "at_risk")
    at_risk_1.then(0.1, Submit(), ZHOU)  # the head's 24 h run out in about 3 h
    at_risk_2 = _purchase(202, CHEN, now - timedelta(hours=47), "7400.00", "at_risk")
    at_risk_2.then(0.1, Submit(), CHEN).then(3.9, Approve("同意"), LI)
    at_risk_2.then(15, Approve("Budget checked"), PRIYA)  # legal's 48 h end in about 5 h
    calm = _purchase(203, CHEN, now - timedelta(hours=3), "3300.00", "open")
    calm.then(0.1, Submit(), CHEN).then(0.9, Approve("同意"), LI)  # 46 h left for finance
    draft = _expense(204, ZHOU, now - timedelta(hours=1), "150.00", "draft")
    expired = _expense(205, CHEN, now - timedelta(hours=44), "5100.00", "expired")
    expired.then(0.1, Submit(), CHEN).expire(24.05)  # the head's 24 h ended 20 h ago
    stories += [at_risk_1, at_risk_2, calm, draft, expired]
    return stories


def seed(data_dir: Path, now: datetime | None = None) -> Seeded:
    """Write the history into ``data_dir`` (a fresh one); what the tests need to know of it.

    ``now`` is when the history ends (default: the current minute, so that a server started
    next sees the open tasks' deadlines ahead of it).
    """
    now = now or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    settings = Settings(data_dir=data_dir)
    with Ledger.open(settings) as ledger:
        tenants = TenantStore(ledger.store)
        try:
            tenant_id = tenants.create_tenant(COMPANY)
            keys = {
                role: tenants.create_api_key(tenant_id, role, f"{role} (seed)")
                for role in ("compliance", "legal", "auditor", "admin")
            }
            tenants.put_directory(tenant_id, directory())
            for template in TEMPLATES.values():
                tenants.put_template(tenant_id, template)
            world = _World(ledger, tenants, tenant_id)
            steps = sorted(
                (s for story in _stories(now) for s in story.steps), key=lambda s: (s[0], s[1])
            )
            for at, _, run in steps:
                if at > now:
                    raise AssertionError(f"a seeded step at {at} is after the history's end")
                world.now = at
                run(world)
        finally:
            tenants.close()
    seeded = Seeded(data_dir, tenant_id, keys, now, world.tasks)
    seeded.months = [_month_start(now, b).strftime("%Y-%m") for b in (3, 2, 1)]
    return seeded


if __name__ == "__main__":  # a quick look: python -m tests.kpi_seed DIR
    import sys
    import time

    began = time.perf_counter()
    made = seed(Path(sys.argv[1]))
    print(f"seeded {len(made.tasks)} tasks in {time.perf_counter() - began:.1f} s")
    print("compliance key:", made.keys["compliance"])
    print("completed by month:", made.completed_by_month())
    print("by status:", made.by_status())
