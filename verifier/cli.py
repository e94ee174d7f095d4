"""The ``evidence-verify`` command: RFC 9162 proofs, C2SP checkpoints, RFC 3161 timestamp
tokens and PAdES/CMS signatures in PDFs.

Exit codes are shared by every subcommand: 0 passed, 1 failed, 2 indeterminate, 3 usage
or I/O error (argparse's own usage errors included). Output is a human summary, or one JSON
object with ``--json``; on exit code 3 nothing is printed to standard output.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography import x509

from verifier._internal.merkle import HASH_SIZE, verify_consistency, verify_inclusion
from verifier.errors import Verdict, VerificationError, VerifierKeyError
from verifier.models import Checkpoint, CheckResult, VerifierKey

if TYPE_CHECKING:
    import httpx

__all__ = ["EXIT_FAILED", "EXIT_INDETERMINATE", "EXIT_PASSED", "EXIT_USAGE", "main"]

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INDETERMINATE = 2
EXIT_USAGE = 3

_EXIT_CODES = {
    Verdict.PASSED: EXIT_PASSED,
    Verdict.FAILED: EXIT_FAILED,
    Verdict.INDETERMINATE: EXIT_INDETERMINATE,
}
_SUBCOMMANDS = ("inclusion", "consistency", "checkpoint", "timestamp", "pdf", "monitor")
_PLANNED_SUBCOMMANDS: tuple[str, ...] = ()
_PROG = "evidence-verify"
_DIGITS = re.compile(r"[0-9]+")


class UsageError(Exception):
    """The command line or its inputs cannot be used; maps to exit code 3."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors raise ``UsageError`` instead of exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}")


def _size(text: str) -> int:
    """Parse a tree size or leaf index: plain ASCII decimal digits only."""
    if not _DIGITS.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative decimal integer")
    return int(text)


def _hash(text: str, what: str = "hash") -> bytes:
    """Decode one base64 SHA-256 hash, refusing anything that is not exactly 32 bytes."""
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{what} {text!r} is not standard base64") from None
    if len(value) != HASH_SIZE:
        raise UsageError(f"{what} {text!r} is {len(value)} bytes; a SHA-256 hash is 32 bytes")
    return value


def _proof(text: str) -> list[bytes]:
    """Decode a comma-separated list of base64 hashes; the empty string is an empty proof."""
    if text == "":
        return []
    return [_hash(part, f"proof element {n}") for n, part in enumerate(text.split(","))]


def _build_parser() -> _Parser:
    json_flag = _Parser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object"
    )
    parser = _Parser(
        prog=_PROG,
        description="Independently verify Evidence Ledger proofs and checkpoints.",
        epilog="exit codes: 0 passed, 1 failed, 2 indeterminate, 3 usage or I/O error; "
        "evidence-verify PACK.zip --help: verify an evidence pack",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    inclusion = commands.add_parser(
        "inclusion", parents=[json_flag], help="RFC 9162 inclusion proof check"
    )
    inclusion.add_argument("--leaf-hash", required=True, metavar="B64")
    inclusion.add_argument("--index", required=True, type=_size, metavar="I")
    inclusion.add_argument("--size", required=True, type=_size, metavar="N")
    inclusion.add_argument("--root", required=True, metavar="B64")
    inclusion.add_argument("--proof", required=True, metavar="B64[,B64...]")

    consistency = commands.add_parser(
        "consistency", parents=[json_flag], help="RFC 9162 consistency proof check"
    )
    consistency.add_argument("--size1", required=True, type=_size, metavar="M")
    consistency.add_argument("--size2", required=True, type=_size, metavar="N")
    consistency.add_argument("--root1", required=True, metavar="B64")
    consistency.add_argument("--root2", required=True, metavar="B64")
    consistency.add_argument("--proof", required=True, metavar="B64[,B64...]")

    checkpoint = commands.add_parser(
        "checkpoint", parents=[json_flag], help="C2SP signed-note check of a checkpoint"
    )
    checkpoint.add_argument("file", metavar="FILE", help="the signed checkpoint, or - for stdin")
    checkpoint.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="VKEY",
        help="trusted verifier key name+keyid+base64 (repeatable)",
    )

    timestamp = commands.add_parser(
        "timestamp", parents=[json_flag], help="RFC 3161 timestamp token check"
    )
    timestamp.add_argument("token", metavar="TOKEN.tsr", help="TimeStampResp or token, DER")
    over = timestamp.add_mutually_exclusive_group(required=True)
    over.add_argument("--data", metavar="FILE", help="the timestamped data")
    over.add_argument("--digest", metavar="HEX", help="the data's hash, in hex")
    _trust_root_option(timestamp, "--trust-root", "TSA trust anchor")
    timestamp.add_argument("--nonce", type=_size, metavar="N", help="the request's nonce")

    pdf = commands.add_parser(
        "pdf", parents=[json_flag], help="PAdES/CMS check of every signature in a PDF"
    )
    pdf.add_argument("file", metavar="FILE.pdf")
    _trust_root_option(pdf, "--trust-root", "signer trust anchor")
    _trust_root_option(pdf, "--tsa-root", "TSA trust anchor (default: the --trust-root ones)")
    add_revocation_options(pdf)

    from verifier.monitor import add_monitor_parser  # follows a live ledger (docs/verification.md)

    add_monitor_parser(commands, [json_flag])
    return parser


