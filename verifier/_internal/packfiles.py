"""Reading an evidence pack's container and its small text formats, as docs/evidence-pack.md
lays them out: the ZIP (section 1), ``events.jsonl`` lines (section 3), C2SP tlog-proofs
(section 4) and consistency-proof files (section 5).

Nothing here decides a verdict: parse errors raise :class:`PackFormatError` with the reason,
and the step that called the parser reports it.
"""

from __future__ import annotations

import base64
import binascii
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONSISTENCY_HEADER",
    "MAX_MEMBERS",
    "MAX_MEMBER_SIZE",
    "MAX_RATIO",
    "MAX_TOTAL_SIZE",
    "SAFE_MEMBER",
    "TLOG_PROOF_HEADER",
    "ConsistencyFile",
    "PackFormatError",
    "TlogProof",
    "decode_b64",
    "parse_consistency",
    "parse_tlog_proof",
    "read_members",
]

SAFE_MEMBER = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")
"""Every member name (section 1): lowercase ASCII segments separated by ``/``."""
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
CONSISTENCY_HEADER = "evidence-ledger.pack/consistency-proof@v1"
MAX_MEMBER_SIZE = 1 << 31
"""Largest member this verifier reads (2 GiB): a guard against ZIP bombs."""
MAX_TOTAL_SIZE = 1 << 31
"""Largest sum of the members' declared sizes (2 GiB): the verifier holds them in memory."""
MAX_MEMBERS = 100_000
"""Most members a pack may have, checked before the central directory is parsed."""
MAX_CENTRAL_DIRECTORY = 64 << 20
"""Largest central directory (64 MiB), checked before it is parsed."""
MAX_RATIO = 200
"""Largest inflation of a member over :data:`RATIO_FLOOR` bytes (declared size over
compressed size). PDFs, certificates and proofs barely compress; a deflate bomb inflates
about 1000 times."""
RATIO_FLOOR = 1 << 20
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HASH_SIZE = 32


class PackFormatError(Exception):
    """A member of the pack breaks the format; ``str(error)`` says how."""


def decode_b64(text: str, what: str) -> bytes:
    """Decode canonical standard base64 (RFC 4648 section 4) or raise ``PackFormatError``."""
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PackFormatError(f"{what} is not standard base64") from None
    if base64.b64encode(value).decode("ascii") != text:
        raise PackFormatError(f"{what} is not canonical base64")
    return value


def _hash_line(line: str, what: str) -> bytes:
    value = decode_b64(line, what)
    if len(value) != _HASH_SIZE:
        raise PackFormatError(f"{what} is {len(value)} bytes, not a 32-byte SHA-256 hash")
    return value


def _unsafe_name(name: str) -> str | None:
    """Why ``name`` is not an allowed member name, or ``None`` if it is."""
    if not SAFE_MEMBER.fullmatch(name):
        return "does not match the member name rule (lowercase a-z0-9._- segments joined by /)"
    if any(segment in (".", "..") or set(segment) == {"."} for segment in name.split("/")):
        return "has a dot-only path segment"
    return None


