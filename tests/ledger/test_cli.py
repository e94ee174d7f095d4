"""The ``evidence-ledger`` command line, run as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    args = ["--data-dir", str(tmp_path / "data")]
    if backend == "postgres":
        args += ["--database-url", request.getfixturevalue("postgres_url")]
    return args


def test_demo_records_seals_proves_and_audits(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = location(backend, tmp_path, request)
    demo = run("evidence-ledger", "demo", *where)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "recorded 26 events in two tasks" in out
    assert "HK$12,800.00 routes head → finance_legal → cfo" in out
    for seen in ("陈小明 Chen Xiaoming", "转交", "退回", "sms_otp passed (sms-gw-7d21c9)"):
        assert seen in out
    assert "certificate CN=John Smith" in out and "(PAdES B-LTA)" in out
    signed = tmp_path / "data" / "demo" / "supply-contract-NW-2026-112-signed.pdf"
    assert signed.read_bytes().startswith(b"%PDF-")
    pack = tmp_path / "data" / "demo" / "supply-contract-NW-2026-112-evidence.zip"
    with zipfile.ZipFile(pack) as opened:
        names = set(opened.namelist())
    assert {"manifest.json", "events.jsonl", "report.pdf"} <= names
    assert "Independent verification of the pack (exit 0)" in out
    assert f"TOTAL_PASSED: {pack}" in out
    assert "Latest signed checkpoint" in out and "\n26\n" in out
    assert "timestamped by CN=Evidence Ledger Local TSA" in out
    assert "independent verifier says: PASSED" in out
    assert "audit passed" in out

    key = run("evidence-ledger", "key", *where)
    assert key.returncode == 0
    vkey = key.stdout.strip()
    name, key_id, _ = vkey.split("+", 2)
    assert name.startswith("evidence-ledger.local/") and len(key_id) == 8

    checkpoint = run("evidence-ledger", "checkpoint", *where)
    assert checkpoint.returncode == 0
    note = tmp_path / "checkpoint.txt"
    note.write_text(checkpoint.stdout)
    assert checkpoint.stdout.split("\n")[1] == "26"
    verified = run("evidence-verify", "checkpoint", str(note), "--key", vkey)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    audit = run("evidence-ledger", "audit", "--json", *where)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["passed"] is True
    assert report["events_checked"] == 26 and report["timestamps_checked"] >= 1

    # The KPIs of the story: both tasks completed, the purchase once returned (退回), only
    # the contract signed electronically; the passed audit is on record, no breach.
    kpis = run("evidence-ledger", "kpi", "--format", "json", *where)
    assert kpis.returncode == 0, kpis.stdout + kpis.stderr
    views = json.loads(kpis.stdout)
    assert views["tasks"] == {"total": 2, "by_status": {"completed": 2}}
    assert views["rates"]["return"] == {"rate": 0.5, "count": 1, "of": 2}
    assert views["rates"]["electronic"] == {"rate": 0.5, "count": 1, "of": 2}
    assert [d["department"] for d in views["cycle_time"]["by_department"]] == ["procurement"]
    assert views["compliance"]["breaches"] == []
    table = run("evidence-ledger", "kpi", "--template", "supply-contract", *where)
    assert table.returncode == 0, table.stderr
    assert "waiting by step" in table.stdout and "supplier" in table.stdout
    out = tmp_path / "kpis"
    files = run("evidence-ledger", "kpi", "--format", "csv", "--out", str(out), *where)
    assert files.returncode == 0, files.stderr
    assert (out / "waiting_by_step.csv").read_text().startswith("template_id,step_key,")
    assert (out / "breaches.csv").read_text().startswith("rule,")
    bad = run("evidence-ledger", "kpi", "--format", "csv", *where)
    assert bad.returncode == 3 and "--out" in bad.stderr


def test_a_second_demo_extends_the_same_log(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path / "data")]
    assert run("evidence-ledger", "demo", *where).returncode == 0
    again = run("evidence-ledger", "demo", *where)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "\n52\n" in again.stdout and "audit passed" in again.stdout


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"EVIDENCE_LEDGER_DATA_DIR": str(tmp_path / "from-env")}
    assert run("evidence-ledger", "key", env=env).returncode == 0
    assert (tmp_path / "from-env" / "keys" / "ledger-ed25519.pem").exists()


def test_seal_then_checkpoint_on_a_fresh_log(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path / "data")]
    empty = run("evidence-ledger", "checkpoint", *where)
    assert empty.returncode == 1 and "no checkpoint" in empty.stderr
    sealed = run("evidence-ledger", "seal", *where)
    assert sealed.returncode == 0 and "already covers" in sealed.stdout


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    result = run(
        "evidence-ledger", "audit", "--data-dir", str(tmp_path), "--database-url", "mysql://x/y"
    )
    assert result.returncode == 1
    assert "postgresql://" in result.stderr
    assert "Traceback" not in result.stderr
