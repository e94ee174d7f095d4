"""KPI views on small hand-built facts whose answers are worked out by hand below."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from projections.facts import ACT_SCHEMA, PENDING_SCHEMA, TASK_SCHEMA, Facts
from projections.kpis import KpiFilters, iso_time, kpi_tables, kpi_views

H = 3_600_000_000
#: Monday 2026-11-16 00:00 UTC, the start of ISO week 2026-W47.
T0 = 1_794_787_200_000_000
DAY = 24 * H


def task(task_id: str, created_leaf: int, **values: Any) -> tuple[Any, ...]:
    row: dict[str, Any] = {
        "task_id": task_id,
        "status": "completed",
        "title": f"Title {task_id}",
        "template_id": "tpl-a",
        "template_name": "Purchase",
        "department": "finance",
        "initiator": "u-init",
        "current_step": "head",
        "pending": "",
        "created_at": T0,
        "submitted_at": None,
        "finished_at": None,
        "due_at": None,
        "returns": 0,
        "electronic": 0,
        "anomalies": 0,
        "created_leaf": created_leaf,
        "last_leaf_index": created_leaf + 1,
    }
    row.update(values)
    return tuple(row[name] for name in TASK_SCHEMA)


def act(leaf_index: int, task_id: str, at: int, **values: Any) -> tuple[Any, ...]:
    row: dict[str, Any] = dict.fromkeys(ACT_SCHEMA)
    row.update(
        leaf_index=leaf_index,
        task_id=task_id,
        type="step.approved",
        at=at,
        actor_id="u-a",
        system=0,
        step_index=1,
        step_key="head",
        mobile=0,
        required_factors="",
        missing_factors="",
        in_turn=1,
        self_act=0,
    )
    row.update(values)
    return tuple(row[name] for name in ACT_SCHEMA)


def waiting(task_id: str, step_key: str, user_id: str) -> tuple[Any, ...]:
    row = {"task_id": task_id, "step_index": 1, "step_key": step_key, "user_id": user_id}
    row["since"] = T0
    return tuple(row[name] for name in PENDING_SCHEMA)


def cycle_facts() -> Facts:
    """Five completed tasks taking 1, 2, 3, 4 and 10 hours, one rejected, one running."""
    return Facts.from_rows(
        tasks=[
            task("t-1", 10, submitted_at=T0, finished_at=T0 + 1 * H),
            task("t-2", 20, submitted_at=T0, finished_at=T0 + 2 * H),
            # No submitted_at: the cycle starts at created_at.
            task("t-3", 30, created_at=T0 + DAY, finished_at=T0 + DAY + 3 * H),
            task(
                "t-4",
                40,
                template_id="tpl-b",
                template_name="Contract",
                department=None,
                submitted_at=T0,
                finished_at=T0 + 4 * H,
            ),
            task(
                "t-5",
                50,
                template_id="tpl-b",
                template_name="Contract",
                department=None,
                created_at=T0 - 20 * DAY,
                submitted_at=T0 - 20 * DAY,
                finished_at=T0 - 20 * DAY + 10 * H,
            ),
            task("t-6", 60, status="rejected", submitted_at=T0, finished_at=T0 + 50 * H),
            task("t-7", 70, status="in_progress", submitted_at=T0),
        ]
    )


def test_cycle_time_medians_and_linear_p90() -> None:
    views = kpi_views(cycle_facts(), KpiFilters(), T0 + 30 * DAY)
    cycle = views["cycle_time"]
    # Sorted 1, 2, 3, 4, 10 h: median 3; p90 at h = 4 * 0.9 = 3.6 -> 4 + 0.6 * (10 - 4).
    assert cycle["overall"] == {"tasks": 5, "median_hours": 3.0, "p90_hours": 7.6}
    # tpl-a 1, 2, 3: p90 at h = 1.8 -> 2 + 0.8 * 1; tpl-b 4, 10: p90 at h = 0.9 -> 4 + 0.9 * 6.
    assert cycle["by_template"] == [
        {
            "template_id": "tpl-a",
            "template_name": "Purchase",
            "tasks": 3,
            "median_hours": 2.0,
            "p90_hours": 2.8,
        },
        {
            "template_id": "tpl-b",
            "template_name": "Contract",
            "tasks": 2,
            "median_hours": 7.0,
            "p90_hours": 9.4,
        },
    ]
    assert cycle["by_department"] == [
        {"department": "finance", "tasks": 3, "median_hours": 2.0, "p90_hours": 2.8},
        {"department": None, "tasks": 2, "median_hours": 7.0, "p90_hours": 9.4},
    ]
    # t-5 finished in October (20 days before 16 November), the rest in November.
    assert cycle["by_month"] == [
        {"month": "2026-10", "tasks": 1, "median_hours": 10.0, "p90_hours": 10.0},
        {"month": "2026-11", "tasks": 4, "median_hours": 2.5, "p90_hours": 3.7},
    ]


def test_cycle_time_counts_only_tasks_finished_in_the_period() -> None:
    views = kpi_views(cycle_facts(), KpiFilters(since=T0, until=T0 + DAY), T0 + 30 * DAY)
    # t-1, t-2 and t-4 finished on 16 November; t-3 on the 17th; t-5 in October.
    assert views["cycle_time"]["overall"] == {"tasks": 3, "median_hours": 2.0, "p90_hours": 3.6}


def waiting_facts() -> Facts:
    return Facts.from_rows(
        tasks=[
            task("t-1", 10, status="in_progress"),
            task("t-2", 20, status="in_progress", template_id="tpl-b"),
        ],
        acts=[
            # u-a waited 1 h and 3 h on tpl-a/head; u-b 2 h on tpl-a/head and 5 h on tpl-a/legal.
            act(100, "t-1", T0 + 1 * H, actor_id="u-a", pending_since=T0),
            act(101, "t-1", T0 + 3 * H, actor_id="u-a", pending_since=T0),
            act(102, "t-1", T0 + 2 * H, actor_id="u-b", pending_since=T0),
            act(103, "t-1", T0 + 5 * H, actor_id="u-b", step_key="legal", pending_since=T0),
            # u-c waited 2 h on tpl-b/head, by document.signed.
            act(104, "t-2", T0 + 2 * H, actor_id="u-c", type="document.signed", pending_since=T0),
            # Not waits: no pending_since, or not a participant's act on a step.
            act(105, "t-2", T0 + 9 * H, actor_id="u-c"),
            act(106, "t-2", T0 + 9 * H, actor_id="u-c", type="document.viewed", pending_since=T0),
        ],
        pending=[
            waiting("t-1", "legal", "u-b"),
            waiting("t-1", "legal", "u-d"),
            waiting("t-2", "ceo", "u-e"),
        ],
    )


def test_waiting_by_approver_is_a_bottleneck_ranking() -> None:
    views = kpi_views(waiting_facts(), KpiFilters(), T0 + DAY)
    assert views["waiting"]["by_approver"] == [
        # u-b: 2 and 5 h, median 3.5, p90 at h = 0.9 -> 2 + 0.9 * 3 = 4.7.
        {"actor": "u-b", "acts": 2, "median_hours": 3.5, "p90_hours": 4.7, "total_hours": 7.0},
        # u-a and u-c both have median 2; u-a's total (4 h) ranks it first.
        {"actor": "u-a", "acts": 2, "median_hours": 2.0, "p90_hours": 2.8, "total_hours": 4.0},
        {"actor": "u-c", "acts": 1, "median_hours": 2.0, "p90_hours": 2.0, "total_hours": 2.0},
    ]


def test_waiting_by_step_ranks_steps_and_counts_who_waits_now() -> None:
    views = kpi_views(waiting_facts(), KpiFilters(), T0 + DAY)
    assert views["waiting"]["by_step"] == [
        {
            "template_id": "tpl-a",
            "step_key": "legal",
            "acts": 1,
            "median_hours": 5.0,
            "p90_hours": 5.0,
            "total_hours": 5.0,
            "waiting_now": 2,
        },
        # 1, 3 and 2 h: median 2, p90 at h = 1.8 -> 2 + 0.8 * 1.
        {
            "template_id": "tpl-a",
            "step_key": "head",
            "acts": 3,
            "median_hours": 2.0,
            "p90_hours": 2.8,
            "total_hours": 6.0,
            "waiting_now": 0,
        },
        {
            "template_id": "tpl-b",
            "step_key": "head",
            "acts": 1,
            "median_hours": 2.0,
            "p90_hours": 2.0,
            "total_hours": 2.0,
            "waiting_now": 0,
        },
        # Nobody has acted on tpl-b/ceo yet, but someone is waiting there.
        {
            "template_id": "tpl-b",
            "step_key": "ceo",
            "acts": 0,
            "median_hours": None,
            "p90_hours": None,
            "total_hours": 0.0,
            "waiting_now": 1,
        },
    ]


def test_waiting_counts_acts_in_the_period_only() -> None:
    views = kpi_views(waiting_facts(), KpiFilters(since=T0 + 2 * H, until=T0 + 4 * H), T0)
    actors = {row["actor"]: row["acts"] for row in views["waiting"]["by_approver"]}
    assert actors == {"u-a": 1, "u-b": 1, "u-c": 1}


def rate_facts() -> Facts:
    return Facts.from_rows(
        tasks=[
            task("t-1", 10, submitted_at=T0, finished_at=T0 + H, electronic=1),
            task("t-2", 20, submitted_at=T0, finished_at=T0 + H, returns=1, electronic=1),
            task("t-3", 30, submitted_at=T0, finished_at=T0 + H),
            task("t-4", 40, status="rejected", submitted_at=T0, finished_at=T0 + H, returns=2),
            task("t-5", 50, status="revoked", submitted_at=T0, finished_at=T0 + H),
            task("t-6", 60, status="in_progress", submitted_at=T0),
            task("t-7", 70, status="draft"),
        ],
        acts=[
            act(100, "t-1", T0 + H, mobile=1),
            act(101, "t-1", T0 + H, type="document.viewed", mobile=1),
            act(102, "t-2", T0 + H, type="task.submitted"),
            act(103, "t-3", T0 + H),
            act(104, "t-3", T0 + H, type="task.completed", system=1, mobile=1),
        ],
    )


def test_rates() -> None:
    rates = kpi_views(rate_facts(), KpiFilters(), T0 + DAY)["rates"]
    assert rates == {
        # Finished: t-1..t-5; rejected: t-4.
        "rejection": {"rate": 0.2, "count": 1, "of": 5},
        # Submitted: t-1..t-6; returned: t-2, t-4.
        "return": {"rate": 0.3333, "count": 2, "of": 6},
        # Completed: t-1..t-3; without returns: t-1, t-3.
        "first_time_right": {"rate": 0.6667, "count": 2, "of": 3},
        "electronic": {"rate": 0.6667, "count": 2, "of": 3},
        # Acts by people: 100..103 (104 is the scheduler's); on mobile: 100, 101.
        "mobile_acts": {"rate": 0.5, "count": 2, "of": 4},
    }


def test_rates_table_matches_the_view() -> None:
    table = kpi_tables(rate_facts(), KpiFilters(), T0 + DAY)["rates"]
    assert table.columns == ["name", "count", "of", "rate"]
    assert table.row(1) == ("return", 2, 6, 0.3333)


def test_throughput_by_day_and_iso_week() -> None:
    facts = Facts.from_rows(
        tasks=[
            task("t-1", 10, created_at=T0 - DAY, submitted_at=T0 - DAY, finished_at=T0 + H),
            task("t-2", 20, created_at=T0 + H, status="in_progress"),
            task("t-3", 30, created_at=T0 + 2 * H, submitted_at=T0, finished_at=T0 + 8 * DAY),
            task("t-4", 40, created_at=T0, status="rejected", finished_at=T0 + DAY),
        ]
    )
    throughput = kpi_views(facts, KpiFilters(), T0 + 30 * DAY)["throughput"]
    assert throughput["by_day"] == [
        {"day": "2026-11-15", "created": 1, "completed": 0},
        {"day": "2026-11-16", "created": 3, "completed": 1},
        {"day": "2026-11-24", "created": 0, "completed": 1},
    ]
    # Sunday 15 November is still in ISO week 46.
    assert throughput["by_week"] == [
        {"week": "2026-W46", "created": 1, "completed": 0},
        {"week": "2026-W47", "created": 3, "completed": 1},
        {"week": "2026-W48", "created": 0, "completed": 1},
    ]
    in_period = kpi_views(facts, KpiFilters(since=T0, until=T0 + DAY), T0)["throughput"]
    assert in_period["by_day"] == [{"day": "2026-11-16", "created": 3, "completed": 1}]


def deadline_facts() -> Facts:
    now = T0 + 10 * H
    return Facts.from_rows(
        tasks=[
            task("t-late", 30, status="in_progress", due_at=now - 2 * H, pending="u-a\nu-b"),
            # Same deadline, created earlier in the log: listed first.
            task("t-late-2", 20, status="partially_signed", due_at=now - 2 * H, pending="u-c"),
            task("t-later", 10, status="in_progress", due_at=now - 30 * H, department=None),
            task("t-soon", 40, status="in_progress", due_at=now + 3 * H, pending="u-d"),
            task("t-edge", 50, status="in_progress", due_at=now, pending="u-d"),
            task("t-far", 60, status="in_progress", due_at=now + 30 * H),
            task("t-done", 70, status="completed", due_at=now - 5 * H),
            task("t-draft", 80, status="draft", due_at=now - 5 * H),
            task("t-none", 90, status="in_progress"),
        ]
    )


def test_overdue_and_at_risk() -> None:
    now = T0 + 10 * H
    views = kpi_views(deadline_facts(), KpiFilters(), now)
    assert [row["task_id"] for row in views["overdue"]] == ["t-later", "t-late-2", "t-late"]
    assert views["overdue"][2] == {
        "task_id": "t-late",
        "title": "Title t-late",
        "template_id": "tpl-a",
        "department": "finance",
        "current_step": "head",
        "pending": ["u-a", "u-b"],
        "due_at": "2026-11-16T08:00:00.000000Z",
        "overdue_hours": 2.0,
    }
    assert views["overdue"][0]["overdue_hours"] == 30.0
    assert views["overdue"][0]["pending"] == []
    assert [(row["task_id"], row["hours_left"]) for row in views["at_risk"]] == [
        ("t-edge", 0.0),
        ("t-soon", 3.0),
    ]
    wider = kpi_views(deadline_facts(), KpiFilters(), now, at_risk_hours=48)
    assert [row["task_id"] for row in wider["at_risk"]] == ["t-edge", "t-soon", "t-far"]


def test_overdue_ignores_the_period_but_not_the_department() -> None:
    now = T0 + 10 * H
    far_away = KpiFilters(since=T0 + 100 * DAY, until=T0 + 101 * DAY)
    assert len(kpi_views(deadline_facts(), far_away, now)["overdue"]) == 3
    finance = KpiFilters(department="finance")
    assert [r["task_id"] for r in kpi_views(deadline_facts(), finance, now)["overdue"]] == [
        "t-late-2",
        "t-late",
    ]


def test_tasks_choices_filters_and_as_of() -> None:
    facts = cycle_facts()
    views = kpi_views(facts, KpiFilters(since=T0, template="tpl-a"), T0 + 30 * DAY)
    assert views["as_of"] == "2026-12-16T00:00:00.000000Z"
    assert views["filters"] == {
        "since": "2026-11-16T00:00:00.000000Z",
        "until": None,
        "template": "tpl-a",
        "department": None,
    }
    # Unfiltered, for the drop-downs.
    assert views["choices"] == {
        "templates": [{"id": "tpl-a", "name": "Purchase"}, {"id": "tpl-b", "name": "Contract"}],
        "departments": ["finance"],
    }
    # tpl-a tasks created from T0 on: t-1, t-2, t-3, t-6, t-7.
    assert views["tasks"] == {
        "total": 5,
        "by_status": {"completed": 3, "in_progress": 1, "rejected": 1},
    }


def test_template_and_department_filters_select_tasks_and_their_acts() -> None:
    facts = waiting_facts()
    only_b = kpi_views(facts, KpiFilters(template="tpl-b"), T0 + DAY)
    assert [row["actor"] for row in only_b["waiting"]["by_approver"]] == ["u-c"]
    assert [row["step_key"] for row in only_b["waiting"]["by_step"]] == ["head", "ceo"]
    assert only_b["rates"]["mobile_acts"]["of"] == 3
    nobody = kpi_views(facts, KpiFilters(department="legal"), T0 + DAY)
    assert nobody["waiting"] == {"by_approver": [], "by_step": []}
    assert nobody["tasks"]["total"] == 0
    cycle = kpi_views(cycle_facts(), KpiFilters(department="finance"), T0 + 30 * DAY)
    assert cycle["cycle_time"]["overall"]["tasks"] == 3


def test_empty_facts_give_zeros_and_nulls() -> None:
    views = kpi_views(Facts.from_rows(), KpiFilters(since=T0, until=T0 + DAY), T0)
    assert views["tasks"] == {"total": 0, "by_status": {}}
    assert views["cycle_time"]["overall"] == {"tasks": 0, "median_hours": None, "p90_hours": None}
    assert views["cycle_time"]["by_template"] == []
    assert views["waiting"] == {"by_approver": [], "by_step": []}
    assert all(rate == {"rate": None, "count": 0, "of": 0} for rate in views["rates"].values())
    assert views["throughput"] == {"by_day": [], "by_week": []}
    assert views["overdue"] == [] and views["at_risk"] == []
    assert views["choices"] == {"templates": [], "departments": []}


def shuffled(facts: Facts, seed: int) -> Facts:
    def shuffle(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.sample(fraction=1.0, shuffle=True, seed=seed)

    return Facts(
        shuffle(facts.tasks),
        shuffle(facts.acts),
        shuffle(facts.pending),
        facts.checkpoints,
        facts.audits,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_rows_give_identical_output(seed: int) -> None:
    facts = Facts(
        pl.concat([cycle_facts().tasks, deadline_facts().tasks]),
        waiting_facts().acts,
        waiting_facts().pending,
        Facts.from_rows().checkpoints,
        Facts.from_rows().audits,
    )
    now = T0 + 10 * H
    expected = kpi_views(facts, KpiFilters(), now, at_risk_hours=48)
    assert kpi_views(shuffled(facts, seed), KpiFilters(), now, at_risk_hours=48) == expected
    tables = kpi_tables(facts, KpiFilters(), now)
    again = kpi_tables(shuffled(facts, seed), KpiFilters(), now)
    assert all(again[name].equals(table) for name, table in tables.items())


def test_iso_time() -> None:
    assert iso_time(T0 + 1) == "2026-11-16T00:00:00.000001Z"
    assert iso_time(None) is None
