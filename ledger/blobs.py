"""Content-addressed storage for documents: each file is named by its SHA-256.

Events never carry document bytes; they record a :class:`BlobRef` (hash, size, media type,
file name). The bytes live under ``<root>/<first two hex digits>/<sha256>``, written once
(temporary file, fsync, link into place) and made read-only. Every read re-hashes what it
returns, so a file changed on disk is reported, never served.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ledger.errors import LedgerError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\Z")
MAX_FILE_NAME = 255


class BlobError(LedgerError):
    """A document could not be stored or read."""


class BlobTooLarge(BlobError):
    """The document is larger than allowed; nothing was stored."""


class BlobNotFound(BlobError):
    """No document with that hash is stored."""


class BlobCorrupted(BlobError):
    """The stored bytes no longer hash to their name: the file was changed on disk."""


@dataclass(frozen=True)
class BlobRef:
    """What an event records about a document."""

    sha256: str
    size: int
    media_type: str
    file_name: str

    def to_json(self) -> dict[str, object]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "file_name": self.file_name,
        }


def safe_file_name(name: str) -> str:
    """The last path component of ``name``, NFC-normalised, without control characters.

    File names are metadata shown to people; they never become paths.
    """
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name))[-1]
    cleaned = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if cleaned in ("", ".", ".."):
        raise BlobError(f"file name {name!r} has no usable name in it")
    return cleaned[:MAX_FILE_NAME]


class BlobStore:
    """Documents under one directory, addressed by SHA-256."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise BlobError(f"{sha256!r} is not a SHA-256 in lowercase hex")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes, *, media_type: str, file_name: str) -> BlobRef:
        """Store ``data`` (once, whatever the number of calls) and describe it."""
        return self.put_stream(iter_chunks(data), media_type=media_type, file_name=file_name)

    def put_stream(self, chunks: Iterable[bytes], *, media_type: str, file_name: str) -> BlobRef:
        """Store a document given in chunks, hashing while writing; memory stays flat.

        A document over :attr:`max_bytes` raises :class:`BlobTooLarge` and leaves nothing.
        """
        media_type = media_type.strip().lower()
        if not _MEDIA_TYPE.match(media_type):
            raise BlobError(f"{media_type!r} is not a media type")
        name = safe_file_name(file_name)
        digest = hashlib.sha256()
        size = 0
        descriptor, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise BlobTooLarge(
                            f"the document is larger than the limit of {self.max_bytes} bytes"
                        )
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            sha256 = digest.hexdigest()
            final = self.path_of(sha256)
            final.parent.mkdir(exist_ok=True)
            os.chmod(temporary, 0o444)
            # The same bytes may already be stored: content addressing deduplicates.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, final)
        finally:
            os.unlink(temporary)
        return BlobRef(sha256=sha256, size=size, media_type=media_type, file_name=name)

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).exists()

    def read(self, sha256: str) -> bytes:
        """The document's bytes, re-hashed on the way out."""
        return b"".join(self.iter_read(sha256))

    def iter_read(self, sha256: str) -> Iterator[bytes]:
        """The document in chunks, memory flat.

        The hash is checked as the chunks go by; after the last one a changed file raises
        :class:`BlobCorrupted`, so a caller streaming it out must abort on that error.
        """
        path = self.path_of(sha256)
        digest = hashlib.sha256()
        try:
            handle: BinaryIO = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no document {sha256} is stored") from exc
        with handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != sha256:
            raise BlobCorrupted(f"document {sha256} was changed on disk; refusing to serve it")


def iter_chunks(data: bytes, size: int = _CHUNK) -> Iterable[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
