"""Evidence packs: everything a court or an opposing expert needs to check one task, in a ZIP.

The format, ``evidence-ledger-pack/1``, is specified in ``docs/evidence-pack.md``;
:func:`export_pack` writes it. The pack is streamed member by member (documents from the
blob store in chunks, events read in batches, one proof at a time), so memory does not grow
with the size of the task. It is written to a temporary file beside the destination and
renamed into place only once complete: a crash or a refusal leaves nothing half-written.

Before anything is written the export settles on one signed, RFC 3161-timestamped
checkpoint covering the task's last event (waiting for the sealer if need be); every event
is proved into that checkpoint, and consistency proofs link it to the later checkpoints the
ledger knows. Everything the pack claims is re-checked while it is written (each event's
hash, its chain link, each inclusion and consistency proof with the independent
``verifier`` package, the checkpoint signature and timestamp, each document's hash): a
mismatch aborts the export with :class:`PackError`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson

import verifier
from evidence.errors import EvidenceError
from evidence.pack_material import (
    PdfMaterial,
    app_keys_jwks,
    cert_sha256,
    certificate_chain,
    der_sha256,
    pdf_material,
    pem,
    token_certificates,
    unique,
)
from evidence.pack_report import ReportCollector, signature_rows
from evidence.report_model import Anchoring, DocumentInfo, ReportInput, SignatureInfo
from evidence.task_signing import LocalCaDocumentSigner
from ledger.app import Ledger
from ledger.blobs import BlobError
from ledger.errors import LedgerError
from ledger.events import format_time
from ledger.store import LedgerStore, StoredCheckpoint
from ledger.task_service import SignerProfile, TaskService
from ledger.timestamping import TimestampError, verify_timestamp
from ledger.workflow import apply
from ledger.workflow.state import TaskState

__all__ = [
    "FORMAT",
    "PackError",
    "PackSummary",
    "UnknownTask",
    "export_pack",
]

FORMAT = "evidence-ledger-pack/1"
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
CONSISTENCY_HEADER = "evidence-ledger.pack/consistency-proof@v1"
#: Events read from the store per query.
EVENT_BATCH = 2000
#: Path rule for every member: lowercase ASCII segments, no empty, dot-only or absolute parts.
SAFE_MEMBER = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*\Z")
_CHUNK = 1024 * 1024

#: ``progress(phase, done, total)``: phases are ``events``, ``proofs``, ``documents``,
#: ``report`` and ``done``.
Progress = Callable[[str, int, int], None]


class PackError(EvidenceError):
    """An evidence pack could not be exported; no file was left at the destination."""


class UnknownTask(PackError):
    """The ledger holds no events for the task."""

    def __init__(self, task_id: UUID) -> None:
        super().__init__(f"there is no task {task_id} in this ledger")
        self.task_id = task_id


@dataclass(frozen=True)
class PackSummary:
    """What an export wrote."""

    path: Path
    task_id: UUID
    events: int
    first_leaf: int
    last_leaf: int
    checkpoint_size: int
    """Size of the pack's checkpoint, the tree every inclusion proof is into."""
    later_checkpoints: tuple[int, ...]
    documents: int
    revisions: int
    files: int
    """Members of the ZIP besides ``manifest.json``."""
    size: int
    """Bytes of the ZIP."""
    sha256: str
    """SHA-256 of the ZIP, hex."""
    report_included: bool
    verdict: str
    """The verification run at export (``TOTAL_PASSED``; a failure aborts the export)."""
    verdict_details: tuple[str, ...] = field(default=())
    seconds: float = 0.0


# -- the ZIP ----------------------------------------------------------------------------


class _HashingWriter:
    """A file-like sink that hashes and counts what passes through."""

    def __init__(self, target: IO[bytes], copy: IO[bytes] | None = None) -> None:
        self._target = target
        self._copy = copy
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._target.write(data)
        if self._copy is not None:
            self._copy.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


