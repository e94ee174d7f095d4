"""The FastAPI application: upstream apps, legal teams, auditors and compliance officers.

:func:`create_app` wires one :class:`~ledger.app.Ledger` with its task service, tenancy
tables and task-state projection, and, while the app runs, the sealer, a projection
follower and the scheduler. ``evidence-ledger serve`` runs it under uvicorn; tests use it
through FastAPI's test client or a real uvicorn on loopback.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
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
from ledger.files import ExclusiveFileLock
from ledger.scheduler import Scheduler, SchedulerThread
from ledger.store import LedgerStore
from ledger.task_service import TaskService
from projections import TaskProjection
from projections.database import Database, database_for

_LOG = logging.getLogger(__name__)
#: uvicorn's own logger, which ``serve`` prints at INFO: what an operator sees.
_SERVER_LOG = logging.getLogger("uvicorn.error")

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


class FollowerLease(ExclusiveFileLock):
    """Which one of this host's workers of a ledger follows the log: whoever holds the
    lock on ``path``. The others try again on every pass, so a worker that exits (and so
    lets go of the lock) is replaced within one pass. A worker that cannot open the file
    follows without it (the lease only saves work), and says so once."""

    _warned = False

    def acquire(self) -> bool:
        if self.held:
            return True
        try:
            if not super().acquire():
                return False
        except OSError as exc:
            if not self._warned:
                self._warned = True
                _LOG.warning("no projection lease file (%s): this worker follows the log", exc)
            return True
        _SERVER_LOG.info("Worker [%d] follows the log for the projection", os.getpid())
        return True


def follower_lease_file(store: LedgerStore) -> Path | None:
    """The lease file of ``store``'s projection follower (``None``: no private place for
    one; every worker then follows, as workers on other hosts do)."""
    return routes_events.ledger_lock_file(store, "projection")


class ProjectionFollower(threading.Thread):
    """Keeps the task-state projection caught up with the log (every ``interval`` s).

    With a ``lease``, only the holder catches up: the workers of one server share the
    projection's rows, and each would otherwise fold every leaf again only to find the
    other had stored it first (about 7 % of a loaded server's CPU). The others call
    ``after(None)`` instead; reads in any worker still catch up first themselves.
    """

    def __init__(
        self,
        projection: TaskProjection,
        interval: float = 0.2,
        after: Callable[[int | None], None] | None = None,
        lease: FollowerLease | None = None,
    ) -> None:
        super().__init__(name="evidence-ledger-projection", daemon=True)
        self.projection = projection
        self.interval = interval
        self.after = after
        """Called after each pass with the new position, or ``None`` when another worker
        follows (the KPI facts follow)."""
        self.lease = lease
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                if self.lease is None or self.lease.acquire():
                    self.projection.catch_up()
                    position: int | None = self.projection.position
                else:
                    position = None
                if self.after is not None:
                    self.after(position)
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
        if self.lease is not None:
            self.lease.release()


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

            def follow(position: int | None) -> None:
                if time.monotonic() - refreshed[0] < KPI_REFRESH_INTERVAL:
                    return
                if position is None:
                    # Another worker follows: refresh only the facts this worker's own
                    # KPI requests have loaded, to the position the projection stored.
                    if kpi_facts.loaded():
                        kpi_facts.refresh_all(projection.stored_position())
                else:
                    if known:  # the follower's first pass loads every tenant's facts
                        kpi_facts.warm([known.pop() for _ in list(known)], position)
                    kpi_facts.refresh_all(position)
                refreshed[0] = time.monotonic()

            lease_file = follower_lease_file(ledger.store)
            if lease_file is None:
                _LOG.warning("no private lock file on this host: every worker follows the log")
            follower = ProjectionFollower(
                projection,
                after=follow,
                lease=FollowerLease(lease_file) if lease_file is not None else None,
            )
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
