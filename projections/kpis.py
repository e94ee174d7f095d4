"""KPI views over :class:`~projections.facts.Facts`: cycle and waiting times, rates,
throughput and deadlines.

:func:`kpi_tables` computes every view as a polars table (what the CLI prints and the
exports write); :func:`kpi_views` turns those tables into the dashboard's JSON, so the two
never disagree. Durations are measured in integer microseconds and only converted to hours
(rounded to 2 decimals) at the end, so results do not depend on the order of input rows.

Percentiles use linear interpolation between closest ranks (polars ``quantile(q, "linear")``,
NumPy's default, Excel's PERCENTILE.INC): with the n durations sorted as x[0] .. x[n-1] and
h = (n - 1) * q, the percentile is x[floor h] + (h - floor h) * (x[floor h + 1] - x[floor h]).
The median is the 0.5 percentile; both are null for no durations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from projections.facts import ACT_TYPES, Facts

MICROS_PER_HOUR = 3_600_000_000
FINISHED_STATUSES = ("completed", "rejected", "revoked", "expired")
OPEN_STATUSES = ("in_progress", "partially_signed")
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
RATE_NAMES = ("rejection", "return", "first_time_right", "electronic", "mobile_acts")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ENGINE: Literal["in-memory"] = "in-memory"
"""The polars engine every view collects with: faster than the streaming engine on these
million-row frames, and clear of an intermittent streaming-engine panic (polars 2.1,
``assertion failed: i < self.len()`` in a string expression) seen on the compliance query."""


@dataclass(frozen=True)
class KpiFilters:
    """Which part of the log a view covers: a period of time and one template or department.

    ``since`` is inclusive and ``until`` exclusive, both microseconds since the epoch;
    ``None`` leaves that side (or that selection) open.
    """

    since: int | None = None
    until: int | None = None
    template: str | None = None
    department: str | None = None


def iso_time(micros: int | None) -> str | None:
    """``micros`` since the epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (``None`` stays)."""
    if micros is None:
        return None
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_expr(column: str) -> pl.Expr:
    """Column ``column`` (microseconds since the epoch) as ISO strings, like :func:`iso_time`."""
    return pl.from_epoch(pl.col(column), "us").dt.strftime(ISO_FORMAT).alias(column)


def filters_json(filters: KpiFilters) -> dict[str, Any]:
    """``filters`` as the JSON object every view echoes back."""
    return {
        "since": iso_time(filters.since),
        "until": iso_time(filters.until),
        "template": filters.template,
        "department": filters.department,
    }


def in_period(column: str, filters: KpiFilters) -> pl.Expr:
    """True where time column ``column`` is set and falls in ``[since, until)``."""
    mask = pl.col(column).is_not_null()
    if filters.since is not None:
        mask = mask & (pl.col(column) >= filters.since)
    if filters.until is not None:
        mask = mask & (pl.col(column) < filters.until)
    return mask


def selects_tasks(filters: KpiFilters) -> bool:
    """Whether ``filters`` narrow the tasks (by template or department) at all."""
    return filters.template is not None or filters.department is not None


def selected_tasks(facts: Facts, filters: KpiFilters) -> pl.LazyFrame:
    """The tasks of ``filters``' template and department (all tasks when neither is set)."""
    tasks = facts.tasks.lazy()
    if filters.template is not None:
        tasks = tasks.filter(pl.col("template_id") == filters.template)
    if filters.department is not None:
        tasks = tasks.filter(pl.col("department") == filters.department)
    return tasks


def of_selected_tasks(frame: pl.LazyFrame, facts: Facts, filters: KpiFilters) -> pl.LazyFrame:
    """The rows of ``frame`` (acts, pending) that belong to a task ``filters`` select."""
    if not selects_tasks(filters):
        return frame
    chosen = selected_tasks(facts, filters).select("task_id")
    return frame.join(chosen, on="task_id", how="semi")


def _hours(micros: pl.Expr) -> pl.Expr:
    return (micros.cast(pl.Float64) / MICROS_PER_HOUR).round(2)


def _duration_stats(micros: pl.Expr, count_name: str) -> list[pl.Expr]:
    """Count, median and 90th percentile (hours) of the durations ``micros``."""
    return [
        pl.len().cast(pl.Int64).alias(count_name),
        _hours(micros.quantile(0.5, "linear")).alias("median_hours"),
        _hours(micros.quantile(0.9, "linear")).alias("p90_hours"),
    ]


def _day(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column), "us").dt.date().alias("day")


