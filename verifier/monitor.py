"""``evidence-verify monitor``: follow a ledger's log, alert on a fork or a rollback, and
optionally cosign each verified checkpoint as a C2SP tlog-cosignature witness.

Each round fetches the latest checkpoint, verifies it with the ledger key the operator
gave (never a key the ledger offers), and compares it with the last checkpoint verified
before, kept in the state directory (:func:`verifier.online.compare_with_log`): the same
size must have the same root, a larger one must come with a consistency proof that
verifies, a smaller one is a rollback. Only a checkpoint that passes replaces the stored
one (written to a temporary file, then renamed). A fork or rollback leaves the state as it
was and writes the conflicting evidence (both notes, the consistency answer and a
summary) into ``alerts/`` for the record.

State directory layout::

    DIR/checkpoint                  the last verified checkpoint, the signed note as served
    DIR/cosignatures/<size>         this witness's cosignature line for that checkpoint
    DIR/alerts/<time>-<kind>-<known size>-<served size>/
        alert.json                  what was found, sizes, roots, reason
        known.checkpoint            the checkpoint verified before
        served.checkpoint           the conflicting checkpoint the ledger served
        consistency.json            the consistency answer, if one was asked for
    DIR/.lock                       held while a round runs (one monitor per directory)

Exit codes: 0 all good, 1 fork or rollback, 2 the ledger could not be reached or answered
something unusable, 3 usage error or an unusable state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verifier._internal.cosignature import Cosigner, add_signature_line
from verifier._internal.note import VerifierKey, split_signed_note
from verifier.errors import Verdict, VerificationError, VerifierKeyError
from verifier.models import Checkpoint, CheckResult

if TYPE_CHECKING:
    import httpx

    from verifier.online import LogClient, LogComparison

__all__ = ["Monitor", "MonitorRound", "MonitorStateError", "add_monitor_parser", "run_monitor"]

API_KEY_ENV = "EVIDENCE_VERIFY_API_KEY"
STATE_FILE = "checkpoint"
COSIGNATURES = "cosignatures"
ALERTS = "alerts"

_EXIT = {Verdict.PASSED: 0, Verdict.FAILED: 1, Verdict.INDETERMINATE: 2}


class MonitorStateError(Exception):
    """The state directory cannot be used (unreadable, another log's, or in use)."""


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, fsync it,
    then rename it over ``path``: a reader sees the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@dataclass(frozen=True)
class MonitorRound:
    """One round: the comparison, and what the monitor did about it."""

    comparison: LogComparison
    state_updated: bool = False
    cosignature: str | None = None
    """This witness's cosignature line, if it cosigned."""
    cosigned_note: str | None = None
    """The served checkpoint note with the cosignature line added."""
    alert_dir: Path | None = None
    alert_error: str | None = None
    """Why the evidence of a fork or rollback could not be written, if it could not."""
    cosigner_key: str | None = None
    """The witness's verifier key (type 0x04), for those who will require its cosignature."""

    @property
    def verdict(self) -> Verdict:
        return self.comparison.verdict

    @property
    def exit_code(self) -> int:
        return _EXIT[self.verdict]

    def result(self, state_dir: Path) -> CheckResult:
        found = self.comparison
        details: dict[str, Any] = {"outcome": found.outcome, **found.details}
        details["state"] = str(state_dir / STATE_FILE) + (
            " (updated)" if self.state_updated else " (unchanged)"
        )
        reason = found.reason
        if self.alert_dir is not None:
            details["evidence"] = str(self.alert_dir)
            reason += (
                f"; the checkpoint verified before is kept, the conflicting evidence is in "
                f"{self.alert_dir}"
            )
        if self.alert_error is not None:
            reason += f"; the checkpoint verified before is kept, but {self.alert_error}"
        if self.cosignature is not None and found.latest is not None:
            details["cosignature"] = str(state_dir / COSIGNATURES / str(found.latest.size))
        return CheckResult("monitor", found.verdict, reason, details)


class Monitor:
    """Follows one log from one state directory."""

    def __init__(
        self,
        client: LogClient,
        state_dir: str | Path,
        keys: Sequence[VerifierKey],
        *,
        cosigner: Cosigner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.state_dir = Path(state_dir)
        self.keys = list(keys)
        self.cosigner = cosigner
        self.clock = clock

    def known(self) -> tuple[Checkpoint | None, bytes | None]:
        """The last verified checkpoint and its note, re-verified with the given keys."""
        path = self.state_dir / STATE_FILE
        try:
            note = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as error:
            raise MonitorStateError(f"cannot read {path}: {error.strerror or error}") from error
        try:
            return Checkpoint.from_signed_note(note, self.keys), note
        except VerificationError as error:
            raise MonitorStateError(
                f"the stored checkpoint {path} does not verify with the given ledger key "
                f"({error.reason}); this state directory follows another log or key"
            ) from error

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            lock = (self.state_dir / ".lock").open("a")
        except OSError as error:
            raise MonitorStateError(
                f"cannot use the state directory {self.state_dir}: {error.strerror or error}"
            ) from error
        with lock:
            try:
                import fcntl
            except ImportError:  # pragma: no cover (not POSIX): no lock
                yield
                return
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise MonitorStateError(
                    f"another monitor is using the state directory {self.state_dir}"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def check(self) -> MonitorRound:
        """Run one round. Raises ``MonitorStateError`` if the state cannot be used."""
        from verifier.online import compare_with_log

        with self._locked():
            known, known_note = self.known()
            found = compare_with_log(self.client, self.keys, known)
            if found.verdict is Verdict.FAILED:
                recorded = self._record_alert(found, known_note)
                if isinstance(recorded, str):
                    return MonitorRound(found, alert_error=recorded)
                return MonitorRound(found, alert_dir=recorded)
            if found.verdict is not Verdict.PASSED or found.latest is None:
                return MonitorRound(found)
            assert found.latest_note is not None
            updated = found.outcome in ("first", "extended")
            try:
                if updated:
                    _write_atomically(self.state_dir / STATE_FILE, found.latest_note)
                line = cosigned = None
                if self.cosigner is not None:
                    line, cosigned = self._cosign(found.latest, found.latest_note)
            except OSError as error:
                raise MonitorStateError(
                    f"cannot write to {self.state_dir}: {error.strerror or error}"
                ) from error
            witness = str(self.cosigner.key) if self.cosigner is not None else None
            return MonitorRound(found, updated, line, cosigned, cosigner_key=witness)

    def _cosign(self, checkpoint: Checkpoint, note: bytes) -> tuple[str, str]:
        assert self.cosigner is not None
        text, _signatures = split_signed_note(note)  # the body exactly as the log signed it
        line = self.cosigner.cosign(text, int(self.clock()))
        _write_atomically(
            self.state_dir / COSIGNATURES / str(checkpoint.size), line.encode("utf-8")
        )
        return line, add_signature_line(note, line)

    def _record_alert(self, found: LogComparison, known_note: bytes | None) -> Path | str:
        known, latest = found.known, found.latest
        stamp = datetime.fromtimestamp(self.clock(), UTC)
        name = (
            f"{stamp:%Y%m%dT%H%M%SZ}-{found.outcome}-"
            f"{known.size if known else 'none'}-{latest.size if latest else 'none'}"
        )
        alerts = self.state_dir / ALERTS
        summary = {
            "kind": found.outcome,
            "detected_at": stamp.isoformat().replace("+00:00", "Z"),
            "reason": found.reason,
            **found.details,
        }
        files = {"alert.json": json.dumps(summary, indent=2, ensure_ascii=False).encode() + b"\n"}
        if known_note is not None:
            files["known.checkpoint"] = known_note
        if found.latest_note is not None:
            files["served.checkpoint"] = found.latest_note
        if found.consistency is not None:
            files["consistency.json"] = found.consistency
        try:
            alerts.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=alerts, prefix=".alert-"))
            for file_name, data in files.items():
                (staging / file_name).write_bytes(data)
            target, n = alerts / name, 1
            while target.exists():
                n += 1
                target = alerts / f"{name}.{n}"
            staging.rename(target)
            _fsync_directory(alerts)
        except OSError as error:  # the alert itself must not be lost: report, do not raise
            return f"the evidence could not be written to {alerts}: {error.strerror or error}"
        return target


# -- command line ------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the interval must be above 0 seconds")
    return value


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def add_monitor_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``monitor`` subcommand to ``evidence-verify``'s subparsers."""
    monitor = commands.add_parser(
        "monitor",
        parents=list(parents),
        help="follow a ledger's log: alert on a fork or rollback, optionally cosign",
        description="Follow a ledger's log from a state directory: verify each new checkpoint "
        "with the ledger key, prove it extends the last verified one, alert on a fork or "
        "rollback, and optionally add a C2SP tlog-cosignature as a witness.",
        epilog="exit codes: 0 all good, 1 fork or rollback, 2 ledger unreachable or answering "
        "garbage, 3 usage error or unusable state",
    )
    monitor.add_argument("--ledger", required=True, metavar="URL", help="the API's base URL")
    monitor.add_argument("--state", required=True, metavar="DIR", help="the state directory")
    monitor.add_argument(
        "--ledger-key", action="append", required=True, metavar="VKEY",
        help="the ledger's verifier key name+keyid+base64 (repeatable)",
    )  # fmt: skip
    monitor.add_argument(
        "--api-key", metavar="KEY",
        help=f"an API key of role app, legal or auditor (default: ${API_KEY_ENV})",
    )  # fmt: skip
    monitor.add_argument(
        "--witness-key", metavar="FILE",
        help="cosign each verified checkpoint with this Ed25519 key (PEM PKCS#8, or "
        "PRIVATE+KEY+name+keyid+base64(0x04||seed))",
    )  # fmt: skip
    monitor.add_argument("--witness-name", metavar="NAME", help="the witness's key name")
    mode = monitor.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="check once and exit (the default)")
    mode.add_argument("--interval", type=_positive, metavar="S", help="check every S seconds")
    monitor.add_argument(
        "--rounds", type=_count, metavar="N", help="with --interval: stop after N rounds"
    )
    monitor.add_argument(
        "--timeout", type=_positive, default=10.0, metavar="S", help="HTTP timeout (default 10)"
    )


