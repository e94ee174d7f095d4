"""Evidence pack verification: the thirteen numbered steps of docs/evidence-pack.md section 9.

``verify_pack(path, ledger_keys=..., trust_roots=..., tsa_roots=...)`` opens the ZIP, runs
every step and returns a :class:`PackReport`: one :class:`StepResult` per step (PASSED,
FAILED or INDETERMINATE, with an ETSI EN 319 102-1 style sub-indication and a specific
reason) and the overall indication TOTAL_PASSED, TOTAL_FAILED or INDETERMINATE.

Trust comes only from the caller (the auditor): the ledger's verifier keys, the signing CA
roots and the TSA roots. The key and roots inside the pack are compared with them, never
used in their place. Every step runs even when an earlier one failed, on whatever could be
read, so one tampered member shows up in every step it touches; a step that has nothing to
work on says which earlier step left it so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from verifier._internal.jws import JwsError, public_key_from_jwk, verify_compact_jws
from verifier._internal.merkle import verify_consistency, verify_inclusion
from verifier._internal.note import VerifierKey, split_signed_note
from verifier._internal.packfiles import (
    SAFE_MEMBER,
    ConsistencyFile,
    PackFormatError,
    TlogProof,
    parse_consistency,
    parse_tlog_proof,
    read_members,
)
from verifier._internal.pdfparts import PdfParseError, embedded_files, signature_facts
from verifier._internal.workflow import check_workflow
from verifier.errors import (
    CheckpointError,
    NoteFormatError,
    NoteSignatureError,
    ProofError,
    UntrustedNoteError,
    Verdict,
    VerificationError,
)
from verifier.models import Checkpoint

__all__ = [
    "FORMAT",
    "STEPS",
    "Indication",
    "PackReport",
    "Progress",
    "StepResult",
    "SubIndication",
    "verify_pack",
]

FORMAT = "evidence-ledger-pack/1"

STEPS: tuple[str, ...] = (
    "container",
    "manifest",
    "events",
    "chain",
    "checkpoint signature",
    "inclusion",
    "checkpoint timestamps",
    "consistency",
    "documents",
    "signed PDFs",
    "workflow",
    "app signatures",
    "report",
)
"""Step names, in order; step ``n`` is ``STEPS[n - 1]``."""

#: ``progress(step_name, done, total)``, called as each step goes.
Progress = Callable[[str, int, int], None]

_HEX64 = frozenset("0123456789abcdef")
_ENVELOPE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "event_id": str,
    "stream_id": str,
    "sequence": int,
    "type": str,
    "prev": (str, type(None)),
    "server_time": str,
    "actor": dict,
    "context": dict,
    "data": dict,
    "identity_factors": list,
}


class Indication(StrEnum):
    """The overall result, in the words of ETSI EN 319 102-1 section 5.1.3."""

    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"


class SubIndication(StrEnum):
    """The ETSI EN 319 102-1 sub-indications the pack steps use (Table 5)."""

    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    NO_SIGNING_CERTIFICATE_FOUND = "NO_SIGNING_CERTIFICATE_FOUND"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"
    GENERIC = "GENERIC"


@dataclass(frozen=True)
class StepResult:
    """The outcome of one numbered step."""

    number: int
    name: str
    verdict: Verdict
    reason: str
    sub_indication: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED

    def summary(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "name": self.name,
            "verdict": self.verdict.value,
            "sub_indication": self.sub_indication,
            "reason": self.reason,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class PackReport:
    """Everything ``verify_pack`` found: the overall indication and each step."""

    path: str
    indication: Indication
    sub_indication: str | None
    reason: str
    steps: tuple[StepResult, ...]
    etsi_reports: Mapping[str, Any] = field(default_factory=dict)
    """The ETSI TS 119 102-2 report of each signed PDF, rendered as JSON, by pack path."""
    seconds: float = 0.0
    etsi_reports_xml: Mapping[str, str | None] = field(default_factory=dict)
    """pyHanko's own ETSI TS 119 102-2 XML report of each signed PDF, by pack path."""

    @property
    def verdict(self) -> Verdict:
        """PASSED, FAILED or INDETERMINATE, as the shared exit codes use it."""
        return {
            Indication.TOTAL_PASSED: Verdict.PASSED,
            Indication.TOTAL_FAILED: Verdict.FAILED,
            Indication.INDETERMINATE: Verdict.INDETERMINATE,
        }[self.indication]

    def step(self, number: int) -> StepResult:
        """The result of step ``number`` (1-based, as in the spec)."""
        return self.steps[number - 1]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready mapping, shaped like the other checks' output plus the steps."""
        return {
            "verdict": self.verdict.value,
            "check": "pack",
            "indication": self.indication.value,
            "sub_indication": self.sub_indication,
            "reason": self.reason,
            "details": {"path": self.path, "seconds": round(self.seconds, 3)},
            "steps": [step.summary() for step in self.steps],
            "etsi_reports": {path: _jsonable(r) for path, r in self.etsi_reports.items()},
            "etsi_reports_xml": dict(self.etsi_reports_xml),
        }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# -- how a step ends early -----------------------------------------------------------------


class _Stop(Exception):
    def __init__(
        self, verdict: Verdict, sub: SubIndication | str | None, reason: str, **details: Any
    ) -> None:
        super().__init__(reason)
        self.verdict, self.sub, self.reason, self.details = verdict, sub, reason, details


def _fail(sub: SubIndication | str, reason: str, **details: Any) -> NoReturn:
    raise _Stop(Verdict.FAILED, sub, reason, **details)


def _undecided(sub: SubIndication | str, reason: str, **details: Any) -> NoReturn:
    raise _Stop(Verdict.INDETERMINATE, sub, reason, **details)


