"""Online checks against a running ledger: is a checkpoint we verified still part of its log?

The ledger's log endpoints (docs/api.md) are read with an API key of any reading role:

* ``GET /v1/log/checkpoint``: the latest signed checkpoint, C2SP signed-note text;
* ``GET /v1/log/consistency?first=M&second=N``: ``{"first", "second", "first_root",
  "second_root", "proof"}``, hashes in standard base64.

Nothing the ledger answers is trusted on its word. The latest checkpoint must be signed by
a ledger key the caller gives, and the consistency proof is checked (RFC 9162 section
2.1.4.2) between the roots the verifier already holds: the known checkpoint's and the
latest signed one's, never the roots the same answer states. :func:`compare_with_log` is
the one comparison both the pack's online step (``evidence-verify PACK.zip --ledger URL``)
and the monitor (``verifier.monitor``) use.

HTTP goes through an ``httpx.Client``; pass ``client=`` (for instance a FastAPI
``TestClient``, itself an ``httpx.Client``) or ``transport=`` to talk to anything but the
network.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from verifier._internal.merkle import HASH_SIZE, verify_consistency
from verifier._internal.note import VerifierKey
from verifier.errors import ProofError, UntrustedNoteError, Verdict, VerificationError
from verifier.models import Checkpoint
from verifier.pack import STEPS, Indication, PackReport, StepResult

__all__ = [
    "ONLINE_STEP",
    "ConsistencyAnswer",
    "LedgerAnswerError",
    "LedgerError",
    "LedgerUnreachable",
    "LogClient",
    "LogComparison",
    "add_online_step",
    "check_still_in_log",
    "compare_with_log",
]

ONLINE_STEP = "still in the log"
"""Name of the step ``--ledger`` adds after the pack's own steps."""

DEFAULT_TIMEOUT = 10.0
MAX_NOTE_BYTES = 64 * 1024
MAX_JSON_BYTES = 1024 * 1024
_USER_AGENT = "evidence-verify (independent verifier)"


class LedgerError(Exception):
    """The ledger could not be asked, or its answer cannot be used (never a verdict on it)."""

    def __init__(self, reason: str, body: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body
        """The answer's bytes, if any arrived (kept for the record)."""


class LedgerUnreachable(LedgerError):
    """No answer: network error, timeout, or an HTTP error status (e.g. a refused API key)."""


class LedgerAnswerError(LedgerError):
    """An answer arrived but is not what the endpoint returns (garbage)."""


@dataclass(frozen=True)
class ConsistencyAnswer:
    """A parsed ``GET /v1/log/consistency`` answer; nothing in it is trusted yet."""

    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: tuple[bytes, ...]
    raw: bytes
    """The answer exactly as received."""


def _api_base(url: str) -> str:
    base = url.rstrip("/")
    parsed = httpx.URL(base)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"--ledger {url!r} is not an http:// or https:// URL")
    return base if base.endswith("/v1") else base + "/v1"


class LogClient:
    """Reads a ledger's log endpoints. ``url`` is the API's base URL (with or without the
    ``/v1`` prefix); ``api_key`` an ``elk_...`` key of role app, legal or auditor."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self._base = _api_base(url)
        self._headers = {"User-Agent": _USER_AGENT, "Accept": "*/*"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._own = client is None
        self._client = client or httpx.Client(transport=transport, follow_redirects=False)
        self._timeout = timeout

    def close(self) -> None:
        if self._own:
            self._client.close()

    def __enter__(self) -> LogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, int], limit: int) -> bytes:
        target = f"{self._base}{path}"
        try:
            with self._client.stream(
                "GET", target, params=dict(params), headers=self._headers, timeout=self._timeout
            ) as response:
                if response.status_code != 200:
                    body = response.read()[:2000]
                    raise LedgerUnreachable(
                        f"GET {target} answered HTTP {response.status_code}{_problem_text(body)}",
                        body,
                    )
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > limit:
                        raise LedgerAnswerError(
                            f"GET {target} answered more than {limit} bytes", b"".join(chunks)
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            why = str(error) or type(error).__name__
            raise LedgerUnreachable(f"cannot reach {target}: {why}") from error

    def latest_checkpoint(self) -> bytes:
        """The latest signed checkpoint note's bytes, unverified."""
        return self._get("/log/checkpoint", {}, MAX_NOTE_BYTES)

    def consistency(self, first: int, second: int) -> ConsistencyAnswer:
        """The consistency proof from size ``first`` to ``second``, parsed but unverified."""
        raw = self._get("/log/consistency", {"first": first, "second": second}, MAX_JSON_BYTES)
        return _parse_consistency(raw, first, second)


