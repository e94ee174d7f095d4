"""Compliance rules on small hand-built facts: which acts breach, and what the evidence says."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from projections.compliance import RULES, breaches, compliance_report
from projections.facts import Facts
from projections.kpis import KpiFilters
from tests.projections.test_kpis import T0, H, act, shuffled, task

MINUTE = 60_000_000
NO_FILTERS = KpiFilters()


def rows(facts: Facts, rule: str, filters: KpiFilters = NO_FILTERS, now: int = T0) -> list[Any]:
    found = breaches(facts, filters, now)
    return found.filter(pl.col("rule") == rule).drop("rule").rows(named=True)


def test_rule_ids_are_the_named_ones() -> None:
    assert [rule.id for rule in RULES] == [
        "self_approval",
        "missing_identity_factor",
        "out_of_order",
        "after_deadline",
        "shared_device_or_ip",
        "new_device_or_ip",
        "timestamp_delay",
        "audit_failure",
    ]
    assert all(rule.title_en and rule.title_zh and rule.description for rule in RULES)


def test_self_approval() -> None:
    facts = Facts.from_rows(
        tasks=[task("t-1", 1, initiator="u-chen")],
        acts=[
            act(10, "t-1", T0, actor_id="u-chen", self_act=1),
            act(11, "t-1", T0 + H, actor_id="u-li"),
        ],
    )
    assert rows(facts, "self_approval") == [
        {
            "task_id": "t-1",
            "leaf_index": 10,
            "at": T0,
            "actor": "u-chen",
            "evidence": "u-chen approved step 'head' of task t-1, a task they initiated; "
            "the template does not allow self-approval",
        }
    ]


def test_missing_identity_factor() -> None:
    facts = Facts.from_rows(
        tasks=[task("t-1", 1)],
        acts=[
            act(
                10,
                "t-1",
                T0,
                actor_id="u-b",
                type="document.signed",
                step_key="legal",
                required_factors="password,sms,face",
                missing_factors="sms,face",
            ),
            act(11, "t-1", T0, required_factors="sms", missing_factors=""),
            # A rejection needs no identity check.
            act(12, "t-1", T0, type="step.rejected", missing_factors="sms"),
        ],
    )
    found = rows(facts, "missing_identity_factor")
    assert [(row["leaf_index"], row["actor"]) for row in found] == [(10, "u-b")]
    assert found[0]["evidence"] == (
        "u-b signed step 'legal' of task t-1 without a passed check of sms, face "
        "(the step requires password, sms, face)"
    )


def test_out_of_order() -> None:
    facts = Facts.from_rows(
        tasks=[task("t-1", 1)],
        acts=[
            act(10, "t-1", T0, actor_id="u-x", type="step.returned", in_turn=0),
            act(11, "t-1", T0, actor_id="u-x", type="document.viewed", in_turn=0),
            act(12, "t-1", T0, actor_id="u-y", in_turn=1),
        ],
    )
    found = rows(facts, "out_of_order")
    assert [row["leaf_index"] for row in found] == [10]
    assert found[0]["evidence"] == (
        "u-x returned step 'head' of task t-1 while not pending in that step"
    )


def test_after_deadline() -> None:
    deadline = T0
    facts = Facts.from_rows(
        tasks=[task("t-1", 1)],
        acts=[
            act(10, "t-1", deadline + 2 * H + 5 * MINUTE, actor_id="u-a", deadline=deadline),
            act(11, "t-1", deadline, actor_id="u-b", deadline=deadline),
            act(12, "t-1", deadline + H, type="task.transferred", system=1, deadline=deadline),
            act(13, "t-1", deadline + 90_000_000, actor_id="u-c", deadline=deadline),
            act(14, "t-1", deadline + H, actor_id="u-d"),
        ],
    )
    found = rows(facts, "after_deadline")
    assert [row["leaf_index"] for row in found] == [13, 10]
    assert found[0]["evidence"] == (
        "u-c approved step 'head' of task t-1 at 2026-11-16T00:01:30.000000Z, "
        "1 min 30 s after the deadline 2026-11-16T00:00:00.000000Z"
    )
    assert "2 h 5 min after the deadline" in found[1]["evidence"]


def test_shared_device_or_ip() -> None:
    facts = Facts.from_rows(
        tasks=[task("t-1", 1), task("t-2", 2)],
        acts=[
            act(10, "t-1", T0, actor_id="u-a", device_id="dev-1", ip="10.0.0.1"),
            act(11, "t-1", T0 + 1, actor_id="u-a", device_id="dev-1", ip="10.0.0.2"),
            act(12, "t-1", T0 + 2, actor_id="u-b", device_id="dev-1", ip="10.0.0.3"),
            act(13, "t-1", T0 + 3, actor_id="u-c", device_id="dev-1", ip="10.0.0.4"),
            # The scheduler on the same device does not make it shared.
            act(14, "t-2", T0 + 4, actor_id="system", system=1, device_id="dev-2"),
            act(15, "t-2", T0 + 5, actor_id="u-a", device_id="dev-2", ip="10.0.0.1"),
            # The same IP on another task is not sharing within one task.
            act(16, "t-2", T0 + 6, actor_id="u-b", device_id="dev-3", ip="10.0.0.3"),
            act(17, "t-2", T0 + 7, actor_id="u-b", device_id="dev-3", ip="10.0.0.9"),
            act(18, "t-2", T0 + 8, actor_id="u-d", device_id="dev-4", ip="10.0.0.9"),
        ],
    )
    assert rows(facts, "shared_device_or_ip") == [
        {
            "task_id": "t-1",
            "leaf_index": 12,
            "at": T0 + 2,
            "actor": "u-b",
            "evidence": "device dev-1 was used on task t-1 by 3 different people: u-a, u-b, u-c",
        },
        {
            "task_id": "t-2",
            "leaf_index": 18,
            "at": T0 + 8,
            "actor": "u-d",
            "evidence": "IP 10.0.0.9 was used on task t-2 by 2 different people: u-b, u-d",
        },
    ]


def new_device_facts() -> Facts:
    return Facts.from_rows(
        tasks=[task("t-1", 1), task("t-2", 2, template_id="tpl-b")],
        acts=[
            act(1, "t-1", T0, device_id="dev-1", ip="10.0.0.1"),
            act(2, "t-1", T0 + H, device_id="dev-1", ip="10.0.0.1"),
            act(3, "t-2", T0 + 2 * H, device_id="dev-2", ip="10.0.0.1"),
            act(4, "t-1", T0 + 3 * H, type="document.viewed", device_id="dev-3", ip="10.0.0.2"),
            act(5, "t-2", T0 + 4 * H, device_id="dev-1", ip="10.0.0.2"),
            act(6, "t-2", T0 + 5 * H, device_id=None, ip="10.0.0.3"),
            # Another person's first act is not "new"; nor is the scheduler's.
            act(7, "t-1", T0 + 6 * H, actor_id="u-b", device_id="dev-9", ip="10.9.9.9"),
            act(8, "t-1", T0 + 7 * H, actor_id="system", system=1, device_id="x", ip="y"),
            act(9, "t-1", T0 + 8 * H, actor_id="system", system=1, device_id="x2", ip="y2"),
        ],
    )


def test_new_device_or_ip() -> None:
    found = rows(new_device_facts(), "new_device_or_ip")
    assert [(row["leaf_index"], row["actor"], row["task_id"]) for row in found] == [
        (3, "u-a", "t-2"),
        (4, "u-a", "t-1"),
        (6, "u-a", "t-2"),
    ]
    assert [row["evidence"] for row in found] == [
        "u-a acted on task t-2 (step.approved) from a new device 'dev-2', "
        "not seen in any of their 2 earlier acts",
        "u-a acted on task t-1 (document.viewed) from a new device 'dev-3' and a new IP "
        "10.0.0.2, not seen in any of their 3 earlier acts",
        "u-a acted on task t-2 (step.approved) from a new IP 10.0.0.3, "
        "not seen in any of their 5 earlier acts",
    ]


def test_new_device_history_reaches_before_the_period_and_outside_the_template() -> None:
    in_period = KpiFilters(since=T0 + 3 * H, template="tpl-b")
    found = rows(new_device_facts(), "new_device_or_ip", in_period)
    # Only leaf 6 is both in the period and on a tpl-b task; its history still counts
    # the five earlier acts on either template.
    assert [(row["leaf_index"], row["evidence"][-27:]) for row in found] == [
        (6, "any of their 5 earlier acts")
    ]


def checkpoint_facts() -> Facts:
    return Facts.from_rows(
        checkpoints=[
            (100, T0, T0 + 30 * MINUTE),
            (200, T0 + H, T0 + 3 * H),
            (300, T0 + 2 * H, None),
            (400, T0 + 4 * H + 30 * MINUTE, None),
        ],
        audits=[(T0, 500, 1, None), (T0 + H, 600, 0, "root mismatch at tree size 600")],
    )


def test_timestamp_delay() -> None:
    now = T0 + 5 * H
    assert rows(checkpoint_facts(), "timestamp_delay", now=now) == [
        {
            "task_id": None,
            "leaf_index": None,
            "at": T0 + H,
            "actor": None,
            "evidence": "checkpoint of tree size 200 sealed at 2026-11-16T01:00:00.000000Z "
            "was timestamped 2 h 0 min later (allowed: 3600 s)",
        },
        {
            "task_id": None,
            "leaf_index": None,
            "at": T0 + 2 * H,
            "actor": None,
            "evidence": "checkpoint of tree size 300 sealed at 2026-11-16T02:00:00.000000Z "
            "is still waiting for a timestamp after 3 h 0 min (allowed: 3600 s)",
        },
    ]
    strict = breaches(checkpoint_facts(), NO_FILTERS, now, timestamp_delay_seconds=600)
    delayed = strict.filter(pl.col("rule") == "timestamp_delay")["evidence"]
    sizes = delayed.str.extract(r"tree size (\d+)").cast(pl.Int64).to_list()
    assert sizes == [100, 200, 300, 400]


def test_audit_failure() -> None:
    assert rows(checkpoint_facts(), "audit_failure", now=T0 + 5 * H) == [
        {
            "task_id": None,
            "leaf_index": None,
            "at": T0 + H,
            "actor": None,
            "evidence": "audit at tree size 600 failed: root mismatch at tree size 600",
        }
    ]


def mixed_facts() -> Facts:
    return Facts.from_rows(
        tasks=[task("t-1", 1), task("t-2", 2, template_id="tpl-b", department="legal")],
        acts=[
            act(10, "t-1", T0 + H, self_act=1, in_turn=0),
            act(11, "t-2", T0 + H, actor_id="u-b", self_act=1),
            act(12, "t-2", T0 + 3 * H, actor_id="u-b", in_turn=0),
        ],
        checkpoints=checkpoint_facts().checkpoints.rows(),
        audits=checkpoint_facts().audits.rows(),
    )


def test_breaches_are_sorted_by_time_then_log_position_then_rule() -> None:
    found = breaches(mixed_facts(), NO_FILTERS, T0 + 5 * H)
    assert found.columns == ["rule", "task_id", "leaf_index", "at", "actor", "evidence"]
    assert found.schema["leaf_index"] == pl.Int64 and found.schema["at"] == pl.Int64
    assert found.select("at", "leaf_index", "rule").rows() == [
        (T0 + H, 10, "out_of_order"),
        (T0 + H, 10, "self_approval"),
        (T0 + H, 11, "self_approval"),
        (T0 + H, None, "audit_failure"),
        (T0 + H, None, "timestamp_delay"),
        (T0 + 2 * H, None, "timestamp_delay"),
        (T0 + 3 * H, 12, "out_of_order"),
    ]


def test_template_filters_task_rules_only_and_the_period_filters_all() -> None:
    now = T0 + 5 * H
    only_b = breaches(mixed_facts(), KpiFilters(template="tpl-b"), now)
    assert only_b.select("rule", "task_id").rows() == [
        ("self_approval", "t-2"),
        ("audit_failure", None),
        ("timestamp_delay", None),
        ("timestamp_delay", None),
        ("out_of_order", "t-2"),
    ]
    legal = breaches(mixed_facts(), KpiFilters(department="legal"), now)
    assert legal.equals(only_b)
    later = breaches(mixed_facts(), KpiFilters(since=T0 + 2 * H, until=T0 + 3 * H), now)
    assert later.select("rule", "at").rows() == [("timestamp_delay", T0 + 2 * H)]


def test_compliance_report_counts_every_rule() -> None:
    report = compliance_report(mixed_facts(), KpiFilters(until=T0 + 2 * H), T0 + 5 * H)
    assert report["as_of"] == "2026-11-16T05:00:00.000000Z"
    assert report["filters"]["until"] == "2026-11-16T02:00:00.000000Z"
    counts = {rule["rule"]: rule["breaches"] for rule in report["rules"]}
    assert counts == {
        "self_approval": 2,
        "missing_identity_factor": 0,
        "out_of_order": 1,
        "after_deadline": 0,
        "shared_device_or_ip": 0,
        "new_device_or_ip": 0,
        "timestamp_delay": 1,
        "audit_failure": 1,
    }
    assert report["rules"][0] == {
        "rule": "self_approval",
        "title": RULES[0].title_en,
        "title_zh": RULES[0].title_zh,
        "description": RULES[0].description,
        "breaches": 2,
    }
    assert report["breaches"][0] == {
        "rule": "out_of_order",
        "task_id": "t-1",
        "leaf_index": 10,
        "at": "2026-11-16T01:00:00.000000Z",
        "actor": "u-a",
        "evidence": "u-a approved step 'head' of task t-1 while not pending in that step",
    }


def test_empty_facts_have_no_breaches() -> None:
    report = compliance_report(Facts.from_rows(), KpiFilters(since=T0, template="x"), T0)
    assert report["breaches"] == []
    assert [rule["breaches"] for rule in report["rules"]] == [0] * len(RULES)
    assert breaches(Facts.from_rows(), NO_FILTERS, T0).height == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_rows_give_identical_breaches(seed: int) -> None:
    base = mixed_facts()
    shared = [
        act(200, "t-1", T0 + H, actor_id="u-p", device_id="dev-s", ip="10.1.1.1"),
        act(201, "t-1", T0 + H, actor_id="u-q", device_id="dev-s", ip="10.1.1.1"),
        act(202, "t-1", T0 + H, actor_id="u-r", device_id="dev-s", ip="10.1.1.1"),
    ]
    acts = pl.concat(
        [
            new_device_facts().acts,
            base.acts.with_columns(pl.col("leaf_index") + 100),
            Facts.from_rows(acts=shared).acts,
        ]
    )
    facts = Facts(base.tasks, acts, base.pending, base.checkpoints, base.audits)
    now = T0 + 5 * H
    expected = compliance_report(facts, NO_FILTERS, now)
    assert len(expected["breaches"]) >= 10
    mixed = shuffled(facts, seed)
    mixed = Facts(
        mixed.tasks,
        mixed.acts,
        mixed.pending,
        facts.checkpoints.sample(fraction=1.0, shuffle=True, seed=seed),
        facts.audits.sample(fraction=1.0, shuffle=True, seed=seed),
    )
    assert compliance_report(mixed, NO_FILTERS, now) == expected


def test_evidence_names_the_ids() -> None:
    found = breaches(mixed_facts(), NO_FILTERS, T0 + 5 * H)
    for row in found.iter_rows(named=True):
        if row["task_id"] is not None:
            assert row["task_id"] in row["evidence"]
            assert row["actor"] in row["evidence"]