def _sub_of(error: VerificationError) -> SubIndication:
    if isinstance(error, UntrustedNoteError):
        return SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    if isinstance(error, NoteSignatureError):
        return SubIndication.SIG_CRYPTO_FAILURE
    if isinstance(error, NoteFormatError | CheckpointError):
        return SubIndication.FORMAT_FAILURE
    return SubIndication.HASH_FAILURE


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _listing(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- what the steps share --------------------------------------------------------------------


@dataclass
class _Event:
    leaf_index: int
    event_hash: bytes
    canonical: bytes
    envelope: dict[str, Any]


@dataclass
class _State:
    path: Path
    ledger_keys: Sequence[VerifierKey]
    trust_roots: Sequence[x509.Certificate]
    tsa_roots: Sequence[x509.Certificate]
    app_keys: Mapping[str, Any] | None
    progress: Progress
    crls: Sequence[bytes] = ()
    ocsp_responses: Sequence[bytes] = ()
    members: dict[str, bytes] | None = None
    manifest: dict[str, Any] | None = None
    events: list[_Event] = field(default_factory=list)
    events_complete: bool = False
    pack_checkpoint: Checkpoint | None = None
    pack_note: bytes = b""
    """The pack's checkpoint as its note text says (step 5 says whether it is trusted)."""
    etsi_reports: dict[str, Any] = field(default_factory=dict)
    etsi_reports_xml: dict[str, str | None] = field(default_factory=dict)
    pdf_findings: dict[str, Any] = field(default_factory=dict)
    """check_pdf's per-signature findings (incl. modification level), by pack path."""

    def need_members(self) -> dict[str, bytes]:
        if self.members is None:
            _undecided(SubIndication.FORMAT_FAILURE, "not checked: the container was refused")
        return self.members

    def need_manifest(self) -> dict[str, Any]:
        self.need_members()
        if self.manifest is None:
            _undecided(SubIndication.FORMAT_FAILURE, "not checked: the manifest is unreadable")
        return self.manifest

    def member(self, path: Any, what: str) -> bytes:
        members = self.need_members()
        if not isinstance(path, str) or path not in members:
            _fail(SubIndication.FORMAT_FAILURE, f"{what} ({path!r}) is not in the pack")
        return members[path]

    def by_type(self, *types: str) -> list[_Event]:
        return [e for e in self.events if e.envelope.get("type") in types]


# -- step 1: container ------------------------------------------------------------------


def _step_container(state: _State) -> tuple[str, dict[str, Any]]:
    def tick(done: int, total: int) -> None:
        state.progress("container", done, total)

    try:
        members = read_members(state.path, tick)
    except PackFormatError as error:
        _fail(SubIndication.FORMAT_FAILURE, str(error))
    state.members = members
    if "manifest.json" not in members:
        _fail(SubIndication.FORMAT_FAILURE, "the pack has no manifest.json")
    try:
        manifest = json.loads(members["manifest.json"])
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        _fail(SubIndication.FORMAT_FAILURE, f"manifest.json is not JSON: {error}")
    if not isinstance(manifest, dict):
        _fail(SubIndication.FORMAT_FAILURE, "manifest.json is not a JSON object")
    state.manifest = manifest
    return f"{len(members)} members, every name safe and unique", {"members": len(members)}


# -- step 2: manifest ---------------------------------------------------------------------


def _step_manifest(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    members = state.need_members()
    if manifest.get("format") != FORMAT:
        _fail(
            SubIndication.FORMAT_FAILURE,
            f"format is {manifest.get('format')!r}; this verifier reads only {FORMAT!r}",
        )
    files = manifest.get("files")
    if not isinstance(files, list):
        _fail(SubIndication.FORMAT_FAILURE, "the manifest has no files list")
    listed: dict[str, tuple[str, int]] = {}
    for entry in files:
        if not isinstance(entry, dict):
            _fail(SubIndication.FORMAT_FAILURE, "a files entry is not an object")
        name, digest, size = entry.get("path"), entry.get("sha256"), entry.get("size")
        if not isinstance(name, str) or not SAFE_MEMBER.fullmatch(name) or ".." in name:
            _fail(SubIndication.FORMAT_FAILURE, f"files lists an unsafe path {name!r}")
        if name == "manifest.json":
            _fail(SubIndication.FORMAT_FAILURE, "files lists manifest.json itself")
        if name in listed:
            _fail(SubIndication.FORMAT_FAILURE, f"files lists {name!r} twice")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX64:
            _fail(SubIndication.FORMAT_FAILURE, f"files entry {name!r} has no hex sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            _fail(SubIndication.FORMAT_FAILURE, f"files entry {name!r} has no size")
        listed[name] = (digest, size)
    present = set(members) - {"manifest.json"}
    unlisted = sorted(present - set(listed))
    missing = sorted(set(listed) - present)
    if unlisted:
        _fail(SubIndication.FORMAT_FAILURE, f"members not listed in files: {_listing(unlisted)}")
    if missing:
        _fail(SubIndication.FORMAT_FAILURE, f"files lists missing members: {_listing(missing)}")
    wrong: list[str] = []
    for number, (name, (digest, size)) in enumerate(sorted(listed.items()), start=1):
        data = members[name]
        if len(data) != size:
            wrong.append(f"{name} (size {len(data)}, manifest says {size})")
        elif hashlib.sha256(data).hexdigest() != digest:
            wrong.append(f"{name} (SHA-256 differs from the manifest)")
        if number % 1000 == 0:
            state.progress("manifest", number, len(listed))
    if wrong:
        _fail(
            SubIndication.HASH_FAILURE, f"members that do not match the manifest: {_listing(wrong)}"
        )
    return f"all {len(listed)} members listed with matching SHA-256 and size", {
        "files": len(listed)
    }


# -- step 3: events --------------------------------------------------------------------------


def _refuse_float(text: str) -> NoReturn:
    raise ValueError(f"a number with a fraction or exponent ({text}) is not allowed")


def _refuse_constant(text: str) -> NoReturn:
    raise ValueError(f"{text} is not JSON")


def _parse_line(number: int, raw: bytes) -> _Event:
    where = f"events.jsonl line {number}"
    try:
        line = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        _fail(SubIndication.FORMAT_FAILURE, f"{where} is not JSON")
    if not isinstance(line, dict):
        _fail(SubIndication.FORMAT_FAILURE, f"{where} is not a JSON object")
    leaf, event_hash, canonical = (line.get(k) for k in ("leaf_index", "event_hash", "canonical"))
    if not isinstance(leaf, int) or isinstance(leaf, bool) or leaf < 0:
        _fail(SubIndication.FORMAT_FAILURE, f"{where} has no leaf_index")
    if not isinstance(event_hash, str) or len(event_hash) != 64 or not set(event_hash) <= _HEX64:
        _fail(SubIndication.FORMAT_FAILURE, f"{where} has no lowercase hex event_hash")
    if not isinstance(canonical, str):
        _fail(SubIndication.FORMAT_FAILURE, f"{where} has no canonical")
    try:
        data = base64.b64decode(canonical, validate=True)
    except (binascii.Error, ValueError):
        _fail(SubIndication.FORMAT_FAILURE, f"{where}: canonical is not base64")
    where = f"event at leaf {leaf}"
    try:
        envelope = json.loads(data, parse_float=_refuse_float, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        _fail(SubIndication.FORMAT_FAILURE, f"{where}: canonical bytes are not JSON ({error})")
    if not isinstance(envelope, dict):
        _fail(SubIndication.FORMAT_FAILURE, f"{where}: canonical bytes are not a JSON object")
    if rfc8785.dumps(envelope) != data:
        _fail(
            SubIndication.FORMAT_FAILURE,
            f"{where}: canonical bytes are not the RFC 8785 encoding of the envelope",
        )
    for name, kind in _ENVELOPE_FIELDS.items():
        value = envelope.get(name)
        if name not in envelope or not isinstance(value, kind) or isinstance(value, bool):
            _fail(
                SubIndication.FORMAT_FAILURE,
                f"{where}: envelope field {name!r} is missing or mistyped",
            )
    return _Event(leaf, bytes.fromhex(event_hash), data, envelope)


def _step_events(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    task_id = manifest.get("task_id")
    raw = state.member("events.jsonl", "events.jsonl")
    if raw and not raw.endswith(b"\n"):
        _fail(SubIndication.FORMAT_FAILURE, "events.jsonl does not end with a newline")
    lines = raw.split(b"\n")[:-1] if raw else []
    if not lines:
        _fail(SubIndication.FORMAT_FAILURE, "events.jsonl holds no event")
    previous = -1
    problems: list[_Stop] = []
    for number, line in enumerate(lines, start=1):
        try:
            event = _parse_line(number, line)
        except _Stop as stop:
            problems.append(stop)
            continue
        digest = hashlib.sha256(b"\x00" + event.canonical).digest()
        if not hmac.compare_digest(digest, event.event_hash):
            problems.append(
                _Stop(
                    Verdict.FAILED,
                    SubIndication.HASH_FAILURE,
                    f"event at leaf {event.leaf_index}: SHA-256(0x00 || canonical) is "
                    f"{digest.hex()}, not its event_hash {event.event_hash.hex()}",
                )
            )
        if event.envelope["stream_id"] != task_id:
            problems.append(
                _Stop(
                    Verdict.FAILED,
                    SubIndication.FORMAT_FAILURE,
                    f"event at leaf {event.leaf_index} belongs to stream "
                    f"{event.envelope['stream_id']}, not the pack's task {task_id}",
                )
            )
        if event.leaf_index <= previous:
            problems.append(
                _Stop(
                    Verdict.FAILED,
                    SubIndication.FORMAT_FAILURE,
                    f"leaf_index {event.leaf_index} on line {number} does not increase "
                    f"(previous {previous})",
                )
            )
        previous = event.leaf_index
        state.events.append(event)
        if number % 1000 == 0:
            state.progress("events", number, len(lines))
    if problems:
        state.events_complete = len(state.events) == len(lines)
        first = problems[0]
        raise _Stop(first.verdict, first.sub, first.reason, problems=len(problems))
    state.events_complete = True
    summary = manifest.get("events")
    if isinstance(summary, dict):
        expected = {
            "count": len(state.events),
            "first_leaf": state.events[0].leaf_index,
            "last_leaf": state.events[-1].leaf_index,
        }
        for key, value in expected.items():
            if summary.get(key) != value:
                _fail(
                    SubIndication.FORMAT_FAILURE,
                    f"manifest events.{key} is {summary.get(key)!r}, events.jsonl has {value}",
                )
    return (
        f"{len(state.events)} events are RFC 8785 canonical, hash to their event_hash and are "
        "in increasing leaf order",
        {"events": len(state.events)},
    )


# -- step 4: chain ---------------------------------------------------------------------------


def _step_chain(state: _State) -> tuple[str, dict[str, Any]]:
    if not state.events:
        _undecided(SubIndication.FORMAT_FAILURE, "not checked: no event could be read (step 3)")
    previous: _Event | None = None
    for expected, event in enumerate(state.events, start=1):
        sequence, link = event.envelope["sequence"], event.envelope["prev"]
        if sequence != expected:
            _fail(
                SubIndication.HASH_FAILURE,
                f"event at leaf {event.leaf_index} has sequence {sequence}, expected {expected} "
                "(a gap, reordering or insertion)",
            )
        wanted = None if previous is None else previous.event_hash.hex()
        if link != wanted:
            _fail(
                SubIndication.HASH_FAILURE,
                f"event {sequence} (leaf {event.leaf_index}) has prev {link}, but the previous "
                f"event's hash is {wanted}",
            )
        previous = event
    if not state.events_complete:
        _undecided(
            SubIndication.FORMAT_FAILURE,
            f"the first {len(state.events)} events chain, the rest could not be read (step 3)",
        )
    return f"sequences 1..{len(state.events)} without gap; every prev links the previous event", {}


# -- step 5: checkpoint signature ----------------------------------------------------------


def _checkpoint_text(note: bytes) -> Checkpoint:
    """The checkpoint a note's text describes, signatures unchecked."""
    try:
        text, _signatures = split_signed_note(note)
        return Checkpoint.from_note_text(text)
    except VerificationError as error:
        _fail(SubIndication.FORMAT_FAILURE, f"the checkpoint is malformed: {error.reason}")


def _verify_signed_checkpoint(state: _State, note: bytes, origin: str, what: str) -> Checkpoint:
    """Step 5's rule for any checkpoint of the pack (the pack's, and later ones in step 8)."""
    claimed = _checkpoint_text(note)
    if claimed.origin != origin:
        _fail(
            SubIndication.SIG_CONSTRAINTS_FAILURE,
            f"{what} is of log {claimed.origin!r}, not the pack's log {origin!r}",
        )
    if not state.ledger_keys:
        _undecided(
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
            "no ledger verifier key was given (--ledger-key); the key inside the pack is never "
            "trusted on its own",
        )
    if not any(key.name == origin for key in state.ledger_keys):
        names = ", ".join(sorted({key.name for key in state.ledger_keys}))
        _fail(
            SubIndication.SIG_CONSTRAINTS_FAILURE,
            f"{what} is of log {origin!r}, but the ledger keys given are for {names}",
        )
    try:
        return Checkpoint.from_signed_note(note, state.ledger_keys, origin=origin)
    except UntrustedNoteError:
        _fail(
            SubIndication.SIG_CRYPTO_FAILURE,
            f"{what} is not signed by the given ledger key for {origin!r} (its signature lines "
            "are by other keys)",
        )
    except VerificationError as error:
        _fail(_sub_of(error), f"{what}: {error.reason}")


def _step_checkpoint(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    log = manifest.get("log")
    if not isinstance(log, dict):
        _fail(SubIndication.FORMAT_FAILURE, "the manifest has no log object")
    origin, size, root = log.get("origin"), log.get("checkpoint_size"), log.get("checkpoint_root")
    if not isinstance(origin, str) or not isinstance(size, int) or not isinstance(root, str):
        _fail(SubIndication.FORMAT_FAILURE, "manifest log lacks origin, checkpoint_size or root")
    note = state.member(f"checkpoints/{size}.checkpoint", "the pack's checkpoint")
    claimed = _checkpoint_text(note)
    state.pack_checkpoint, state.pack_note = claimed, note
    if claimed.origin != origin:
        _fail(
            SubIndication.SIG_CONSTRAINTS_FAILURE,
            f"the pack's checkpoint is of log {claimed.origin!r}, not the pack's log {origin!r}",
        )
    root_b64 = base64.b64encode(claimed.root_hash).decode("ascii")
    if claimed.size != size or root_b64 != root:
        _fail(
            SubIndication.HASH_FAILURE,
            f"the checkpoint note says size {claimed.size} root {root_b64}; the manifest says "
            f"size {size} root {root}",
        )
    checkpoint = _verify_signed_checkpoint(state, note, origin, "the pack's checkpoint")
    pack_key = manifest.get("log", {}).get("verifier_key")
    given = [str(key) for key in state.ledger_keys]
    details = {
        "origin": origin,
        "size": checkpoint.size,
        "root": root_b64,
        "pack_key_is_a_given_key": pack_key in given,
    }
    return f"checkpoint {checkpoint.size} of {origin} is signed by the given ledger key", details


# -- step 6: inclusion ---------------------------------------------------------------------


def _step_inclusion(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    members = state.need_members()
    checkpoint = state.pack_checkpoint
    if checkpoint is None:
        _undecided(SubIndication.FORMAT_FAILURE, "not checked: the pack's checkpoint is unreadable")
    if not state.events:
        _undecided(SubIndication.FORMAT_FAILURE, "not checked: no event could be read (step 3)")
    note = state.pack_note
    by_leaf = {f"proofs/{e.leaf_index}.tlog-proof": e for e in state.events}
    proofs = {name for name in members if name.startswith("proofs/")}
    extra = sorted(proofs - set(by_leaf))
    if extra and state.events_complete:
        _fail(SubIndication.FORMAT_FAILURE, f"proofs without an event: {_listing(extra)}")
    del manifest
    for done, (name, event) in enumerate(by_leaf.items(), start=1):
        where = f"the proof of leaf {event.leaf_index}"
        if name not in members:
            _fail(SubIndication.FORMAT_FAILURE, f"event at leaf {event.leaf_index} has no {name}")
        try:
            proof: TlogProof = parse_tlog_proof(members[name])
        except PackFormatError as error:
            _fail(SubIndication.FORMAT_FAILURE, f"{where} is malformed: {error}")
        if proof.index != event.leaf_index:
            _fail(SubIndication.FORMAT_FAILURE, f"{where} says index {proof.index}")
        if proof.checkpoint != note:
            _fail(
                SubIndication.FORMAT_FAILURE,
                f"{where} is against a checkpoint other than the pack's, byte for byte",
            )
        try:
            verify_inclusion(
                event.event_hash, event.leaf_index, checkpoint.size, proof.hashes,
                checkpoint.root_hash,
            )  # fmt: skip
        except ProofError as error:
            _fail(SubIndication.HASH_FAILURE, f"{where} does not verify: {error.reason}")
        if done % 1000 == 0:
            state.progress("inclusion", done, len(by_leaf))
    return f"{len(by_leaf)} inclusion proofs verify to checkpoint {checkpoint.size}", {
        "proofs": len(by_leaf)
    }


# -- step 7: checkpoint timestamps --------------------------------------------------------------


def _checkpoint_entries(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = manifest.get("checkpoints")
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        _fail(SubIndication.FORMAT_FAILURE, "the manifest has no checkpoints list")
    log = _object(manifest.get("log"))
    first = entries[0]
    if first.get("role") != "pack" or first.get("tree_size") != log.get("checkpoint_size"):
        _fail(SubIndication.FORMAT_FAILURE, "the first checkpoints entry is not the pack's")
    return entries


def _pem_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _pack_tsa_certificates(state: _State) -> list[x509.Certificate]:
    """Intermediate candidates from ``certificates/tsa/`` (never trusted as anchors)."""
    members = state.need_members()
    out: list[x509.Certificate] = []
    for name in sorted(members):
        if name.startswith("certificates/tsa/"):
            out.extend(_pem_certificates(members[name]))
    return out


def _step_timestamps(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    entries = _checkpoint_entries(manifest)
    from verifier.timestamp import check_timestamp

    extra = _pack_tsa_certificates(state)
    found: list[dict[str, Any]] = []
    undecided: list[tuple[str | None, str]] = []
    untimestamped: list[int] = []
    for entry in entries:
        size, stamp = entry.get("tree_size"), entry.get("timestamp")
        what = f"the timestamp of checkpoint {size}"
        if stamp is None:
            if entry.get("role") == "pack":
                _fail(SubIndication.SIGNED_DATA_NOT_FOUND, "the pack's checkpoint has no timestamp")
            untimestamped.append(int(size) if isinstance(size, int) else -1)
            continue
        if not isinstance(stamp, dict):
            _fail(SubIndication.FORMAT_FAILURE, f"{what}: manifest entry is not an object")
        note = state.member(entry.get("note"), f"checkpoint {size}")
        token = state.member(stamp.get("path"), what)
        report = check_timestamp(
            token, data=note, trust_roots=list(state.tsa_roots), certificates=extra
        )
        result = report.result
        sub = result.details.get("sub_indication")
        if result.verdict is Verdict.FAILED:
            _fail(sub or SubIndication.GENERIC, f"{what} does not verify: {result.reason}")
        if result.verdict is Verdict.INDETERMINATE:
            undecided.append((sub, f"{what}: {result.reason}"))
        found.append(
            {
                "tree_size": size,
                "gen_time": report.gen_time.isoformat() if report.gen_time else None,
                "tsa": report.tsa_subject,
                "verdict": result.verdict.value,
            }
        )
    details: dict[str, Any] = {
        "timestamps": found,
        "untimestamped_later_checkpoints": untimestamped,
    }
    if undecided:
        sub, reason = undecided[0]
        _undecided(sub or SubIndication.NO_CERTIFICATE_CHAIN_FOUND, reason, **details)
    reason = f"{len(found)} checkpoint timestamp(s) verify over their notes with a trusted TSA"
    if untimestamped:
        reason += f"; later checkpoint(s) {untimestamped} are not timestamped yet"
    return reason, details


# -- step 8: consistency ---------------------------------------------------------------------


def _step_consistency(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    members = state.need_members()
    entries = _checkpoint_entries(manifest)
    pack = state.pack_checkpoint
    if pack is None:
        _undecided(SubIndication.FORMAT_FAILURE, "not checked: the pack's checkpoint is unreadable")
    referenced = {e.get("note") for e in entries}
    referenced |= {
        e["timestamp"].get("path") for e in entries if isinstance(e.get("timestamp"), dict)
    }
    referenced |= {e.get("consistency_from_pack") for e in entries[1:]}
    stray = sorted(n for n in members if n.startswith("checkpoints/") and n not in referenced)
    if stray:
        _fail(
            SubIndication.FORMAT_FAILURE,
            f"checkpoint files no manifest entry names: {_listing(stray)}",
        )
    origin = str(_object(manifest.get("log")).get("origin"))
    checked: list[int] = []
    for entry in entries[1:]:
        size = entry.get("tree_size")
        what = f"later checkpoint {size}"
        note = state.member(entry.get("note"), what)
        later = _verify_signed_checkpoint(state, note, origin, what)
        if later.size != size or base64.b64encode(later.root_hash).decode() != entry.get(
            "root_hash"
        ):
            _fail(SubIndication.HASH_FAILURE, f"{what}: its note disagrees with the manifest entry")
        path = entry.get("consistency_from_pack")
        try:
            proof: ConsistencyFile = parse_consistency(
                state.member(path, f"{what}'s consistency proof")
            )
        except PackFormatError as error:
            _fail(SubIndication.FORMAT_FAILURE, f"{path} is malformed: {error}")
        if (proof.size1, proof.size2) != (pack.size, later.size):
            _fail(
                SubIndication.FORMAT_FAILURE,
                f"{path} is from size {proof.size1} to {proof.size2}, "
                f"not {pack.size} to {later.size}",
            )
        try:
            verify_consistency(pack.size, later.size, pack.root_hash, later.root_hash, proof.hashes)
        except ProofError as error:
            _fail(
                SubIndication.HASH_FAILURE,
                f"{what} is not consistent with the pack's: {error.reason}",
            )
        checked.append(later.size)
    if not checked:
        return "the pack holds no later checkpoint (nothing to prove)", {"later": []}
    return (
        f"later checkpoint(s) {checked} are signed and extend the pack's tree of size {pack.size}",
        {"later": checked},
    )


# -- step 9: documents ----------------------------------------------------------------------


def _recorded_hashes(state: _State) -> tuple[dict[str, list[str]], list[str]]:
    """Per original: the revision hashes its events record, in order; and the originals."""
    originals: list[str] = []
    revisions: dict[str, list[str]] = {}
    for event in state.events:
        kind, data = event.envelope.get("type"), event.envelope.get("data") or {}
        if kind == "task.created":
            for document in data.get("documents") or ():
                if isinstance(document, dict):
                    originals.append(str(document.get("sha256")))
        elif kind == "document.added":
            originals.append(str(data.get("sha256")))
        elif kind == "document.signed":
            revisions.setdefault(str(data.get("document_sha256")), []).append(
                str(data.get("revision_sha256"))
            )
        elif kind == "task.completed":
            for final in data.get("final_revisions") or ():
                if isinstance(final, dict):
                    revisions.setdefault(str(final.get("document_sha256")), []).append(
                        str(final.get("revision_sha256"))
                    )
    return revisions, originals


def _documents(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    documents = manifest.get("documents")
    if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
        _fail(SubIndication.FORMAT_FAILURE, "the manifest has no documents list")
    for document in documents:
        revisions = document.get("revisions")
        if not isinstance(revisions, list) or not all(isinstance(r, dict) for r in revisions):
            _fail(
                SubIndication.FORMAT_FAILURE,
                f"document {document.get('sha256')} has no revisions list",
            )
    return documents


def _step_documents(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    members = state.need_members()
    documents = _documents(manifest)
    recorded_revisions, recorded_originals = _recorded_hashes(state)
    listed: set[str] = set()
    files = 0
    for document in documents:
        sha = document.get("sha256")
        path = document.get("path")
        data = state.member(path, f"document {sha}")
        listed.add(str(path))
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha or not str(path).startswith(f"documents/{actual}."):
            _fail(
                SubIndication.HASH_FAILURE,
                f"document {path} hashes to {actual}, not {sha} (its name and manifest entry)",
            )
        if document.get("size") != len(data):
            _fail(
                SubIndication.FORMAT_FAILURE,
                f"document {path} is {len(data)} bytes, manifest says {document.get('size')}",
            )
        if sha not in recorded_originals:
            _fail(
                SubIndication.HASH_FAILURE,
                f"no task.created or document.added event records document {sha}",
            )
        files += 1
        hashes = []
        for number, revision in enumerate(document["revisions"], start=1):
            rpath, rsha = revision.get("path"), revision.get("sha256")
            rdata = state.member(rpath, f"revision {number} of {sha}")
            listed.add(str(rpath))
            ractual = hashlib.sha256(rdata).hexdigest()
            if revision.get("number") != number or not str(rpath).startswith(
                f"documents/{sha}/{number}-{ractual}."
            ):
                _fail(
                    SubIndication.HASH_FAILURE,
                    f"revision {rpath} hashes to {ractual}, which is not its name",
                )
            if ractual != rsha:
                _fail(
                    SubIndication.HASH_FAILURE, f"revision {rpath} hashes to {ractual}, not {rsha}"
                )
            hashes.append(ractual)
            files += 1
        expected = recorded_revisions.get(str(sha), [])
        if hashes != expected:
            _fail(
                SubIndication.HASH_FAILURE,
                f"the revisions of {sha} in the pack ({len(hashes)}) are not, in order, the ones "
                f"its document.signed and task.completed events record ({len(expected)})",
                pack=hashes,
                events=expected,
            )
    unrecorded = sorted(set(recorded_originals) - {str(d.get("sha256")) for d in documents})
    if unrecorded:
        _fail(
            SubIndication.SIGNED_DATA_NOT_FOUND,
            f"documents the events record but the pack lacks: {_listing(unrecorded)}",
        )
    stray = sorted(n for n in members if n.startswith("documents/") and n not in listed)
    if stray:
        _fail(
            SubIndication.FORMAT_FAILURE,
            f"document files no manifest entry names: {_listing(stray)}",
        )
    return f"{files} document files hash to their names and to what the events record", {
        "files": files
    }


# -- step 10: signed PDFs ----------------------------------------------------------------------


def _pdf_module() -> Any | None:
    try:
        return importlib.import_module("verifier.pdf")
    except ModuleNotFoundError as error:
        if error.name != "verifier.pdf":
            raise
        return None


def _check_pdf(state: _State, pdf: bytes, path: str) -> tuple[Verdict, str | None, str]:
    module = _pdf_module()
    if module is None:
        return (
            Verdict.INDETERMINATE,
            SubIndication.GENERIC,
            "PDF signature checking is not installed",
        )
    try:
        report = module.check_pdf(
            pdf,
            trust_roots=list(state.trust_roots),
            tsa_roots=list(state.tsa_roots),
            crls=list(state.crls),
            ocsp_responses=list(state.ocsp_responses),
        )
    except Exception as error:  # a PDF that breaks the validator is not a valid PDF
        reason = f"the PDF cannot be validated ({type(error).__name__}: {error})"
        return Verdict.FAILED, SubIndication.FORMAT_FAILURE, reason
    state.etsi_reports[path] = getattr(report, "etsi_report", None)
    state.etsi_reports_xml[path] = getattr(report, "etsi_report_xml", None)
    result = report.result
    details = result.details if isinstance(result.details, Mapping) else {}
    state.pdf_findings[path] = details.get("signatures")
    sub = details.get("sub_indication")
    return result.verdict, sub, result.reason


def _check_certificate_files(state: _State, prefix: str, expected: set[str]) -> None:
    """Each ``<prefix><sha256>.pem`` starts with the certificate whose DER hashes to its
    name, one of the certificates the signatures use (section 7)."""
    members = state.need_members()
    for name in sorted(n for n in members if n.startswith(prefix)):
        chain = _pem_certificates(members[name])
        if not chain:
            _fail(SubIndication.FORMAT_FAILURE, f"{name} holds no PEM certificate")
        der = chain[0].public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).hexdigest()
        if name != f"{prefix}{digest}.pem":
            _fail(
                SubIndication.SIG_CONSTRAINTS_FAILURE,
                f"{name}: its certificate ({chain[0].subject.rfc4514_string()}) does not hash "
                "to its name (a swapped certificate)",
            )
        if digest not in expected:
            _fail(
                SubIndication.SIG_CONSTRAINTS_FAILURE,
                f"{name} is not the certificate of any signature in the signed documents",
            )


def _step_pdfs(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    documents = _documents(manifest)
    signed_events: dict[str, list[_Event]] = {}
    for event in state.by_type("document.signed"):
        signed_events.setdefault(str(event.envelope["data"].get("document_sha256")), []).append(
            event
        )
    undecided: list[tuple[str | None, str]] = []
    seen_certificates: set[str] = set()
    checked = signatures = 0
    for done, document in enumerate(documents, start=1):
        sha = str(document.get("sha256"))
        revisions = document["revisions"]
        if not revisions:
            continue
        previous = state.member(document.get("path"), f"document {sha}")
        chain: list[bytes] = []
        for number, revision in enumerate(revisions, start=1):
            data = state.member(revision.get("path"), f"revision {number} of {sha}")
            if not data.startswith(previous):
                _fail(
                    SubIndication.HASH_FAILURE,
                    f"revision {number} of {sha} is not an incremental update of the "
                    f"{'original' if number == 1 else f'revision {number - 1}'} (its bytes do not "
                    "start with the previous ones)",
                )
            chain.append(data)
            previous = data
        final = chain[-1]
        try:
            facts = {f.field: f for f in signature_facts(final)}
        except PdfParseError as error:
            _fail(SubIndication.FORMAT_FAILURE, f"the last revision of {sha}: {error}")
        seen_certificates.update(f.certificate_sha256 for f in facts.values())
        for k, event in enumerate(signed_events.get(sha, []), start=1):
            recorded = event.envelope["data"].get("signature") or {}
            where = f"the signature recorded at leaf {event.leaf_index}"
            fact = facts.get(str(recorded.get("field")))
            if fact is None:
                _fail(
                    SubIndication.SIGNED_DATA_NOT_FOUND,
                    f"{where} (field {recorded.get('field')!r}) is not in the signed PDF",
                )
            for key in ("subject", "serial", "certificate_sha256"):
                if key in recorded and recorded[key] != getattr(fact, key):
                    _fail(
                        SubIndication.SIG_CONSTRAINTS_FAILURE,
                        f"{where}: the PDF's certificate {key} is {getattr(fact, key)!r}, the "
                        f"event records {recorded[key]!r}",
                    )
            if k <= len(chain) and fact.covered_until != len(chain[k - 1]):
                _fail(
                    SubIndication.FORMAT_FAILURE,
                    f"{where} does not close revision {k} (it covers {fact.covered_until} bytes, "
                    f"the revision has {len(chain[k - 1])})",
                )
            signatures += 1
        path = str(revisions[-1].get("path"))
        verdict, sub, reason = _check_pdf(state, final, path)
        if verdict is Verdict.FAILED:
            _fail(sub or SubIndication.GENERIC, f"{path}: {reason}")
        if verdict is Verdict.INDETERMINATE:
            undecided.append((sub, f"{path}: {reason}"))
        checked += 1
        state.progress("signed PDFs", done, len(documents))
    _check_certificate_files(state, "certificates/signers/", seen_certificates)
    revocation = _object(manifest.get("revocation"))
    details = {
        "signed_documents": checked,
        "signatures_matched_to_events": signatures,
        "pdf_signatures": {
            path: found
            for path, found in state.pdf_findings.items()
            if path != _object(manifest.get("report")).get("path")
        },
        "revocation_data": bool(revocation.get("available")),
        "revocation_note": revocation.get("note"),
    }
    if undecided:
        sub, reason = undecided[0]
        _undecided(sub or SubIndication.NO_CERTIFICATE_CHAIN_FOUND, reason, **details)
    if not checked:
        return "the task has no signed document", details
    return (
        f"{checked} signed document(s): every revision extends the previous one, {signatures} "
        "signature(s) match their events, and every signature validates",
        details,
    )


# -- step 11: workflow ------------------------------------------------------------------------


def _step_workflow(state: _State) -> tuple[str, dict[str, Any]]:
    if not state.events:
        _undecided(SubIndication.FORMAT_FAILURE, "not checked: no event could be read (step 3)")
    findings, acts = check_workflow([(e.leaf_index, e.envelope) for e in state.events])
    if findings:
        _fail(
            SubIndication.SIG_CONSTRAINTS_FAILURE,
            str(findings[0]),
            findings=[str(f) for f in findings],
        )
    return f"{acts} approval and signing act(s) follow the route with their identity checks", {
        "acts": acts
    }


# -- step 12: app signatures -----------------------------------------------------------------


def _jwks(state: _State) -> tuple[dict[str, Mapping[str, Any]], str] | None:
    source: Any = state.app_keys
    where = "the auditor's JWK set"
    if source is None:
        members = state.need_members()
        if "app-keys.jwks.json" not in members:
            return None
        where = "app-keys.jwks.json"
        try:
            source = json.loads(members["app-keys.jwks.json"])
        except (ValueError, UnicodeDecodeError, RecursionError):
            _fail(SubIndication.FORMAT_FAILURE, "app-keys.jwks.json is not JSON")
    keys = source.get("keys") if isinstance(source, Mapping) else None
    if not isinstance(keys, list):
        _fail(SubIndication.FORMAT_FAILURE, f"{where} has no keys list")
    return {str(k.get("kid")): k for k in keys if isinstance(k, Mapping)}, where


def _step_app_signatures(state: _State) -> tuple[str, dict[str, Any]]:
    signed = [e for e in state.events if "app_signature" in e.envelope]
    if not signed:
        return "no event carries an app signature", {"app_signed_events": 0}
    found = _jwks(state)
    if found is None:
        _undecided(
            SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
            f"{len(signed)} event(s) carry an app signature but app keys are not given "
            "(no app-keys.jwks.json and no --app-keys)",
        )
    keys, where = found
    missing: list[str] = []
    for event in signed:
        envelope = event.envelope
        signature = envelope["app_signature"]
        at = f"the app signature of the event at leaf {event.leaf_index}"
        if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
            _fail(SubIndication.FORMAT_FAILURE, f"{at} has no value")
        kid = str(signature.get("key_id"))
        jwk = keys.get(kid)
        if jwk is None:
            missing.append(kid)
            continue
        try:
            verified = verify_compact_jws(signature["value"], public_key_from_jwk(jwk))
        except JwsError as error:
            _fail(SubIndication.SIG_CRYPTO_FAILURE, f"{at}: {error}")
        if verified.header.get("kid", kid) != kid:
            _fail(
                SubIndication.SIG_CONSTRAINTS_FAILURE,
                f"{at}: the JWS names key {verified.header.get('kid')!r}, the event {kid!r}",
            )
        if jwk.get("app_id") not in (None, signature.get("app_id")):
            _fail(
                SubIndication.SIG_CONSTRAINTS_FAILURE,
                f"{at}: key {kid} belongs to app {jwk.get('app_id')!r}, "
                f"not {signature.get('app_id')!r}",
            )
        revoked = jwk.get("revoked_at")
        if isinstance(revoked, str) and revoked <= str(envelope["server_time"]):
            _fail(
                SubIndication.SIG_CONSTRAINTS_FAILURE,
                f"{at}: key {kid} was revoked at {revoked}, before the event",
            )
        try:
            body = json.loads(
                verified.payload, parse_float=_refuse_float, parse_constant=_refuse_constant
            )
        except (ValueError, UnicodeDecodeError, RecursionError):
            _fail(
                SubIndication.FORMAT_FAILURE, f"{at}: the signed payload is not JSON without floats"
            )
        if not isinstance(body, dict) or rfc8785.dumps(body) != verified.payload:
            _fail(
                SubIndication.FORMAT_FAILURE,
                f"{at}: the signed payload is not an RFC 8785 JSON object",
            )
        for name in ("event_id", "stream_id", "type"):
            if name in body and body[name] != envelope.get(name):
                _fail(
                    SubIndication.HASH_FAILURE,
                    f"{at}: the app signed {name} {body[name]!r}, "
                    f"the event has {envelope.get(name)!r}",
                )
        if "event_id" not in body:
            _fail(SubIndication.SIG_CONSTRAINTS_FAILURE, f"{at}: the signed body has no event_id")
    details = {
        "app_signed_events": len(signed),
        "keys_from": where,
        "missing_key_ids": sorted(set(missing)),
    }
    if missing:
        _undecided(
            SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
            f"app keys not given for key id(s) {_listing(sorted(set(missing)))} in {where}",
            **details,
        )
    return f"{len(signed)} app signature(s) verify and cover their events", details


# -- step 13: report -----------------------------------------------------------------------------


def _step_report(state: _State) -> tuple[str, dict[str, Any]]:
    manifest = state.need_manifest()
    members = state.need_members()
    entry = manifest.get("report")
    if entry is None:
        if "report.pdf" in members:
            _fail(
                SubIndication.FORMAT_FAILURE,
                "report.pdf is in the pack but the manifest's report is null",
            )
        return "the pack has no report (the manifest's report is null)", {"report": False}
    if not isinstance(entry, dict):
        _fail(SubIndication.FORMAT_FAILURE, "the manifest's report is not an object")
    pdf = state.member(entry.get("path"), "the report")
    try:
        attachments = embedded_files(pdf)
        facts = signature_facts(pdf)
    except PdfParseError as error:
        _fail(SubIndication.FORMAT_FAILURE, f"report.pdf: {error}")
    if attachments.get("events.jsonl") != members.get("events.jsonl"):
        _fail(
            SubIndication.HASH_FAILURE, "the report's embedded events.jsonl differs from the pack's"
        )
    try:
        inner = json.loads(attachments.get("manifest.json", b""))
    except (ValueError, UnicodeDecodeError, RecursionError):
        _fail(SubIndication.FORMAT_FAILURE, "the report has no readable embedded manifest.json")
    expected = dict(manifest)
    expected["report"] = None
    expected["files"] = [f for f in manifest.get("files", []) if f.get("path") != entry.get("path")]
    if inner != expected:
        keys = sorted(k for k in set(inner) | set(expected) if inner.get(k) != expected.get(k))
        _fail(
            SubIndication.HASH_FAILURE,
            f"the report's embedded manifest.json differs from the pack's in {_listing(keys)}",
        )
    if not entry.get("signed"):
        _fail(SubIndication.SIGNED_DATA_NOT_FOUND, "the manifest says the report is not signed")
    if not facts:
        _fail(SubIndication.SIGNED_DATA_NOT_FOUND, "report.pdf carries no signature")
    details: dict[str, Any] = {"signer": facts[0].subject}
    verdict, sub, reason = _check_pdf(state, pdf, str(entry.get("path")))
    if verdict is Verdict.FAILED:
        _fail(sub or SubIndication.GENERIC, f"report.pdf: {reason}", **details)
    if verdict is Verdict.INDETERMINATE:
        _undecided(
            sub or SubIndication.NO_CERTIFICATE_CHAIN_FOUND, f"report.pdf: {reason}", **details
        )
    return (
        "the report's signature validates and its embedded events and manifest equal the pack's",
        details,
    )


_STEP_FUNCTIONS: tuple[Callable[[_State], tuple[str, dict[str, Any]]], ...] = (
    _step_container,
    _step_manifest,
    _step_events,
    _step_chain,
    _step_checkpoint,
    _step_inclusion,
    _step_timestamps,
    _step_consistency,
    _step_documents,
    _step_pdfs,
    _step_workflow,
    _step_app_signatures,
    _step_report,
)


def _run_step(number: int, state: _State) -> StepResult:
    name = STEPS[number - 1]
    state.progress(name, 0, 1)
    if number > 1 and (state.members is None or state.manifest is None):
        return StepResult(
            number, name, Verdict.INDETERMINATE,
            "not checked: the container or its manifest was refused (step 1)",
            SubIndication.FORMAT_FAILURE,
        )  # fmt: skip
    try:
        reason, details = _STEP_FUNCTIONS[number - 1](state)
    except _Stop as stop:
        sub = None if stop.sub is None else str(stop.sub)
        return StepResult(number, name, stop.verdict, stop.reason, sub, stop.details)
    state.progress(name, 1, 1)
    return StepResult(number, name, Verdict.PASSED, reason, None, details)


def verify_pack(
    path: str | Path,
    *,
    ledger_keys: Sequence[VerifierKey] = (),
    trust_roots: Sequence[x509.Certificate] = (),
    tsa_roots: Sequence[x509.Certificate] = (),
    app_keys: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    crls: Sequence[bytes] = (),
    ocsp_responses: Sequence[bytes] = (),
) -> PackReport:
    """Verify the evidence pack at ``path`` with the auditor's trust anchors.

    ``ledger_keys``: the ledger's C2SP verifier keys (never taken from the pack);
    ``trust_roots``: signing CA roots for the PDFs' signatures; ``tsa_roots``: TSA roots for
    the checkpoint timestamps and the PDFs' timestamps; ``app_keys``: a JWK set for the app
    signatures, used instead of the pack's ``app-keys.jwks.json``; ``crls`` and
    ``ocsp_responses``: revocation data (DER) for the PDFs' signers, added to what the PDFs
    carry (nothing is fetched). Raises ``OSError`` if the
    file cannot be read; everything about its content is in the report.
    """
    started = time.perf_counter()
    path = Path(path)
    with path.open("rb"):
        pass  # an unreadable file is an I/O error, not a verdict
    state = _State(
        path, list(ledger_keys), list(trust_roots), list(tsa_roots), app_keys,
        progress or (lambda name, done, total: None), list(crls), list(ocsp_responses),
    )  # fmt: skip
    results = [_run_step(number, state) for number in range(1, len(STEPS) + 1)]
    failed = [r for r in results if r.verdict is Verdict.FAILED]
    undecided = [r for r in results if r.verdict is Verdict.INDETERMINATE]
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
        reason = f"all {len(results)} steps passed"
    return PackReport(
        str(path), indication, sub, reason, tuple(results), dict(state.etsi_reports),
        time.perf_counter() - started, dict(state.etsi_reports_xml),
    )  # fmt: skip