def _problem_text(body: bytes) -> str:
    """``: detail`` from an RFC 9457 problem answer, if it is one."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    if isinstance(value, dict):
        text = value.get("detail") or value.get("title")
        if isinstance(text, str):
            return f": {text[:300]}"
    return ""


def _hash(value: Any, what: str, raw: bytes) -> bytes:
    if not isinstance(value, str):
        raise LedgerAnswerError(f"the consistency answer's {what} is not a string", raw)
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LedgerAnswerError(f"the consistency answer's {what} is not base64", raw) from None
    if len(decoded) != HASH_SIZE:
        raise LedgerAnswerError(
            f"the consistency answer's {what} is {len(decoded)} bytes, not {HASH_SIZE}", raw
        )
    return decoded


def _parse_consistency(raw: bytes, first: int, second: int) -> ConsistencyAnswer:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise LedgerAnswerError("the consistency answer is not JSON", raw) from None
    if not isinstance(value, dict):
        raise LedgerAnswerError("the consistency answer is not a JSON object", raw)
    sizes = value.get("first"), value.get("second")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in sizes):
        raise LedgerAnswerError("the consistency answer lacks integer first and second", raw)
    if sizes != (first, second):
        raise LedgerAnswerError(
            f"asked for the proof {first} -> {second}, got {sizes[0]} -> {sizes[1]}", raw
        )
    proof = value.get("proof")
    if not isinstance(proof, list):
        raise LedgerAnswerError("the consistency answer's proof is not a list", raw)
    return ConsistencyAnswer(
        first, second,
        _hash(value.get("first_root"), "first_root", raw),
        _hash(value.get("second_root"), "second_root", raw),
        tuple(_hash(item, f"proof element {n}", raw) for n, item in enumerate(proof)),
        raw,
    )  # fmt: skip


# -- the comparison ------------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


@dataclass(frozen=True)
class LogComparison:
    """What the ledger's latest checkpoint says about a checkpoint verified before."""

    verdict: Verdict
    outcome: str
    """``first`` (nothing known before), ``same``, ``extended``: PASSED; ``fork``,
    ``rollback``: FAILED; ``unreachable``, ``garbage``, ``untrusted``, ``other log``:
    INDETERMINATE."""
    reason: str
    known: Checkpoint | None
    latest: Checkpoint | None = None
    latest_note: bytes | None = None
    """The latest checkpoint's note as the ledger served it."""
    consistency: bytes | None = None
    """The consistency answer's bytes as received, if one was asked for."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED


def _describe(checkpoint: Checkpoint) -> str:
    return f"size {checkpoint.size} (root {_b64(checkpoint.root_hash)})"


def compare_with_log(
    client: LogClient, keys: Sequence[VerifierKey], known: Checkpoint | None
) -> LogComparison:
    """Fetch the log's latest checkpoint, verify it with ``keys`` and prove it extends
    ``known`` (a checkpoint already verified, or ``None`` the first time)."""
    details: dict[str, Any] = {"ledger": client.url}
    if known is not None:
        details.update(known_size=known.size, known_root=_b64(known.root_hash))

    def undecided(outcome: str, reason: str, **more: Any) -> LogComparison:
        return LogComparison(
            Verdict.INDETERMINATE, outcome, reason, known, details={**details, **more}
        )

    try:
        note = client.latest_checkpoint()
    except LedgerError as error:
        outcome = "garbage" if isinstance(error, LedgerAnswerError) else "unreachable"
        return undecided(outcome, f"the ledger's latest checkpoint: {error.reason}")
    try:
        latest = Checkpoint.from_signed_note(note, keys)
    except UntrustedNoteError as error:
        return undecided(
            "untrusted",
            f"the ledger's latest checkpoint is not signed by a given ledger key: {error.reason}",
        )
    except VerificationError as error:
        return undecided(
            "garbage", f"the ledger's answer is not a valid signed checkpoint: {error.reason}"
        )
    details.update(latest_size=latest.size, latest_root=_b64(latest.root_hash))
    result = LogComparison(Verdict.PASSED, "first", "", known, latest, note, details=details)
    if known is None:
        return replace(
            result,
            reason=f"the log's latest checkpoint, {_describe(latest)}, is signed by the ledger "
            "key (nothing verified before to compare it with)",
        )
    if latest.origin != known.origin:
        return replace(
            undecided(
                "other log",
                f"the ledger serves log {latest.origin!r}, not {known.origin!r}",
            ),
            latest=latest,
            latest_note=note,
        )
    failed = replace(result, verdict=Verdict.FAILED)
    if latest.size < known.size:
        return replace(
            failed,
            outcome="rollback",
            reason=f"ROLLBACK: the log's latest signed checkpoint is {_describe(latest)}, "
            f"smaller than the checkpoint verified before, {_describe(known)}",
        )
    if latest.size == known.size:
        if latest.root_hash != known.root_hash:
            return replace(
                failed,
                outcome="fork",
                reason=f"FORK: the log's signed checkpoint of size {latest.size} has root "
                f"{_b64(latest.root_hash)}, but the checkpoint verified before at that size has "
                f"root {_b64(known.root_hash)}",
            )
        return replace(
            result,
            outcome="same",
            reason=f"the log's latest checkpoint is the one verified before, {_describe(known)}",
        )
    if known.size == 0:  # every tree extends the empty one (RFC 9162 section 2.1.4)
        return replace(
            result,
            outcome="extended",
            reason=f"the log grew from the empty tree to {_describe(latest)}",
        )
    try:
        answer = client.consistency(known.size, latest.size)
    except LedgerError as error:
        outcome = "garbage" if isinstance(error, LedgerAnswerError) else "unreachable"
        return replace(
            undecided(outcome, f"the consistency proof {known.size} -> {latest.size}: "
                      f"{error.reason}"),
            latest=latest, latest_note=note, consistency=error.body,
        )  # fmt: skip
    with_proof = replace(
        result, consistency=answer.raw, details={**details, "proof_hashes": len(answer.proof)}
    )
    try:
        verify_consistency(
            known.size, latest.size, known.root_hash, latest.root_hash, list(answer.proof)
        )
    except ProofError as error:
        stated = ""
        if answer.first_root != known.root_hash:
            stated = f"; the log now states root {_b64(answer.first_root)} for size {known.size}"
        return replace(
            with_proof,
            verdict=Verdict.FAILED,
            outcome="fork",
            reason=f"FORK: the log's signed checkpoint, {_describe(latest)}, is not consistent "
            f"with the checkpoint verified before, {_describe(known)}: {error.reason}{stated}",
        )
    if (answer.first_root, answer.second_root) != (known.root_hash, latest.root_hash):
        return replace(
            with_proof,
            verdict=Verdict.FAILED,
            outcome="fork",
            reason=f"FORK: the log states roots {_b64(answer.first_root)} (size {known.size}) "
            f"and {_b64(answer.second_root)} (size {latest.size}), not those of its signed "
            f"checkpoints, {_describe(known)} and {_describe(latest)}",
        )
    return replace(
        with_proof,
        outcome="extended",
        reason=f"the log's latest checkpoint, {_describe(latest)}, extends {_describe(known)} "
        f"(consistency proof of {len(answer.proof)} hash"
        f"{'' if len(answer.proof) == 1 else 'es'} verified)",
    )


# -- the pack's online step --------------------------------------------------------------------


_SUB_INDICATIONS = {
    "fork": "HASH_FAILURE",
    "rollback": "HASH_FAILURE",
    "unreachable": "TRY_LATER",
    "garbage": "FORMAT_FAILURE",
    "untrusted": "NO_CERTIFICATE_CHAIN_FOUND",
    "other log": "SIG_CONSTRAINTS_FAILURE",
}


def _pack_checkpoint(report: PackReport) -> Checkpoint | None:
    """The pack's checkpoint as step 5 verified it, or ``None`` if it did not pass."""
    if len(report.steps) < 5 or not report.step(5).passed:
        return None
    found = report.step(5).details
    try:
        root = base64.b64decode(str(found["root"]), validate=True)
        return Checkpoint(str(found["origin"]), int(found["size"]), root)
    except (KeyError, TypeError, ValueError, binascii.Error, VerificationError):
        return None


