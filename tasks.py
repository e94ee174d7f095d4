#!/usr/bin/env python3
"""The project's one task runner: works the same for a newcomer, a developer and CI.

Needs only Python 3.11+. Every task first makes (or reuses) the virtual environment in
``.venv`` and installs the project with pinned versions from ``constraints.txt``.

    python3 tasks.py demo [ARGS...]    set up, then run ``evidence-ledger demo``
    python3 tasks.py test [PYTEST...]  set up, then lint, type-check and run every test
    python3 tasks.py lint              ruff (lint + format check) and mypy only
    python3 tasks.py bench [NAME...]   set up with the benchmark extras and run benchmarks
    python3 tasks.py audit             pip-audit over the pinned dependencies (constraints.txt)
    python3 tasks.py setup             only make the environment
"""

from __future__ import annotations

import hashlib
import json
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


#: Set to 1 where the vulnerability service must be reachable: an audit that could not
#: check anything then fails instead of only warning.
AUDIT_REQUIRED = "EVIDENCE_LEDGER_AUDIT_REQUIRED"


def audit() -> int:
    """pip-audit over ``constraints.txt``; says loudly when nothing could be checked.

    pip-audit asks a vulnerability service (PyPI's JSON API by default) about each pinned
    version. Where that service cannot be reached it skips every package and still prints
    "No known vulnerabilities found", so its report is read here rather than trusted:
    exit 1 if any vulnerability is known; if some packages could not be checked, list them
    and say so; if none could, print a banner that the audit did NOT run, and fail only
    when ``EVIDENCE_LEDGER_AUDIT_REQUIRED=1`` (CI machines with network access).
    """
    command = [
        BIN / "pip-audit",
        "--requirement", ROOT / "constraints.txt",
        "--no-deps", "--disable-pip", "--progress-spinner", "off", "--format", "json",
    ]  # fmt: skip
    print("+ " + " ".join(str(c) for c in command), flush=True)
    try:
        done = subprocess.run(
            [str(c) for c in command], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _audit_not_done(f"pip-audit could not run: {exc}")
    try:
        report = json.loads(done.stdout)
        dependencies = report["dependencies"]
    except (ValueError, KeyError, TypeError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return _audit_not_done(f"pip-audit exited {done.returncode}: {' | '.join(tail)}")
    checked = [d for d in dependencies if "skip_reason" not in d]
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in checked if d.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            print(
                f"VULNERABLE {dependency['name']} {dependency['version']}: {vuln['id']} ({fixes})"
            )
    if not checked:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        return _audit_not_done(
            f"all {len(skipped)} pinned packages were skipped ({'; '.join(reasons)}); the "
            "vulnerability service is probably unreachable from this machine"
        )
    for dependency in skipped:
        print(f"NOT CHECKED {dependency['name']}: {dependency['skip_reason']}")
    print(
        f"pip-audit: {len(checked)} of {len(dependencies)} pinned packages checked, "
        f"{len(skipped)} not checked, {len(vulnerable)} with known vulnerabilities",
        flush=True,
    )
    return 1 if vulnerable else 0


def _audit_not_done(reason: str) -> int:
    banner = "!" * 78
    required = os.environ.get(AUDIT_REQUIRED, "") == "1"
    verdict = (
        f"Failing: {AUDIT_REQUIRED}=1."
        if required
        else f"Not failing the build; set {AUDIT_REQUIRED}=1 to make this an error."
    )
    lines = [
        banner,
        "DEPENDENCY AUDIT NOT DONE: no package was checked for known vulnerabilities.",
        f"{reason}.",
        "This is NOT a clean result. Run `python3 tasks.py audit` where",
        "https://pypi.org/pypi/<name>/<version>/json is reachable.",
        verdict,
        banner,
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 1 if required else 0


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
    if task == "audit":
        setup()
        return audit()
    if task == "bench":
        setup("dev,bench")
        return run(PYTHON, "-m", "benchmarks", *rest)
    print(f"unknown task {task!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
