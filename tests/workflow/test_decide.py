"""Each workflow rule, pinned by the specific refusal it raises (issue 3, point 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.blobs import BlobRef
from ledger.workflow import (
    SYSTEM_ACTOR,
    AddDocument,
    AddSigner,
    Approve,
    Command,
    Comment,
    Create,
    Expire,
    ParticipantRef,
    ReadToEnd,
    Reject,
    Remind,
    Return,
    Revoke,
    Sign,
    StepSpec,
    Submit,
    TaskState,
    Template,
    Transfer,
    VerifyIdentity,
    View,
    decide,
    fold,
    route,
)
from ledger.workflow import errors as e
from tests.workflow import (
    CFO,
    COMPLIANCE,
    CONTRACT,
    DEPT_HEAD,
    DOC,
    FINANCE,
    INITIATOR,
    LEGAL,
    REV,
    T0,
    TaskDriver,
    launched,
    seed_directory,
    seed_form,
    seed_template,
)

SUPPLIER = "ext-supplier"


def through_countersign(driver: TaskDriver) -> None:
    driver.act(DEPT_HEAD, Approve("ok"))
    driver.act(LEGAL, Approve())
    driver.act(FINANCE, Approve())


def small_task(*steps: StepSpec, **template: object) -> TaskDriver:
    t = Template("small", 1, "Small", steps, **template)  # type: ignore[arg-type]
    driver = TaskDriver()
    r = route(t, {}, INITIATOR, seed_directory())
    driver.act(INITIATOR, Create(r, "t", documents=(CONTRACT,)))
    driver.act(INITIATOR, Submit())
    return driver


def users(*ids: str) -> tuple[ParticipantRef, ...]:
    return tuple(ParticipantRef(user=i) for i in ids)


def test_seed_story_runs_to_completion_with_identity_evidence() -> None:
    d = launched()
    through_countersign(d)
    assert d.state.current_step is not None and d.state.current_step.key == "cfo"
    with pytest.raises(e.IdentityCheckRequired) as refused:
        d.act(CFO, Approve())
    assert (refused.value.factor, refused.value.window_seconds) == ("password", 300)
    d.act(CFO, VerifyIdentity("password", "sso", "passed", "ref-1"))
    d.act(CFO, Approve())
    d.act(SUPPLIER, VerifyIdentity("sms_otp", "sms", "passed", "sms-9"))
    assert d.act(SUPPLIER, Sign(DOC, REV)) == ["document.signed", "task.completed"]
    assert d.state.status == "completed" and d.state.all_steps_done
    signed = d.envelopes[-2]
    assert [f["factor"] for f in signed["identity_factors"]] == ["sms_otp"]
    assert signed["data"]["revision_sha256"] == REV
    assert fold(d.envelopes) == d.state
    assert d.state.anomalies == ()


def test_a_4000_request_completes_without_the_cfo() -> None:
    d = launched("4000")
    through_countersign(d)
    assert d.state.current_step is not None and d.state.current_step.key == "sign"
    with pytest.raises(e.NotAParticipant):
        d.act(CFO, Approve())


def test_only_current_step_participants_may_act() -> None:
    with pytest.raises(e.NotAParticipant, match="step 'head'"):
        launched().act(FINANCE, Approve())


def test_sequential_step_takes_participants_in_order() -> None:
    d = small_task(StepSpec("s", "S", "approver", "sequential", users("a", "b")))
    with pytest.raises(e.NotYourTurn) as refused:
        d.act("b", Approve())
    assert refused.value.pending == ("a",)
    d.act("a", Approve())
    assert d.act("b", Approve()) == ["step.approved", "task.completed"]


def test_no_double_action_in_a_countersign() -> None:
    d = launched()
    d.act(DEPT_HEAD, Approve())
    d.act(FINANCE, Approve())
    with pytest.raises(e.AlreadyActed, match="approved"):
        d.act(FINANCE, Approve())
    assert d.state.pending == (LEGAL,)


def test_or_sign_completes_on_the_first_approval() -> None:
    d = launched("100", cross_border=True)
    through_countersign(d)
    assert set(d.state.pending) == {COMPLIANCE, LEGAL}
    d.act(COMPLIANCE, Approve())
    assert d.state.current_step is not None and d.state.current_step.key == "sign"
    with pytest.raises(e.NotAParticipant):
        d.act(LEGAL, Approve())


def test_initiator_may_not_approve_own_request() -> None:
    step = StepSpec("s", "S", "approver", "sequential", users(INITIATOR))
    with pytest.raises(e.SelfApprovalNotAllowed):
        small_task(step).act(INITIATOR, Approve())
    assert (
        small_task(step, allow_self_approval=True).act(INITIATOR, Approve())[-1] == "task.completed"
    )


def test_initiator_may_sign_a_contract_they_sent() -> None:
    d = small_task(StepSpec("s", "S", "signer", "sequential", users(INITIATOR)))
    assert d.act(INITIATOR, Sign(DOC, REV)) == ["document.signed", "task.completed"]


@pytest.mark.parametrize(
    ("who", "result", "age", "allowed"),
    [
        (SUPPLIER, "passed", 299, True),
        (SUPPLIER, "passed", 301, False),
        (SUPPLIER, "failed", 10, False),
    ],
)
def test_signing_needs_a_passed_check_within_the_window(
    who: str, result: str, age: int, allowed: bool
) -> None:
    d = launched("100")
    through_countersign(d)
    d.act(who, VerifyIdentity("sms_otp", "sms", result))
    later = d.now + timedelta(seconds=age)
    if allowed:
        d.act(SUPPLIER, Sign(DOC, REV), at=later)
    else:
        with pytest.raises(e.IdentityCheckRequired, match="sms_otp"):
            d.act(SUPPLIER, Sign(DOC, REV), at=later)


def test_a_check_passed_by_someone_else_does_not_count() -> None:
    d = small_task(
        StepSpec("s", "S", "signer", "countersign", users("a", "b"), required_factors=("face",))
    )
    d.act("a", VerifyIdentity("face", "liveness", "passed"))
    with pytest.raises(e.IdentityCheckRequired):
        d.act("b", Sign(DOC, REV))


def test_wrong_act_for_the_step_role() -> None:
    with pytest.raises(e.WrongActForStep):
        launched().act(DEPT_HEAD, Sign(DOC, REV))
    d = small_task(StepSpec("s", "S", "signer", "sequential", users("a")))
    with pytest.raises(e.WrongActForStep):
        d.act("a", Approve())


def test_bad_hashes_and_factors_are_refused() -> None:
    d = small_task(StepSpec("s", "S", "signer", "sequential", users("a")))
    with pytest.raises(e.InvalidCommand, match="revision_sha256"):
        d.act("a", Sign(DOC, "XYZ"))
    with pytest.raises(e.InvalidCommand):
        d.act("a", VerifyIdentity("retina", "x", "passed"))
    with pytest.raises(e.InvalidCommand):
        d.act("a", VerifyIdentity("face", "x", "maybe"))


def test_reject_ends_the_task_and_nothing_follows() -> None:
    d = launched()
    with pytest.raises(e.InvalidCommand):
        d.act(DEPT_HEAD, Reject(" "))
    d.act(DEPT_HEAD, Reject("budget"))
    assert d.state.status == "rejected" and d.state.finished_at is not None
    late: list[tuple[str, Command]] = [
        (DEPT_HEAD, Approve()),
        (INITIATOR, Revoke("x")),
        (INITIATOR, Comment("hi")),
    ]
    for actor, command in late:
        with pytest.raises(e.TaskFinished, match="rejected"):
            d.act(actor, command)


def test_return_sends_the_task_back_and_resets_later_steps() -> None:
    d = launched()
    d.act(DEPT_HEAD, Approve())
    d.act(FINANCE, Approve())
    with pytest.raises(e.UnknownStep):
        d.act(LEGAL, Return("nowhere", "x"))
    with pytest.raises(e.InvalidReturnTarget):
        d.act(LEGAL, Return("finance_legal", "x"))
    d.act(LEGAL, Return("head", "quote missing"))
    assert d.state.pending == (DEPT_HEAD,)
    assert d.state.steps[0].visit == 2
    d.act(DEPT_HEAD, Approve())
    assert set(d.state.pending) == {FINANCE, LEGAL}  # finance must approve again


def test_transfer_hands_over_and_obeys_the_same_rules() -> None:
    d = launched()
    with pytest.raises(e.SelfApprovalNotAllowed):
        d.act(DEPT_HEAD, Transfer(INITIATOR))
    with pytest.raises(e.InvalidCommand):
        d.act(DEPT_HEAD, Transfer(DEPT_HEAD))
    d.act(DEPT_HEAD, Transfer("u-deputy", "on leave"))
    assert d.state.pending == ("u-deputy",)
    with pytest.raises(e.NotAParticipant):
        d.act(DEPT_HEAD, Approve())
    d.act("u-deputy", Approve())
    assert set(d.state.pending) == {FINANCE, LEGAL}


def test_add_signer_before_acts_first_then_the_adder() -> None:
    d = launched()
    with pytest.raises(e.SelfApprovalNotAllowed):
        d.act(DEPT_HEAD, AddSigner(INITIATOR, "before"))
    d.act(DEPT_HEAD, AddSigner("u-expert", "before"))
    assert d.state.current_step is not None and d.state.current_step.key == "head+1"
    d.act("u-expert", Approve())
    assert d.state.pending == (DEPT_HEAD,)


def test_add_signer_after_acts_next() -> None:
    d = launched()
    d.act(DEPT_HEAD, AddSigner("u-expert", "after"))
    assert d.state.pending == (DEPT_HEAD,)
    d.act(DEPT_HEAD, Approve())
    assert d.state.pending == ("u-expert",)
    with pytest.raises(e.InvalidCommand):
        d.act("u-expert", AddSigner("u-other", "sideways"))


def test_viewer_step_completes_on_read_to_end() -> None:
    d = small_task(StepSpec("v", "Read", "viewer", "countersign", users("a", "b")))
    d.act("a", View(DOC))
    d.act("a", ReadToEnd(DOC))
    assert d.act("b", ReadToEnd()) == ["document.read_to_end", "task.completed"]
    with pytest.raises(e.NotAParticipant):
        launched().act("stranger", View())


def test_reminders_manual_by_initiator_and_policy_by_scheduler() -> None:
    d = launched()
    with pytest.raises(e.NotInitiator):
        d.act(FINANCE, Remind(DEPT_HEAD))
    with pytest.raises(e.NotSystemActor):
        d.act(INITIATOR, Remind(DEPT_HEAD, "policy"))
    with pytest.raises(e.NotAParticipant):
        d.act(INITIATOR, Remind(FINANCE))
    d.act(INITIATOR, Remind(DEPT_HEAD))
    d.act(SYSTEM_ACTOR, Remind(DEPT_HEAD, "policy"))
    assert d.state.steps[0].participants[0].reminders == 2


def test_comment_only_by_people_of_the_task() -> None:
    d = launched()
    d.act(CFO, Comment("noted"))
    with pytest.raises(e.NotAParticipant):
        d.act("stranger", Comment("hi"))


def test_revoke_only_by_the_initiator() -> None:
    d = launched()
    with pytest.raises(e.NotInitiator):
        d.act(DEPT_HEAD, Revoke("x"))
    d.act(INITIATOR, Revoke("wrong supplier"))
    assert d.state.status == "revoked"


def test_expire_only_after_the_deadline_and_only_by_the_scheduler() -> None:
    d = launched()
    d.act(DEPT_HEAD, Approve())  # finance_legal has a 48 h deadline
    with pytest.raises(e.NotDue):
        d.act(SYSTEM_ACTOR, Expire(), at=d.now + timedelta(hours=47))
    with pytest.raises(e.NotSystemActor):
        d.act(INITIATOR, Expire(), at=d.now + timedelta(hours=49))
    d.act(SYSTEM_ACTOR, Expire(), at=d.now + timedelta(hours=49))
    assert d.state.status == "expired"


def test_draft_rules() -> None:
    with pytest.raises(e.TaskNotCreated):
        decide(TaskState(), Submit(), INITIATOR, T0)
    d = TaskDriver()
    r = route(seed_template(), seed_form(), INITIATOR, seed_directory())
    with pytest.raises(e.NotInitiator):
        d.act(DEPT_HEAD, Create(r, "t"))
    d.act(INITIATOR, Create(r, "t"))
    assert d.state.status == "draft"
    with pytest.raises(e.TaskExists):
        d.act(INITIATOR, Create(r, "t"))
    with pytest.raises(e.TaskNotStarted):
        d.act(DEPT_HEAD, Approve())
    with pytest.raises(e.NotInitiator):
        d.act(DEPT_HEAD, Submit())
    d.act(INITIATOR, Submit())
    with pytest.raises(e.InvalidCommand):
        d.act(INITIATOR, Submit())


def test_naive_time_is_refused() -> None:
    with pytest.raises(e.InvalidCommand):
        decide(launched().state, Approve(), DEPT_HEAD, T0.replace(tzinfo=None))


def test_documents_cc_and_signed_revisions_are_task_state() -> None:
    d = TaskDriver()
    r = route(seed_template(), seed_form("100"), INITIATOR, seed_directory())
    annex = BlobRef("c" * 64, 1_024, "application/pdf", "annex.pdf")
    d.act(INITIATOR, Create(r, "t", documents=(CONTRACT,), cc=("u-auditor",)))
    with pytest.raises(e.NotInitiator):
        d.act(DEPT_HEAD, AddDocument(annex))
    assert d.act(INITIATOR, AddDocument(annex)) == ["document.added"]
    with pytest.raises(e.InvalidCommand, match="already attached"):
        d.act(INITIATOR, AddDocument(annex))
    assert [x.file_name for x in d.state.documents] == ["supply-contract.pdf", "annex.pdf"]
    assert "u-auditor" in d.state.people
    d.act("u-auditor", Comment("noted"))  # CC people may comment and view
    d.act(INITIATOR, Submit())
    with pytest.raises(e.InvalidCommand, match="before the task is submitted"):
        d.act(INITIATOR, AddDocument(BlobRef("d" * 64, 9, "application/pdf", "late.pdf")))
    through_countersign(d)
    d.act(SUPPLIER, VerifyIdentity("sms_otp", "sms", "passed"))
    with pytest.raises(e.UnknownDocument):
        d.act(SUPPLIER, Sign("e" * 64, REV))
    with pytest.raises(e.InvalidCommand, match="already has"):
        d.act(SUPPLIER, Sign(DOC, DOC))
    d.act(SUPPLIER, Sign(DOC, REV))
    contract = d.state.document(DOC)
    assert contract is not None and contract.revisions == (REV,) and contract.current == REV
    assert fold(d.envelopes) == d.state


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BlobRef("c" * 64, 10, "image/png", "scan.png"), "PDF documents only"),
        (BlobRef("C" * 64, 10, "application/pdf", "x.pdf"), "64 lowercase hex"),
        (BlobRef("c" * 64, 0, "application/pdf", "x.pdf"), "empty"),
        (BlobRef("c" * 64, 10, "application/pdf", " "), "file_name"),
    ],
)
def test_bad_document_references_are_refused(document: BlobRef, reason: str) -> None:
    r = route(seed_template(), seed_form(), INITIATOR, seed_directory())
    with pytest.raises(e.InvalidCommand, match=reason):
        TaskDriver().act(INITIATOR, Create(r, "t", documents=(document,)))
    with pytest.raises(e.InvalidCommand, match="twice"):
        TaskDriver().act(INITIATOR, Create(r, "t", documents=(CONTRACT, CONTRACT)))
