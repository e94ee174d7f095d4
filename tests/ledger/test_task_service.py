"""The task service on the real store, both backends (issue 3, points 2-4).

Signing with real PDFs is in ``tests/evidence/test_task_signing.py``; here the approval
paths, refusals that store nothing, documents in the blob store and concurrent acts.
"""

from __future__ import annotations

import threading
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from evidence.testing_pdfs import make_test_pdf
from ledger.blobs import BlobRef, BlobStore
from ledger.events import Actor, RequestContext
from ledger.store import LedgerStore
from ledger.task_service import Acting, DocumentRefused, TaskService, TaskServiceError
from ledger.workflow import (
    Approve,
    Create,
    Reject,
    Return,
    Sign,
    Submit,
    Transfer,
    VerifyIdentity,
    fold,
    route,
)
from ledger.workflow import errors as e
from tests.conftest import StoreFactory
from tests.workflow import (
    CFO,
    DEPT_HEAD,
    FINANCE,
    INITIATOR,
    LEGAL,
    seed_directory,
    seed_form,
    seed_template,
)

PHONE = RequestContext(ip="203.0.113.7", user_agent="DingTalk/7.6 (iPhone)", device_id="dev-1")


def by(user: str) -> Acting:
    return Acting(Actor(user, user, "user", "Acme HK"), PHONE)


@pytest.fixture
def service(store: LedgerStore, tmp_path: Path) -> TaskService:
    return TaskService(store, BlobStore(tmp_path / "blobs"))


def launch(service: TaskService, amount: str = "12800.00") -> UUID:
    contract = service.upload(make_test_pdf("Supply contract"), "supply-contract.pdf")
    task = uuid4()
    r = route(seed_template(), seed_form(amount), INITIATOR, seed_directory())
    service.create(
        task, Create(r, "Laptops", seed_form(amount), documents=(contract,)), by(INITIATOR)
    )
    service.act(task, Submit(), by(INITIATOR))
    return task


def test_approval_path_is_stored_with_actor_and_device(service: TaskService) -> None:
    task = launch(service)
    service.act(task, Approve("ok"), by(DEPT_HEAD))
    result = service.act(task, Approve(), by(FINANCE))
    assert result.event_types == ["step.approved"] and result.state.pending == (LEGAL,)
    assert result.receipts[0].leaf_index == 3
    events = service.store.read_stream(task)
    assert [ev.envelope["type"] for ev in events] == [
        "task.created",
        "task.submitted",
        "step.approved",
        "step.approved",
    ]
    assert events[-1].envelope["context"]["device_id"] == "dev-1"
    assert events[-1].envelope["actor"]["organisation"] == "Acme HK"
    assert fold(ev.envelope for ev in events) == result.state


def test_refusals_store_nothing(service: TaskService) -> None:
    task = launch(service)
    size = service.store.tree_size()
    with pytest.raises(e.NotAParticipant, match="step 'head'"):
        service.act(task, Approve(), by(FINANCE))
    assert service.store.tree_size() == size
    service.act(task, Approve(), by(DEPT_HEAD))
    service.act(task, Approve(), by(FINANCE))
    size = service.store.tree_size()
    with pytest.raises(e.AlreadyActed):
        service.act(task, Approve(), by(FINANCE))
    with pytest.raises(e.SelfApprovalNotAllowed):
        service.act(task, Transfer(INITIATOR), by(LEGAL))
    with pytest.raises(e.NotAParticipant):
        service.act(task, Reject("no"), by("stranger"))
    with pytest.raises(e.TaskNotCreated):
        service.act(uuid4(), Submit(), by(INITIATOR))
    with pytest.raises(TaskServiceError, match="sign"):
        service.act(task, Sign("a" * 64, "b" * 64), by(DEPT_HEAD))
    assert service.store.tree_size() == size


def test_documents_must_be_real_pdfs_uploaded_first(service: TaskService) -> None:
    with pytest.raises(DocumentRefused, match="not a PDF"):
        service.upload(b"PK\x03\x04 a zip", "contract.pdf")
    missing = BlobRef("c" * 64, 10, "application/pdf", "never-uploaded.pdf")
    r = route(seed_template(), seed_form(), INITIATOR, seed_directory())
    with pytest.raises(DocumentRefused, match="not uploaded"):
        service.create(uuid4(), Create(r, "t", documents=(missing,)), by(INITIATOR))
    assert service.store.tree_size() == 0


def test_return_and_transfer_then_completion(service: TaskService) -> None:
    task = launch(service, "100")
    service.act(task, Transfer("u-deputy", "on leave"), by(DEPT_HEAD))
    service.act(task, Approve(), by("u-deputy"))
    service.act(task, Return("head", "quote missing"), by(LEGAL))
    state = service.state(task)
    assert state.current_step is not None and state.current_step.key == "head"
    assert state.pending == ("u-deputy",)  # the transfer holds for the step's new visit


def test_racing_acts_on_one_task_are_all_kept(store_factory: StoreFactory, tmp_path: Path) -> None:
    """Finance and legal approve the countersign step at once, through separate stores."""
    blobs = BlobStore(tmp_path / "blobs")
    first = TaskService(store_factory(), blobs)
    task = launch(first)
    first.act(task, Approve(), by(DEPT_HEAD))
    services = {FINANCE: first, LEGAL: TaskService(store_factory(), blobs)}
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def approve(user: str) -> None:
        barrier.wait()
        try:
            services[user].act(task, Approve(), by(user))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(u,)) for u in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = first.state(task)
    assert state.current_step is not None and state.current_step.key == "cfo"
    assert state.pending == (CFO,)
    approvals = [
        ev for ev in first.store.read_stream(task) if ev.envelope["type"] == "step.approved"
    ]
    assert sorted(ev.envelope["actor"]["id"] for ev in approvals) == sorted(
        [DEPT_HEAD, FINANCE, LEGAL]
    )


def test_a_double_act_in_a_race_is_refused_not_stored(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    services = [TaskService(store_factory(), blobs) for _ in range(4)]
    task = launch(services[0])
    barrier = threading.Barrier(len(services))
    outcomes: list[str] = []

    def approve(service: TaskService) -> None:
        barrier.wait()
        try:
            service.act(task, Approve(), by(DEPT_HEAD))
            outcomes.append("stored")
        except e.ActionRefused as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=approve, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the winner moved the task to the next step, so the others are no longer in it
    assert sorted(outcomes) == ["NotAParticipant"] * 3 + ["stored"]
    types = [ev.envelope["type"] for ev in services[0].store.read_stream(task)]
    assert types.count("step.approved") == 1


def test_identity_check_is_recorded_without_the_secret(service: TaskService) -> None:
    task = launch(service)
    for user in (DEPT_HEAD, FINANCE, LEGAL):
        service.act(task, Approve(), by(user))
    service.act(task, VerifyIdentity("password", "sso", "passed", "sso-ref-7"), by(CFO))
    result = service.act(task, Approve(), by(CFO))
    approved = service.store.read_stream(task)[-1].envelope
    assert approved["type"] == "step.approved"
    assert approved["identity_factors"][0]["provider_reference"] == "sso-ref-7"
    assert result.state.current_step is not None and result.state.current_step.key == "sign"