class _PackWriter:
    """Members written one at a time, each hashed on the way in and listed for the manifest."""

    def __init__(self, handle: IO[bytes], created: datetime) -> None:
        self.zip = zipfile.ZipFile(handle, "w", allowZip64=True)
        self.files: list[tuple[str, str, int]] = []
        self._names: set[str] = set()
        self._date = created.timetuple()[:6]

    def _info(self, name: str, compress: bool) -> zipfile.ZipInfo:
        if not SAFE_MEMBER.match(name) or ".." in name or name in self._names:
            raise PackError(f"refusing to write the pack member name {name!r}")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=self._date)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        return info

    @contextlib.contextmanager
    def member(
        self, name: str, *, compress: bool = True, copy: IO[bytes] | None = None
    ) -> Iterator[_HashingWriter]:
        info = self._info(name, compress)
        with self.zip.open(info, "w", force_zip64=True) as handle:
            sink = _HashingWriter(handle, copy)
            yield sink
        self.files.append((name, sink.digest.hexdigest(), sink.size))

    def add(self, name: str, data: bytes, *, compress: bool = True) -> str:
        """Write one small member; returns its SHA-256."""
        info = self._info(name, compress)
        self.zip.writestr(info, data, compresslevel=1 if compress else None)
        digest = hashlib.sha256(data).hexdigest()
        self.files.append((name, digest, len(data)))
        return digest

    def add_chunks(self, name: str, chunks: Iterable[bytes], *, compress: bool = False) -> str:
        with self.member(name, compress=compress) as sink:
            for chunk in chunks:
                sink.write(chunk)
        return self.files[-1][1]

    def close(self) -> None:
        self.zip.close()


# -- reading the task ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    leaf_index: int
    leaf_hash: bytes
    canonical: bytes


def _stream_head(store: LedgerStore, task_id: UUID) -> tuple[int, UUID] | None:
    """The task's last ``(sequence, event id)`` at this moment, or ``None`` if it has none."""
    rows = store._rows(
        "SELECT originator_version, state FROM stored_events WHERE originator_id = ? "
        "ORDER BY originator_version DESC LIMIT 1",
        [store._stream_key(task_id)],
    )
    if not rows:
        return None
    envelope = orjson.loads(bytes(rows[0]["state"]))
    return int(rows[0]["originator_version"]), UUID(envelope["event_id"])


def _task_entries(store: LedgerStore, task_id: UUID, last_sequence: int) -> Iterator[_Entry]:
    """The task's events up to ``last_sequence`` with their leaves, in batches, log order.

    Events come from the stream's primary key and their leaves by the unique event id, so
    both reads use an index; a stream's events are in the log in sequence order.
    """
    key = store._stream_key(task_id)
    after = 0
    while after < last_sequence:
        rows = store._rows(
            "SELECT originator_version, state FROM stored_events WHERE originator_id = ? "
            "AND originator_version > ? AND originator_version <= ? "
            "ORDER BY originator_version LIMIT ?",
            [key, after, last_sequence, EVENT_BATCH],
        )
        if not rows:
            raise PackError(f"task {task_id} lost events after sequence {after}")
        canonicals = [bytes(r["state"]) for r in rows]
        ids = [UUID(orjson.loads(c)["event_id"]) for c in canonicals]
        marks = ",".join("?" * len(ids))
        leaves = store._rows(
            f"SELECT leaf_index, event_id, leaf_hash FROM ledger_log WHERE event_id IN ({marks})",
            [store._event_key(i) for i in ids],
        )
        by_id = {store._event_id(r["event_id"]): r for r in leaves}
        for event_id, canonical in zip(ids, canonicals, strict=True):
            leaf = by_id.get(event_id)
            if leaf is None:
                raise PackError(f"event {event_id} of task {task_id} has no leaf in the log")
            yield _Entry(int(leaf["leaf_index"]), bytes(leaf["leaf_hash"]), canonical)
        after = int(rows[-1]["originator_version"])


def _pack_checkpoint(ledger: Ledger, last_leaf: int, wait: float) -> StoredCheckpoint:
    """The smallest timestamped checkpoint covering ``last_leaf``, sealing one if needed."""
    store = ledger.store
    checkpoint = store.checkpoint_covering(last_leaf)
    if checkpoint is not None and store.timestamp_for(checkpoint.tree_size) is not None:
        return checkpoint
    if wait <= 0:
        raise PackError(
            f"no timestamped checkpoint covers leaf {last_leaf} yet; run `evidence-ledger seal`"
        )
    ledger.start_sealer()
    try:
        return ledger.wait_for_checkpoint(last_leaf, timestamped=True, timeout=wait)
    except LedgerError as exc:
        raise PackError(f"cannot export yet: {exc} (is the TSA reachable?)") from exc


