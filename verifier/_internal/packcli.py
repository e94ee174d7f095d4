"""``evidence-verify PACK.zip [--trust-root PEM]... [--tsa-root PEM]... [--ledger-key VKEY]...
[--app-keys JWKS] [--crl FILE]... [--ocsp FILE]... [--ledger URL [--api-key KEY]] [--json]``:
the pack mode of the command line.

``verifier.cli`` hands over any command line whose first operand is not a subcommand. The
exit codes are the shared ones: 0 TOTAL_PASSED, 1 TOTAL_FAILED, 2 INDETERMINATE, 3 usage or
I/O error (nothing on standard output then). ``--tsa-root`` defaults to the ``--trust-root``
certificates, as for the ``pdf`` subcommand, so the command printed in the court report
(both roots given as ``--trust-root``) works as written. ``--ledger URL`` adds the online
step "still in the log" (``verifier.online``) after the pack's own steps.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verifier.cli import (
    EXIT_FAILED,
    EXIT_INDETERMINATE,
    EXIT_PASSED,
    UsageError,
    _certificates,
    _Parser,
    _read_input,
    add_revocation_options,
    revocation_files,
)
from verifier.errors import Verdict, VerifierKeyError
from verifier.models import VerifierKey
from verifier.pack import STEPS, PackReport, verify_pack

if TYPE_CHECKING:
    import httpx

__all__ = ["run_pack"]

_EXIT = {
    Verdict.PASSED: EXIT_PASSED,
    Verdict.FAILED: EXIT_FAILED,
    Verdict.INDETERMINATE: EXIT_INDETERMINATE,
}


def _parser() -> _Parser:
    parser = _Parser(
        prog="evidence-verify",
        usage="%(prog)s PACK.zip [--trust-root PEM]... [--tsa-root PEM]... "
        "[--ledger-key VKEY]... [--app-keys JWKS] [--crl FILE]... [--ocsp FILE]... "
        "[--ledger URL [--api-key KEY]] [--json]",
        description="Verify an Evidence Ledger evidence pack (docs/evidence-pack.md, section 9).",
        epilog="exit codes: 0 passed, 1 failed, 2 indeterminate, 3 usage or I/O error",
    )
    parser.add_argument("pack", metavar="PACK.zip")
    parser.add_argument(
        "--trust-root", action="append", default=[], metavar="PEM",
        help="signing CA root (and TSA root unless --tsa-root is given), PEM (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--tsa-root", action="append", default=[], metavar="PEM",
        help="TSA root for checkpoint and PDF timestamps, PEM (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--ledger-key", action="append", default=[], metavar="VKEY",
        help="the ledger's verifier key name+keyid+base64, from its operator (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--app-keys", metavar="JWKS", help="JWK set of the upstream apps' keys (JSON file)"
    )
    add_revocation_options(parser)
    parser.add_argument(
        "--ledger", metavar="URL",
        help="also check online that the pack's checkpoint is still in this ledger's log",
    )  # fmt: skip
    parser.add_argument(
        "--api-key", metavar="KEY",
        help="API key (role app, legal or auditor) for --ledger (default: "
        "$EVIDENCE_VERIFY_API_KEY)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-progress", action="store_true", help="never show a progress bar on stderr"
    )
    return parser


def _app_keys(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(_read_input(path))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UsageError(f"--app-keys {path}: not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise UsageError(f"--app-keys {path}: not a JWK set (an object with a keys list)")
    return value


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    overall = bar.add_task("verifying", total=len(STEPS))
    current: dict[str, Any] = {}

    def update(name: str, done: int, total: int) -> None:
        if name not in current:
            current.clear()
            current[name] = True
            step = STEPS.index(name) if name in STEPS else 0
            bar.update(overall, completed=step, description=f"step {step + 1}/13 {name}")
        if total > 1:
            step = STEPS.index(name) if name in STEPS else 0
            bar.update(overall, completed=step + done / total)

    with bar:
        yield update


def _print_report(report: PackReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.summary(), ensure_ascii=False))
        return
    sub = f" ({report.sub_indication})" if report.sub_indication else ""
    print(f"{report.indication.value}{sub}: {report.path}")
    print(f"  {report.reason}")
    for step in report.steps:
        sub = f" {step.sub_indication}" if step.sub_indication else ""
        print(f"  {step.number:>2}. {step.name}: {step.verdict.value}{sub}: {step.reason}")


def _online(
    report: PackReport, args: Any, keys: Sequence[VerifierKey], http_client: httpx.Client | None
) -> PackReport:
    from verifier.online import LogClient, add_online_step

    api_key = args.api_key or os.environ.get("EVIDENCE_VERIFY_API_KEY") or None
    try:
        client = LogClient(args.ledger, api_key=api_key, client=http_client)
    except ValueError as error:
        raise UsageError(str(error)) from error
    with client:
        return add_online_step(report, client, keys)


def run_pack(argv: Sequence[str], *, http_client: httpx.Client | None = None) -> int:
    """Run the pack mode; usage errors raise ``UsageError`` (exit code 3 in ``main``)."""
    args = _parser().parse_args(list(argv))
    if args.api_key is not None and args.ledger is None:
        raise UsageError("--api-key needs --ledger")
    # pyHanko logs every failed path build with a traceback; the report already says why
    logging.getLogger("pyhanko").addHandler(logging.NullHandler())
    logging.getLogger("pyhanko").propagate = False
    try:
        keys = [VerifierKey.from_string(vkey) for vkey in args.ledger_key]
    except VerifierKeyError as error:
        raise UsageError(f"--ledger-key: {error.reason}") from error
    trust_roots = _certificates(args.trust_root, "--trust-root")
    tsa_roots = _certificates(args.tsa_root, "--tsa-root") if args.tsa_root else trust_roots
    app_keys = _app_keys(args.app_keys)
    crls, ocsps = revocation_files(args)
    path = Path(args.pack)
    if not path.is_file():
        raise UsageError(f"cannot read {args.pack}: no such file")
    show = not args.no_progress and sys.stderr.isatty() and path.stat().st_size > 1 << 20
    try:
        with _progress_bar(show) as progress:
            report = verify_pack(
                path, ledger_keys=keys, trust_roots=trust_roots, tsa_roots=tsa_roots,
                app_keys=app_keys, progress=progress, crls=crls, ocsp_responses=ocsps,
            )  # fmt: skip
    except OSError as error:
        raise UsageError(f"cannot read {args.pack}: {error.strerror or error}") from error
    if args.ledger is not None:
        report = _online(report, args, keys, http_client)
    _print_report(report, args.json)
    return _EXIT[report.verdict]
