"""The TSA down for a while, and back: checkpoints wait untimestamped, then get their tokens.

The ledger is configured with one external TSA URL (``EVIDENCE_LEDGER_TSA_URLS``): a local
RFC 3161 TSA run as a process of its own, trusted through its root. Under load the TSA is
taken away twice: killed (connections refused), then frozen with SIGSTOP (connections
accepted, no answer: the client's timeout runs out). While it is away appends go on being
acknowledged and checkpoints go on being signed, but none gets a timestamp: the API has no
token for them, and no time is recorded in place of one. Once the TSA is back, the running
server timestamps every waiting checkpoint by itself, with tokens the TSA issued after it
came back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ledger.app import open_store
from ledger.local_tsa import LocalTimestampAuthority
from ledger.sealer import MAX_RETRY_DELAY
from ledger.settings import Settings
from tests.faults.harness import (
    ROUNDS,
    CheckpointWatch,
    Deployment,
    Load,
    Server,
    check_recovered,
    free_port,
)

pytestmark = pytest.mark.slow

#: How long each outage lasts.
OUTAGE_SECONDS = 3.0


class TsaProcess:
    """The local TSA of ``directory`` served by a subprocess on a fixed port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.tsa_process", str(self.directory), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[TsaProcess]:
    process = TsaProcess(tmp_path / "external-tsa")
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.thaw()
        process.kill()


def _timestamp_status(server: Server, deployment: Deployment, size: int) -> int:
    assert deployment.tenant is not None
    answer = httpx.get(
        f"{server.base_url}/v1/log/checkpoints/{size}/timestamp",
        headers={"Authorization": f"Bearer {deployment.tenant.auditor_key}"},
        timeout=15,
    )
    return answer.status_code


def test_tsa_outage_leaves_checkpoints_untimestamped_then_timestamps_them_unattended(
    deployment: Deployment, tsa: TsaProcess, tmp_path: Path
) -> None:
    assert deployment.tenant is not None
    root = tmp_path / "external-tsa-root.pem"
    authority = LocalTimestampAuthority.load_or_create(tsa.directory)
    root.write_bytes(authority.root_certificate.public_bytes(Encoding.PEM))
    deployment.env["EVIDENCE_LEDGER_TSA_URLS"] = tsa.url
    deployment.env["EVIDENCE_LEDGER_TSA_TRUST_ROOTS"] = str(root)
    assert deployment.settings().tsa_urls == (tsa.url,)

    server = Server(deployment, tmp_path / "server.log")
    server.start()
    load = Load(server.base_url, deployment.tenant, clients=2)
    outages = [("killed", tsa.kill, tsa.start), ("frozen", tsa.freeze, tsa.thaw)]
    outages = outages * max(1, ROUNDS // 4)
    waited: list[float] = []
    during: list[int] = []
    gaps: dict[str, float] = {}
    """The longest wait for a new checkpoint while the TSA was away, per kind of outage."""
    with CheckpointWatch(server.base_url, deployment.tenant) as watch, load.running():
        for how, take_down, bring_back in outages:
            load.wait_for_acks(5)
            first = watch.wait_for_new()
            take_down()
            down_at = time.monotonic()
            acked = load.acknowledged()
            signed_while_down = []
            last_signed = down_at
            while time.monotonic() - down_at < OUTAGE_SECONDS:
                signed_while_down.append(watch.wait_for_new(timeout=20))
                gaps[how] = max(gaps.get(how, 0.0), time.monotonic() - last_signed)
                last_signed = time.monotonic()
            # Appends never wait for the TSA; checkpoints are signed, never timestamped.
            assert load.acknowledged() > acked
            latest = signed_while_down[-1]
            assert latest > first
            assert _timestamp_status(server, deployment, latest) == 404
            back_at_wall = datetime.now(UTC)
            bring_back()
            back_at = time.monotonic()
            deadline = back_at + MAX_RETRY_DELAY + 30
            while _timestamp_status(server, deployment, latest) != 200:
                assert time.monotonic() < deadline, "the waiting checkpoints got no timestamp"
                time.sleep(0.1)
            waited.append(time.monotonic() - back_at)
            during.append(len(signed_while_down))
            # Their tokens are the TSA's, issued after it came back: no time was made up.
            _check_tokens_after(deployment.settings(), signed_while_down, back_at_wall)
        load.wait_for_acks(5)
    # Timestamps are requested from their own thread: a TSA that hangs (frozen, until its
    # client's 10 s timeout) never holds up signing; new checkpoints keep coming.
    assert max(gaps.values()) < 5.0, gaps
    verdict = check_recovered(deployment, server, load, watch.notes)
    print(
        f"{deployment.backend}: {len(outages)} TSA outages of {OUTAGE_SECONDS:g}s "
        f"({', '.join(o[0] for o in outages)}); checkpoints signed while down per outage "
        f"{during}; all timestamped {', '.join(f'{w:.1f}s' for w in waited)} after the TSA "
        f"came back; longest wait for a new checkpoint while down: "
        f"{', '.join(f'{k} {v:.1f}s' for k, v in gaps.items())}; {verdict.line()}"
    )


def _check_tokens_after(settings: Settings, sizes: list[int], back_at: datetime) -> None:
    store = open_store(settings)
    try:
        stamps = store.timestamps()
        for size in sizes:
            stamp = stamps.get(size)
            if stamp is None:
                continue  # still waiting: the check after recovery requires it later
            issued = datetime.strptime(stamp.gen_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            assert issued >= back_at - timedelta(seconds=1), (size, stamp.gen_time, back_at)
    finally:
        store.close()