def _trust_root_option(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    parser.add_argument(
        flag, action="append", default=[], metavar="PEM", help=f"{what}, PEM file (repeatable)"
    )


def add_revocation_options(parser: argparse.ArgumentParser) -> None:
    """``--crl FILE`` and ``--ocsp FILE``: revocation data for the PDF signatures, never
    fetched from the network."""
    parser.add_argument(
        "--crl", action="append", default=[], metavar="FILE",
        help="a CRL (DER or PEM) to check the PDF signers' certificates against (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--ocsp", action="append", default=[], metavar="FILE",
        help="an OCSP response (DER) about a PDF signer's certificate (repeatable)",
    )  # fmt: skip


def revocation_files(args: argparse.Namespace) -> tuple[list[bytes], list[bytes]]:
    """The ``--crl`` and ``--ocsp`` files' bytes, each checked to parse (else a usage error)."""
    from verifier.pdf import RevocationDataError, load_crl, load_ocsp_response

    crls = [_read_input(path) for path in args.crl]
    ocsps = [_read_input(path) for path in args.ocsp]
    for flag, paths, items, load in (
        ("--crl", args.crl, crls, load_crl),
        ("--ocsp", args.ocsp, ocsps, load_ocsp_response),
    ):
        for path, data in zip(paths, items, strict=True):
            try:
                load(data)
            except RevocationDataError as error:
                raise UsageError(f"{flag} {path}: {error}") from None
    return crls, ocsps


def _certificates(paths: Sequence[str], flag: str) -> list[x509.Certificate]:
    """Load every certificate of each PEM (or DER) file; a file without one is a usage error."""
    found: list[x509.Certificate] = []
    for path in paths:
        raw = _read_input(path)
        try:
            found.extend(
                x509.load_pem_x509_certificates(raw)
                if b"-----BEGIN" in raw
                else [x509.load_der_x509_certificate(raw)]
            )
        except ValueError:
            raise UsageError(f"{flag} {path}: not a PEM or DER X.509 certificate") from None
    return found


def _run_timestamp(args: argparse.Namespace) -> CheckResult:
    from verifier.timestamp import check_timestamp  # pyHanko loads only when needed

    roots = _certificates(args.trust_root, "--trust-root")
    token = _read_input(args.token)
    if args.digest is not None:
        try:
            digest = bytes.fromhex(args.digest)
        except ValueError:
            raise UsageError(f"--digest {args.digest!r} is not hexadecimal") from None
        if len(digest) not in (28, 32, 48, 64):
            raise UsageError(f"--digest is {len(digest)} bytes; no SHA-2/SHA-3 hash has that size")
        return check_timestamp(token, digest=digest, trust_roots=roots, nonce=args.nonce).result
    data = _read_input(args.data)
    return check_timestamp(token, data=data, trust_roots=roots, nonce=args.nonce).result


def _run_pdf(args: argparse.Namespace) -> CheckResult:
    from verifier.pdf import check_pdf  # pyHanko loads only when needed

    roots = _certificates(args.trust_root, "--trust-root")
    tsa_roots = _certificates(args.tsa_root, "--tsa-root") if args.tsa_root else None
    crls, ocsps = revocation_files(args)
    report = check_pdf(
        _read_input(args.file),
        trust_roots=roots,
        tsa_roots=tsa_roots,
        crls=crls,
        ocsp_responses=ocsps,
    )
    if args.json:
        details = {
            **report.result.details,
            "etsi_report": report.etsi_report,
            "etsi_report_xml": report.etsi_report_xml,
        }
    else:  # one line per signature for people
        lines = [
            f"{f.field_name} ({f.kind}) {f.indication}"
            + (f"/{f.sub_indication}" if f.sub_indication else "")
            + f" by {f.signer_subject}; timestamp {f.timestamp_time or 'none'}; "
            f"changes after it: {f.modification_level}"
            for f in report.signatures
        ]
        details = {**report.result.details, "signatures": "\n    " + "\n    ".join(lines)}
    return CheckResult(report.result.check, report.result.verdict, report.result.reason, details)


def _run_inclusion(args: argparse.Namespace) -> CheckResult:
    leaf, root = _hash(args.leaf_hash, "leaf hash"), _hash(args.root, "root")
    proof = _proof(args.proof)
    details = {
        "leaf_hash": args.leaf_hash,
        "index": args.index,
        "size": args.size,
        "root": args.root,
    }
    try:
        verify_inclusion(leaf, args.index, args.size, proof, root)
    except VerificationError as error:
        return CheckResult.from_error("inclusion", error, details)
    reason = f"leaf {args.index} is included in the tree of size {args.size} with this root"
    return CheckResult("inclusion", Verdict.PASSED, reason, details)


def _run_consistency(args: argparse.Namespace) -> CheckResult:
    if args.size1 == 0:
        raise UsageError(
            "--size1 must be at least 1: RFC 9162 section 2.1.4 defines consistency proofs "
            "only from a non-empty tree"
        )
    root1, root2 = _hash(args.root1, "root1"), _hash(args.root2, "root2")
    proof = _proof(args.proof)
    details = {"size1": args.size1, "size2": args.size2, "root1": args.root1, "root2": args.root2}
    try:
        verify_consistency(args.size1, args.size2, root1, root2, proof)
    except VerificationError as error:
        return CheckResult.from_error("consistency", error, details)
    reason = f"the tree of size {args.size2} extends the tree of size {args.size1}"
    return CheckResult("consistency", Verdict.PASSED, reason, details)


def _read_input(name: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror or error}") from error


def _run_checkpoint(args: argparse.Namespace) -> CheckResult:
    try:
        keys = [VerifierKey.from_string(vkey) for vkey in args.key]
    except VerifierKeyError as error:
        raise UsageError(f"--key: {error.reason}") from error
    message = _read_input(args.file)
    details: dict[str, Any] = {"file": args.file, "keys": [str(key) for key in keys]}
    try:
        checkpoint = Checkpoint.from_signed_note(message, keys)
    except VerifierKeyError as error:
        raise UsageError(f"--key: {error.reason}") from error
    except VerificationError as error:
        return CheckResult.from_error("checkpoint", error, details)
    details.update(
        origin=checkpoint.origin,
        size=checkpoint.size,
        root=base64.b64encode(checkpoint.root_hash).decode("ascii"),
        extensions=list(checkpoint.extensions),
    )
    reason = f"checkpoint of {checkpoint.origin} at size {checkpoint.size} is signed by its log key"
    return CheckResult("checkpoint", Verdict.PASSED, reason, details)


_RUNNERS: dict[str, Callable[[argparse.Namespace], CheckResult]] = {
    "inclusion": _run_inclusion,
    "consistency": _run_consistency,
    "checkpoint": _run_checkpoint,
    "timestamp": _run_timestamp,
    "pdf": _run_pdf,
}


def _report(result: CheckResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.summary(), ensure_ascii=False))
        return
    print(f"{result.verdict.value}: {result.check}: {result.reason}")
    for name, value in result.details.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"  {name}: {shown}")


