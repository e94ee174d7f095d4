"""KPI and compliance views over a large log, and the dashboard's first render.

The ledger holds about ``--tasks`` tasks (default 100,000, about 1.2 million events) of the
projection benchmark's six kinds of task (``benchmarks.projection.scenarios``), over two
templates and four departments, appended through the full path with a clock that spreads
them over about eight months; each person acts from their own device and address (some
from phones), now and then from a new one. The task projection is caught up first (its
rate, with the act rows it now writes, is reported), then:

* *facts load*: reading the typed tables into polars from a cold cache (what a server
  process does once; later requests read only what is new);
* *all views*: ``kpi_views`` and ``compliance_report`` together over the loaded facts,
  the median of several runs. Target: at most 1 s over 1,000,000 events;
* the peer, side by side: the same headline numbers (tasks by status, return and
  rejection counts, waiting time per step) as SQL aggregates in SQLite over the same
  typed tables, without percentiles (SQLite has none);
* *dashboard first render*: ``GET /dashboard``, ``GET /v1/kpis`` and
  ``GET /v1/compliance`` through the app with every task owned by one tenant, as server
  time. A running server holds each tenant's facts in memory (its projection follower
  loads them at start and keeps them current), so a user's first render reads only what
  is new: that is the target's measure (at most 1 s with 100,000 tasks). The render of a
  server's very first request, before the follower has loaded anything, is reported too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import (
    LEDGER_SOURCES_DIGEST,
    RESULTS,
    print_table,
    publish_sqlite,
    remove_sqlite,
    write_result,
)
from benchmarks.projection import NAMES, T0, scenarios
from ledger.events import Actor, RequestContext
from ledger.sqlite_store import SQLiteLedgerStore
from projections import TaskProjection
from projections.compliance import compliance_report
from projections.database import database_for
from projections.facts import FactsCache
from projections.kpis import KpiFilters, kpi_views
from projections.task_rows import micros

TARGET_VIEWS_SECONDS = 1.0
TARGET_EVENTS_FOR_VIEWS = 1_000_000
TARGET_RENDER_SECONDS = 1.0
DEFAULT_TASKS = 100_000
INTERLEAVE = 10
APPEND_BATCH = 5_000
MEAN_TICK_SECONDS = 17.0
DEPARTMENTS = ("procurement", "finance", "legal", "it")
#: The cached ledger holds projection tables too: rebuild it when the code writing them
#: changes.
_PROJECTIONS = Path(__file__).parents[1] / "projections"
SOURCES = hashlib.sha256(
    LEDGER_SOURCES_DIGEST.encode()
    + b"".join(
        (_PROJECTIONS / name).read_bytes()
        for name in ("schema.py", "task_rows.py", "tasks.py", "parallel.py")
    )
).hexdigest()[:16]
MOBILE_USERS = {"u-wong": "ios", "ext-supplier": "android"}


def _context(user: str, rng: random.Random) -> RequestContext:
    platform = MOBILE_USERS.get(user, "windows")
    number = sum(map(ord, user)) % 200
    device = f"dev-{user}"
    if rng.random() < 0.01:  # now and then a new phone or laptop
        device = f"dev-{user}-{rng.randrange(1_000_000)}"
    return RequestContext(
        ip=f"203.0.113.{number}",
        user_agent="Mozilla/5.0 (iPhone) DingTalk/7.6" if platform == "ios" else "Mozilla/5.0",
        device_id=device,
        platform=platform,
    )


def task_drafts(tasks: int, seed: int = 7) -> Iterator[list[Any]]:
    """Drafts of ``tasks`` tasks, ``INTERLEAVE`` at a time, in append batches."""
    rng = random.Random(seed)
    kinds = scenarios()
    actors = {
        user: Actor(user, NAMES.get(user, (user, None))[0], "Acme HK", "user")
        for kind in kinds
        for _, user in kind
    }
    pending: list[Any] = []
    for first in range(0, tasks, INTERLEAVE):
        batch = []
        for number in range(first, min(first + INTERLEAVE, tasks)):
            kind = kinds[number % len(kinds)]
            created, user = kind[0]
            data = dict(created.data)
            data["department"] = DEPARTMENTS[number % len(DEPARTMENTS)]
            if number % 3 == 0:
                data["template"] = {**data["template"], "id": "capex", "name": "Capex 资本开支"}
            batch.append((uuid.uuid4(), [(replace(created, data=data), user), *kind[1:]]))
        for position in range(max(len(k) for _, k in batch)):
            for stream, kind in batch:
                if position < len(kind):
                    draft, user = kind[position]
                    pending.append(draft.to_draft(stream, actors[user], _context(user, rng)))
            while len(pending) >= APPEND_BATCH:
                yield pending[:APPEND_BATCH]
                pending = pending[APPEND_BATCH:]
    if pending:
        yield pending


def ledger_file(tasks: int, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """A projected ledger of ``tasks`` tasks, built once and cached while ledger/ is unchanged."""
    path = RESULTS / f"kpis-ledger-{tasks}.sqlite"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists() and not rebuild:
        info = json.loads(info_path.read_text())
        if info.get("sources") == SOURCES:
            return path, info
        print("  ledger/ or projections/ changed: rebuilding", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    remove_sqlite(partial)
    rng = random.Random(11)
    clock = [T0 - timedelta(days=240)]

    def tick() -> datetime:
        clock[0] += timedelta(seconds=rng.expovariate(1 / MEAN_TICK_SECONDS))
        return clock[0]

    store = SQLiteLedgerStore(partial, clock=tick)
    started = time.perf_counter()
    try:
        for batch in task_drafts(tasks):
            store.append(batch)
        appended = time.perf_counter() - started
        projection = TaskProjection(store)
        started = time.perf_counter()
        projection.catch_up()
        caught_up = time.perf_counter() - started
        projection.close()
        size = store.tree_size()
        last = clock[0]
    finally:
        store.close()
    publish_sqlite(partial, path)
    info = {
        "events": size,
        "tasks": tasks,
        "append_seconds": appended,
        "catch_up_seconds": caught_up,
        "catch_up_events_per_second": size / caught_up,
        "last_event_at": last.isoformat(),
        "sources": SOURCES,
    }
    info_path.write_text(json.dumps(info) + "\n")
    return path, info


def time_views(path: Path, now: int, runs: int) -> dict[str, Any]:
    store = SQLiteLedgerStore(path)
    try:
        database = database_for(store)
        position = store.tree_size()
        started = time.perf_counter()
        facts = FactsCache(database).refresh(position)
        load = time.perf_counter() - started
        seconds = []
        filtered = []
        for _ in range(runs):
            started = time.perf_counter()
            views = kpi_views(facts, KpiFilters(), now)
            report = compliance_report(facts, KpiFilters(), now)
            seconds.append(time.perf_counter() - started)
        month = KpiFilters(now - 30 * 86_400_000_000, now, "capex", "finance")
        for _ in range(runs):
            started = time.perf_counter()
            kpi_views(facts, month, now)
            compliance_report(facts, month, now)
            filtered.append(time.perf_counter() - started)
        database.close()
    finally:
        store.close()
    return {
        "acts": facts.acts.height,
        "tasks": facts.tasks.height,
        "facts_load_seconds": load,
        "views_seconds": statistics.median(seconds),
        "views_seconds_all": seconds,
        "filtered_views_seconds": statistics.median(filtered),
        "breaches": len(report["breaches"]),
        "tasks_total": views["tasks"]["total"],
    }


_PEER_QUERIES = {
    "tasks by status": "SELECT status, COUNT(*) FROM proj_tasks GROUP BY status",
    "returned and rejected": (
        "SELECT SUM(returns > 0), SUM(status = 'rejected'), COUNT(*) FROM proj_tasks"
    ),
    "waiting per step": (
        "SELECT t.template_id, a.step_key, COUNT(*), AVG(a.at - a.pending_since), "
        "SUM(a.at - a.pending_since) FROM proj_acts a JOIN proj_tasks t "
        "ON t.task_id = a.task_id WHERE a.pending_since IS NOT NULL "
        "GROUP BY t.template_id, a.step_key"
    ),
    "waiting per approver": (
        "SELECT actor_id, COUNT(*), AVG(at - pending_since) FROM proj_acts "
        "WHERE pending_since IS NOT NULL GROUP BY actor_id"
    ),
    "mobile share": "SELECT SUM(mobile), COUNT(*) FROM proj_acts WHERE system = 0",
    "cycle time by month": (
        "SELECT strftime('%Y-%m', finished_at / 1000000, 'unixepoch'), COUNT(*), "
        "AVG(finished_at - submitted_at) FROM proj_tasks WHERE status = 'completed' "
        "GROUP BY 1"
    ),
}


def time_peer(path: Path, runs: int) -> dict[str, Any]:
    """The headline aggregates as SQLite queries over the same typed tables."""
    connection = sqlite3.connect(path)
    try:
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            for sql in _PEER_QUERIES.values():
                connection.execute(sql).fetchall()
            seconds.append(time.perf_counter() - started)
    finally:
        connection.close()
    return {"seconds": statistics.median(seconds), "queries": list(_PEER_QUERIES)}


def time_dashboard(path: Path, workdir: Path, now: datetime) -> dict[str, Any]:
    """Server time of the dashboard's first requests, every task owned by one tenant."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.tenancy import TenantStore
    from evidence.services import open_task_service
    from ledger.app import Ledger
    from ledger.settings import Settings

    data = workdir / "data"
    data.mkdir()
    shutil.copyfile(path, data / "ledger.sqlite3")
    settings = Settings(data_dir=data)
    with Ledger.open(settings) as ledger:
        tenants = TenantStore(ledger.store)
        tenant = tenants.create_tenant("Acme")
        key = tenants.create_api_key(tenant, "compliance", "benchmark")
        database = database_for(ledger.store)
        streams = [(r[0],) for r in database.query("SELECT task_id FROM proj_tasks")]
        with database.transaction() as tx:
            tx.execute_many(
                "INSERT INTO api_streams (stream_id, tenant_id, created_at) "
                f"VALUES (?, '{tenant}', '2026-01-01T00:00:00Z')",
                streams,
            )
        database.close()
        tenants.close()
        ledger.store.clock = lambda: now
        auth = {"Authorization": f"Bearer {key}"}
        timings: dict[str, list[float]] = {"cold": [], "warm": [], "restarted": []}

        def render(client: TestClient, phase: str) -> None:
            for url in ("/dashboard", "/v1/kpis", "/v1/compliance"):
                started = time.perf_counter()
                answer = client.get(url, headers=auth)
                timings[phase].append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:200]}")

        app = create_app(ledger, open_task_service(ledger), background=False)
        with TestClient(app) as client:
            render(client, "cold")
            render(client, "warm")
        # The app saved its facts as it stopped (a snapshot); a new one starts from them.
        snapshots = list((data / "kpi-facts").glob("*/snap-*"))
        if len(snapshots) != 1:
            raise RuntimeError(f"expected one facts snapshot, found {snapshots}")
        snapshot_bytes = sum(f.stat().st_size for f in snapshots[0].iterdir())
        app = create_app(ledger, open_task_service(ledger), background=False)
        with TestClient(app) as client:
            render(client, "restarted")
    return {
        "tasks": len(streams),
        "first_render_seconds": sum(timings["warm"]),
        "first_requests": timings["warm"],
        "cold_start_render_seconds": sum(timings["cold"]),
        "cold_start_requests": timings["cold"],
        "restarted_render_seconds": sum(timings["restarted"]),
        "restarted_requests": timings["restarted"],
        "snapshot_bytes": snapshot_bytes,
    }


