"""Random valid and invalid command sequences through ``decide`` and ``apply`` (issue 3, point 6).

Each example launches a seed task (amount, cross-border flag and self-approval chosen at
random), then drives random commands by random actors at random times. After every
command it checks that the incremental state equals a fold from scratch, that a refusal
stored nothing and changed nothing, and the workflow invariants.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.workflow import (
    SYSTEM_ACTOR,
    AddSigner,
    Approve,
    Comment,
    Expire,
    ReadToEnd,
    Reject,
    Remind,
    Return,
    Revoke,
    Sign,
    Submit,
    TaskState,
    Transfer,
    VerifyIdentity,
    View,
    apply,
    decide,
    fold,
)
from ledger.workflow.errors import ActionRefused
from tests.workflow import (
    CFO,
    COMPLIANCE,
    DEPT_HEAD,
    DOC,
    FINANCE,
    INITIATOR,
    LEGAL,
    REV,
    TaskDriver,
    launched,
)

PEOPLE = [
    INITIATOR,
    DEPT_HEAD,
    FINANCE,
    LEGAL,
    CFO,
    COMPLIANCE,
    "ext-supplier",
    "u-deputy",
    "stranger",
    SYSTEM_ACTOR,
]
STEP_KEYS = ["head", "finance_legal", "cfo", "compliance", "sign", "cc", "nowhere"]
HASH = st.sampled_from(["a" * 64, "b" * 64, "not-a-hash"])

# "next" stands for the move that makes progress for the chosen actor (see next_move),
# drawn often so that examples reach the later steps and completion.
NEXT = "next"
anything = st.one_of(
    st.just(Approve()),
    st.just(Approve("fine")),
    st.builds(Sign, HASH, HASH),
    st.builds(
        VerifyIdentity,
        st.sampled_from(["password", "sms_otp", "face"]),
        st.just("m"),
        st.sampled_from(["passed", "passed", "failed"]),
    ),
    st.builds(Reject, st.sampled_from(["too costly", ""])),
    st.builds(Return, st.sampled_from(STEP_KEYS), st.just("fix it")),
    st.builds(Transfer, st.sampled_from(PEOPLE)),
    st.builds(AddSigner, st.sampled_from(PEOPLE), st.sampled_from(["before", "after", "beside"])),
    st.builds(Remind, st.sampled_from(PEOPLE), st.sampled_from(["manual", "policy"])),
    st.builds(Comment, st.sampled_from(["note", ""])),
    st.builds(View),
    st.builds(ReadToEnd),
    st.just(Submit()),
    st.just(Expire()),
    st.builds(Revoke, st.just("changed my mind")),
)
commands = st.tuples(st.integers(0, 9), anything).map(lambda t: NEXT if t[0] < 6 else t[1])
# An actor: someone pending now (by position), or anyone by name.
actors = st.tuples(st.integers(0, 9), st.integers(0, 3), st.sampled_from(PEOPLE)).map(
    lambda t: t[1] if t[0] < 7 else t[2]
)
gaps = st.sampled_from(
    [timedelta(seconds=1), timedelta(seconds=90), timedelta(seconds=400), timedelta(hours=50)]
)
steps = st.lists(st.tuples(actors, commands, gaps), min_size=10, max_size=60)


def next_move(driver: TaskDriver, actor: str, at: datetime) -> Any:
    """The act the current step wants from ``actor``: an identity check first if required."""
    step = driver.state.current_step
    if step is None:
        return Submit()
    done = {
        v.factor for v in driver.state.verifications if v.actor == actor and v.result == "passed"
    }
    missing = [f for f in step.spec.required_factors if f not in done]
    if missing:
        return VerifyIdentity(missing[0], "provider", "passed")
    return {"approver": Approve(), "signer": Sign(DOC, REV)}.get(step.spec.role, ReadToEnd())


def completing_acts(envelopes: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(step key, visit, actor) of every approval or signature, replayed from the log."""
    seen: list[tuple[str, int, str]] = []
    state = TaskState()
    for envelope in envelopes:
        step = state.current_step
        if envelope["type"] in ("step.approved", "document.signed") and step is not None:
            seen.append((step.key, step.visit, envelope["actor"]["id"]))
        state = apply(state, envelope)
    return seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    amount=st.sampled_from(["4000", "12800.00"]),
    cross_border=st.booleans(),
    self_ok=st.booleans(),
    script=steps,
)
def test_random_commands_keep_fold_and_invariants(
    amount: str, cross_border: bool, self_ok: bool, script: list[Any]
) -> None:
    d: TaskDriver = launched(amount, cross_border, allow_self_approval=self_ok)
    for actor_choice, command, gap in script:
        pending = d.state.pending
        if isinstance(actor_choice, str):
            actor = actor_choice
        else:
            actor = pending[actor_choice % len(pending)] if pending else INITIATOR
        at = d.now + gap
        if command == NEXT:
            command = next_move(d, actor, at)
        before, stored = d.state, len(d.envelopes)
        try:
            types = d.act(actor, command, at=at)
        except ActionRefused:
            # (b) a refusal stores nothing and changes nothing
            assert len(d.envelopes) == stored
            assert d.state == before
            continue
        # a finished task never changes
        assert not before.finished
        assert types and len(d.envelopes) == stored + len(types)
        # (a) incremental apply equals a fold from scratch
        assert fold(d.envelopes) == d.state
        # decide never produces an event the fold finds out of place
        assert d.state.anomalies == ()
        # completed only after every step is done, and always when they are
        if "task.completed" in types:
            assert types[-1] == "task.completed"
            assert d.state.all_steps_done and all(s.done for s in d.state.steps)
        if d.state.all_steps_done:
            assert d.state.status == "completed"
        # each participant finishes their part at most once per visit of a step
        for step in d.state.steps:
            users = [p.user for p in step.members]
            assert len(users) == len(set(users))
    event(f"final status: {d.state.status}")
    for kind in ("step.returned", "task.transferred", "signer.added", "task.expired"):
        if any(e["type"] == kind for e in d.envelopes):
            event(f"saw {kind}")
    event(f"script length: {min(len(script) // 10 * 10, 40)}+")
    event(f"events stored: {min(len(d.envelopes) // 10 * 10, 20)}+")
    acts = completing_acts(d.envelopes)
    assert len(acts) == len(set(acts))
    # once finished, every further command is refused
    if d.state.finished:
        for actor in PEOPLE:
            try:
                decide(d.state, Comment("late"), actor, d.now)
            except ActionRefused:
                continue
            raise AssertionError("a finished task accepted a command")
