"""Step 11's route replay (``verifier._internal.workflow``) against the ledger's own rules.

The verifier's replay is written apart from ``ledger.workflow``; here the two meet. Random
command sequences go through the ledger's ``decide`` (which refuses every act out of place)
and the verifier must find nothing wrong in what was stored; then single edits of a valid
stream (an act out of turn in a sequential step, an act before a viewer step was read, a
second act in an or-sign step, completion before the end) must each be named.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.workflow import ParticipantRef, ReadToEnd, StepSpec, VerifyIdentity
from ledger.workflow.errors import ActionRefused
from tests.workflow import (
    CFO,
    COMPLIANCE,
    DEPT_HEAD,
    FINANCE,
    INITIATOR,
    LEGAL,
    TaskDriver,
    launched,
)
from tests.workflow.test_state_fold_properties import NEXT, next_move
from tests.workflow.test_state_fold_properties import steps as scripts
from verifier._internal.workflow import check_workflow

SUPPLIER = "ext-supplier"


def viewer_route() -> tuple[StepSpec, ...]:
    """Every kind of step: a sequential viewer step of two, a sequential approver step of
    two, a countersign, an or-sign, a signer with an identity factor, a CC."""
    return (
        StepSpec(
            "read",
            "Read the contract",
            "viewer",
            "sequential",
            (ParticipantRef(user=DEPT_HEAD), ParticipantRef(user=FINANCE)),
        ),
        StepSpec(
            "heads",
            "Heads in turn",
            "approver",
            "sequential",
            (ParticipantRef(user=DEPT_HEAD), ParticipantRef(user=CFO)),
        ),
        StepSpec(
            "finance_legal",
            "Finance and legal",
            "approver",
            "countersign",
            (ParticipantRef(role="finance"), ParticipantRef(role="legal")),
        ),
        StepSpec(
            "compliance",
            "Compliance or legal",
            "approver",
            "or_sign",
            (ParticipantRef(role="compliance"), ParticipantRef(user=LEGAL)),
        ),
        StepSpec(
            "sign",
            "Supplier signs",
            "signer",
            "sequential",
            (ParticipantRef(user=SUPPLIER),),
            required_factors=("sms_otp",),
        ),
        StepSpec("cc", "Copy to archive", "cc", "sequential", (ParticipantRef(user="u-archive"),)),
    )


def replay(envelopes: list[dict[str, Any]]) -> list[str]:
    findings, _acts = check_workflow(list(enumerate(envelopes)))
    return [finding.problem for finding in findings]


def run(driver: TaskDriver, actor: str, command: Any) -> None:
    if command == NEXT:
        command = next_move(driver, actor, driver.now)
    driver.act(actor, command)


def completed_task() -> TaskDriver:
    """The viewer route walked to completion, every act in its place."""
    d = launched(steps=viewer_route())
    for actor in (DEPT_HEAD, FINANCE, DEPT_HEAD, CFO, FINANCE, LEGAL, COMPLIANCE):
        run(d, actor, NEXT)
    run(d, SUPPLIER, VerifyIdentity("sms_otp", "provider", "passed"))
    run(d, SUPPLIER, NEXT)
    assert d.state.status == "completed"
    return d


def index_of(envelopes: list[dict[str, Any]], kind: str, actor: str | None = None) -> int:
    return next(
        i
        for i, e in enumerate(envelopes)
        if e["type"] == kind and (actor is None or e["actor"]["id"] == actor)
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(["seed", "viewer"]), script=scripts, cross_border=st.booleans())
def test_whatever_the_ledger_accepted_the_replay_accepts(
    route: str, script: list[Any], cross_border: bool
) -> None:
    extra = {"steps": viewer_route()} if route == "viewer" else {}
    d = launched("12800.00", cross_border, **extra)
    for actor_choice, command, gap in script:
        pending = d.state.pending
        if isinstance(actor_choice, str):
            actor = actor_choice
        else:
            actor = pending[actor_choice % len(pending)] if pending else INITIATOR
        at = d.now + gap
        if command == NEXT:
            command = next_move(d, actor, at)
        try:
            d.act(actor, command, at=at)
        except ActionRefused:
            continue
    event(f"{route}: {d.state.status}")
    assert replay(d.envelopes) == []


def test_the_walked_route_replays_clean() -> None:
    d = completed_task()
    findings, acts = check_workflow(list(enumerate(d.envelopes)))
    assert findings == []
    assert acts == 6  # five approvals and the signature (reads are not counted as acts)
    # the two reads were needed: without them every later act is out of order
    unread = [e for e in d.envelopes if e["type"] != "document.read_to_end"]
    problems = replay(unread)
    assert any("before earlier steps ['read']" in p for p in problems), problems
    assert any("task.completed while steps ['read']" in p for p in problems), problems


def test_a_read_out_of_turn_in_a_sequential_viewer_step_does_not_count() -> None:
    envelopes = completed_task().envelopes
    first = index_of(envelopes, "document.read_to_end", DEPT_HEAD)
    second = index_of(envelopes, "document.read_to_end", FINANCE)
    swapped = copy.deepcopy(envelopes)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    problems = replay(swapped)
    assert any("before earlier steps ['read']" in p for p in problems), problems


def test_an_act_out_of_turn_in_a_sequential_step_is_named() -> None:
    envelopes = completed_task().envelopes
    head = index_of(envelopes, "step.approved", DEPT_HEAD)
    cfo = index_of(envelopes, "step.approved", CFO)
    swapped = copy.deepcopy(envelopes)
    swapped[head], swapped[cfo] = swapped[cfo], swapped[head]
    problems = replay(swapped)
    assert any(
        "'u-cheung' acted in sequential step 'heads' before 'u-wong'" in p for p in problems
    ), problems


def test_a_second_act_in_an_or_sign_step_is_named() -> None:
    envelopes = completed_task().envelopes
    compliance = index_of(envelopes, "step.approved", COMPLIANCE)
    extra = copy.deepcopy(envelopes[compliance])
    extra["actor"]["id"] = LEGAL
    envelopes.insert(compliance + 1, extra)
    problems = replay(envelopes)
    assert problems == [
        "step.approved in step 'compliance', which one act had completed already"
    ], problems


@pytest.mark.parametrize("viewer_mode", ["countersign", "or_sign"])
def test_viewer_steps_of_other_modes(viewer_mode: str) -> None:
    route = list(viewer_route())
    route[0] = StepSpec(
        "read", "Read", "viewer", viewer_mode,
        (ParticipantRef(user=DEPT_HEAD), ParticipantRef(user=FINANCE)),
    )  # fmt: skip
    d = launched(steps=tuple(route))
    d.act(FINANCE, ReadToEnd())
    if viewer_mode == "countersign":
        d.act(DEPT_HEAD, ReadToEnd())
    d.act(DEPT_HEAD, next_move(d, DEPT_HEAD, d.now + timedelta(minutes=1)))
    assert d.state.current_step is not None and d.state.current_step.key == "heads"
    assert replay(d.envelopes) == []
