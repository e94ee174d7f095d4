"""What every benchmark shares: sample events, the machine description, tables and results."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ledger.events import Actor, EventDraft, IdentityFactor, RequestContext, new_event_id

RESULTS = Path(__file__).resolve().parent / "results"
LEDGER_SOURCES = Path(__file__).resolve().parent.parent / "ledger"

#: The acts of one approval-and-signing task, in order: each stream gets these ten events.
TASK_EVENT_TYPES = (
    "task.created",
    "document.added",
    "task.submitted",
    "step.approved",
    "document.viewed",
    "identity.verified",
    "document.signed",
    "task.reminded",
    "comment.added",
    "task.completed",
)
EVENTS_PER_STREAM = len(TASK_EVENT_TYPES)

_ACTOR = Actor(id="u-1", display_name="王芳 Wang Fang", organisation="ACME", role="approver")
_CONTEXT = RequestContext(
    ip="203.0.113.9",
    user_agent="Mozilla/5.0 (iPhone) DingTalk/7.6",
    device_id="dev-1",
    platform="ios",
    client_time="2026-11-22T10:00:00+08:00",
    request_id="req-1",
)
_OTP = IdentityFactor(
    factor="sms_otp",
    method="sms",
    result="passed",
    verified_at=datetime(2026, 11, 22, 2, 0, tzinfo=UTC),
    provider_reference="gw-1",
)


def sample_drafts(count: int, *, random_event_ids: bool = False) -> list[EventDraft]:
    """``count`` realistic drafts: consecutive runs of ten share a stream (one task each).

    Event ids are fixed here so the same drafts can also be pre-encoded for the peer. They
    are time-ordered UUIDv7, as the ledger assigns them and as apps are asked to send them;
    ``random_event_ids`` gives random UUIDv4 instead (each insert then dirties a random
    page of the ledger's unique event-id index).
    """
    drafts: list[EventDraft] = []
    stream = uuid.uuid4()
    for i in range(count):
        position = i % EVENTS_PER_STREAM
        if position == 0:
            stream = uuid.uuid4()
        type_ = TASK_EVENT_TYPES[position]
        drafts.append(
            EventDraft(
                stream_id=stream,
                type=type_,
                actor=_ACTOR,
                context=_CONTEXT,
                data={"amount": "6000.00", "currency": "HKD", "step": position},
                identity_factors=(_OTP,)
                if type_ in ("identity.verified", "document.signed")
                else (),
                event_id=uuid.uuid4() if random_event_ids else new_event_id(),
            )
        )
    return drafts


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _digest_sources() -> str:
    digest = hashlib.sha256()
    for path in sorted(LEDGER_SOURCES.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


#: A digest of ``ledger/*.py`` as this process loaded it: which ledger code a result (or a
#: cached log) came from, read when this module is imported (with the ledger modules).
LEDGER_SOURCES_DIGEST = _digest_sources()


def machine() -> dict[str, Any]:
    """Where and with what a result was measured."""
    return {
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            name: _version(name)
            for name in ("eventsourcing", "psycopg", "orjson", "rfc8785", "pymerkle")
        },
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the date and machine to ``results/NAME-<timestamp>.json``."""
    now = datetime.now(UTC)
    document = {
        "benchmark": name,
        "date": now.isoformat(timespec="seconds"),
        "machine": machine(),
        "ledger_sources": LEDGER_SOURCES_DIGEST,
        **payload,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{now:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        aligned = [c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in pairs]
        print("  ".join(aligned).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def publish_sqlite(partial: Path, final: Path) -> None:
    """Fold the WAL into the main file, so the file alone is the database, then publish it."""
    connection = sqlite3.connect(partial)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    os.replace(partial, final)


def remove_sqlite(path: Path) -> None:
    """Delete a SQLite file and its journal files, if any."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