def kpi_tables(
    facts: Facts, filters: KpiFilters, now: int, *, at_risk_hours: float = 24.0
) -> dict[str, pl.DataFrame]:
    """Every KPI of ``facts`` under ``filters`` at time ``now``, one polars table per view.

    Tables: ``tasks_by_status``, ``cycle_time_overall``, ``cycle_time_by_template``,
    ``cycle_time_by_department``, ``cycle_time_by_month``, ``waiting_by_approver``,
    ``waiting_by_step``, ``rates``, ``throughput_by_day``, ``throughput_by_week``,
    ``overdue`` and ``at_risk``. Times stay microseconds since the epoch; ``pending`` is the
    list of user ids who may act now. Overdue and at-risk tasks ignore the period
    (they are the current state) but honour the template and department.
    """
    tasks = selected_tasks(facts, filters)
    acts = of_selected_tasks(facts.acts.lazy(), facts, filters)
    pending = of_selected_tasks(facts.pending.lazy(), facts, filters)
    template_of_task = facts.tasks.lazy().select("task_id", "template_id")

    tasks_by_status = (
        tasks.filter(in_period("created_at", filters))
        .group_by("status")
        .agg(pl.len().cast(pl.Int64).alias("tasks"))
        .sort("status", nulls_last=True)
    )

    completed = tasks.filter(
        (pl.col("status") == "completed") & in_period("finished_at", filters)
    ).with_columns(
        (pl.col("finished_at") - pl.coalesce("submitted_at", "created_at")).alias("cycle"),
        pl.from_epoch(pl.col("finished_at"), "us").dt.strftime("%Y-%m").alias("month"),
    )
    cycle = pl.col("cycle")
    cycle_overall = completed.select(_duration_stats(cycle, "tasks"))
    cycle_by_template = (
        completed.group_by("template_id")
        .agg(
            pl.col("template_name").sort_by("created_leaf").last(),
            *_duration_stats(cycle, "tasks"),
        )
        .sort("template_id", nulls_last=True)
    )
    cycle_by_department = (
        completed.group_by("department")
        .agg(_duration_stats(cycle, "tasks"))
        .sort("department", nulls_last=True)
    )
    cycle_by_month = completed.group_by("month").agg(_duration_stats(cycle, "tasks")).sort("month")

    waits = acts.filter(
        pl.col("type").is_in(ACT_TYPES)
        & pl.col("pending_since").is_not_null()
        & in_period("at", filters)
    ).with_columns((pl.col("at") - pl.col("pending_since")).alias("wait"))
    wait = pl.col("wait")
    wait_stats = [
        pl.len().cast(pl.Int64).alias("acts"),
        wait.quantile(0.5, "linear").alias("median_raw"),
        wait.quantile(0.9, "linear").alias("p90_raw"),
        wait.sum().alias("total_raw"),
    ]
    waiting_by_approver = _ranked(
        waits.group_by(pl.col("actor_id").alias("actor")).agg(wait_stats), ["actor"]
    )
    waiting_now = (
        pending.join(template_of_task, on="task_id", how="left")
        .group_by("template_id", "step_key")
        .agg(pl.len().cast(pl.Int64).alias("waiting_now"))
    )
    waiting_by_step = _ranked(
        waits.join(template_of_task, on="task_id", how="left")
        .group_by("template_id", "step_key")
        .agg(wait_stats)
        .join(
            waiting_now,
            on=["template_id", "step_key"],
            how="full",
            coalesce=True,
            nulls_equal=True,
        )
        .with_columns(
            pl.col("acts", "total_raw", "waiting_now").fill_null(0),
        ),
        ["template_id", "step_key"],
        ("waiting_now",),
    )

    finished = tasks.filter(
        pl.col("status").is_in(FINISHED_STATUSES) & in_period("finished_at", filters)
    )
    submitted = tasks.filter(in_period("submitted_at", filters))
    person_acts = acts.filter((pl.col("system") == 0) & in_period("at", filters))
    rates = pl.concat(
        [
            _rate(finished, "rejection", pl.col("status") == "rejected"),
            _rate(submitted, "return", pl.col("returns") > 0),
            _rate(completed, "first_time_right", pl.col("returns") == 0),
            _rate(completed, "electronic", pl.col("electronic") == 1),
            _rate(person_acts, "mobile_acts", pl.col("mobile") == 1),
        ]
    ).with_columns(
        pl.when(pl.col("of") > 0)
        .then((pl.col("count") / pl.col("of")).round(4))
        .otherwise(None)
        .alias("rate")
    )

    created_days = (
        tasks.filter(in_period("created_at", filters))
        .group_by(_day("created_at"))
        .agg(pl.len().cast(pl.Int64).alias("created"))
    )
    completed_days = completed.group_by(_day("finished_at")).agg(
        pl.len().cast(pl.Int64).alias("completed")
    )
    days = (
        created_days.join(completed_days, on="day", how="full", coalesce=True)
        .with_columns(pl.col("created", "completed").fill_null(0))
        .sort("day")
    )
    throughput_by_week = (
        days.group_by(pl.col("day").dt.strftime("%G-W%V").alias("week"))
        .agg(pl.col("created", "completed").sum())
        .sort("week")
    )
    throughput_by_day = days.with_columns(pl.col("day").dt.strftime("%Y-%m-%d"))

    open_tasks = tasks.filter(
        pl.col("status").is_in(OPEN_STATUSES) & pl.col("due_at").is_not_null()
    ).select(
        "task_id",
        "title",
        "template_id",
        "department",
        "current_step",
        pl.col("pending")
        .fill_null("")
        .str.split("\n")
        .list.eval(pl.element().filter(pl.element() != "")),
        "due_at",
        "created_leaf",
    )
    horizon = now + round(at_risk_hours * MICROS_PER_HOUR)
    deadline_order = ["due_at", "created_leaf", "task_id"]
    overdue = (
        open_tasks.filter(pl.col("due_at") < now)
        .with_columns(_hours(pl.lit(now) - pl.col("due_at")).alias("overdue_hours"))
        .sort(deadline_order, nulls_last=True)
        .drop("created_leaf")
    )
    at_risk = (
        open_tasks.filter((pl.col("due_at") >= now) & (pl.col("due_at") < horizon))
        .with_columns(_hours(pl.col("due_at") - pl.lit(now)).alias("hours_left"))
        .sort(deadline_order, nulls_last=True)
        .drop("created_leaf")
    )

    names_and_frames = {
        "tasks_by_status": tasks_by_status,
        "cycle_time_overall": cycle_overall,
        "cycle_time_by_template": cycle_by_template,
        "cycle_time_by_department": cycle_by_department,
        "cycle_time_by_month": cycle_by_month,
        "waiting_by_approver": waiting_by_approver,
        "waiting_by_step": waiting_by_step,
        "rates": rates,
        "throughput_by_day": throughput_by_day,
        "throughput_by_week": throughput_by_week,
        "overdue": overdue,
        "at_risk": at_risk,
    }
    collected = pl.collect_all(names_and_frames.values(), engine=ENGINE)
    return dict(zip(names_and_frames, collected, strict=True))