def run(args: argparse.Namespace) -> int:
    print(f"kpis: views over a ledger of {args.tasks:,} tasks", flush=True)
    path, info = ledger_file(args.tasks, args.rebuild)
    events = int(info["events"])
    now_moment = datetime.fromisoformat(info["last_event_at"]) + timedelta(hours=1)
    now = micros(now_moment)
    assert now is not None
    print(
        f"  ledger: {path} ({events:,} events); projection catch-up with act rows "
        f"{info['catch_up_events_per_second']:,.0f} events/s",
        flush=True,
    )
    views = time_views(path, now, args.runs)
    peer = time_peer(path, args.runs)
    with tempfile.TemporaryDirectory(prefix="kpis-bench-") as scratch:
        dashboard = time_dashboard(path, Path(scratch), now_moment)
    print_table(
        ["", "rows", "seconds"],
        [
            ["facts load (cold, once per process)", views["acts"], views["facts_load_seconds"]],
            ["all KPI + compliance views (median)", views["acts"], views["views_seconds"]],
            ["the same, one month/template/dept", views["acts"], views["filtered_views_seconds"]],
            ["peer: SQLite aggregates, no percentiles", views["acts"], peer["seconds"]],
            [
                "dashboard first render (3 requests)",
                dashboard["tasks"],
                dashboard["first_render_seconds"],
            ],
            [
                "dashboard on a just-started server",
                dashboard["tasks"],
                dashboard["cold_start_render_seconds"],
            ],
            [
                "the same, restarted with its facts snapshot",
                dashboard["tasks"],
                dashboard["restarted_render_seconds"],
            ],
        ],
    )
    # The views' target is stated for 1,000,000 events: scale linearly to it (the views'
    # work grows with the rows they read).
    scaled = views["views_seconds"] * TARGET_EVENTS_FOR_VIEWS / events
    views_met = scaled <= TARGET_VIEWS_SECONDS
    render_met = (
        dashboard["tasks"] >= DEFAULT_TASKS
        and dashboard["first_render_seconds"] <= TARGET_RENDER_SECONDS
    )
    ratio = peer["seconds"] / views["views_seconds"]
    print(
        f"  views: {views['views_seconds']:.3f} s over {events:,} events, {scaled:.3f} s "
        f"per 1M ({'met' if views_met else 'NOT met'}, target {TARGET_VIEWS_SECONDS} s); "
        f"peer/ours: {ratio:.2f}x; breaches found: {views['breaches']:,}"
    )
    print(
        f"  dashboard first render: {dashboard['first_render_seconds']:.3f} s for "
        f"{dashboard['tasks']:,} tasks ({'met' if render_met else 'NOT met'}); a just-started "
        f"server {dashboard['cold_start_render_seconds']:.3f} s, restarted with its facts "
        f"snapshot ({dashboard['snapshot_bytes'] / 1e6:.0f} MB) "
        f"{dashboard['restarted_render_seconds']:.3f} s"
    )
    written = write_result(
        "kpis",
        {
            "events": events,
            "ledger": info,
            "views": views,
            "peer": peer,
            "dashboard": dashboard,
            "peer_over_ours": ratio,
            "views_seconds_per_million_events": scaled,
            "views_met": views_met,
            "render_met": render_met,
        },
    )
    print(f"  written {written}")
    return 0 if views_met and render_met else 1
