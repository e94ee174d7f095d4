"""The ``evidence-verify`` command line: verdicts, exit codes, human and JSON output."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from verifier._internal.merkle import leaf_hash
from verifier._internal.note import VerifierKey
from verifier.cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_PASSED, EXIT_USAGE, main


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def h(hex_value: str) -> str:
    return b64(bytes.fromhex(hex_value))


# The RFC 6962 test tree of transparency-dev/merkle (testonly/constants.go and
# proof/verify_test.go): leaf 0 of the tree of size 8, and the consistency proof 6 -> 8.
LEAF_0 = b64(leaf_hash(b""))
ROOT_6 = h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef")
ROOT_7 = h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c")
ROOT_8 = h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
INCLUSION_0_8 = ",".join(
    h(x)
    for x in (
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    )
)
CONSISTENCY_6_8 = ",".join(
    h(x)
    for x in (
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    )
)

ORIGIN = "ledger.example/log"


def inclusion_args(**overrides: str) -> list[str]:
    values = {
        "--leaf-hash": LEAF_0,
        "--index": "0",
        "--size": "8",
        "--root": ROOT_8,
        "--proof": INCLUSION_0_8,
    }
    values.update({f"--{k.replace('_', '-')}": v for k, v in overrides.items()})
    return ["inclusion", *[part for pair in values.items() for part in pair]]


def consistency_args(**overrides: str) -> list[str]:
    values = {
        "--size1": "6",
        "--size2": "8",
        "--root1": ROOT_6,
        "--root2": ROOT_8,
        "--proof": CONSISTENCY_6_8,
    }
    values.update({f"--{k}": v for k, v in overrides.items()})
    return ["consistency", *[part for pair in values.items() for part in pair]]


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, object]]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def log_key() -> tuple[Ed25519PrivateKey, VerifierKey]:
    private_key = Ed25519PrivateKey.generate()
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private_key, VerifierKey.from_ed25519(ORIGIN, raw)


def signed_checkpoint(private_key: Ed25519PrivateKey, key: VerifierKey, text: str) -> str:
    signature = key.key_id.to_bytes(4, "big") + private_key.sign(text.encode())
    return f"{text}\n— {key.name} {b64(signature)}\n"


CHECKPOINT_TEXT = f"{ORIGIN}\n8\n{ROOT_8}\n"


@pytest.fixture
def checkpoint_file(tmp_path: Path, log_key: tuple[Ed25519PrivateKey, VerifierKey]) -> Path:
    path = tmp_path / "checkpoint"
    path.write_text(signed_checkpoint(*log_key, CHECKPOINT_TEXT), encoding="utf-8")
    return path


# --- inclusion -----------------------------------------------------------------------------


def test_inclusion_passes_with_a_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(inclusion_args()) == EXIT_PASSED
    out = capsys.readouterr().out
    assert out.startswith("PASSED: inclusion: leaf 0 is included in the tree of size 8")


def test_inclusion_json_has_verdict_check_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, inclusion_args())
    assert code == EXIT_PASSED
    assert report["verdict"] == "PASSED"
    assert report["check"] == "inclusion"
    assert isinstance(report["reason"], str)
    assert report["details"] == {"leaf_hash": LEAF_0, "index": 0, "size": 8, "root": ROOT_8}


def test_inclusion_against_the_wrong_root_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, inclusion_args(root=ROOT_7))
    assert code == EXIT_FAILED
    assert report["verdict"] == "FAILED"
    assert "not the given root" in str(report["reason"])


def test_inclusion_with_a_wrong_index_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(inclusion_args(index="1")) == EXIT_FAILED
    assert capsys.readouterr().out.startswith("FAILED: inclusion:")


def test_inclusion_of_a_single_leaf_takes_an_empty_proof() -> None:
    leaf = b64(leaf_hash(b"only"))
    assert main(inclusion_args(leaf_hash=leaf, size="1", root=leaf, proof="")) == EXIT_PASSED


@pytest.mark.parametrize(
    "overrides",
    [
        {"leaf_hash": b64(b"short")},
        {"root": b64(b"\x00" * 33)},
        {"proof": INCLUSION_0_8 + "," + b64(b"\x00" * 31)},
        {"proof": INCLUSION_0_8 + ","},
        {"root": "not base64!"},
        {"index": "-1"},
        {"size": "eight"},
    ],
)
def test_inclusion_inputs_that_are_not_hashes_or_sizes_are_usage_errors(
    overrides: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(inclusion_args(**overrides)) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "evidence-verify: error:" in captured.err


# --- consistency ---------------------------------------------------------------------------


def test_consistency_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, consistency_args())
    assert (code, report["verdict"], report["check"]) == (EXIT_PASSED, "PASSED", "consistency")


def test_consistency_with_a_rewritten_history_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, consistency_args(root1=ROOT_7))
    assert (code, report["verdict"]) == (EXIT_FAILED, "FAILED")
    assert "first root" in str(report["reason"])


def test_consistency_of_a_shrinking_tree_fails() -> None:
    assert main(consistency_args(size1="8", size2="6", root1=ROOT_8, root2=ROOT_6)) == EXIT_FAILED


def test_consistency_of_equal_trees_takes_an_empty_proof() -> None:
    args = consistency_args(size1="8", root1=ROOT_8, proof="")
    assert main(args) == EXIT_PASSED


def test_consistency_from_size_zero_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(consistency_args(size1="0", proof="")) == EXIT_USAGE
    assert "RFC 9162" in capsys.readouterr().err


# --- checkpoint ----------------------------------------------------------------------------


def test_checkpoint_passes_and_prints_origin_size_and_root(
    checkpoint_file: Path,
    log_key: tuple[Ed25519PrivateKey, VerifierKey],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["checkpoint", str(checkpoint_file), "--key", str(log_key[1])]) == EXIT_PASSED
    out = capsys.readouterr().out
    assert out.startswith("PASSED: checkpoint:")
    assert f"origin: {ORIGIN}" in out
    assert "size: 8" in out
    assert f"root: {ROOT_8}" in out


def test_checkpoint_json_carries_the_tree_head(
    checkpoint_file: Path,
    log_key: tuple[Ed25519PrivateKey, VerifierKey],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = run_json(capsys, ["checkpoint", str(checkpoint_file), "--key", str(log_key[1])])
    assert code == EXIT_PASSED
    details = report["details"]
    assert isinstance(details, dict)
    assert (details["origin"], details["size"], details["root"]) == (ORIGIN, 8, ROOT_8)


def test_checkpoint_accepts_several_keys(
    checkpoint_file: Path, log_key: tuple[Ed25519PrivateKey, VerifierKey]
) -> None:
    other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    argv = ["checkpoint", str(checkpoint_file), "--key", other, "--key", str(log_key[1])]
    assert main(argv) == EXIT_PASSED


def test_checkpoint_without_a_key_is_indeterminate(
    checkpoint_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, ["checkpoint", str(checkpoint_file)])
    assert (code, report["verdict"]) == (EXIT_INDETERMINATE, "INDETERMINATE")


def test_checkpoint_with_another_logs_key_is_indeterminate(checkpoint_file: Path) -> None:
    other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    assert main(["checkpoint", str(checkpoint_file), "--key", other]) == EXIT_INDETERMINATE


def test_tampered_checkpoint_fails(
    checkpoint_file: Path,
    log_key: tuple[Ed25519PrivateKey, VerifierKey],
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint_file.write_text(
        checkpoint_file.read_text(encoding="utf-8").replace("\n8\n", "\n9\n"), encoding="utf-8"
    )
    code, report = run_json(capsys, ["checkpoint", str(checkpoint_file), "--key", str(log_key[1])])
    assert (code, report["verdict"]) == (EXIT_FAILED, "FAILED")
    assert "does not verify" in str(report["reason"])


def test_missing_checkpoint_file_is_an_io_error(
    tmp_path: Path, log_key: tuple[Ed25519PrivateKey, VerifierKey]
) -> None:
    missing = tmp_path / "nope"
    assert main(["checkpoint", str(missing), "--key", str(log_key[1])]) == EXIT_USAGE


def test_malformed_key_is_a_usage_error(
    checkpoint_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["checkpoint", str(checkpoint_file), "--key", "not-a-key"]) == EXIT_USAGE
    assert "--key" in capsys.readouterr().err


# --- the command as a whole ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--json"],
        ["inclusion"],
        ["inclusion", "--bogus"],
        ["consistency", "--size1", "1"],
        ["checkpoint"],
    ],
)
def test_argparse_usage_errors_exit_with_3(argv: list[str]) -> None:
    assert main(argv) == EXIT_USAGE


def test_help_exits_with_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


def test_json_flag_may_come_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", *inclusion_args()]) == EXIT_PASSED
    assert json.loads(capsys.readouterr().out)["verdict"] == "PASSED"


def test_a_pack_that_cannot_be_read_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["PACK.zip"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "cannot read PACK.zip" in captured.err and captured.out == ""


@pytest.mark.parametrize("command", ["timestamp", "pdf"])
def test_timestamp_and_pdf_with_unusable_inputs_exit_3(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # timestamp lacks --data/--digest; pdf cannot read "file". Their checks are tested in
    # test_timestamp.py and test_pdf.py.
    assert main([command, "file"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "error" in captured.err


def test_installed_script_runs_a_check_end_to_end() -> None:
    script = Path(sys.executable).parent / "evidence-verify"
    assert script.exists(), f"{script} is missing: install the project with pip install -e ."
    done = subprocess.run(
        [str(script), *inclusion_args(), "--json"], capture_output=True, text=True, check=False
    )
    assert done.returncode == EXIT_PASSED, done.stderr
    assert json.loads(done.stdout)["verdict"] == "PASSED"
    usage = subprocess.run([str(script), "inclusion"], capture_output=True, text=True, check=False)
    assert usage.returncode == EXIT_USAGE
