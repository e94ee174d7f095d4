"""HTTP routes: KPI and compliance views for compliance officers, as JSON, CSV and Parquet.

Every view covers the caller's tenant only: the facts (:mod:`projections.facts`) are read
through the tenant's stream-ownership subquery and kept per tenant in memory, brought up to
date incrementally on each request after the projection has caught up with the log.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.problems import Problem
from api.security import principal, require
from api.tenancy import Principal
from projections.compliance import compliance_report
from projections.facts import Facts, FactsCache
from projections.facts_snapshot import SnapshotStore, scope_directory
from projections.kpi_export import KpiCommandError, export_tables, parse_day, table_bytes
from projections.kpis import KpiFilters, kpi_views
from projections.scope import tenant_scope
from projections.task_rows import micros

if TYPE_CHECKING:
    from api.app import Runtime

_LOG = logging.getLogger(__name__)
router = APIRouter(tags=["KPIs and compliance"])
Caller = Annotated[Principal, Depends(principal)]

#: Who may read the views.
VIEWERS = ("compliance", "auditor", "admin")
_TABLE_NAME = re.compile(r"^[a-z_]{1,64}$")

Since = Annotated[
    str | None,
    Query(description="Start of the period, inclusive: a date (UTC) or an ISO time with offset."),
]
Until = Annotated[
    str | None,
    Query(description="End of the period, exclusive: a date (UTC) or an ISO time with offset."),
]
TemplateFilter = Annotated[str | None, Query(max_length=256, description="A template id.")]
DepartmentFilter = Annotated[str | None, Query(max_length=256, description="A department.")]


@dataclass
class TenantFacts:
    """Each tenant's facts cache, made on first use or by :meth:`warm`.

    The projection follower calls :meth:`refresh_all` after its catch-ups (at most once a
    second), so a request finds its tenant's facts in memory and reads at most about a
    second's rows itself;
    reading a large log's typed rows out of the database takes seconds, once per process.
    The worker that follows the log loads every tenant's facts at start; the other
    workers of a server load a tenant's on its first KPI request, and refresh only those.
    With ``snapshots`` (a directory) and ``root`` (the log's root at a size), each tenant's
    facts are also saved there now and then and on closing (:mod:`projections.facts_snapshot`),
    so a restarted server starts from them instead.
    """

    database: Any
    snapshots: Path | None = None
    root: Callable[[int], bytes] | None = None
    caches: dict[str, FactsCache] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_tenant(self, tenant_id: str) -> FactsCache:
        with self.lock:
            cache = self.caches.get(tenant_id)
            if cache is None:
                cache = self.caches[tenant_id] = FactsCache(
                    self.database, tenant_scope(tenant_id), self._snapshot_store(tenant_id)
                )
            return cache

    def _snapshot_store(self, tenant_id: str) -> SnapshotStore | None:
        if self.snapshots is None or self.root is None:
            return None
        return SnapshotStore(scope_directory(self.snapshots, tenant_id), self.root)

    def warm(self, tenant_ids: list[str], position: int) -> None:
        """Make and fill the caches of these tenants (at start, in the background)."""
        for tenant_id in tenant_ids:
            self.for_tenant(tenant_id).refresh(position)

    def loaded(self) -> bool:
        """Whether any tenant's facts are in memory."""
        with self.lock:
            return bool(self.caches)

    def refresh_all(self, position: int) -> None:
        """Bring every cache made so far up to ``position``; save those due a snapshot."""
        for cache in self._caches():
            cache.refresh(position)
            self._save(cache, closing=False)

    def save_all(self) -> None:
        """Save every cache with anything new (the server is closing)."""
        for cache in self._caches():
            self._save(cache, closing=True)

    def _caches(self) -> list[FactsCache]:
        with self.lock:
            return list(self.caches.values())

    @staticmethod
    def _save(cache: FactsCache, *, closing: bool) -> None:
        try:
            cache.save_snapshot(closing=closing)
        except Exception as exc:
            # A snapshot only shortens the next start: a full disk or a database gone away
            # must not stop the follower, nor a server from closing cleanly.
            _LOG.warning("KPI facts snapshot not saved: %s", exc)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _moment(name: str, value: str | None) -> int | None:
    try:
        return parse_day(name, value)
    except KpiCommandError as exc:
        raise Problem(422, "invalid-filter", str(exc)) from None


def _filters(
    since: str | None, until: str | None, template: str | None, department: str | None
) -> KpiFilters:
    start, end = _moment("since", since), _moment("until", until)
    if start is not None and end is not None and end <= start:
        raise Problem(422, "invalid-filter", "until must be after since")
    return KpiFilters(start, end, template or None, department or None)


def _facts(runtime: Runtime, tenant_id: str) -> tuple[Facts, int]:
    """The tenant's facts as of now (the projection caught up first) and the time now."""
    runtime.projection.catch_up()
    cache = runtime.kpi_facts.for_tenant(tenant_id)
    facts = cache.refresh(runtime.projection.position)
    now = micros(runtime.ledger.store.clock())
    assert now is not None
    return facts, now


@router.get("/kpis")
async def kpis(
    request: Request,
    who: Caller,
    since: Since = None,
    until: Until = None,
    template: TemplateFilter = None,
    department: DepartmentFilter = None,
) -> dict[str, Any]:
    """Cycle times, the bottleneck ranking, rates, throughput, overdue and at-risk tasks."""
    require(who, *VIEWERS)
    runtime = _runtime(request)
    filters = _filters(since, until, template, department)

    def compute() -> dict[str, Any]:
        facts, now = _facts(runtime, who.tenant_id)
        views = kpi_views(facts, filters, now)
        views["log_position"] = runtime.kpi_facts.for_tenant(who.tenant_id).position
        return views

    result: dict[str, Any] = await run_in_threadpool(compute)
    return result


@router.get("/compliance")
async def compliance(
    request: Request,
    who: Caller,
    since: Since = None,
    until: Until = None,
    template: TemplateFilter = None,
    department: DepartmentFilter = None,
) -> dict[str, Any]:
    """Every compliance rule with its breaches and the evidence for each."""
    require(who, *VIEWERS)
    runtime = _runtime(request)
    filters = _filters(since, until, template, department)

    def compute() -> dict[str, Any]:
        facts, now = _facts(runtime, who.tenant_id)
        return compliance_report(facts, filters, now)

    result: dict[str, Any] = await run_in_threadpool(compute)
    return result


@router.get(
    "/kpis/tables/{name}.{extension}",
    responses={
        200: {
            "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
            "description": "The table as CSV (UTF-8, header row) or Parquet.",
        }
    },
)
async def kpi_table(
    request: Request,
    who: Caller,
    name: str,
    extension: Literal["csv", "parquet"],
    since: Since = None,
    until: Until = None,
    template: TemplateFilter = None,
    department: DepartmentFilter = None,
) -> Response:
    """One KPI table (or ``breaches``) as CSV or Parquet, for spreadsheets and data tools."""
    require(who, *VIEWERS)
    if not _TABLE_NAME.match(name):
        raise Problem(404, "unknown-table", f"there is no KPI table {name!r}")
    runtime = _runtime(request)
    filters = _filters(since, until, template, department)

    def render() -> bytes:
        facts, now = _facts(runtime, who.tenant_id)
        tables = export_tables(facts, filters, now)
        table = tables.get(name)
        if table is None:
            raise Problem(
                404,
                "unknown-table",
                f"there is no KPI table {name!r}; there are {', '.join(sorted(tables))}",
            )
        return table_bytes(table, extension)

    body = await run_in_threadpool(render)
    media = "text/csv; charset=utf-8" if extension == "csv" else "application/vnd.apache.parquet"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{extension}"'},
    )
