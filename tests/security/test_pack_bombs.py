"""ZIP bombs and container tricks given to ``evidence-verify`` as a pack (issue 8, point 2).

``tests/verifier/test_pack_verify.py`` pins member names with ``../``, absolute paths,
backslashes and ``./`` on real packs. These are the attacks on memory and time: a deflate
bomb, members whose declared sizes add up past the limit, more members than any pack has,
a NUL in a name, and files that only look like ZIPs. The verifier must answer each with a
verdict (exit 1, the container step failing with its reason) or a usage error (exit 3),
quickly and without holding the bomb in memory. No ledger is needed: the container step
fails before anything else is read.
"""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from verifier.cli import main

EXIT_FAILED, EXIT_USAGE = 1, 3
MiB = 1024 * 1024


def _run(
    pack: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object], float, int]:
    """``evidence-verify PACK --json``: exit code, JSON report, seconds and peak bytes."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        code = main([str(pack), "--json"])
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {}), elapsed, peak


def _expect_container_failure(
    pack: Path, capsys: pytest.CaptureFixture[str], reason: str, *, peak_limit: int = 64 * MiB
) -> None:
    code, report, elapsed, peak = _run(pack, capsys)
    assert code == EXIT_FAILED, report
    assert report["indication"] == "TOTAL_FAILED"
    steps = report["steps"]
    assert isinstance(steps, list)
    assert steps[0]["verdict"] == "FAILED", steps[0]
    assert steps[0]["sub_indication"] == "FORMAT_FAILURE", steps[0]
    assert reason in json.dumps(steps[0]), steps[0]
    assert elapsed < 20, f"{elapsed:.1f} s"
    assert peak < peak_limit, f"{peak} bytes at the peak"


def test_a_deflate_bomb_is_refused_without_inflating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "bomb.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", b"{}")
        with archive.open("events.jsonl", "w", force_zip64=True) as member:
            zeros = b"\0" * MiB
            for _ in range(256):
                member.write(zeros)
    assert pack.stat().st_size < 2 * MiB
    _expect_container_failure(pack, capsys, "(more than 200 times): a ZIP bomb")


def _patch_declared_sizes(pack: Path, size: int) -> None:
    """Make every central directory entry declare ``size`` bytes, compressed and not (the
    local headers keep the truth): a pack that says it is huge without being so."""
    data = bytearray(pack.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        struct.pack_into("<II", data, at + 20, size, size)
        at = data.find(b"PK\x01\x02", at + 4)
    pack.write_bytes(bytes(data))


def test_members_declaring_more_than_the_total_limit_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "huge.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_STORED) as archive:
        for name in ("manifest.json", "events.jsonl", "report.pdf"):
            archive.writestr(name, b"x")
    _patch_declared_sizes(pack, 1 << 30)  # three members of 1 GiB each
    _expect_container_failure(pack, capsys, "the members declare more than 2147483648 bytes")


def test_more_members_than_any_pack_has_are_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "many.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_STORED) as archive:
        for i in range(100_001):
            archive.writestr(f"proofs/{i}.tlog-proof", b"")
    # The central directory is never parsed into 100,001 entries: memory stays small.
    _expect_container_failure(
        pack, capsys, "the pack has 100001 members; at most 100000", peak_limit=16 * MiB
    )


def test_a_nul_in_a_member_name_cannot_alias_another_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ZIP readers cut names at NUL, so ``events.jsonl\\0../../x`` would read as a second
    ``events.jsonl``: refused as a duplicate, never taken for the real one."""
    pack = tmp_path / "nul.zip"
    with zipfile.ZipFile(pack, "w") as archive:
        archive.writestr("manifest.json", b"{}")
        archive.writestr("events.jsonl", b"")
        archive.writestr("events.jsonl\0/../../../etc/passwd", b"root:x:0:0")
    _expect_container_failure(pack, capsys, "occurs more than once")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a readable ZIP"),
        (b"%PDF-1.7\n", "not a readable ZIP"),
        (b"PK\x05\x06" + b"\0" * 16 + b"\xff\xff", "the pack has no manifest.json"),
    ],
)
def test_files_that_are_not_zips_fail_the_container_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    pack = tmp_path / "pack.zip"
    pack.write_bytes(content)
    _expect_container_failure(pack, capsys, reason)


def test_a_truncated_pack_fails_the_container_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "cut.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps({"format": "evidence-ledger-pack/1"}))
        archive.writestr("events.jsonl", b"{}\n" * 1000)
    data = pack.read_bytes()
    pack.write_bytes(data[: len(data) // 2])
    _expect_container_failure(pack, capsys, "not a readable ZIP")


def test_a_deeply_nested_manifest_is_a_verdict_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "nested.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", b"[" * 200_000 + b"]" * 200_000)
    _expect_container_failure(pack, capsys, "manifest.json is not JSON")


def test_a_pack_that_is_a_directory_or_missing_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (tmp_path, tmp_path / "missing.zip"):
        code, report, _, _ = _run(path, capsys)
        assert code == EXIT_USAGE and report == {}, path
