"""Files made once: keys and certificates."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.files import write_new_file


def test_new_file_gets_its_content_and_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    write_new_file(tmp_path / "key.pem", b"secret", 0o600)
    assert (tmp_path / "key.pem").read_bytes() == b"secret"
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    write_new_file(tmp_path / "key.pem", b"first", 0o600)
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "key.pem", b"second", 0o600)
    assert (tmp_path / "key.pem").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]
