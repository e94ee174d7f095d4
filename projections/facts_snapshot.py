"""KPI facts saved to disk, so that a restarted server has them within a second.

Reading a large log's typed rows out of the database takes seconds (about 6 s per million
acts on SQLite), and a server's first dashboard request after a restart used to wait for
it. A snapshot holds one scope's task, act and pending frames as Parquet files, taken at a
log position; a restarted server loads it and reads from the database only the rows after
that position.

A snapshot is used only for the log and the code it was made from. Its manifest records:

* the log position it reflects and the Merkle root of the log at that size, which must
  equal the ledger's root at that size now: a snapshot of another database, or of a log
  made again, is ignored;
* the projection's schema version and the facts' column types, which must be today's;
* each frame's row count, which the files read back must have.

Anything else, a torn or missing file included, and the snapshot is ignored: the facts load
from the database as before. A snapshot is a directory ``snap-<position>-<random>``,
written under a temporary name and renamed into place whole, so readers never see half of
one; the newest complete one is used, older ones are removed once a newer one is in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from projections import schema
from projections.facts import ACT_SCHEMA, PENDING_SCHEMA, TASK_SCHEMA

_LOG = logging.getLogger(__name__)

FORMAT = 1
_MANIFEST = "manifest.json"
#: A temporary directory this old was left by a save that never finished.
_ABANDONED_SECONDS = 3600.0
_FRAMES = {"tasks": TASK_SCHEMA, "acts": ACT_SCHEMA, "pending": PENDING_SCHEMA}


@dataclass(frozen=True)
class Snapshot:
    """The frames of one scope as of log position ``position``."""

    position: int
    tasks: pl.DataFrame
    acts: pl.DataFrame
    pending: pl.DataFrame


def _types(columns: dict[str, Any]) -> dict[str, str]:
    return {name: str(kind) for name, kind in pl.Schema(columns).items()}


class SnapshotStore:
    """Snapshots of one scope's facts in ``directory``; ``root(size)`` is the log's root."""

    def __init__(self, directory: Path, root: Callable[[int], bytes]) -> None:
        self.directory = directory
        self._root = root

    def load(self) -> Snapshot | None:
        """The newest snapshot that is right for this log, or ``None``."""
        for path in sorted(self._complete(), key=_position_of, reverse=True):
            try:
                return self._read(path)
            except _Unusable as exc:
                _LOG.info("KPI facts snapshot %s not used: %s", path.name, exc)
            except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
                _LOG.warning("KPI facts snapshot %s unreadable (%s); ignored", path.name, exc)
        return None

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` beside the others, then remove the older ones."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_hex(6)
        temporary = self.directory / f".tmp-{snapshot.position}-{token}"
        temporary.mkdir(mode=0o700)
        try:
            counts = {}
            for name in _FRAMES:
                frame: pl.DataFrame = getattr(snapshot, name)
                frame.write_parquet(temporary / f"{name}.parquet")
                counts[name] = frame.height
            manifest = {
                "format": FORMAT,
                "projection_schema": schema.SCHEMA_VERSION,
                "position": snapshot.position,
                "root": self._root(snapshot.position).hex(),
                "rows": counts,
                "types": {name: _types(columns) for name, columns in _FRAMES.items()},
            }
            (temporary / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            final = self.directory / f"snap-{snapshot.position}-{token}"
            os.rename(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        for older in self._complete():
            if _position_of(older) < snapshot.position:
                shutil.rmtree(older, ignore_errors=True)
        # What a save cut short by a crash left behind (never one being written now).
        for left in self.directory.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if time.time() - left.stat().st_mtime > _ABANDONED_SECONDS:
                    shutil.rmtree(left, ignore_errors=True)
        return final

    def _complete(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.glob("snap-*") if (p / _MANIFEST).is_file()]

    def _read(self, path: Path) -> Snapshot:
        manifest = json.loads((path / _MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise _Unusable(f"format {manifest.get('format')!r}")
        if manifest.get("projection_schema") != schema.SCHEMA_VERSION:
            raise _Unusable(f"projection schema {manifest.get('projection_schema')!r}")
        expected_types = {name: _types(columns) for name, columns in _FRAMES.items()}
        if manifest.get("types") != expected_types:
            raise _Unusable("the facts' columns have changed")
        position = manifest["position"]
        if not isinstance(position, int) or position < 1:
            raise _Unusable(f"position {position!r}")
        try:
            root = self._root(position)
        except Exception as exc:  # a log shorter than the snapshot, say
            raise _Unusable(f"no root of the log at size {position} ({exc})") from None
        if root.hex() != manifest.get("root"):
            raise _Unusable(f"taken from another log (root at size {position} differs)")
        frames = {}
        for name, columns in _FRAMES.items():
            frame = pl.read_parquet(path / f"{name}.parquet")
            if frame.schema != pl.Schema(columns):
                raise _Unusable(f"{name}.parquet has other columns")
            rows = manifest["rows"][name]
            if frame.height != rows:
                raise _Unusable(f"{name}.parquet has {frame.height} rows, not {rows}")
            frames[name] = frame
        return Snapshot(position, frames["tasks"], frames["acts"], frames["pending"])


def scope_directory(base: Path, tenant_id: str | None) -> Path:
    """Where one scope's snapshots live under ``base``: ``all`` for every task, else a
    fixed-length name made from the tenant id, whatever characters it holds."""
    if tenant_id is None:
        return base / "all"
    return base / hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


class _Unusable(Exception):
    """A complete snapshot that is not right for this log or this version."""


def _position_of(path: Path) -> int:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return -1
