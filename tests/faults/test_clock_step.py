"""A clock step backwards on the server: server time never goes backwards in log order.

The server runs under libfaketime (Debian's ``faketime`` package) with its offset read from
a file on every call (``FAKETIME_TIMESTAMP_FILE``, ``FAKETIME_NO_CACHE``), so the test
steps the server's wall clock back mid-run, as an NTP correction or a restored VM would;
monotonic clocks are left alone, as a real step leaves them. Appends must go on being
acknowledged, and each event's ``server_time`` must be no earlier than the one before it
in the log: the ledger holds the last recorded time until its clock catches up
(``ledger.store.not_before``). The window for the apps' ``client_time`` is widened, since
the apps' clocks did not step.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.app import Ledger
from ledger.postgres_store import PostgresLedgerStore
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import LedgerStore
from tests.factories import draft
from tests.faults.harness import (
    IN_CI,
    ROUNDS,
    CheckpointWatch,
    Deployment,
    Load,
    Server,
    check_recovered,
)

pytestmark = pytest.mark.slow


def _libfaketime() -> Path:
    configured = os.environ.get("FAULTS_LIBFAKETIME")
    if configured:
        return Path(configured)
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return found[0] if found else Path("/usr/lib/faketime/libfaketime.so.1")


LIBFAKETIME = _libfaketime()
#: Each step: the server's clock goes back this far (the local TSA's certificate tolerates
#: five minutes before its creation, so its tokens stay valid under the stepped clock).
STEP_SECONDS = 120


@pytest.fixture
def faketime() -> Path:
    if not LIBFAKETIME.exists():
        reason = f"libfaketime is not installed ({LIBFAKETIME}; apt-get install faketime)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: fault tests must run, not skip)")
        pytest.skip(reason)
    return LIBFAKETIME


def test_clock_stepped_back_keeps_server_time_monotonic_in_log_order(
    deployment: Deployment, faketime: Path, tmp_path: Path
) -> None:
    assert deployment.tenant is not None
    offset = tmp_path / "clock-offset"
    offset.write_text("+0\n")
    server = Server(
        deployment,
        tmp_path / "server.log",
        env={
            "LD_PRELOAD": str(faketime),
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_NO_CACHE": "1",
            # Monotonic clocks stay real, as a real step leaves them. libfaketime 0.9.10
            # (Debian 12) reads FAKETIME_DONT_FAKE_MONOTONIC, not the unprefixed name; with
            # monotonic time faked, the server's timed waits stalled for tens of seconds
            # at a time (likely libfaketime issue #469) and the load timed out.
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "DONT_FAKE_MONOTONIC": "1",  # for releases that read the unprefixed name
            "EVIDENCE_LEDGER_CLIENT_TIME_WINDOW": str(STEP_SECONDS * 2),
        },
    )
    server.start()
    steps = max(1, ROUNDS // 2)
    load = Load(server.base_url, deployment.tenant, clients=2)
    with CheckpointWatch(server.base_url, deployment.tenant) as watch, load.running():
        for _ in range(steps):
            load.wait_for_acks(20)
            offset.write_text(f"-{STEP_SECONDS}\n")  # back by STEP_SECONDS
            load.wait_for_acks(20)
            offset.write_text("+0\n")  # and forward to the right time again
        load.wait_for_acks(5)
    assert load.outcomes().keys() == {"acked"}, load.outcomes()
    verdict = check_recovered(deployment, server, load, watch.notes)

    with Ledger.open(deployment.settings()) as ledger:
        store = ledger.store
        times = [
            json.loads(e.canonical)["server_time"] for e in store.iter_entries(store.tree_size())
        ]
    backwards = [i for i in range(1, len(times)) if times[i] < times[i - 1]]
    assert not backwards, f"server_time goes backwards at leaves {backwards[:10]}"
    held = sum(1 for i in range(1, len(times)) if times[i] == times[i - 1])
    assert held >= 10 * steps, "the server's clock was not stepped back"
    print(
        f"{deployment.backend}: {steps} clock steps of -{STEP_SECONDS}s (each followed by a "
        f"step forward to the right time); {held} events held "
        f"at the last recorded time; {verdict.line()}"
    )


def test_a_second_writer_with_a_slower_clock_holds_the_last_recorded_time(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The rule holds across processes: a writer whose clock is behind the log's last
    server time (another worker's, or its own before a step) reads that time from the log
    under the writer lock and holds it, whatever it remembers."""
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    clocks = {"ahead": now, "behind": now - timedelta(minutes=2)}

    def open_with(name: str) -> LedgerStore:
        def clock() -> datetime:
            return clocks[name]

        if backend == "postgres":
            return PostgresLedgerStore(request.getfixturevalue("postgres_url"), clock)
        return SQLiteLedgerStore(tmp_path / "ledger.sqlite3", clock)

    ahead, behind = open_with("ahead"), open_with("behind")
    try:
        stream = uuid.uuid4()
        first = behind.append([draft(stream)])[0]  # behind: writes its own time
        second = ahead.append([draft(stream)])[0]  # ahead: two minutes later
        third = behind.append([draft(stream)])[0]  # behind again: must not go back
        clocks["ahead"] += timedelta(seconds=1)
        clocks["behind"] += timedelta(minutes=3)  # caught up and past
        fourth = behind.append([draft(stream)])[0]
        fifth = ahead.append([draft(stream)])[0]
    finally:
        ahead.close()
        behind.close()
    assert first.server_time == "2026-12-06T09:58:00.000000Z"
    assert second.server_time == "2026-12-06T10:00:00.000000Z"
    assert third.server_time == second.server_time
    assert fourth.server_time == "2026-12-06T10:01:00.000000Z"
    assert fifth.server_time == fourth.server_time