def _ranked(groups: pl.LazyFrame, keys: list[str], extra: tuple[str, ...] = ()) -> pl.LazyFrame:
    """Waiting-time groups as a bottleneck ranking: longest median wait first, then the
    longest total wait, then by key; the exact (unrounded) values decide the order."""
    return (
        groups.sort(
            ["median_raw", "total_raw", *keys],
            descending=[True, True] + [False] * len(keys),
            nulls_last=True,
        )
        .with_columns(
            _hours(pl.col("median_raw")).alias("median_hours"),
            _hours(pl.col("p90_raw")).alias("p90_hours"),
            _hours(pl.col("total_raw")).alias("total_hours"),
        )
        .select(*keys, "acts", "median_hours", "p90_hours", "total_hours", *extra)
    )


def _rate(frame: pl.LazyFrame, name: str, counted: pl.Expr) -> pl.LazyFrame:
    """One row of the rates table: rows of ``frame`` where ``counted`` holds, of all rows."""
    return frame.select(
        pl.lit(name).alias("name"),
        counted.sum().cast(pl.Int64).alias("count"),
        pl.len().cast(pl.Int64).alias("of"),
    )


def filter_choices(facts: Facts) -> dict[str, Any]:
    """The templates (latest name) and departments of all tasks, for the filter drop-downs."""
    templates = (
        facts.tasks.lazy()
        .filter(pl.col("template_id").is_not_null())
        .group_by(pl.col("template_id").alias("id"))
        .agg(pl.col("template_name").sort_by("created_leaf").last().alias("name"))
        .sort("id")
    )
    departments = (
        facts.tasks.lazy().select(pl.col("department").drop_nulls().unique()).sort("department")
    )
    template_rows, department_rows = pl.collect_all([templates, departments], engine=ENGINE)
    return {
        "templates": template_rows.to_dicts(),
        "departments": department_rows["department"].to_list(),
    }


def _deadline_rows(table: pl.DataFrame) -> list[dict[str, Any]]:
    return table.with_columns(iso_expr("due_at")).to_dicts()


def kpi_views(
    facts: Facts, filters: KpiFilters, now: int, *, at_risk_hours: float = 24.0
) -> dict[str, Any]:
    """The dashboard's JSON for ``facts`` under ``filters`` at ``now``, built from
    :func:`kpi_tables` (hours rounded to 2 decimals, rates to 4, times as ISO strings)."""
    tables = kpi_tables(facts, filters, now, at_risk_hours=at_risk_hours)
    by_status = {row["status"]: row["tasks"] for row in tables["tasks_by_status"].to_dicts()}
    rates = {
        row["name"]: {"rate": row["rate"], "count": row["count"], "of": row["of"]}
        for row in tables["rates"].to_dicts()
    }
    return {
        "as_of": iso_time(now),
        "filters": filters_json(filters),
        "choices": filter_choices(facts),
        "tasks": {"total": sum(by_status.values()), "by_status": by_status},
        "cycle_time": {
            "overall": tables["cycle_time_overall"].to_dicts()[0],
            "by_template": tables["cycle_time_by_template"].to_dicts(),
            "by_department": tables["cycle_time_by_department"].to_dicts(),
            "by_month": tables["cycle_time_by_month"].to_dicts(),
        },
        "waiting": {
            "by_approver": tables["waiting_by_approver"].to_dicts(),
            "by_step": tables["waiting_by_step"].to_dicts(),
        },
        "rates": rates,
        "throughput": {
            "by_day": tables["throughput_by_day"].to_dicts(),
            "by_week": tables["throughput_by_week"].to_dicts(),
        },
        "overdue": _deadline_rows(tables["overdue"]),
        "at_risk": _deadline_rows(tables["at_risk"]),
    }