def check_still_in_log(
    report: PackReport, client: LogClient, keys: Sequence[VerifierKey]
) -> StepResult:
    """The online step: the pack's checkpoint (verified in step 5) is part of the log the
    ledger serves now. FAILED on a fork or rollback; INDETERMINATE if the ledger cannot be
    asked or its answer cannot be used."""
    number = len(STEPS) + 1
    checkpoint = _pack_checkpoint(report)
    if checkpoint is None:
        return StepResult(
            number, ONLINE_STEP, Verdict.INDETERMINATE,
            "not checked: the pack's checkpoint did not verify with a given ledger key (step 5)",
            "NO_CERTIFICATE_CHAIN_FOUND",
        )  # fmt: skip
    found = compare_with_log(client, keys, checkpoint)
    if found.passed:
        reason = (
            f"the pack's checkpoint {checkpoint.size} is still in the log at {client.url}: "
            + found.reason
        )
        return StepResult(number, ONLINE_STEP, Verdict.PASSED, reason, None, found.details)
    return StepResult(
        number, ONLINE_STEP, found.verdict, found.reason,
        _SUB_INDICATIONS.get(found.outcome, "GENERIC"), found.details,
    )  # fmt: skip


def add_online_step(
    report: PackReport, client: LogClient, keys: Sequence[VerifierKey]
) -> PackReport:
    """``report`` with the online step appended and the overall indication recomputed with
    the rule of ``verify_pack`` (first failed step, else first indeterminate one)."""
    steps = (*report.steps, check_still_in_log(report, client, keys))
    failed = [s for s in steps if s.verdict is Verdict.FAILED]
    undecided = [s for s in steps if s.verdict is Verdict.INDETERMINATE]
    if failed:
        first = failed[0]
        indication, sub = Indication.TOTAL_FAILED, first.sub_indication
        reason = f"step {first.number} ({first.name}) failed: {first.reason}"
    elif undecided:
        first = undecided[0]
        indication, sub = Indication.INDETERMINATE, first.sub_indication
        reason = f"step {first.number} ({first.name}) is indeterminate: {first.reason}"
    else:
        indication, sub = Indication.TOTAL_PASSED, None
        reason = f"all {len(steps)} steps passed"
    return replace(report, indication=indication, sub_indication=sub, reason=reason, steps=steps)
