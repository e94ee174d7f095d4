"""KPI tables out of the ledger: CSV and Parquet files, and ``evidence-ledger kpi``.

:func:`export_tables` names every KPI table and the breaches; :func:`table_bytes` renders
one as CSV (lists joined by spaces, since CSV holds none) or Parquet; :func:`run_kpi_command`
is the command line's view: a readable summary, JSON, or one file per table.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from ledger.store import LedgerStore
from projections.compliance import breaches, compliance_report
from projections.database import database_for
from projections.facts import Facts, FactsCache
from projections.facts_snapshot import SnapshotStore, scope_directory
from projections.kpis import KpiFilters, kpi_tables, kpi_views
from projections.scope import Scope, tenant_scope
from projections.task_rows import micros
from projections.tasks import TaskProjection

_LOG = logging.getLogger(__name__)

FORMATS = ("table", "json", "csv", "parquet")
#: Rows of each table the readable summary shows.
SHOWN_ROWS = 15


class KpiCommandError(Exception):
    """A bad option of ``evidence-ledger kpi`` (the message says which and why)."""


def export_tables(facts: Facts, filters: KpiFilters, now: int) -> dict[str, pl.DataFrame]:
    """Every KPI table and the compliance breaches, by name."""
    tables = dict(kpi_tables(facts, filters, now))
    tables["breaches"] = breaches(facts, filters, now)
    return tables


def flat(table: pl.DataFrame) -> pl.DataFrame:
    """The table with each list column's items joined by spaces (for CSV and printing)."""
    lists = [name for name, kind in table.schema.items() if isinstance(kind, pl.List)]
    return table.with_columns(pl.col(n).cast(pl.List(pl.Utf8)).list.join(" ") for n in lists)


def table_bytes(table: pl.DataFrame, extension: str) -> bytes:
    """``table`` as CSV (UTF-8, header row) or Parquet."""
    out = io.BytesIO()
    if extension == "csv":
        flat(table).write_csv(out)
    elif extension == "parquet":
        table.write_parquet(out)
    else:
        raise KpiCommandError(f"unknown table format {extension!r}: csv or parquet")
    return out.getvalue()


def parse_day(name: str, value: str | None) -> int | None:
    """A ``YYYY-MM-DD`` option (midnight UTC) or an ISO time with offset, as microseconds."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(), UTC)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise KpiCommandError(f"{name} must be a date (YYYY-MM-DD) or an ISO time") from None
    if moment.tzinfo is None:
        raise KpiCommandError(f"{name} needs a UTC offset (or give a date)")
    return micros(moment)


def run_kpi_command(
    store: LedgerStore,
    console: Console,
    *,
    since: str | None,
    until: str | None,
    template: str | None,
    department: str | None,
    tenant: str | None,
    output: str,
    out: Path | None,
    snapshots: Path | None = None,
) -> None:
    """Catch the projection up, compute the views and show or write them.

    With ``snapshots`` (the data dir's ``kpi-facts``), the facts start from the scope's
    newest snapshot there, the server's or an earlier run's, and a large scope's facts
    are saved back for the next run (:mod:`projections.facts_snapshot`).
    """
    if output not in FORMATS:
        raise KpiCommandError(f"--format must be one of {', '.join(FORMATS)}")
    if output in ("csv", "parquet") and out is None:
        raise KpiCommandError(f"--format {output} writes one file per table: give --out DIR")
    start, end = parse_day("--since", since), parse_day("--until", until)
    if start is not None and end is not None and end <= start:
        raise KpiCommandError("--until must be after --since")
    filters = KpiFilters(start, end, template, department)
    with TaskProjection(store) as projection:
        projection.catch_up()
        database = database_for(store)
        try:
            scope = Scope() if tenant is None else tenant_scope(tenant)
            saved = None
            if snapshots is not None:
                saved = SnapshotStore(scope_directory(snapshots, tenant), store.root)
            cache = FactsCache(database, scope, saved)
            facts = cache.refresh(projection.position)
            try:
                cache.save_snapshot(closing=True)
            except Exception as exc:  # only the next run's speed depends on it
                _LOG.warning("KPI facts snapshot not saved: %s", exc)
        finally:
            database.close()
    now = micros(store.clock())
    assert now is not None
    if output == "json":
        views = kpi_views(facts, filters, now)
        views["compliance"] = compliance_report(facts, filters, now)
        console.print_json(json.dumps(views, ensure_ascii=False))
        return
    tables = export_tables(facts, filters, now)
    if out is not None and output in ("csv", "parquet"):
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            path = out / f"{name}.{output}"
            path.write_bytes(table_bytes(table, output))
            console.print(f"{path}  ({table.height} rows)", highlight=False)
        return
    _print_summary(console, kpi_views(facts, filters, now), tables)


def _print_summary(
    console: Console, views: dict[str, Any], tables: dict[str, pl.DataFrame]
) -> None:
    total = views["tasks"]["total"]
    console.print(f"[bold]KPIs as of {views['as_of']}[/bold]: {total} task(s)", highlight=False)
    for name, table in tables.items():
        console.print(_rich_table(name, flat(table)))


def _rich_table(name: str, table: pl.DataFrame) -> Table:
    shown = Table(
        title=f"{name.replace('_', ' ')} ({table.height} rows)",
        caption=f"first {SHOWN_ROWS} rows" if table.height > SHOWN_ROWS else None,
    )
    for column in table.columns:
        numeric = table.schema[column].is_numeric()
        shown.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in table.head(SHOWN_ROWS).iter_rows():
        shown.add_row(*("" if v is None else _cell(v) for v in row))
    return shown


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
