#!/usr/bin/env python3
"""The project's one task runner: works the same for a newcomer, a developer and CI.

Needs only Python 3.11+. Every task first makes (or reuses) the virtual environment in
``.venv`` and installs the project with pinned versions from ``constraints.txt``.

    python3 tasks.py demo [ARGS...]    set up, then run ``evidence-ledger demo``
    python3 tasks.py test [PYTEST...]  set up, then lint, type-check and run every test
    python3 tasks.py lint              ruff (lint + format check) and mypy only
    python3 tasks.py bench [NAME...]   set up with the benchmark extras and run benchmarks
    python3 tasks.py setup             only make the environment
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".evidence-ledger-installed"

# pytest's exit code when it collected no tests; CI must treat that as a failure.
PYTEST_NO_TESTS = 5


def run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    printable = " ".join(str(a) for a in args)
    print(f"+ {printable}", flush=True)
    return subprocess.call([str(a) for a in args], cwd=ROOT, env=env)


def setup(extras: str = "dev") -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - the runner may be started by an older python3
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    inputs = b"".join((ROOT / name).read_bytes() for name in ("pyproject.toml", "constraints.txt"))
    wanted = hashlib.sha256(inputs + extras.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    pip = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    code = run(*pip, "-c", ROOT / "constraints.txt", "-e", f".[{extras}]")
    if code:
        sys.exit(code)
    STAMP.write_text(wanted)


def lint() -> int:
    for command in (
        (BIN / "ruff", "check", "."),
        (BIN / "ruff", "format", "--check", "."),
        (BIN / "mypy", "ledger", "verifier", "evidence", "projections", "api"),
    ):
        code = run(*command)
        if code:
            return code
    return 0


def test(pytest_args: list[str]) -> int:
    code = lint()
    if code:
        return code
    code = run(PYTHON, "-m", "pytest", *pytest_args)
    if code == PYTEST_NO_TESTS:
        print("pytest collected no tests: that is a failure here", file=sys.stderr)
        return 1
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    task, rest = argv[0], argv[1:]
    if task == "setup":
        setup()
        return 0
    if task == "demo":
        setup()
        return run(BIN / "evidence-ledger", "demo", *rest)
    if task == "test":
        setup()
        return test(rest)
    if task == "lint":
        setup()
        return lint()
    if task == "bench":
        setup("dev,bench")
        return run(PYTHON, "-m", "benchmarks", *rest)
    print(f"unknown task {task!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