def read_members(
    path: Path, progress: Callable[[int, int], None] | None = None
) -> dict[str, bytes]:
    """Read every member of the pack into memory after checking the container rules.

    Raises ``PackFormatError`` for anything section 1 forbids: an unreadable ZIP, an unsafe
    or duplicate name, a directory entry, encryption, a compression method other than
    stored or deflated, or a member whose bytes disagree with its declared size or CRC; and
    for what would exhaust memory (ZIP bombs): too many members or too big a central
    directory, a member or a total over the size limits, a large member inflating more
    than :data:`MAX_RATIO` times.
    ``OSError`` is left to the caller (an I/O error, not a verdict).
    """
    _check_directory(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise PackFormatError(f"the pack is not a readable ZIP archive: {error}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise PackFormatError(f"the pack has {len(infos)} members; at most {MAX_MEMBERS}")
        total = 0
        seen: set[str] = set()
        for info in infos:
            name = info.filename
            why = _unsafe_name(name)
            if info.is_dir() or name.endswith("/"):
                raise PackFormatError(f"member {name!r} is a directory entry")
            if why is not None:
                raise PackFormatError(f"member name {name!r} {why}")
            if name in seen:
                raise PackFormatError(f"member name {name!r} occurs more than once")
            seen.add(name)
            if info.flag_bits & 0x1:
                raise PackFormatError(f"member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise PackFormatError(
                    f"member {name!r} uses compression method {info.compress_type}; only "
                    "stored and deflated are allowed"
                )
            if info.file_size > MAX_MEMBER_SIZE:
                raise PackFormatError(f"member {name!r} declares {info.file_size} bytes")
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                raise PackFormatError(
                    f"member {name!r} inflates {info.compress_size} bytes to {info.file_size} "
                    f"(more than {MAX_RATIO} times): a ZIP bomb"
                )
            total += info.file_size
            if total > MAX_TOTAL_SIZE:
                raise PackFormatError(
                    f"the members declare more than {MAX_TOTAL_SIZE} bytes in all"
                )
        members: dict[str, bytes] = {}
        for done, info in enumerate(infos, start=1):
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                # zipfile reports a CRC mismatch as BadZipFile
                raise PackFormatError(f"member {info.filename!r} cannot be read: {error}") from None
            if len(data) != info.file_size:
                raise PackFormatError(f"member {info.filename!r} is not the size it declares")
            members[info.filename] = data
            if progress is not None and done % 500 == 0:
                progress(done, len(infos))
        return members


def _check_directory(path: Path) -> None:
    """Refuse a central directory too big to parse, from its end record alone (APPNOTE
    4.3.16 and, for ZIP64, 4.3.14), before :mod:`zipfile` reads every entry into memory."""
    with path.open("rb") as handle:
        try:
            end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
        except OSError:
            end = None
    if not end:
        return  # not a ZIP: zipfile says so with its own message
    entries, size = int(end[4]), int(end[5])
    if entries > MAX_MEMBERS:
        raise PackFormatError(f"the pack has {entries} members; at most {MAX_MEMBERS}")
    if size > MAX_CENTRAL_DIRECTORY:
        raise PackFormatError(
            f"the pack's central directory is {size} bytes; at most {MAX_CENTRAL_DIRECTORY}"
        )


@dataclass(frozen=True)
class TlogProof:
    """One parsed ``c2sp.org/tlog-proof@v1`` file."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    """The checkpoint after the blank line, verbatim (a signed note)."""
    extra: bytes | None = None


def parse_tlog_proof(data: bytes) -> TlogProof:
    """Parse a C2SP tlog-proof v1 (header, optional ``extra``, ``index``, hashes, blank line,
    checkpoint). Raises ``PackFormatError``."""
    head, separator, checkpoint = data.partition(b"\n\n")
    if not separator:
        raise PackFormatError("no blank line between the proof and its checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise PackFormatError("the proof lines are not ASCII") from None
    if lines[0] != TLOG_PROOF_HEADER:
        raise PackFormatError(f"the first line is not {TLOG_PROOF_HEADER!r}")
    rest = lines[1:]
    extra: bytes | None = None
    if rest and rest[0].startswith("extra "):
        extra = decode_b64(rest[0][len("extra ") :], "the extra line")
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise PackFormatError("the index line is missing")
    index_text = rest[0][len("index ") :]
    if not _DECIMAL.fullmatch(index_text):
        raise PackFormatError(f"index {index_text!r} is not a decimal without leading zeros")
    hashes = tuple(_hash_line(line, f"proof hash {n}") for n, line in enumerate(rest[1:], start=1))
    return TlogProof(int(index_text), hashes, checkpoint, extra)


@dataclass(frozen=True)
class ConsistencyFile:
    """One parsed ``checkpoints/consistency-<m>-<n>.proof``."""

    size1: int
    size2: int
    hashes: tuple[bytes, ...]


def parse_consistency(data: bytes) -> ConsistencyFile:
    """Parse the pack's consistency-proof file (section 5). Raises ``PackFormatError``."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PackFormatError("the consistency proof is not ASCII") from None
    if not text.endswith("\n"):
        raise PackFormatError("the consistency proof does not end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != CONSISTENCY_HEADER:
        raise PackFormatError(f"the first line is not {CONSISTENCY_HEADER!r}")
    if len(lines) < 3:
        raise PackFormatError("the size1 and size2 lines are missing")
    sizes = []
    for line, label in zip(lines[1:3], ("size1", "size2"), strict=True):
        value = line.removeprefix(f"{label} ")
        if value == line or not _DECIMAL.fullmatch(value):
            raise PackFormatError(f"line {line!r} is not '{label} <decimal>'")
        sizes.append(int(value))
    hashes = tuple(
        _hash_line(line, f"consistency hash {n}") for n, line in enumerate(lines[3:], start=1)
    )
    return ConsistencyFile(sizes[0], sizes[1], hashes)


def object_field(value: Any, key: str, kind: type, what: str) -> Any:
    """``value[key]`` checked to be of ``kind`` (bool is never an int), or ``PackFormatError``."""
    if not isinstance(value, dict) or key not in value:
        raise PackFormatError(f"{what} has no {key!r}")
    item = value[key]
    if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
        raise PackFormatError(f"{what}: {key!r} is not a {kind.__name__}")
    return item
