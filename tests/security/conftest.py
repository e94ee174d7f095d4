"""What every attack test checks: a specific problem, nothing stored, nothing of another tenant.

The ``api`` world of ``tests/api/conftest.py`` (a real ledger on each backend, tenants a and
b with every role and a registered app key) is reused as is. :func:`footprint` counts what
the real store holds (events, log leaves, blobs on disk, idempotency records, tenancy rows,
packs) so a test can say "nothing was stored" by comparing two footprints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from httpx import Response

from tests.api.conftest import ApiWorld, api  # noqa: F401 - the fixture, re-exported here

PROBLEM_JSON = "application/problem+json"

#: Tables whose row counts make up the API's part of a footprint.
_COUNTED = (
    "stored_events",
    "ledger_log",
    "api_idempotency",
    "api_documents",
    "api_streams",
    "api_app_keys",
    "api_keys",
    "api_packs",
)


@dataclass(frozen=True)
class Footprint:
    """How much the ledger holds: rows per table, the tree size and files under the data dir."""

    rows: dict[str, int]
    tree_size: int
    files: frozenset[str]


def footprint(world: ApiWorld) -> Footprint:
    """Count what is stored, through the running app's own database and blob store."""
    database = world.client.app.state.runtime.database  # type: ignore[attr-defined]
    rows = {table: int(database.query(f"SELECT COUNT(*) FROM {table}")[0][0]) for table in _COUNTED}
    data_dir: Path = world.ledger.settings.data_dir
    files = frozenset(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not _volatile(p.relative_to(data_dir))
    )
    return Footprint(rows, world.ledger.store.tree_size(), files)


def _volatile(relative: Path) -> bool:
    """Files that change without any request: SQLite's journal and lock files, and the local
    TSA and CA, made the first time they are needed."""
    name = relative.name
    locks = (".append-lock", ".projection-lock")
    return name.endswith(("-wal", "-shm", "-journal", *locks)) or relative.parts[0] in (
        "local-tsa",
        "local-ca",
    )


def assert_unchanged(before: Footprint, world: ApiWorld) -> None:
    after = footprint(world)
    assert after.tree_size == before.tree_size, "the log grew"
    assert after.rows == before.rows, f"rows changed: {before.rows} -> {after.rows}"
    assert after.files == before.files, f"files changed: {sorted(after.files ^ before.files)}"


def assert_problem(
    answer: Response, status: int, kind: str, detail: str | None = None
) -> dict[str, Any]:
    """``answer`` is an RFC 9457 problem of ``status`` and type ``kind``; its detail holds
    ``detail`` when given."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON, answer.headers
    problem: dict[str, Any] = answer.json()
    assert problem["type"] == f"https://evidence-ledger.dev/problems/{kind}", problem
    assert problem["status"] == status, problem
    if detail is not None:
        assert detail in problem["detail"], problem
    return problem


def assert_refused(
    world: ApiWorld,
    before: Footprint,
    answer: Response,
    status: int,
    kind: str,
    detail: str | None = None,
    *,
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A specific problem, nothing stored, and none of ``secrets`` (another tenant's ids,
    names, keys) anywhere in the answer, headers included; never any API key or tenant id
    of either tenant (no refusal names them)."""
    problem = assert_problem(answer, status, kind, detail)
    assert_unchanged(before, world)
    always = [t.tenant_id for t in (world.a, world.b)]
    always += [key for t in (world.a, world.b) for key in t.keys.values()]
    assert_no_leak(answer, (*secrets, *always))
    return problem


def assert_no_leak(answer: Response, secrets: tuple[str, ...]) -> None:
    text = answer.text + "\n" + "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"the answer shows {leaked}: {text[:500]}"


def tenant_secrets(world: ApiWorld, tenant_name: str = "a") -> tuple[str, ...]:
    """Strings that would betray a tenant: its id, its keys and its app key id."""
    tenant = getattr(world, tenant_name)
    return (tenant.tenant_id, tenant.kid, *tenant.keys.values())