def _print_round(found: MonitorRound, state_dir: Path, as_json: bool) -> None:
    from verifier.cli import _report

    result = found.result(state_dir)
    if as_json:
        summary = result.summary()
        if found.cosigned_note is not None:
            summary["details"]["cosigned_note"] = found.cosigned_note
            summary["details"]["cosignature_line"] = found.cosignature
            summary["details"]["witness_key"] = found.cosigner_key
        print(json.dumps(summary, ensure_ascii=False), flush=True)
    else:
        _report(result, False)
        if found.cosigned_note is not None:
            print(f"cosigned checkpoint (witness key {found.cosigner_key}):")
            print(found.cosigned_note, end="", flush=True)
    if found.verdict is Verdict.FAILED:
        print(f"evidence-verify monitor: ALERT: {result.reason}", file=sys.stderr, flush=True)


def run_monitor(
    args: argparse.Namespace,
    *,
    http_client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run ``evidence-verify monitor`` from parsed arguments; return the exit code."""
    from verifier.cli import UsageError, _read_input
    from verifier.online import LogClient

    if args.rounds is not None and args.interval is None:
        raise UsageError("--rounds needs --interval")
    if args.witness_name is not None and args.witness_key is None:
        raise UsageError("--witness-name needs --witness-key")
    try:
        keys = [VerifierKey.from_string(vkey) for vkey in args.ledger_key]
    except VerifierKeyError as error:
        raise UsageError(f"--ledger-key: {error.reason}") from error
    cosigner = None
    if args.witness_key is not None:
        try:
            cosigner = Cosigner.from_key_file(_read_input(args.witness_key), args.witness_name)
        except VerifierKeyError as error:
            raise UsageError(f"--witness-key: {error.reason}") from error
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        client = LogClient(args.ledger, api_key=api_key, client=http_client, timeout=args.timeout)
    except ValueError as error:
        raise UsageError(str(error)) from error
    state_dir = Path(args.state)
    monitor = Monitor(client, state_dir, keys, cosigner=cosigner)
    code, rounds = 0, 0
    with client:
        try:
            while True:
                try:
                    found = monitor.check()
                except MonitorStateError as error:
                    raise UsageError(str(error)) from error
                _print_round(found, state_dir, args.json)
                code, rounds = found.exit_code, rounds + 1
                if args.interval is None or found.verdict is Verdict.FAILED:
                    return code
                if args.rounds is not None and rounds >= args.rounds:
                    return code
                sleep(args.interval)
        except KeyboardInterrupt:
            return code if rounds else _EXIT[Verdict.INDETERMINATE]