def _later_checkpoints(store: LedgerStore, size: int) -> list[StoredCheckpoint]:
    """The latest checkpoint, and the latest timestamped one, if later than ``size``."""
    wanted: set[int] = set()
    latest = store.latest_checkpoint()
    if latest is not None and latest.tree_size > size:
        wanted.add(latest.tree_size)
    rows = store._rows(
        "SELECT MAX(tree_size) AS size FROM ledger_checkpoint_timestamps WHERE tree_size > ?",
        [size],
    )
    if rows and rows[0]["size"] is not None:
        wanted.add(int(rows[0]["size"]))
    out = []
    for tree_size in sorted(wanted):
        rows = store._rows("SELECT * FROM ledger_checkpoints WHERE tree_size = ?", [tree_size])
        out.append(store._checkpoint(rows[0]))
    return out


# -- formats ------------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def tlog_proof(index: int, proof: Iterable[bytes], checkpoint_note: str) -> bytes:
    """A C2SP ``tlog-proof`` (v1, no extra data) for leaf ``index``."""
    lines = [TLOG_PROOF_HEADER, f"index {index}", *(_b64(h) for h in proof)]
    return ("\n".join(lines) + "\n\n" + checkpoint_note).encode()


def consistency_text(size1: int, size2: int, proof: Iterable[bytes]) -> bytes:
    """The pack's consistency-proof file (see ``docs/evidence-pack.md``)."""
    lines = [CONSISTENCY_HEADER, f"size1 {size1}", f"size2 {size2}", *(_b64(h) for h in proof)]
    return ("\n".join(lines) + "\n").encode()


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _extension(media_type: str) -> str:
    return ".pdf" if media_type == "application/pdf" else ".bin"


# -- the export -----------------------------------------------------------------------------