def _first_positional(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _dispatch(argv: Sequence[str], http_client: httpx.Client | None = None) -> int:
    # pyHanko logs warnings (every failed path build, soft-fail revocation); the report
    # already says what matters, in its own words
    logging.getLogger("pyhanko").addHandler(logging.NullHandler())
    logging.getLogger("pyhanko").propagate = False
    parser = _build_parser()
    command = _first_positional(argv)
    if command is None and not any(arg in ("-h", "--help") for arg in argv):
        raise UsageError(f"a command or a pack path is needed\n{parser.format_usage().rstrip()}")
    if command in _PLANNED_SUBCOMMANDS:  # pragma: no cover (none planned at the moment)
        raise UsageError(f"{command} verification is not available in this version")
    if command is not None and command not in _SUBCOMMANDS:
        from verifier._internal.packcli import run_pack  # evidence-verify PACK.zip ...

        return run_pack(argv, http_client=http_client)
    args = parser.parse_args(argv)
    if args.command == "monitor":
        from verifier.monitor import run_monitor

        return run_monitor(args, http_client=http_client)
    result = _RUNNERS[args.command](args)
    _report(result, args.json)
    return _EXIT_CODES[result.verdict]


def main(argv: Sequence[str] | None = None, *, http_client: httpx.Client | None = None) -> int:
    """Run ``evidence-verify`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    ``http_client`` is the ``httpx.Client`` the online modes (``--ledger``, ``monitor``) use
    instead of opening their own (tests pass a FastAPI ``TestClient``).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(arguments, http_client)
    except UsageError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_request:  # --help and argparse's own exits
        code = exit_request.code
        return code if isinstance(code, int) else EXIT_USAGE
    except Exception:  # a bug must never read as "failed" (1) or "passed" (0)
        print(f"{_PROG}: internal error\n{traceback.format_exc()}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
