"""SIGKILL of the server under load, at random moments and while the sealer is working.

A real ``evidence-ledger serve`` takes app-signed appends from four client threads; it is
SIGKILLed (no shutdown code runs) and started again on the same data, ``FAULT_ROUNDS``
times. Between kills, the load must be answered again (recovery without an operator).
Afterwards every request without a receipt is retried with its idempotency key, and
:func:`~tests.faults.harness.check_recovered` checks that nothing acknowledged was lost or
doubled, the log is gap-free and consistent with every checkpoint seen, the audit passes,
and every failed request got a 503/409 or a refused connection, never a hang or a 500.

The sealer is a thread of the server. The second test seals every 10 ms and kills the
server just after a new checkpoint appears, while the sealer is asking the TSA for its
timestamp or signing the next one. The third runs a separate ``evidence-ledger sealer``
beside the server (one of the two is elected to seal) and kills whichever is sealing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    BIN,
    CHILDREN,
    ROUNDS,
    CheckpointWatch,
    Deployment,
    Load,
    Server,
    check_recovered,
    clean_environment,
)

pytestmark = pytest.mark.slow


def test_sigkill_of_the_server_at_random_moments_loses_no_acknowledged_event(
    deployment: Deployment, tmp_path: Path
) -> None:
    assert deployment.tenant is not None
    server = Server(deployment, tmp_path / "server.log")
    server.start()
    rng = random.Random(ROUNDS)
    load = Load(server.base_url, deployment.tenant)
    with CheckpointWatch(server.base_url, deployment.tenant) as watch, load.running():
        for _ in range(ROUNDS):
            load.wait_for_acks(5)
            time.sleep(rng.uniform(0.0, 0.5))
            server.kill()
            server.start()
        load.wait_for_acks(5)
    verdict = check_recovered(deployment, server, load, watch.notes, server_killed=True)
    print(f"{deployment.backend}: {ROUNDS} SIGKILLs; {verdict.line()}")


def test_sigkill_while_the_sealer_signs_and_timestamps_loses_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    assert deployment.tenant is not None
    deployment.env["EVIDENCE_LEDGER_SEAL_INTERVAL"] = "0.01"
    server = Server(deployment, tmp_path / "server.log")
    server.start()
    rng = random.Random(ROUNDS + 1)
    load = Load(server.base_url, deployment.tenant)
    with CheckpointWatch(server.base_url, deployment.tenant, 0.005) as watch, load.running():
        for _ in range(ROUNDS):
            load.wait_for_acks(3)
            watch.wait_for_new()
            # Just signed: its timestamp request, or the next signature, is under way.
            time.sleep(rng.uniform(0.0, 0.02))
            server.kill()
            server.start()
        load.wait_for_acks(5)
    verdict = check_recovered(deployment, server, load, watch.notes, server_killed=True)
    print(f"{deployment.backend}: {ROUNDS} SIGKILLs while sealing; {verdict.line()}")


class SealerProcess:
    """``evidence-ledger sealer`` as a subprocess; it says on stdout when it is elected."""

    def __init__(self, deployment: Deployment, log_path: Path) -> None:
        self.deployment = deployment
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._mark = 0

    def start(self) -> None:
        self._mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "evidence-ledger"), "sealer", *self.deployment.location_args()],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_environment(self.deployment.env),
                start_new_session=True,
            )
        CHILDREN.append(self.process)

    def sealing(self) -> bool:
        """Whether this run of the process last said it holds the sealer lock."""
        text = self.log_path.read_bytes()[self._mark :].decode(errors="replace")
        states = [line for line in text.splitlines() if line.startswith("sealer ")]
        return bool(states) and states[-1].endswith("elected: sealing")

    def wait_until(self, sealing: bool, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.sealing() != sealing:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, f"sealer never {sealing=}:\n{self.log_tail()}"
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def test_sigkill_of_the_elected_sealer_process_hands_over_and_loses_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    """With a separate ``evidence-ledger sealer`` beside the server, each round kills
    whichever of the two is the elected sealer, just after it signed a checkpoint; the
    other takes over, and the killed one is started again (and stands by)."""
    assert deployment.tenant is not None
    deployment.env["EVIDENCE_LEDGER_SEAL_INTERVAL"] = "0.01"
    sealer = SealerProcess(deployment, tmp_path / "sealer.log")
    sealer.start()
    sealer.wait_until(sealing=True)
    server = Server(deployment, tmp_path / "server.log")
    server.start()
    rng = random.Random(ROUNDS + 2)
    load = Load(server.base_url, deployment.tenant)
    killed = {"sealer process": 0, "server": 0}
    with CheckpointWatch(server.base_url, deployment.tenant, 0.005) as watch, load.running():
        for _ in range(ROUNDS):
            load.wait_for_acks(3)
            watch.wait_for_new()
            time.sleep(rng.uniform(0.0, 0.02))
            if sealer.sealing():
                sealer.kill()
                killed["sealer process"] += 1
                watch.wait_for_new()  # the server's sealer took over
                sealer.start()
                sealer.wait_until(sealing=False)
            else:
                server.kill()
                killed["server"] += 1
                sealer.wait_until(sealing=True)  # the sealer process took over
                server.start()
        load.wait_for_acks(5)
    sealer.stop()
    verdict = check_recovered(deployment, server, load, watch.notes, server_killed=True)
    print(f"{deployment.backend}: elected sealer killed {killed}; {verdict.line()}")
