"""A clock step backwards on the server: server time never goes backwards in log order.

The server runs with ``clock_offset.c`` preloaded (``LD_PRELOAD``): its wall clock
(``CLOCK_REALTIME``, as ``clock_gettime``, ``gettimeofday`` and ``time`` report it) is off
by the whole seconds written in a file, read again at most every 20 ms, so the test steps
the server's wall clock back mid-run, as an NTP correction or a restored VM would;
monotonic clocks, sleeps and timed waits are left alone, as a real step leaves them.
Appends must go on being acknowledged, and each event's ``server_time`` must be no
earlier than the one before it in the log: the ledger holds the last recorded time until
its clock catches up (``ledger.store.not_before``). The window for the apps'
``client_time`` is widened, since the apps' clocks did not step.

The library is built here with the system C compiler. Debian 12's libfaketime 0.9.10 is
not used: it also intercepts sleeps, condition waits and ``stat``, and under Python 3.11
``time.sleep`` fails with ``EINVAL`` when monotonic time is left alone (its absolute
monotonic sleep is converted as if it were wall-clock time), while threading waits hang
when monotonic time is faked; the server stalled for seconds at a time under it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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

SOURCE = Path(__file__).with_name("clock_offset.c")
#: Each step: the server's clock goes back this far (the local TSA's certificate tolerates
#: five minutes before its creation, so its tokens stay valid under the stepped clock).
STEP_SECONDS = 120


@pytest.fixture(scope="session")
def clock_offset_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clock_offset.c`` built as a shared library with the system C compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        reason = "no C compiler to build tests/faults/clock_offset.c (apt-get install gcc)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: fault tests must run, not skip)")
        pytest.skip(reason)
    built = tmp_path_factory.mktemp("clock-offset") / "clock_offset.so"
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra",
         "-o", str(built), str(SOURCE), "-ldl"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"building {SOURCE.name} failed:\n{result.stderr}"
    return built


class ClockOffset:
    """The offset file: replaced whole, so the library never reads it half written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, seconds: int) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(f"{seconds:+d}\n")
        os.replace(partial, self.path)

    def env(self, library: Path) -> dict[str, str]:
        return {"LD_PRELOAD": str(library), "CLOCK_OFFSET_FILE": str(self.path)}


def _wall_clock_of(library: Path, offset: ClockOffset) -> float:
    """``time.time()`` in a fresh interpreter with the library preloaded."""
    answer = subprocess.run(
        [sys.executable, "-c", "import time; print(repr(time.time()))"],
        env={**os.environ, **offset.env(library)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(answer.stdout)


def test_the_clock_offset_library_steps_only_the_wall_clock(
    clock_offset_library: Path, tmp_path: Path
) -> None:
    offset = ClockOffset(tmp_path / "clock-offset")
    offset.set(-STEP_SECONDS)
    assert _wall_clock_of(clock_offset_library, offset) - time.time() == pytest.approx(
        -STEP_SECONDS, abs=5
    )
    probe = (
        "import datetime, os, pathlib, threading, time\n"
        "p = pathlib.Path(os.environ['CLOCK_OFFSET_FILE'])\n"
        "before = datetime.datetime.now(datetime.UTC).timestamp()\n"
        "t = time.monotonic(); time.sleep(0.2); slept = time.monotonic() - t\n"
        "t = time.monotonic(); threading.Event().wait(0.2); waited = time.monotonic() - t\n"
        "p.with_name('partial').write_text('+0'); os.replace(p.with_name('partial'), p)\n"
        "time.sleep(0.1)\n"
        "print(before, slept, waited, time.time())\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **offset.env(clock_offset_library)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    before, slept, waited, after = map(float, answer.stdout.split())
    real = time.time()
    assert before - real == pytest.approx(-STEP_SECONDS, abs=5)  # datetime.now stepped too
    assert 0.19 < slept < 2 and 0.19 < waited < 2  # sleeps and waits are real time
    assert after - real == pytest.approx(0, abs=5)  # the step forward was seen in 100 ms


@contextmanager
def _server_log_on_failure(server: Server) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe server's log ends:\n{server.log_tail()}") from None


def test_clock_stepped_back_keeps_server_time_monotonic_in_log_order(
    deployment: Deployment, clock_offset_library: Path, tmp_path: Path
) -> None:
    assert deployment.tenant is not None
    offset = ClockOffset(tmp_path / "clock-offset")
    server = Server(
        deployment,
        tmp_path / "server.log",
        env={
            **offset.env(clock_offset_library),
            "EVIDENCE_LEDGER_CLIENT_TIME_WINDOW": str(STEP_SECONDS * 2),
        },
    )
    server.start()
    steps = max(1, ROUNDS // 2)
    load = Load(server.base_url, deployment.tenant, clients=2)
    with (
        _server_log_on_failure(server),
        CheckpointWatch(server.base_url, deployment.tenant) as watch,
        load.running(),
    ):
        for _ in range(steps):
            load.wait_for_acks(20)
            offset.set(-STEP_SECONDS)  # back by STEP_SECONDS
            load.wait_for_acks(20)
            offset.set(0)  # and forward to the right time again
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
