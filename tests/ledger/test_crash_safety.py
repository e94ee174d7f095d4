"""SIGKILL the writer at random moments; nothing acknowledged is lost (invariants 3 and 6).

A real writer process (:mod:`tests.ledger.crash_writer`) appends single events and
batches while its sealer signs and timestamps checkpoints, printing each event id only
after ``append`` returned. The test kills it with SIGKILL at a seeded random moment,
restarts it on the same data, and repeats. Most kills land a random 0.05-0.6 s after the
first acknowledgement; every fifth restart is killed 0.2-1.2 s after process start, so
some kills also land while the ledger is opening and recovering from the last kill.

After every round each acknowledged event must be stored at the leaf it was acknowledged
with; after the last, the log must have no gap, hold exactly the stored events, keep every
stream's hash chain, and pass the audit (checkpoints still waiting for a timestamp are
allowed: they are reported, not failures).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from ledger import merkle
from ledger.app import Ledger, open_store
from ledger.audit import audit
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.ledger import crash_writer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = {"sqlite": 24, "postgres": 8}
SEED = 20261122
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Ack:
    event_id: UUID
    leaf_index: int
    stream_id: UUID
    sequence: int


@dataclass
class Round:
    number: int
    acks: list[Ack]
    killed_after: str
    stderr: str


def writer_command(settings: Settings, seed: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "tests.ledger.crash_writer",
        "--data-dir",
        str(settings.data_dir),
        "--seed",
        str(seed),
        "--seal-interval",
        str(settings.seal_interval),
    ]
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    return command


def run_and_kill(settings: Settings, number: int, rng: random.Random, log_dir: Path) -> Round:
    """Start the writer, SIGKILL it at a random moment, return what it acknowledged."""
    stderr_path = log_dir / f"writer-{number}.stderr"
    early = number > 0 and number % 5 == 0
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            writer_command(settings, SEED + number),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        lines: list[str] = []
        first_ack = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if line.startswith("ack "):
                    first_ack.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if early:
                delay = rng.uniform(0.2, 1.2)  # imports, opening, recovery, first appends
                time.sleep(delay)
                killed_after = f"{delay:.3f}s from start"
            else:
                if not first_ack.wait(READY_TIMEOUT):
                    raise AssertionError(f"writer {number} acknowledged nothing")
                delay = rng.uniform(0.05, 0.6)
                time.sleep(delay)
                killed_after = f"{delay:.3f}s after the first ack"
            exited = process.poll()
            assert exited is None, f"writer {number} exited by itself with {exited}"
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            reader.join(timeout=30)
    assert process.returncode == -signal.SIGKILL
    acks = []
    for line in lines:
        if not line.endswith("\n") or not line.startswith("ack "):
            continue  # "ready", or a line cut short by the kill (never acknowledged)
        event_id, leaf_index, stream_id, sequence = line.split()[1:]
        acks.append(Ack(UUID(event_id), int(leaf_index), UUID(stream_id), int(sequence)))
    return Round(number, acks, killed_after, stderr_path.read_text())


def check_acknowledged(store: LedgerStore, acks: list[Ack], where: str) -> None:
    for ack in acks:
        entry = store.entry_for_event(ack.event_id)
        assert entry is not None, f"{where}: acknowledged event {ack.event_id} is lost"
        assert (entry.leaf_index, entry.stream_id, entry.sequence) == (
            ack.leaf_index,
            ack.stream_id,
            ack.sequence,
        ), f"{where}: event {ack.event_id} is not where it was acknowledged"
        assert entry.canonical, f"{where}: the log names event {ack.event_id} but it is not stored"


def test_sigkilled_writer_loses_no_acknowledged_event_and_leaves_log_whole(
    ledger_settings: Settings, backend: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    acknowledged: list[Ack] = []
    rounds: list[Round] = []
    for number in range(ROUNDS[backend]):
        played = run_and_kill(ledger_settings, number, rng, tmp_path)
        rounds.append(played)
        acknowledged.extend(played.acks)
        store = open_store(ledger_settings)
        try:
            check_acknowledged(store, played.acks, f"round {number} (killed {played.killed_after})")
        finally:
            store.close()

    killed_after_ack = [r for r in rounds if "after the first ack" in r.killed_after]
    assert all(r.acks for r in killed_after_ack)
    assert len(rounds) >= (20 if backend == "sqlite" else 8)

    ids = [a.event_id for a in acknowledged]
    assert len(set(ids)) == len(ids), "an event id was acknowledged twice"
    leaves = [a.leaf_index for a in acknowledged]
    assert len(set(leaves)) == len(leaves), "two acknowledged events share a leaf"

    with Ledger.open(ledger_settings) as ledger:
        store = ledger.store
        check_acknowledged(store, acknowledged, "after all rounds")
        size = store.tree_size()
        entries = list(store.iter_entries(size))
        assert [e.leaf_index for e in entries] == list(range(size)), "the log has a gap"
        assert len({e.event_id for e in entries}) == size
        assert store.count_events() == size
        assert size >= len(acknowledged)

        # Every stream is an unbroken hash chain whose links are the log's leaf hashes.
        leaf_hash = {(e.stream_id, e.sequence): e.leaf_hash for e in entries}
        streams = {e.stream_id for e in entries}
        assert streams <= set(crash_writer.STREAMS)
        for stream_id in streams:
            events = store.read_stream(stream_id)
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            prev: bytes | None = None
            for event in events:
                assert event.prev == prev, f"stream {stream_id} breaks at {event.sequence}"
                assert event.hash == leaf_hash[(stream_id, event.sequence)]
                prev = event.hash
        assert sum(len(store.read_stream(s)) for s in streams) == size

        # The stored tree is the one the leaves give.
        rebuilt: dict[merkle.Node, bytes] = {}
        merkle.append_leaves(0, rebuilt, [e.leaf_hash for e in entries])
        assert store.root(size) == merkle.hash_ranges([(0, size)], rebuilt)[0]

        report = audit(store, ledger.key, ledger.tsa_trust_roots)
        assert report.passed, report.findings[:5]
        assert report.tree_size == size
        assert report.checkpoints_checked > 0, "the sealer never signed a checkpoint"
        assert report.timestamps_checked > 0, "no checkpoint was ever timestamped"
