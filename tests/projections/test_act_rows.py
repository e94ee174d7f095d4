"""The typed act rows and task columns the KPI and compliance views read.

Each flag of ``proj_acts`` restates a workflow rule against the state the event met; these
tests store events that ``decide`` would refuse (as an upstream app appending raw events
could) and check the row names the breach, and that the facts loader returns the same
values, incrementally and for one scope only.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

import projections.facts as facts_module
from ledger.app import Ledger
from ledger.events import RequestContext
from ledger.store import LedgerStore
from ledger.workflow import (
    Approve,
    Create,
    EventDraftData,
    Return,
    Sign,
    Submit,
    VerifyIdentity,
    route,
)
from projections import TaskProjection, micros
from projections.facts import FactsCache, record_audit_run
from projections.scope import Scope
from projections.task_rows import ACT_COLUMNS
from tests.projections import Clock, StoredTask, actor, launch
from tests.workflow import (
    CFO,
    CONTRACT,
    DEPT_HEAD,
    DOC,
    FINANCE,
    INITIATOR,
    LEGAL,
    REV,
    seed_directory,
    seed_form,
    seed_template,
)


def acts_of(projection: TaskProjection, task: StoredTask) -> list[dict[str, Any]]:
    rows = projection._db.query(
        f"SELECT {', '.join(ACT_COLUMNS)} FROM proj_acts WHERE task_id = ? ORDER BY leaf_index",
        [str(task.task_id)],
    )
    return [dict(zip(ACT_COLUMNS, row, strict=True)) for row in rows]


def test_an_act_in_turn_records_when_the_actor_became_due(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    task = launch(store, clock)
    entered = clock.now  # the submission entered the first step
    task.act(DEPT_HEAD, Approve(), gap=timedelta(hours=3))
    approved_at = clock.now
    task.act(FINANCE, Approve(), gap=timedelta(hours=5))
    projection.catch_up()
    acts = acts_of(projection, task)
    assert [a["type"] for a in acts] == [
        "task.created",
        "task.submitted",
        "step.approved",
        "step.approved",
    ]
    head, finance = acts[2], acts[3]
    assert (head["step_key"], head["in_turn"], head["self_act"]) == ("head", 1, 0)
    assert head["pending_since"] == micros(entered)
    assert head["at"] == micros(approved_at)
    # The countersign step was entered by the head's approval.
    assert finance["step_key"] == "finance_legal"
    assert finance["pending_since"] == micros(approved_at)
    # Its 48-hour due time comes before the task's deadline: the effective one.
    assert finance["deadline"] == micros(approved_at + timedelta(hours=48))
    assert head["deadline"] == micros(task.state.deadline)
    assert [a["leaf_index"] for a in acts] == sorted(a["leaf_index"] for a in acts)


def test_an_act_by_someone_not_pending_is_out_of_turn_and_noted(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    task = launch(store, clock)
    # The CFO approves before the head has: decide would refuse; the log holds it anyway.
    task.append([EventDraftData("step.approved", {"step": "cfo", "comment": None})], CFO)
    projection.catch_up()
    row = acts_of(projection, task)[-1]
    assert (row["type"], row["actor_id"], row["in_turn"], row["step_key"]) == (
        "step.approved",
        CFO,
        0,
        "cfo",
    )
    assert row["pending_since"] is None
    assert row["missing_factors"] == "password"  # the CFO step needs a password check
    assert "not pending" in row["anomaly"]


def test_a_self_approval_and_a_signature_without_its_factor_are_flagged(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    directory = seed_directory()
    template = seed_template()
    # A route where the initiator is also the department head: decide refuses their
    # approval unless the template allows it.
    r = route(template, seed_form("4000"), INITIATOR, directory)
    head = r.steps[0]
    r = type(r)(
        **{
            **r.__dict__,
            "steps": (type(head)(**{**head.__dict__, "participants": (INITIATOR,)}), *r.steps[1:]),
        }
    )
    task = StoredTask(store, clock, uuid.uuid4())
    task.act(INITIATOR, Create(r, "Self", seed_form("4000"), None, (CONTRACT,), department="it"))
    task.act(INITIATOR, Submit())
    task.append([EventDraftData("step.approved", {"step": "head", "comment": None})], INITIATOR)
    task.act(FINANCE, Approve())
    task.act(LEGAL, Approve())
    # The supplier signs with no SMS check at all.
    task.append(
        [
            EventDraftData(
                "document.signed",
                {"step": "sign", "document_sha256": DOC, "revision_sha256": REV},
            )
        ],
        "ext-supplier",
    )
    projection.catch_up()
    acts = {a["type"] + ":" + a["actor_id"]: a for a in acts_of(projection, task)}
    assert acts[f"step.approved:{INITIATOR}"]["self_act"] == 1
    assert acts[f"step.approved:{INITIATOR}"]["in_turn"] == 1
    assert acts[f"step.approved:{FINANCE}"]["self_act"] == 0
    signed = acts["document.signed:ext-supplier"]
    assert (signed["required_factors"], signed["missing_factors"], signed["in_turn"]) == (
        "sms_otp",
        "sms_otp",
        1,
    )
    row = projection.get_task(task.task_id)
    assert row is not None and row["department"] == "it"


def test_a_passed_check_within_the_window_satisfies_the_factor(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    task = launch(store, clock, amount="4000")
    task.act(DEPT_HEAD, Approve())
    task.act(FINANCE, Approve())
    task.act(LEGAL, Approve())
    task.act("ext-supplier", VerifyIdentity("sms_otp", "sms", "passed", "gw-1"))
    task.act("ext-supplier", Sign(DOC, REV))
    projection.catch_up()
    signed = acts_of(projection, task)[-2]  # the completion follows the signature
    assert signed["type"] == "document.signed"
    assert (signed["required_factors"], signed["missing_factors"]) == ("sms_otp", "")
    row = projection.get_task(task.task_id)
    assert row is not None
    assert (row["status"], row["electronic"], row["returns"]) == ("completed", 1, 0)


def test_returns_are_counted_and_mobile_acts_recognised(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    task = launch(store, clock)
    task.act(DEPT_HEAD, Approve())
    task.act(FINANCE, Return("head", "wrong cost centre"))
    phone = RequestContext(ip="203.0.113.9", device_id="dev-1", platform="iOS")
    draft = EventDraftData("step.approved", {"step": "head", "comment": None})
    task.store.append(
        [draft.to_draft(task.task_id, actor(DEPT_HEAD), context=phone)],
        expected={task.task_id: task.state.last_sequence},
    )
    projection.catch_up()
    acts = acts_of(projection, task)
    assert acts[-1]["mobile"] == 1 and acts[-1]["device_id"] == "dev-1"
    assert acts[-1]["ip"] == "203.0.113.9" and acts[-1]["in_turn"] == 1
    assert all(a["mobile"] == 0 for a in acts[:-1])
    row = projection.get_task(task.task_id)
    assert row is not None and row["returns"] == 1 and row["electronic"] == 0


def test_the_facts_cache_loads_incrementally_and_only_its_scope(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    first = launch(store, clock)
    launch(store, clock)
    projection.catch_up()
    everything = FactsCache(projection._db)
    with projection._db.transaction() as tx:
        tx.execute("CREATE TABLE owners (task_id TEXT PRIMARY KEY, owner TEXT NOT NULL)")
        tx.execute("INSERT INTO owners VALUES (?, 'one')", [str(first.task_id)])
    only_first = FactsCache(projection._db, Scope(("owners", "task_id", "owner"), "one"))
    facts = everything.refresh(projection.position)
    assert facts.tasks.height == 2 and facts.acts.height == 4
    assert only_first.refresh(projection.position).tasks["task_id"].to_list() == [
        str(first.task_id)
    ]
    first.act(DEPT_HEAD, Approve())
    projection.catch_up()
    facts = everything.refresh(projection.position)
    assert facts.acts.height == 5 and facts.tasks.height == 2
    changed = facts.tasks.filter(pl.col("task_id") == str(first.task_id))
    assert changed["current_step"].to_list() == ["finance_legal"]
    assert changed["created_leaf"].to_list() == [0]
    # The pending people of the changed task were replaced, not added to.
    pending = facts.pending.filter(pl.col("task_id") == str(first.task_id))
    assert sorted(pending["user_id"].to_list()) == sorted([FINANCE, LEGAL])
    scoped = only_first.refresh(projection.position)
    assert scoped.acts.height == 3 and set(scoped.acts["task_id"]) == {str(first.task_id)}
    # A fresh cache reads the same facts at once.
    again = FactsCache(projection._db).refresh(projection.position)
    assert again.tasks.sort("task_id").equals(facts.tasks.sort("task_id"))
    assert again.acts.equals(facts.acts)
    record_audit_run(projection._db, micros(clock.now), store.tree_size(), False, "leaf 3: bad")
    audits = everything.refresh(projection.position).audits
    assert audits.rows() == [(micros(clock.now), store.tree_size(), 0, "leaf 3: bad")]


def test_checkpoint_facts_follow_their_timestamps(ledger: Ledger, clock: Clock) -> None:
    sealer = ledger.sealer()
    with TaskProjection(ledger.store) as projection:
        cache = FactsCache(projection._db)
        launch(ledger.store, clock)
        first = sealer.seal()
        assert first is not None
        projection.catch_up()
        waiting = cache.refresh(projection.position).checkpoints
        assert waiting.rows() == [(first.tree_size, waiting["sealed_at"][0], None)]
        assert sealer.timestamp_pending() == 1
        launch(ledger.store, clock)
        second = sealer.seal()
        assert second is not None
        projection.catch_up()
        rows = cache.refresh(projection.position).checkpoints.rows()
        assert [(size, stamped is not None) for size, _, stamped in rows] == [
            (first.tree_size, True),
            (second.tree_size, False),
        ]
        assert all(sealed > 0 for _, sealed, _ in rows)


def _same(a: pl.DataFrame, b: pl.DataFrame, *keys: str) -> bool:
    return a.sort(list(keys)).equals(b.sort(list(keys)))


def test_a_task_read_after_its_created_act_keeps_its_created_leaf(
    store: LedgerStore, clock: Clock, projection: TaskProjection
) -> None:
    task = launch(store, clock)  # leaves 0 (created) and 1 (submitted)
    task.act(DEPT_HEAD, Approve())  # leaf 2
    projection.catch_up()
    cache = FactsCache(projection._db)
    # The task's row was last changed at leaf 2: a refresh up to leaf 1 reads its created
    # act but not yet its row, which the next refresh reads.
    assert cache.refresh(1).tasks.height == 0
    tasks = cache.refresh(projection.position).tasks
    assert tasks.select("task_id", "created_leaf").rows() == [(str(task.task_id), 0)]


def test_many_refreshes_keep_few_chunks_and_the_facts_of_one_load(
    ledger: Ledger, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refresh appends to the frames; they are merged before chunks pile up."""
    monkeypatch.setattr(facts_module, "MAX_CHUNKS", 3)
    sealer = ledger.sealer()
    with TaskProjection(ledger.store) as projection:
        cache = FactsCache(projection._db)
        first = launch(ledger.store, clock)
        approvers = iter([DEPT_HEAD, FINANCE, LEGAL])
        for step in range(8):
            if step in (1, 3, 5):
                first.act(next(approvers), Approve())
            else:
                launch(ledger.store, clock)
            assert sealer.seal() is not None
            projection.catch_up()
            got = cache.refresh(projection.position)
            for frame in (got.tasks, got.acts, got.pending, got.checkpoints):
                assert max(frame.n_chunks("all")) <= 3
        whole = FactsCache(projection._db).refresh(projection.position)
    assert _same(got.tasks, whole.tasks, "task_id")
    assert got.acts.equals(whole.acts)
    assert _same(got.pending, whole.pending, "task_id", "step_index", "user_id")
    assert got.checkpoints.equals(whole.checkpoints)
    assert got.tasks.get_column("created_leaf").null_count() == 0
