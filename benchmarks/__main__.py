"""``python -m benchmarks [NAME...] [OPTIONS]``: run the named benchmarks (all by default)."""

from __future__ import annotations

import argparse
import os
import sys

import benchmarks.api as api_bench
import benchmarks.export as export_bench
import benchmarks.kpis as kpis_bench
import benchmarks.projection as projection
import benchmarks.verify as verify_bench
from benchmarks import append, proofs, scale, signing

BENCHMARKS = {"append": append.run, "proofs": proofs.run, "signing": signing.run}
BENCHMARKS["projection"] = projection.run
BENCHMARKS["api"] = api_bench.run
BENCHMARKS["export"] = export_bench.run
BENCHMARKS["verify"] = verify_bench.run
BENCHMARKS["kpis"] = kpis_bench.run
BENCHMARKS["scale"] = scale.run
#: Run only when named: it builds (once) and keeps a PostgreSQL log of 10,000,000 events.
NOT_BY_DEFAULT = {"scale"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"{', '.join(BENCHMARKS)} (default: all but scale)",
    )
    a = p.add_argument_group("append")
    a.add_argument(
        "--batch", type=int, nargs="+", default=list(append.BATCH_SIZES), help="default 1 10 100"
    )
    a.add_argument("--rounds", type=int, default=5, help="timed runs of each (default 5)")
    a.add_argument(
        "--postgres-url",
        default=append.DEFAULT_POSTGRES_URL,
        help="server for the scratch databases bench_ledger_PID and bench_plain_PID",
    )
    a.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    a.add_argument(
        "--random-event-ids",
        action="store_true",
        help="random UUIDv4 event ids instead of time-ordered UUIDv7",
    )
    a.add_argument("--profile", type=int, metavar="N", default=0, help="profile ours (SQLite)")
    b = p.add_argument_group("proofs")
    b.add_argument("--size", type=int, default=1_000_000, help="log size (default 1000000)")
    b.add_argument("--queries", type=int, default=20_000, help="questions per pass and kind")
    b.add_argument("--seed", type=int, default=9162, help="for the random questions")
    b.add_argument("--rebuild", action="store_true", help="rebuild the cached logs")
    b.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="also measure this many proof-serving processes at once (default: one per core)",
    )
    c = p.add_argument_group("signing")
    c.add_argument(
        "--signatures",
        type=int,
        default=signing.DEFAULT_SIGNATURES,
        help=f"timed signatures per contender (default {signing.DEFAULT_SIGNATURES})",
    )
    d = p.add_argument_group("projection (--rebuild also rebuilds its cached ledger)")
    d.add_argument(
        "--events",
        type=int,
        default=projection.DEFAULT_EVENTS,
        help=f"task events in the ledger (default {projection.DEFAULT_EVENTS})",
    )
    d.add_argument(
        "--peer-events",
        type=int,
        default=0,
        help="events for eventsourcing's follower (default: as many as ours)",
    )
    d.add_argument("--skip-peer", action="store_true", help="time ours only")
    d.add_argument(
        "--projection-runs",
        type=int,
        default=3,
        help="timed catch-ups of each kind, each in a new process; the median counts (default 3)",
    )
    d.add_argument(
        "--profile-projection", action="store_true", help="cProfile ours and print the top"
    )
    e = p.add_argument_group("api (HTTP appends; also --postgres-url, --skip-postgres)")
    e.add_argument("--api-seconds", type=float, default=15.0, help="per phase (default 15)")
    e.add_argument("--api-workers", type=int, default=2, help="server workers (default 2)")
    e.add_argument("--api-clients", type=int, default=4, help="client processes (default 4)")
    e.add_argument(
        "--api-threads", type=int, default=4, help="connections per client, single (default 4)"
    )
    v = p.add_argument_group("verify (evidence-verify on packs; inclusion checks)")
    v.add_argument("--verify-rounds", type=int, default=verify_bench.ROUNDS, help="default 5")
    k = p.add_argument_group("kpis (views over a large log; the dashboard's first render)")
    k.add_argument(
        "--tasks",
        type=int,
        default=kpis_bench.DEFAULT_TASKS,
        help=f"tasks in its ledger (default {kpis_bench.DEFAULT_TASKS}, about 1.2M events)",
    )
    k.add_argument("--runs", type=int, default=5, help="timed runs of the views (default 5)")
    scale.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
        return 2
    code = 0
    for name in args.names or [n for n in BENCHMARKS if n not in NOT_BY_DEFAULT]:
        code |= BENCHMARKS[name](args)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
