"""Compliance breaches in :class:`~projections.facts.Facts`: named rules, each breach with
the act (or checkpoint, or audit) that broke it and a sentence a reviewer can check.

Rules about acts honour every filter (the breach's time must fall in the period and its task
must match the template and department); the history a rule looks back on (who used a
device on a task, which devices an actor used before) always covers all of ``facts``. The
checkpoint and audit rules concern the whole log, so only the period applies to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from projections.facts import ACT_TYPES, Facts
from projections.kpis import (
    ENGINE,
    KpiFilters,
    filters_json,
    in_period,
    iso_expr,
    iso_time,
    of_selected_tasks,
)


@dataclass(frozen=True)
class Rule:
    """A named compliance rule: its stable id, English and Chinese titles, what it checks."""

    id: str
    title_en: str
    title_zh: str
    description: str


RULES: tuple[Rule, ...] = (
    Rule(
        "self_approval",
        "Self-approval",
        "自我审批",
        "The initiator approved or signed their own task where the template forbids it.",
    ),
    Rule(
        "missing_identity_factor",
        "Missing identity factor",
        "缺少身份核验要素",
        "A signature or approval without a passed check of every identity factor the step "
        "requires.",
    ),
    Rule(
        "out_of_order",
        "Out of order",
        "未按顺序办理",
        "Someone acted on a step in which they were not pending.",
    ),
    Rule(
        "after_deadline",
        "After the deadline",
        "超期办理",
        "A participant acted after the task's effective deadline.",
    ),
    Rule(
        "shared_device_or_ip",
        "Shared device or IP",
        "共用设备或IP",
        "Two or more different people acted on one task from the same device or IP address.",
    ),
    Rule(
        "new_device_or_ip",
        "New device or IP",
        "新设备或新IP",
        "A person acted from a device or IP address not seen in any of their earlier acts.",
    ),
    Rule(
        "timestamp_delay",
        "Timestamp delay",
        "时间戳延迟",
        "A checkpoint was timestamped (or is still waiting for a timestamp) longer than the "
        "allowed delay after it was sealed.",
    ),
    Rule(
        "audit_failure",
        "Audit failure",
        "审计未通过",
        "A recorded audit of the log found a problem.",
    ),
)

BREACH_SCHEMA: dict[str, Any] = {
    "rule": pl.Utf8,
    "task_id": pl.Utf8,
    "leaf_index": pl.Int64,
    "at": pl.Int64,
    "actor": pl.Utf8,
    "evidence": pl.Utf8,
}
"""The columns of :func:`breaches`."""

_VERBS = {
    "step.approved": "approved",
    "document.signed": "signed",
    "step.rejected": "rejected",
    "step.returned": "returned",
    "task.transferred": "transferred",
    "signer.added": "added a signer to",
}
_MICROS_PER_SECOND = 1_000_000


def _actor_text() -> pl.Expr:
    return pl.col("actor_id").fill_null("an unknown actor")


def _step_act_text() -> pl.Expr:
    """``<actor> <verb> step '<key>' of task <id>`` for an act of :data:`ACT_TYPES`."""
    return pl.format(
        "{} {} step '{}' of task {}",
        _actor_text(),
        pl.col("type").replace(_VERBS),
        pl.col("step_key").fill_null("?"),
        pl.col("task_id").fill_null("?"),
    )


def duration_text(micros: pl.Expr) -> pl.Expr:
    """A positive duration in microseconds as words, whole seconds rounded up: ``"2 h 5 min"``,
    ``"7 min 30 s"`` or ``"12 s"``.

    Conditions only ever pick numbers here (string functions stay outside ``when``), which
    keeps clear of a polars streaming-engine panic on string functions in ``when`` branches.
    """
    seconds = (micros + _MICROS_PER_SECOND - 1) // _MICROS_PER_SECOND
    hours = pl.when(seconds >= 3600).then(seconds // 3600)
    minutes = pl.when(seconds >= 60).then((seconds % 3600) // 60)
    rest = pl.when(seconds < 3600).then(seconds % 60)
    return pl.concat_str(
        [pl.format("{} h", hours), pl.format("{} min", minutes), pl.format("{} s", rest)],
        separator=" ",
        ignore_nulls=True,
    )


def _breach(rule: str, evidence: pl.Expr) -> list[pl.Expr]:
    """The breach columns for acts that broke ``rule``."""
    return [
        pl.lit(rule).alias("rule"),
        pl.col("task_id"),
        pl.col("leaf_index"),
        pl.col("at"),
        pl.col("actor_id").alias("actor"),
        evidence.alias("evidence"),
    ]


def _act_rules(acts: pl.LazyFrame) -> list[pl.LazyFrame]:
    """Breaches that one act shows on its own (self-approval, factors, turn, deadline)."""
    step_acts = acts.filter(pl.col("type").is_in(ACT_TYPES))
    self_approval = acts.filter(pl.col("self_act") == 1).select(
        _breach(
            "self_approval",
            pl.format(
                "{}, a task they initiated; the template does not allow self-approval",
                _step_act_text(),
            ),
        )
    )
    missing_factor = acts.filter(
        pl.col("type").is_in(("document.signed", "step.approved"))
        & (pl.col("missing_factors").fill_null("") != "")
    ).select(
        _breach(
            "missing_identity_factor",
            pl.format(
                "{} without a passed check of {} (the step requires {})",
                _step_act_text(),
                pl.col("missing_factors").str.replace_all(",", ", "),
                pl.col("required_factors").fill_null("").str.replace_all(",", ", "),
            ),
        )
    )
    out_of_order = step_acts.filter(pl.col("in_turn") == 0).select(
        _breach(
            "out_of_order",
            pl.format("{} while not pending in that step", _step_act_text()),
        )
    )
    after_deadline = step_acts.filter(
        (pl.col("system") == 0)
        & pl.col("deadline").is_not_null()
        & (pl.col("at") > pl.col("deadline"))
    ).select(
        _breach(
            "after_deadline",
            pl.format(
                "{} at {}, {} after the deadline {}",
                _step_act_text(),
                iso_expr("at"),
                duration_text(pl.col("at") - pl.col("deadline")),
                iso_expr("deadline"),
            ),
        )
    )
    return [self_approval, missing_factor, out_of_order, after_deadline]


def _person_history(facts: Facts) -> pl.LazyFrame:
    """Every act by a known person (not the scheduler) across all of ``facts``, in log order,
    with how many acts its actor made before it and whether it is the actor's first use of
    its device and of its IP."""
    return (
        facts.acts.lazy()
        .filter((pl.col("system") == 0) & pl.col("actor_id").is_not_null())
        .select("leaf_index", "task_id", "at", "actor_id", "type", "device_id", "ip")
        .sort("leaf_index")
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).over("actor_id").alias("earlier"),
            (
                pl.col("device_id").is_not_null()
                & pl.struct("actor_id", "device_id").is_first_distinct()
            ).alias("first_device"),
            (pl.col("ip").is_not_null() & pl.struct("actor_id", "ip").is_first_distinct()).alias(
                "first_ip"
            ),
        )
    )


def _shared(history: pl.LazyFrame, column: str, first_use: str, label: str) -> pl.LazyFrame:
    """One breach per task and value of ``column`` used there by two or more different
    actors, dated by the first act (in log order) whose actor differs from the first user's.

    Only values that several actors used anywhere in the log (each actor's first use counted
    once) can be shared within a task, so the per-task check looks at those alone.
    """
    used_by_several = (
        history.filter(pl.col(first_use))
        .group_by(column)
        .agg(pl.len().alias("actors"))
        .filter(pl.col("actors") >= 2)
        .select(column)
    )
    used = history.join(used_by_several, on=column, how="semi").select(
        "task_id", pl.col(column).alias("value"), "actor_id", "leaf_index", "at"
    )
    in_log_order = [pl.col(name).sort_by("leaf_index") for name in ("actor_id", "leaf_index", "at")]
    actor, leaf_index, at = in_log_order
    other = actor != actor.first()
    return (
        used.group_by("task_id", "value")
        .agg(
            actor.unique(maintain_order=True).alias("actors"),
            leaf_index.filter(other).first(),
            at.filter(other).first(),
            actor.filter(other).first(),
        )
        .filter(pl.col("actors").list.len() >= 2)
        .select(
            _breach(
                "shared_device_or_ip",
                pl.format(
                    "{} {} was used on task {} by {} different people: {}",
                    pl.lit(label),
                    pl.col("value"),
                    pl.col("task_id").fill_null("?"),
                    pl.col("actors").list.len(),
                    pl.col("actors").list.join(", "),
                ),
            )
        )
    )


def _new_device_or_ip(history: pl.LazyFrame) -> pl.LazyFrame:
    """Acts from a device or IP their actor never used in an earlier act (by log position),
    by actors who had acted before."""
    device, ip = pl.col("device_id"), pl.col("ip")
    new_device, new_ip = pl.col("first_device"), pl.col("first_ip")
    what = pl.concat_str(
        [
            pl.format("a new device '{}'", pl.when(new_device).then(device)),
            pl.format("a new IP {}", pl.when(new_ip).then(ip)),
        ],
        separator=" and ",
        ignore_nulls=True,
    )
    return history.filter((pl.col("earlier") > 0) & (new_device | new_ip)).select(
        _breach(
            "new_device_or_ip",
            pl.format(
                "{} acted on task {} ({}) from {}, not seen in any of their {} earlier acts",
                pl.col("actor_id"),
                pl.col("task_id").fill_null("?"),
                pl.col("type"),
                what,
                pl.col("earlier"),
            ),
        )
    )


def _timestamp_delays(facts: Facts, now: int, threshold_seconds: float) -> pl.LazyFrame:
    """Checkpoints timestamped, or still untimestamped at ``now``, later than the threshold."""
    limit = round(threshold_seconds * _MICROS_PER_SECOND)
    delay = pl.col("delay")
    waiting = pl.col("timestamped_at").is_null()
    return (
        facts.checkpoints.lazy()
        .with_columns(
            (pl.coalesce("timestamped_at", pl.lit(now)) - pl.col("sealed_at")).alias("delay")
        )
        .filter(delay > limit)
        .select(
            pl.lit("timestamp_delay").alias("rule"),
            pl.lit(None, pl.Utf8).alias("task_id"),
            pl.lit(None, pl.Int64).alias("leaf_index"),
            pl.col("sealed_at").alias("at"),
            pl.lit(None, pl.Utf8).alias("actor"),
            pl.format(
                "checkpoint of tree size {} sealed at {} {}{}{} (allowed: {} s)",
                pl.col("tree_size"),
                iso_expr("sealed_at"),
                pl.when(waiting)
                .then(pl.lit("is still waiting for a timestamp after "))
                .otherwise(pl.lit("was timestamped ")),
                duration_text(delay),
                pl.when(waiting).then(pl.lit("")).otherwise(pl.lit(" later")),
                pl.lit(f"{threshold_seconds:g}"),
            ).alias("evidence"),
        )
    )


def _audit_failures(facts: Facts) -> pl.LazyFrame:
    """Recorded audit runs that did not pass."""
    return (
        facts.audits.lazy()
        .filter(pl.col("passed") == 0)
        .select(
            pl.lit("audit_failure").alias("rule"),
            pl.lit(None, pl.Utf8).alias("task_id"),
            pl.lit(None, pl.Int64).alias("leaf_index"),
            pl.col("ran_at").alias("at"),
            pl.lit(None, pl.Utf8).alias("actor"),
            pl.format(
                "audit at tree size {} failed: {}",
                pl.col("tree_size").cast(pl.Utf8).fill_null("?"),
                pl.col("problem").fill_null("no finding recorded"),
            ).alias("evidence"),
        )
    )


def breaches(
    facts: Facts, filters: KpiFilters, now: int, *, timestamp_delay_seconds: float = 3600.0
) -> pl.DataFrame:
    """Every breach of :data:`RULES` under ``filters`` at ``now``, as :data:`BREACH_SCHEMA`
    rows sorted by time, then log position (none last), then rule."""
    history = _person_history(facts).collect(engine=ENGINE).lazy()
    task_breaches = pl.concat(
        [
            *_act_rules(facts.acts.lazy()),
            _shared(history, "device_id", "first_device", "device"),
            _shared(history, "ip", "first_ip", "IP"),
            _new_device_or_ip(history),
        ]
    )
    task_breaches = of_selected_tasks(task_breaches, facts, filters)
    log_breaches = pl.concat(
        [_timestamp_delays(facts, now, timestamp_delay_seconds), _audit_failures(facts)]
    )
    return (
        pl.concat([task_breaches, log_breaches])
        .filter(in_period("at", filters))
        .select(pl.col(name).cast(dtype) for name, dtype in BREACH_SCHEMA.items())
        .sort(
            ["at", "leaf_index", "rule", "task_id", "evidence"],
            nulls_last=True,
        )
        .collect(engine=ENGINE)
    )


def compliance_report(
    facts: Facts, filters: KpiFilters, now: int, *, timestamp_delay_seconds: float = 3600.0
) -> dict[str, Any]:
    """The compliance JSON: a count for every rule (zero included) and every breach, with
    times as ISO strings."""
    found = breaches(facts, filters, now, timestamp_delay_seconds=timestamp_delay_seconds)
    counts = dict(found.group_by("rule").len().iter_rows())
    return {
        "as_of": iso_time(now),
        "filters": filters_json(filters),
        "rules": [
            {
                "rule": rule.id,
                "title": rule.title_en,
                "title_zh": rule.title_zh,
                "description": rule.description,
                "breaches": counts.get(rule.id, 0),
            }
            for rule in RULES
        ],
        "breaches": found.with_columns(iso_expr("at")).to_dicts(),
    }
