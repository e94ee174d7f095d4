"""The FastAPI application: upstream apps, legal teams, auditors and compliance officers.

:func:`create_app` wires one :class:`~ledger.app.Ledger` with its task service, tenancy
tables and task-state projection, and, while the app runs, the sealer, a projection
follower and the scheduler. ``evidence-ledger serve`` runs it under uvicorn; tests use it
through FastAPI's test client or a real uvicorn on loopback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api import (
    problems,
    routes_admin,
    routes_dashboard,
    routes_events,
    routes_kpis,
    routes_log,
    routes_packs,
    routes_tasks,
)
from api.limits import BodyLimit
from api.security import ApiSettings
from api.tenancy import TenantStore
from ledger.app import Ledger
from ledger.errors import LedgerError
from ledger.scheduler import Scheduler, SchedulerThread
from ledger.task_service import TaskService
from projections import TaskProjection
from projections.database import Database, database_for

_LOG = logging.getLogger(__name__)

API_PREFIX = "/v1"
#: The follower brings the KPI facts in memory up to date at most this often (seconds).
#: Requests read the rows since then themselves, so views are always current; refreshing
#: after every catch-up (5 a second) cost a loaded server about 6 % of its CPU in fixed
#: per-pass work (the checkpoint and audit-run reads) for every tenant.
KPI_REFRESH_INTERVAL = 1.0


@dataclass
class Runtime:
    """Everything a request handler reaches through ``request.app.state``."""

    ledger: Ledger
    tasks: TaskService
    tenants: TenantStore
    projection: TaskProjection
    settings: ApiSettings
    database: Database
    """The API's own connection to the ledger database, for its read queries."""
    kpi_facts: routes_kpis.TenantFacts
    """Each tenant's KPI facts, held in memory and refreshed incrementally."""


class ProjectionFollower(threading.Thread):
    """Keeps the task-state projection caught up with the log (every ``interval`` s)."""

    def __init__(
        self,
        projection: TaskProjection,
        interval: float = 0.2,
        after: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(name="evidence-ledger-projection", daemon=True)
        self.projection = projection
        self.interval = interval
        self.after = after
        """Called with the new position after each catch-up (the KPI facts follow)."""
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.projection.catch_up()
                if self.after is not None:
                    self.after(self.projection.position)
            except problems.UNAVAILABLE as exc:
                # The database is away (restarting, out of space): say so once per pass,
                # without a stack trace, and catch up when it is back.
                _LOG.warning("projection catch-up: database unavailable (%s); trying again", exc)
            except (LedgerError, OSError):
                _LOG.exception("projection catch-up failed; trying again")
            except Exception:
                _LOG.exception("projection catch-up failed unexpectedly; trying again")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class RefuseNul:
    """Refuse a NUL in the path or query with 400, before routing.

    No id, name or filter of this API contains NUL, and PostgreSQL text cannot hold one:
    refused at the door rather than deep in a query. Plain ASGI middleware: Starlette's
    ``@app.middleware("http")`` wraps every request and response in streams and a task
    group, which cost single appends more than anything else in the stack.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower()
        ):
            answer = problems.Problem(
                400, "invalid-request", "NUL characters are not allowed in paths or queries"
            ).response(scope["path"].replace("\x00", ""))
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    ledger: Ledger,
    tasks: TaskService,
    *,
    settings: ApiSettings | None = None,
    background: bool = True,
    scheduler_interval: float = 30.0,
    close_ledger: bool = False,
) -> FastAPI:
    """The API over ``ledger``; with ``background`` it also seals, projects and schedules."""
    settings = settings or ApiSettings()
    tenants = TenantStore(ledger.store)
    projection = TaskProjection(ledger.store)
    database = database_for(ledger.store)
    routes_packs.ensure_schema(database)
    kpi_facts = routes_kpis.TenantFacts(
        database, ledger.settings.data_dir / "kpi-facts", ledger.store.root
    )
    runtime = Runtime(ledger, tasks, tenants, projection, settings, database, kpi_facts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        follower: ProjectionFollower | None = None
        scheduler: SchedulerThread | None = None
        if background:
            ledger.start_sealer()
            known = tenants.tenant_ids()

            refreshed = [0.0]

            def follow(position: int) -> None:
                if known:  # the first pass loads every tenant's facts, the rest follow
                    kpi_facts.warm([known.pop() for _ in list(known)], position)
                if time.monotonic() - refreshed[0] >= KPI_REFRESH_INTERVAL:
                    kpi_facts.refresh_all(position)
                    refreshed[0] = time.monotonic()

            follower = ProjectionFollower(projection, after=follow)
            follower.start()
            scheduler = SchedulerThread(
                Scheduler(tasks, lambda now: _due(projection, now)), scheduler_interval
            )
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if follower is not None:
                follower.stop()
            kpi_facts.save_all()  # the next start reads only what comes after
            if close_ledger:
                database.close()
                projection.close()
                tenants.close()
                ledger.close()

    app = FastAPI(
        title="Evidence Ledger",
        version="1",
        summary="Hash-chained, Merkle-logged, signed and timestamped evidence of approvals "
        "and signatures.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.tenants = tenants
    problems.install(app)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(RefuseNul)

    # Event appends first: routing tries each router in turn, and an upstream app's
    # appends are most of the requests (40 µs less per append than behind the others).
    for module in (
        routes_events,
        routes_admin,
        routes_tasks,
        routes_log,
        routes_packs,
        routes_kpis,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(routes_dashboard.router)
    return app


def _due(projection: TaskProjection, now: datetime) -> list[UUID]:
    return [UUID(t) for t in projection.due(now)]
