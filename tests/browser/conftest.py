"""A real server over the seeded history, and Debian's Chromium driven by Playwright.

The history (:mod:`tests.kpi_seed`) is written once per session into a temporary data dir;
``evidence-ledger serve`` then runs over it on loopback as a subprocess. Playwright never
downloads a browser: it launches the system Chromium (``/usr/bin/chromium``), headless.
Without one the tests are skipped with the reason, and with ``CI=true`` they fail.

Each test gets a fresh page whose console errors, warnings and uncaught exceptions are
collected; the test fails if any appeared that it did not expect.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.kpi_seed import Seeded, seed

pytestmark = pytest.mark.browser

BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots for a person to look at (``test-artifacts/``, not committed)."""


def system_chromium() -> str | None:
    """The system Chromium's path, if one is installed."""
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_chromium() -> str:
    found = system_chromium()
    if found is not None:
        return found
    reason = "no system Chromium (/usr/bin/chromium); install Debian's chromium package"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the server exited with {server.returncode}:\n{output}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not come up")


@dataclass
class Served:
    """The running server, the seeded tenant, and an HTTP client with its compliance key."""

    base: str
    seeded: Seeded
    client: httpx.Client

    def auth(self, role: str = "compliance") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.keys[role]}"}

    def api(self, path: str, **params: str) -> Any:
        answer = self.client.get(path, params=params, headers=self.auth())
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_chromium()
    root = tmp_path_factory.mktemp("dashboard")
    seeded = seed(root / "data")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_LEDGER_")}
    log_path = root / "server.log"
    command = [
        str(BIN / "evidence-ledger"),
        "serve",
        "--data-dir",
        str(seeded.data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_until_up(base, server, log_path)
        with httpx.Client(base_url=base, timeout=60) as client:
            yield Served(base, seeded, client)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this
    # thread until it stops, and pyHanko's signing (asyncio.run) in later test modules
    # cannot run while it does.
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    arguments = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=arguments
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Console:
    """What the page said on its console, and the exceptions it did not catch."""

    messages: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(e in m for e in self.expected)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Any, served: Served, console: Console) -> Iterator[Any]:
    context = browser.new_context(
        base_url=served.base, viewport={"width": 1400, "height": 1000}, accept_downloads=True
    )
    opened = context.new_page()
    opened.set_default_timeout(30_000)

    def on_console(message: Any) -> None:
        if message.type in ("error", "warning"):
            console.messages.append(f"console {message.type}: {message.text}")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: console.messages.append(f"page error: {error}"))
    try:
        yield opened
    finally:
        context.close()
    assert not console.unexpected(), console.unexpected()


@pytest.fixture
def dashboard(page: Any, served: Served) -> Any:
    """The page, signed in with the compliance key and drawn."""
    page.goto("/dashboard")
    page.fill("#api-key", served.seeded.keys["compliance"])
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("body[data-state=ready]")
    return page