@dataclass
class _Collected:
    """What one pass over the events leaves behind (small: no envelopes are kept)."""

    state: TaskState = field(default_factory=TaskState)
    leaves: list[tuple[int, bytes]] = field(default_factory=list)
    signed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Signature field name → revision hash and PAdES level, from ``document.signed``."""
    app_signed: int = 0
    app_key_ids: set[str] = field(default_factory=set)
    recorded_at: dict[str, int] = field(default_factory=dict)
    """Document or revision hash → leaf index of the first event that records it."""


def _report_module() -> Any | None:
    try:
        return importlib.import_module("evidence.report")
    except ModuleNotFoundError as exc:
        if exc.name != "evidence.report":
            raise
        return None


def export_pack(
    ledger: Ledger,
    task_service: TaskService,
    task_id: UUID,
    out_path: Path,
    progress: Progress | None = None,
    *,
    include_report: bool | None = None,
    timezone: str = "UTC",
    wait: float = 30.0,
    clock: Callable[[], datetime] | None = None,
) -> PackSummary:
    """Write the evidence pack of ``task_id`` to ``out_path`` (a ZIP) and describe it.

    ``include_report``: ``True`` requires the signed court report (``evidence.report``),
    ``False`` leaves it out, ``None`` includes it when that module is installed. ``wait``
    is how long to wait for a timestamped checkpoint covering the task (0: fail at once).
    Raises :class:`UnknownTask` or :class:`PackError`; either way nothing is left at
    ``out_path``.
    """
    started = time.perf_counter()
    report = None if include_report is False else _report_module()
    if include_report and report is None:
        raise PackError("the court report module (evidence.report) is not installed")
    build_report = report is not None and include_report is not False
    store = ledger.store
    out_path = Path(out_path)
    head = _stream_head(store, task_id)
    if head is None:
        raise UnknownTask(task_id)
    last_sequence, last_event = head
    last_entry = store.entry_for_event(last_event)
    if last_entry is None:
        raise PackError(f"the last event of task {task_id} has no leaf in the log")
    checkpoint = _pack_checkpoint(ledger, last_entry.leaf_index, wait)
    created = (clock or (lambda: datetime.now(UTC)))()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".partial"
    )
    try:
        with os.fdopen(descriptor, "w+b") as handle:
            job = _Export(
                ledger, task_service, task_id, last_sequence, checkpoint, created, progress
            )
            job.check_checkpoint()
            summary = job.write(handle, build_report, report, timezone)
            handle.flush()
            os.fsync(handle.fileno())
            handle.seek(0)
            digest = hashlib.sha256()
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
            size = handle.tell()
        os.replace(temporary, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        directory = os.open(out_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    if progress is not None:
        progress("done", 1, 1)
    return PackSummary(
        path=out_path,
        task_id=task_id,
        size=size,
        sha256=digest.hexdigest(),
        seconds=time.perf_counter() - started,
        **summary,
    )


class _Export:
    """One export: the pass over the events, then every other member, then the manifest."""

    def __init__(
        self,
        ledger: Ledger,
        task_service: TaskService,
        task_id: UUID,
        last_sequence: int,
        checkpoint: StoredCheckpoint,
        created: datetime,
        progress: Progress | None,
    ) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.service = task_service
        self.task_id = task_id
        self.last_sequence = last_sequence
        self.checkpoint = checkpoint
        self.created = created
        self.progress = progress or (lambda phase, done, total: None)
        self.origin = ledger.key.name
        self.vkey = ledger.key.verifier_key()
        self.checks: list[str] = []

    # Each step writes members and returns what the manifest says about them.

    def write(
        self, handle: IO[bytes], build_report: bool, report: Any, timezone: str
    ) -> dict[str, Any]:
        pack = _PackWriter(handle, self.created)
        collector = ReportCollector() if build_report else None
        with contextlib.ExitStack() as stack:
            stack.callback(pack.close)
            copy = stack.enter_context(tempfile.TemporaryFile()) if build_report else None
            collected = self._events(pack, collector, copy)
            self._proofs(pack, collected)
            documents, materials = self._documents(pack, collected)
            checkpoints = self._checkpoints(pack)
            certificates = self._certificates(pack, materials)
            revocation = self._revocation(pack, materials)
            app_keys = self._app_keys(pack, collected)
            manifest = self._manifest(
                collected, documents, checkpoints, certificates, revocation, app_keys
            )
            report_entry: dict[str, Any] | None = None
            if collector is not None and copy is not None:
                report_entry = self._report(
                    pack, report, collector, collected, manifest, copy, timezone, materials
                )
            manifest["report"] = report_entry
            manifest["files"] = [
                {"path": p, "sha256": s, "size": n} for p, s, n in sorted(pack.files)
            ]
            pack.add("manifest.json", _json(manifest))
        state = collected.state
        return {
            "events": len(collected.leaves),
            "first_leaf": collected.leaves[0][0],
            "last_leaf": collected.leaves[-1][0],
            "checkpoint_size": self.checkpoint.tree_size,
            "later_checkpoints": tuple(c["tree_size"] for c in checkpoints[1:]),
            "documents": len(state.documents),
            "revisions": sum(len(d.revisions) for d in state.documents),
            "files": len(pack.files) - 1,
            "report_included": report_entry is not None,
            "verdict": "TOTAL_PASSED",
            "verdict_details": tuple(self.checks),
        }

    def check_checkpoint(self) -> None:
        """The pack's checkpoint and its token, checked as a verifier would."""
        cp = self.checkpoint
        key = verifier.VerifierKey.from_string(self.vkey)
        try:
            parsed = verifier.Checkpoint.from_signed_note(cp.note, [key], origin=self.origin)
        except verifier.VerificationError as exc:
            raise PackError(f"the pack's checkpoint does not verify: {exc}") from exc
        if parsed.size != cp.tree_size or parsed.root_hash != cp.root_hash:
            raise PackError("the stored checkpoint row disagrees with its signed note")
        stamp = self.store.timestamp_for(cp.tree_size)
        assert stamp is not None  # _pack_checkpoint chose a timestamped one
        try:
            verify_timestamp(stamp.response_der, cp.note.encode(), self.ledger.tsa_trust_roots)
        except TimestampError as exc:
            raise PackError(f"the pack checkpoint's timestamp does not verify: {exc}") from exc
        self.checks.append(
            f"checkpoint {cp.tree_size} signed by {key.name} and timestamped at "
            f"{stamp.gen_time} by {stamp.tsa_name}"
        )

    def _events(
        self, pack: _PackWriter, collector: ReportCollector | None, copy: IO[bytes] | None
    ) -> _Collected:
        """``events.jsonl``: one line per event, in log order; folds the task on the way."""
        collected = _Collected()
        previous: bytes | None = None
        size = self.checkpoint.tree_size
        with pack.member("events.jsonl", copy=copy) as sink:
            for entry in _task_entries(self.store, self.task_id, self.last_sequence):
                if hashlib.sha256(b"\x00" + entry.canonical).digest() != entry.leaf_hash:
                    raise PackError(f"event at leaf {entry.leaf_index} does not hash to its leaf")
                if entry.leaf_index >= size:
                    raise PackError(f"leaf {entry.leaf_index} is outside checkpoint {size}")
                envelope = orjson.loads(entry.canonical)
                link = envelope.get("prev")
                if (link is None) != (previous is None) or (
                    previous is not None and link != previous.hex()
                ):
                    raise PackError(f"event at leaf {entry.leaf_index} breaks the task's chain")
                previous = entry.leaf_hash
                line = {
                    "leaf_index": entry.leaf_index,
                    "event_hash": entry.leaf_hash.hex(),
                    "canonical": _b64(entry.canonical),
                }
                sink.write(orjson.dumps(line) + b"\n")
                collected.leaves.append((entry.leaf_index, entry.leaf_hash))
                collected.state = apply(collected.state, envelope)
                self._note_event(collected, entry.leaf_index, envelope)
                if collector is not None:
                    collector.add(entry.leaf_index, envelope)
                if len(collected.leaves) % 500 == 0:
                    self.progress("events", len(collected.leaves), self.last_sequence)
        self.progress("events", len(collected.leaves), self.last_sequence)
        if len(collected.leaves) != self.last_sequence:
            raise PackError(f"task {self.task_id} has gaps in its sequence numbers")
        self.checks.append(
            f"{len(collected.leaves)} events re-hashed to their leaves; the task's prev chain "
            "is unbroken"
        )
        return collected

    @staticmethod
    def _note_event(collected: _Collected, leaf: int, envelope: Mapping[str, Any]) -> None:
        data = envelope.get("data") or {}
        recorded: list[Any] = []
        if envelope["type"] == "task.created":
            recorded = [d.get("sha256") for d in data.get("documents") or ()]
        elif envelope["type"] == "document.added":
            recorded = [data.get("sha256")]
        elif envelope["type"] == "document.signed":
            recorded = [data.get("revision_sha256")]
        elif envelope["type"] == "task.completed":
            recorded = [f.get("revision_sha256") for f in data.get("final_revisions") or ()]
        for sha256 in recorded:
            collected.recorded_at.setdefault(str(sha256), leaf)
        if envelope["type"] == "document.signed":
            signature = data.get("signature") or {}
            collected.signed[str(signature.get("field"))] = {
                "revision_sha256": data.get("revision_sha256"),
                "level": signature.get("level"),
            }
        app_signature = envelope.get("app_signature")
        if app_signature:
            collected.app_signed += 1
            collected.app_key_ids.add(str(app_signature.get("key_id")))

    def _proofs(self, pack: _PackWriter, collected: _Collected) -> None:
        """``proofs/<leaf>.tlog-proof``: each event into the pack's checkpoint, checked."""
        cp = self.checkpoint
        total = len(collected.leaves)
        for done, (index, leaf_hash) in enumerate(collected.leaves, start=1):
            proof = self.store.inclusion_proof(index, cp.tree_size)
            try:
                verifier.verify_inclusion(leaf_hash, index, cp.tree_size, proof, cp.root_hash)
            except verifier.VerificationError as exc:
                raise PackError(f"inclusion proof of leaf {index} fails: {exc}") from exc
            pack.add(f"proofs/{index}.tlog-proof", tlog_proof(index, proof, cp.note))
            if done % 500 == 0:
                self.progress("proofs", done, total)
        self.progress("proofs", total, total)
        self.checks.append(f"{total} inclusion proofs verified against checkpoint {cp.tree_size}")

    def _documents(
        self, pack: _PackWriter, collected: _Collected
    ) -> tuple[list[dict[str, Any]], list[PdfMaterial]]:
        """``documents/``: each original and every revision, streamed and re-hashed."""
        blobs = self.service.blobs
        state = collected.state
        recorded = collected.recorded_at
        out: list[dict[str, Any]] = []
        materials: list[PdfMaterial] = []
        total = len(state.documents) + sum(len(d.revisions) for d in state.documents)
        done = 0
        for document in state.documents:
            ext = _extension(document.media_type)
            path = f"documents/{document.sha256}{ext}"
            self._stream_blob(pack, path, document.sha256)
            done += 1
            self.progress("documents", done, total)
            revisions = []
            for number, revision in enumerate(document.revisions, start=1):
                revision_path = f"documents/{document.sha256}/{number}-{revision}{ext}"
                self._stream_blob(pack, revision_path, revision)
                revisions.append(
                    {
                        "number": number,
                        "sha256": revision,
                        "path": revision_path,
                        "recorded_at_leaf": recorded.get(revision),
                    }
                )
                done += 1
                self.progress("documents", done, total)
            if document.revisions and document.media_type == "application/pdf":
                try:
                    materials.append(pdf_material(blobs.read(document.current)))
                except BlobError as exc:
                    raise PackError(str(exc)) from exc
                except Exception as exc:  # pyHanko on a malformed file
                    raise PackError(
                        f"cannot read the signatures of {document.current}: {exc}"
                    ) from exc
            out.append(
                {
                    "sha256": document.sha256,
                    "file_name": document.file_name,
                    "media_type": document.media_type,
                    "size": document.size,
                    "path": path,
                    "recorded_at_leaf": recorded.get(document.sha256),
                    "revisions": revisions,
                }
            )
        self.checks.append(f"{total} document files re-hashed to the hashes their events record")
        return out, materials

    def _stream_blob(self, pack: _PackWriter, path: str, sha256: str) -> None:
        try:
            written = pack.add_chunks(path, self.service.blobs.iter_read(sha256))
        except BlobError as exc:
            raise PackError(f"cannot export document {sha256}: {exc}") from exc
        if written != sha256:
            raise PackError(f"document {sha256} changed while it was exported")

    def _checkpoints(self, pack: _PackWriter) -> list[dict[str, Any]]:
        """``checkpoints/``: the pack's checkpoint and later ones, tokens, consistency proofs."""
        cp = self.checkpoint
        key = verifier.VerifierKey.from_string(self.vkey)
        entries = [self._checkpoint_files(pack, cp, "pack")]
        for later in _later_checkpoints(self.store, cp.tree_size):
            try:
                verifier.Checkpoint.from_signed_note(later.note, [key], origin=self.origin)
            except verifier.VerificationError as exc:
                raise PackError(f"checkpoint {later.tree_size} does not verify: {exc}") from exc
            entry = self._checkpoint_files(pack, later, "later")
            proof = self.store.consistency_proof(cp.tree_size, later.tree_size)
            try:
                verifier.verify_consistency(
                    cp.tree_size, later.tree_size, cp.root_hash, later.root_hash, proof
                )
            except verifier.VerificationError as exc:
                raise PackError(f"consistency to {later.tree_size} fails: {exc}") from exc
            path = f"checkpoints/consistency-{cp.tree_size}-{later.tree_size}.proof"
            pack.add(path, consistency_text(cp.tree_size, later.tree_size, proof))
            entry["consistency_from_pack"] = path
            entries.append(entry)
            self.checks.append(
                f"checkpoint {later.tree_size} verified and consistent with {cp.tree_size}"
            )
        return entries

    def _checkpoint_files(
        self, pack: _PackWriter, cp: StoredCheckpoint, role: str
    ) -> dict[str, Any]:
        note_path = f"checkpoints/{cp.tree_size}.checkpoint"
        pack.add(note_path, cp.note.encode())
        stamp = self.store.timestamp_for(cp.tree_size)
        entry: dict[str, Any] = {
            "role": role,
            "tree_size": cp.tree_size,
            "root_hash": _b64(cp.root_hash),
            "note": note_path,
            "signed_at": cp.signed_at,
            "timestamp": None,
        }
        if stamp is not None:
            token_path = f"checkpoints/{cp.tree_size}.tsr"
            pack.add(token_path, stamp.response_der, compress=False)
            entry["timestamp"] = {
                "path": token_path,
                "gen_time": stamp.gen_time,
                "tsa_name": stamp.tsa_name,
            }
        return entry

    def _tsa_certificates(self, materials: list[PdfMaterial]) -> list[Any]:
        certificates = []
        stamp = self.store.timestamp_for(self.checkpoint.tree_size)
        if stamp is not None:
            certificates.extend(token_certificates(stamp.response_der))
        for material in materials:
            certificates.extend(material.tsa_certificates)
        return unique(certificates)

    def _certificates(self, pack: _PackWriter, materials: list[PdfMaterial]) -> dict[str, Any]:
        """``certificates/``: signer chains, signing-CA roots, TSA chains, the ledger key."""
        pack.add("certificates/ledger.vkey", (self.vkey + "\n").encode())
        signer = self.service.signer
        signer_roots = list(getattr(signer, "signer_trust_roots", []) or [])
        tsa_roots = list(self.ledger.tsa_trust_roots)
        tsa_certs = self._tsa_certificates(materials)
        pool = unique(
            [c for m in materials for c in m.signer_certificates] + signer_roots + tsa_certs
        )
        signers = []
        for facts in unique(s.signer for m in materials for s in m.signatures):
            chain = certificate_chain(facts, pool)
            path = f"certificates/signers/{cert_sha256(facts)}.pem"
            pack.add(path, pem(chain))
            signers.append(
                {
                    "path": path,
                    "subject": facts.subject.rfc4514_string(),
                    "chain_length": len(chain),
                }
            )
        tsa = []
        tsa_pool = unique(tsa_certs + tsa_roots)
        for cert in tsa_certs:
            if cert.issuer == cert.subject:
                continue  # a root inside a token; listed with the roots
            chain = certificate_chain(cert, tsa_pool)
            path = f"certificates/tsa/{cert_sha256(cert)}.pem"
            pack.add(path, pem(chain))
            tsa.append({"path": path, "subject": cert.subject.rfc4514_string()})
        entry: dict[str, Any] = {
            "ledger_key": "certificates/ledger.vkey",
            "signers": signers,
            "tsa": tsa,
            "signer_roots": None,
            "tsa_roots": None,
        }
        if signer_roots:
            pack.add("certificates/signer-roots.pem", pem(signer_roots))
            entry["signer_roots"] = "certificates/signer-roots.pem"
        if tsa_roots:
            pack.add("certificates/tsa-roots.pem", pem(tsa_roots))
            entry["tsa_roots"] = "certificates/tsa-roots.pem"
        return entry

    def _revocation(self, pack: _PackWriter, materials: list[PdfMaterial]) -> dict[str, Any]:
        """``revocation/``: CRLs and OCSP responses found in the signed PDFs' DSS."""
        files = []
        seen: set[str] = set()
        for material in materials:
            for kind, items in (("crl", material.crls), ("ocsp", material.ocsp_responses)):
                for der in items:
                    digest = der_sha256(der)
                    if digest in seen:
                        continue
                    seen.add(digest)
                    path = f"revocation/{digest}.{kind}"
                    pack.add(path, der, compress=False)
                    files.append({"path": path, "kind": kind})
        if files:
            return {"available": True, "files": files, "note": None}
        return {
            "available": False,
            "files": [],
            "note": "the signing and TSA certificates publish no CRL distribution point or "
            "OCSP responder (the embedded default's local PKI issues none); their paths are "
            "checked against the trust anchors only",
        }

    def _app_keys(self, pack: _PackWriter, collected: _Collected) -> dict[str, Any]:
        jwks = app_keys_jwks(self.store, self.task_id)
        entry: dict[str, Any] = {"app_signed_events": collected.app_signed, "jwks": None}
        if jwks is not None:
            pack.add("app-keys.jwks.json", _json(jwks))
            entry["jwks"] = "app-keys.jwks.json"
            missing = collected.app_key_ids - {k["kid"] for k in jwks["keys"]}
            entry["missing_key_ids"] = sorted(missing)
        return entry

    def _manifest(
        self,
        collected: _Collected,
        documents: list[dict[str, Any]],
        checkpoints: list[dict[str, Any]],
        certificates: dict[str, Any],
        revocation: dict[str, Any],
        app_keys: dict[str, Any],
    ) -> dict[str, Any]:
        state = collected.state
        return {
            "format": FORMAT,
            "task_id": str(self.task_id),
            "title": state.title,
            "status": state.status,
            "created_at": format_time(self.created),
            "log": {
                "origin": self.origin,
                "verifier_key": self.vkey,
                "checkpoint_size": self.checkpoint.tree_size,
                "checkpoint_root": _b64(self.checkpoint.root_hash),
            },
            "events": {
                "path": "events.jsonl",
                "count": len(collected.leaves),
                "first_leaf": collected.leaves[0][0],
                "last_leaf": collected.leaves[-1][0],
                "proofs": "proofs/",
            },
            "documents": documents,
            "checkpoints": checkpoints,
            "certificates": certificates,
            "revocation": revocation,
            "app_signatures": app_keys,
            "export_checks": list(self.checks),
        }

    def _report(
        self,
        pack: _PackWriter,
        report: Any,
        collector: ReportCollector,
        collected: _Collected,
        manifest: dict[str, Any],
        events_copy: IO[bytes],
        timezone: str,
        materials: list[PdfMaterial],
    ) -> dict[str, Any]:
        """``report.pdf``: the court report, with the manifest and events attached, signed."""
        self.progress("report", 0, 1)
        inner = dict(manifest)
        inner["report"] = None
        inner["files"] = [{"path": p, "sha256": s, "size": n} for p, s, n in sorted(pack.files)]
        inner_bytes = _json(inner)
        events_copy.seek(0)
        report_input = self._report_input(collector, collected, inner, timezone, materials)
        attachments = {"manifest.json": inner_bytes, "events.jsonl": events_copy.read()}
        pdf = bytes(report.build_report(report_input, attachments))
        signer = self.service.signer
        signed = False
        if isinstance(signer, LocalCaDocumentSigner):
            # A certification signature (no later changes), invisible, keeping PDF/A-3.
            try:
                pdf = signer.sign_report(pdf, self.origin)
            except LedgerError as exc:
                raise PackError(f"signing the report failed: {exc}") from exc
            signed = True
        elif signer is not None:
            host = self.origin.split("/")[0]
            profile = SignerProfile(
                "evidence-ledger", f"Evidence Ledger {self.origin}", "Evidence Ledger",
                email=f"ledger@{host}" if "." in host else "ledger@evidence-ledger.local",
            )  # fmt: skip
            try:
                pdf = signer.sign(
                    pdf,
                    signer=profile,
                    placement=None,
                    field_name="EvidenceLedgerReport",
                    reason="Evidence report of task " + str(self.task_id),
                ).pdf
            except LedgerError as exc:
                raise PackError(f"signing the report failed: {exc}") from exc
            signed = True
        pack.add("report.pdf", pdf, compress=False)
        self.progress("report", 1, 1)
        return {
            "path": "report.pdf",
            "signed": signed,
            "attachments": ["manifest.json", "events.jsonl"],
        }

    def _report_input(
        self,
        collector: ReportCollector,
        collected: _Collected,
        manifest: Mapping[str, Any],
        timezone: str,
        materials: list[PdfMaterial],
    ) -> ReportInput:
        state = collected.state
        documents = [
            DocumentInfo(d.file_name, d.sha256, d.size, tuple(d.revisions)) for d in state.documents
        ]
        signatures: list[SignatureInfo] = []
        signed_docs = [d for d in state.documents if d.revisions]
        for document, material in zip(signed_docs, materials, strict=False):
            signatures.extend(
                signature_rows(document.file_name, material.signatures, collected.signed)
            )
        stamp = self.store.timestamp_for(self.checkpoint.tree_size)
        later = tuple(int(c["tree_size"]) for c in manifest["checkpoints"][1:])
        anchoring = Anchoring(
            log_origin=self.origin,
            ledger_key=self.vkey,
            first_leaf=collected.leaves[0][0],
            last_leaf=collected.leaves[-1][0],
            checkpoint_size=self.checkpoint.tree_size,
            checkpoint_root=_b64(self.checkpoint.root_hash),
            checkpoint_note=self.checkpoint.note,
            tsa_time=datetime.fromisoformat(stamp.gen_time) if stamp else None,
            tsa_name=stamp.tsa_name if stamp else None,
            later_checkpoints=later,
        )
        # The auditor's anchors come from outside the pack; the pack's copies are for
        # comparing fingerprints, never to be trusted on their own.
        anchors = [
            "the ledger's verifier key, obtained from the ledger operator: " + self.vkey,
            "the TSA's root certificate, obtained from the TSA or the ledger operator "
            "(certificates/tsa-roots.pem in this pack is a copy to compare, not an anchor)",
        ]
        if manifest["certificates"].get("signer_roots"):
            anchors.append(
                "the signing CA's root certificate, obtained from the CA or the ledger operator "
                "(certificates/signer-roots.pem in this pack is a copy to compare)"
            )
        command = (
            f"evidence-verify PACK.zip --ledger-key '{self.vkey}' "
            "--tsa-root tsa-root.pem --trust-root signing-ca-root.pem"
        )
        return collector.report_input(
            task_id=str(self.task_id),
            state=state,
            timezone=timezone,
            documents=documents,
            signatures=signatures,
            anchoring=anchoring,
            verdict="TOTAL_PASSED",
            verdict_details=self.checks,
            verify_command=command,
            trust_anchors=anchors,
            generated_at=self.created,
            pack_files=[(f["path"], f["sha256"]) for f in manifest["files"]],
        )


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a pack (for tools and tests; checks nothing)."""
    with zipfile.ZipFile(path) as archive:
        value = orjson.loads(archive.read("manifest.json"))
    assert isinstance(value, dict)
    return value
