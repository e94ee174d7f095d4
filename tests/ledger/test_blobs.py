"""The content-addressed document store."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from ledger.blobs import (
    BlobCorrupted,
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    safe_file_name,
)

PDF = b"%PDF-1.7\n" + b"contract body " * 1000 + b"\n%%EOF\n"


def test_document_is_stored_under_its_hash_and_read_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    ref = store.put(PDF, media_type="application/pdf", file_name="合同 contract.pdf")
    assert ref.sha256 == hashlib.sha256(PDF).hexdigest()
    assert ref.size == len(PDF)
    assert ref.to_json() == {
        "sha256": ref.sha256,
        "size": len(PDF),
        "media_type": "application/pdf",
        "file_name": "合同 contract.pdf",
    }
    path = store.path_of(ref.sha256)
    assert path == tmp_path / ref.sha256[:2] / ref.sha256
    assert path.stat().st_mode & 0o777 == 0o444
    assert store.read(ref.sha256) == PDF


def test_same_bytes_are_stored_once_even_when_written_concurrently(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    refs = []

    def put() -> None:
        refs.append(store.put(PDF, media_type="application/pdf", file_name="a.pdf"))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.sha256 for r in refs}) == 1
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [store.path_of(refs[0].sha256)]  # no temporary file left behind


def test_a_document_changed_on_disk_is_never_served(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    ref = store.put(PDF, media_type="application/pdf", file_name="a.pdf")
    path = store.path_of(ref.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(PDF.replace(b"contract", b"CONTRACT", 1))
    with pytest.raises(BlobCorrupted, match="changed on disk"):
        store.read(ref.sha256)
    with pytest.raises(BlobCorrupted):  # streamed: raised after the last chunk
        for _ in store.iter_read(ref.sha256):
            pass


def test_oversize_document_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_bytes=1000)
    with pytest.raises(BlobTooLarge, match="1000 bytes"):
        store.put(PDF, media_type="application/pdf", file_name="big.pdf")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\合同.pdf", "合同.pdf"),
        ("report\x00.pdf\r\n", "report.pdf"),
        ("e\u0301.pdf", "\u00e9.pdf"),  # NFC
    ],
)
def test_path_tricks_in_file_names_are_removed(given: str, kept: str) -> None:
    assert safe_file_name(given) == kept


@pytest.mark.parametrize("bad", ["", "..", "/", "dir/", "\x01"])
def test_file_name_with_nothing_usable_is_refused(bad: str) -> None:
    with pytest.raises(BlobError, match="no usable name"):
        safe_file_name(bad)


def test_bad_hashes_and_media_types_are_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError, match="not a SHA-256"):
        store.read("../../secret")
    with pytest.raises(BlobNotFound):
        store.read("0" * 64)
    with pytest.raises(BlobError, match="not a media type"):
        store.put(PDF, media_type="application/pdf; x=../../", file_name="a.pdf")
