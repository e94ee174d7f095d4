"""Scale: a PostgreSQL log of 10,000,000 events against one of 100,000, side by side.

The large log is built once through the real append path (``LedgerStore.append`` with the
approval-and-signing events every benchmark uses, 10,000 per transaction) in its own
database, ``bench_scale``, kept between runs: a later run continues from the size it finds,
so an interrupted fill resumes. ``--scale-drop`` drops it (and the small one). The small log,
``bench_scale_small``, is the peer: the same events, the same code, the same server, 100,000
events (the timed windows add to both logs; a small log grown past 150,000 by earlier runs
is rebuilt at the start of the next).

Measured, each beside the same on the small log:

* **append throughput**: short timed windows of appends (the same batch size and event
  shapes on both), alternating between the two logs so that the shared machine's noise falls
  on both alike; the target is a rate at 10M of at least 0.8x the rate at 100k;
* **proof latency**: inclusion proofs of random leaves in the full tree and consistency
  proofs from random older sizes, one at a time, p50 and p99 (a sample is checked with the
  independent verifier against the stored root);
* **audit rate**: :func:`ledger.audit.audit`, the code behind ``evidence-ledger audit``,
  in events/s; a full audit unless it passes ``--scale-audit-budget`` seconds, in which case
  it stops there and the result says how many leaves were audited.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
from psycopg import sql

from benchmarks.common import RESULTS, batches, median, print_table, sample_drafts, write_result
from ledger.app import Ledger
from ledger.audit import audit
from ledger.sealer import Sealer
from ledger.settings import Settings
from ledger.store import LedgerStore
from verifier._internal import merkle as independent

LARGE_DATABASE = "bench_scale"
SMALL_DATABASE = "bench_scale_small"
DEFAULT_LARGE = 10_000_000
DEFAULT_SMALL = 100_000
FILL_BATCH = 10_000
TARGET_RATIO = 0.8
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, dbname: str) -> str:
    return urlparse(url)._replace(path=f"/{dbname}").geturl()


def _data_dir(dbname: str) -> Path:
    """Where the ledger key of a scale log lives (it signs the log's checkpoints)."""
    return RESULTS / f"scale-{dbname}"


def ensure_database(base_url: str, dbname: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not found:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop_database(base_url: str, dbname: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def drop_databases(base_url: str) -> None:
    for name in (LARGE_DATABASE, SMALL_DATABASE):
        drop_database(base_url, name)
        shutil.rmtree(_data_dir(name), ignore_errors=True)
        print(f"dropped {name} (if it existed)")


def open_ledger(base_url: str, dbname: str) -> Ledger:
    ensure_database(base_url, dbname)
    settings = Settings(data_dir=_data_dir(dbname), database_url=_with_database(base_url, dbname))
    return Ledger.open(settings)


def database_bytes(base_url: str, dbname: str) -> int:
    with psycopg.connect(base_url) as connection:
        row = connection.execute("SELECT pg_database_size(%s)", [dbname]).fetchone()
        return int(row[0]) if row else 0


def analyze(base_url: str, dbname: str) -> None:
    """Give the planner statistics (autovacuum may be off on a shared test server)."""
    with psycopg.connect(_with_database(base_url, dbname), autocommit=True) as connection:
        connection.execute("ANALYZE")


def fill(ledger: Ledger, target: int, batch: int = FILL_BATCH, label: str = "") -> dict[str, Any]:
    """Append sample events until the log holds ``target``; resumes from what is there.

    Ends with a signed checkpoint of the whole log, so the audit has a tree head to check.
    """
    store = ledger.store
    size = start_size = store.tree_size()
    started = last_report = time.perf_counter()
    reported_size = size
    while size < target:
        count = min(batch, target - size)
        store.append(sample_drafts(count))
        size += count
        now = time.perf_counter()
        if now - last_report >= 30 or size >= target:
            rate = (size - reported_size) / (now - last_report)
            print(
                f"  {label}{size:,} of {target:,} events; {rate:,.0f} events/s over the last "
                f"{now - last_report:.0f} s, {(size - start_size) / (now - started):,.0f}/s "
                "since start",
                flush=True,
            )
            last_report, reported_size = now, size
    seconds = time.perf_counter() - started
    assert store.tree_size() == size
    Sealer(store, ledger.key, None).seal()
    return {
        "from": start_size,
        "to": size,
        "batch": batch,
        "seconds": round(seconds, 1),
        "events_per_second": round((size - start_size) / seconds, 1) if size > start_size else None,
    }


# -- append windows -----------------------------------------------------------------------


def append_windows(
    logs: dict[str, LedgerStore], batch: int, events: int, rounds: int
) -> dict[str, Any]:
    """Alternating timed windows of ``events`` appends, ``batch`` per transaction, per log.

    The order within a round alternates; round 0 warms connections and plans and is not kept.
    """
    names = list(logs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds + 1):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            drafts = sample_drafts(events)
            store = logs[name]
            start = time.perf_counter()
            for chunk in batches(drafts, batch):
                store.append(chunk)
            rate = events / (time.perf_counter() - start)
            if round_:
                rates[name].append(rate)
    large, small = (median(rates[n]) for n in names)
    pairs = [a / b for a, b in zip(rates[names[0]], rates[names[1]], strict=True)]
    return {
        "batch": batch,
        "events_per_window": events,
        "rounds": rounds,
        **{f"{n}_rates": [round(r, 1) for r in rates[n]] for n in names},
        f"{names[0]}_median": round(large, 1),
        f"{names[1]}_median": round(small, 1),
        "ratio": round(large / small, 3),
        "ratio_of_paired_windows_median": round(median(pairs), 3),
        "target_ratio": TARGET_RATIO,
        "target_met": large / small >= TARGET_RATIO,
    }


# -- proof latency ------------------------------------------------------------------------


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def proof_latency(
    logs: dict[str, LedgerStore], kind: str, queries: int, rng: random.Random
) -> dict[str, dict[str, Any]]:
    """Latency of ``queries`` proofs of one kind per log, one log's proof then the other's.

    Asked of each log's full tree about random leaves (inclusion) or random older sizes
    (consistency), after a warm-up of a tenth as many; a sample is verified.
    """
    plans: dict[str, tuple[int, bytes, list[int]]] = {}
    for name, store in logs.items():
        size = store.tree_size()
        low = 0 if kind == "inclusion" else 1
        plans[name] = (size, store.root(size), [rng.randrange(low, size) for _ in range(queries)])

    def prove(store: LedgerStore, value: int, size: int) -> list[bytes]:
        if kind == "inclusion":
            return store.inclusion_proof(value, size)
        return store.consistency_proof(value, size)

    for name, store in logs.items():  # warm-up: connections and the upper nodes
        size, _, asked = plans[name]
        for value in asked[: max(1, queries // 10)]:
            prove(store, value, size)
    latencies: dict[str, list[float]] = {name: [] for name in logs}
    for i in range(queries):
        for name, store in logs.items():
            size, _, asked = plans[name]
            start = time.perf_counter()
            prove(store, asked[i], size)
            latencies[name].append(time.perf_counter() - start)
    results: dict[str, dict[str, Any]] = {}
    for name, store in logs.items():
        size, root, asked = plans[name]
        for value in asked[:50]:
            proof = prove(store, value, size)
            if kind == "inclusion":
                leaf = store.entries(value, value + 1)[0].leaf_hash
                independent.verify_inclusion(leaf, value, size, proof, root)
            else:
                independent.verify_consistency(value, size, store.root(value), root, proof)
        micro = [t * 1e6 for t in latencies[name]]
        results[name] = {
            "tree_size": size,
            "queries": queries,
            "p50_us": round(_percentile(micro, 0.50), 1),
            "p99_us": round(_percentile(micro, 0.99), 1),
            "mean_us": round(statistics.fmean(micro), 1),
            "verified_sample": min(50, queries),
        }
    return results


# -- audit --------------------------------------------------------------------------------


class _BudgetSpent(Exception):
    pass


def audit_rate(ledger: Ledger, budget: float) -> dict[str, Any]:
    """Run the audit; stop once ``budget`` seconds have passed. Rate in events/s."""
    size = ledger.store.tree_size()
    start = time.perf_counter()
    done = [0]

    def progress(checked: int, total: int) -> None:
        done[0] = checked
        if time.perf_counter() - start > budget:
            raise _BudgetSpent

    try:
        report = audit(ledger.store, ledger.key, [], progress)
    except _BudgetSpent:
        seconds = time.perf_counter() - start
        return {
            "complete": False,
            "tree_size": size,
            "events_audited": done[0],
            "seconds": round(seconds, 1),
            "events_per_second": round(done[0] / seconds, 1),
            "note": f"stopped after the {budget:.0f} s budget: leaves [0, {done[0]}) audited",
        }
    seconds = time.perf_counter() - start
    return {
        "complete": True,
        "tree_size": size,
        "events_audited": report.events_checked,
        "nodes_checked": report.nodes_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "passed": report.passed,
        "findings": [str(f) for f in report.findings[:5]],
        "seconds": round(seconds, 1),
        "events_per_second": round(report.events_checked / seconds, 1),
    }


# -- the run ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("scale (PostgreSQL logs of 10M and 100k events; also --postgres-url)")
    s.add_argument("--scale-events", type=int, default=DEFAULT_LARGE, help="large log size")
    s.add_argument("--scale-small", type=int, default=DEFAULT_SMALL, help="small log size")
    s.add_argument("--scale-fill-only", action="store_true", help="build the logs, measure nothing")
    s.add_argument("--scale-drop", action="store_true", help="drop both scale databases and stop")
    s.add_argument(
        "--scale-batch", type=int, nargs="+", default=[10, 100], help="events per append"
    )
    s.add_argument("--scale-window", type=int, default=3_000, help="events per timed window")
    s.add_argument("--scale-rounds", type=int, default=12, help="timed windows per log and batch")
    s.add_argument("--scale-queries", type=int, default=5_000, help="proofs per kind and log")
    s.add_argument(
        "--scale-audit-budget", type=float, default=600.0, help="seconds per log (default 600)"
    )
    s.add_argument("--scale-skip-audit", action="store_true", help="no audit of the large log")


def run(args: argparse.Namespace) -> int:
    base = args.postgres_url
    if args.scale_drop:
        drop_databases(base)
        return 0
    small = open_ledger(base, SMALL_DATABASE)
    if small.store.tree_size() > args.scale_small * 3 // 2:
        # Earlier runs' timed windows grew it (the log is append-only): start it afresh.
        print(f"small log holds {small.store.tree_size():,} events: rebuilding it", flush=True)
        small.close()
        drop_database(base, SMALL_DATABASE)
        shutil.rmtree(_data_dir(SMALL_DATABASE), ignore_errors=True)
        small = open_ledger(base, SMALL_DATABASE)
    large = open_ledger(base, LARGE_DATABASE)
    try:
        print(f"small log: {small.store.tree_size():,} events", flush=True)
        small_fill = fill(small, args.scale_small, label="small: ")
        print(f"large log: {large.store.tree_size():,} events", flush=True)
        large_fill = fill(large, args.scale_events, label="large: ")
        sizes = {
            "large_events": large.store.tree_size(),
            "small_events": small.store.tree_size(),
            "large_bytes": database_bytes(base, LARGE_DATABASE),
            "small_bytes": database_bytes(base, SMALL_DATABASE),
        }
        print(
            f"database sizes: large {sizes['large_bytes'] / 2**30:.2f} GiB, "
            f"small {sizes['small_bytes'] / 2**20:.0f} MiB",
            flush=True,
        )
        if args.scale_fill_only:
            return 0
        for name in (LARGE_DATABASE, SMALL_DATABASE):
            analyze(base, name)
        logs = {"large": large.store, "small": small.store}
        appends = []
        for batch in args.scale_batch:
            row = append_windows(logs, batch, args.scale_window, args.scale_rounds)
            appends.append(row)
            print(
                f"appends, batch {batch}: large {row['large_median']:,.0f}/s, "
                f"small {row['small_median']:,.0f}/s, ratio {row['ratio']:.2f}",
                flush=True,
            )
        rng = random.Random(9162)
        proofs = {}
        for kind in ("inclusion", "consistency"):
            for name, measured in proof_latency(logs, kind, args.scale_queries, rng).items():
                proofs[f"{kind}_{name}"] = measured
        for key, latency in proofs.items():
            print(
                f"  {key}: p50 {latency['p50_us']:.0f} us, p99 {latency['p99_us']:.0f} us",
                flush=True,
            )
        audits = {"small": audit_rate(small, args.scale_audit_budget)}
        print(f"audit small: {audits['small']['events_per_second']:,.0f} events/s", flush=True)
        if not args.scale_skip_audit:
            audits["large"] = audit_rate(large, args.scale_audit_budget)
            print(f"audit large: {audits['large']}", flush=True)
        sizes_after = {
            "large_events": large.store.tree_size(),
            "small_events": small.store.tree_size(),
        }
    finally:
        large.close()
        small.close()
    big, little = f"{sizes['large_events']:,}", f"{sizes['small_events']:,}"
    print()
    print_table(
        ["measure", f"log of {big}", f"log of {little}", "ratio"],
        [
            *[
                [
                    f"append ev/s, batch {r['batch']}",
                    r["large_median"],
                    r["small_median"],
                    r["ratio"],
                ]
                for r in appends
            ],
            *[
                [
                    f"{kind} p50 / p99 us",
                    f"{proofs[kind + '_large']['p50_us']:.0f} / "
                    f"{proofs[kind + '_large']['p99_us']:.0f}",
                    f"{proofs[kind + '_small']['p50_us']:.0f} / "
                    f"{proofs[kind + '_small']['p99_us']:.0f}",
                    "",
                ]
                for kind in ("inclusion", "consistency")
            ],
            [
                "audit ev/s",
                audits.get("large", {}).get("events_per_second", "-"),
                audits["small"]["events_per_second"],
                "",
            ],
        ],
    )
    path = write_result(
        "scale",
        {
            "databases": {"large": LARGE_DATABASE, "small": SMALL_DATABASE},
            "fill": {"small": small_fill, "large": large_fill},
            "sizes_before_measuring": sizes,
            "sizes_after_measuring": sizes_after,
            "append_target": f"rate at the large log >= {TARGET_RATIO}x the rate at the small",
            "appends": appends,
            "proofs": proofs,
            "audit": audits,
        },
    )
    print(f"\nresult written to {path}")
    return 0
