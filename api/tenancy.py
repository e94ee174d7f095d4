"""Tenants, their API keys and app keys, what each tenant owns, and idempotency records.

These tables live in the ledger's database beside the log. They are not evidence (the log
is), but they decide who may see and do what: every task stream and every document is
owned by exactly one tenant, claimed before its first event is stored, and every read
checks the owner.

API keys look like ``elk_<key id>_<secret>``; only the SHA-256 of the secret is stored (the
secret is 256 random bits, so a plain hash is as strong as a slow one) and it is compared
in constant time. App keys are Ed25519 public keys registered per app, with key ids,
rotation (several live keys) and revocation. Templates and directories are stored as
versions and never changed, so a task's template can always be shown as it was.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from ledger.events import format_time
from ledger.log_writer import Transaction as WriteTransaction
from ledger.store import LedgerStore
from ledger.workflow import Directory, Template
from projections.database import database_for

#: A pending idempotency claim older than this was left by a crashed worker; it may be retaken.
PENDING_LAPSE = timedelta(seconds=60)
ROLES: frozenset[str] = frozenset({"app", "legal", "auditor", "compliance", "admin"})
KEY_PREFIX = "elk"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tenants (
    tenant_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 {blob} NOT NULL,
    label TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS api_app_keys (
    tenant_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    app_id TEXT NOT NULL,
    public_key {blob} NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    PRIMARY KEY (tenant_id, kid)
);
CREATE TABLE IF NOT EXISTS api_streams (
    stream_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_streams_tenant ON api_streams (tenant_id, stream_id);
CREATE TABLE IF NOT EXISTS api_documents (
    tenant_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size {int} NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);
CREATE TABLE IF NOT EXISTS api_idempotency (
    tenant_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    status_code {int},
    response {blob},
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);
CREATE TABLE IF NOT EXISTS api_templates (
    tenant_id TEXT NOT NULL,
    template_id TEXT NOT NULL,
    version {int} NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, template_id, version)
);
CREATE TABLE IF NOT EXISTS api_directories (
    tenant_id TEXT NOT NULL,
    version {int} NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
)
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, a role, and the API key used."""

    tenant_id: str
    role: str
    key_id: str


@dataclass(frozen=True)
class AppKey:
    tenant_id: str
    kid: str
    app_id: str
    public_key: bytes
    revoked: bool


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a request with a given ``Idempotency-Key`` found."""

    state: str  # "new", "pending", "done"
    request_sha256: str
    status_code: int | None = None
    response: bytes | None = None


@dataclass(frozen=True)
class AppendLookup:
    """What :meth:`TenantStore.append_lookup` found: the caller (``None``: not a live key),
    the app key asked for and the ``Idempotency-Key``'s record (``None``: none)."""

    principal: Principal | None
    app_key: AppKey | None
    record: IdempotencyRecord | None


_APPEND_LOOKUP = (
    "SELECT k.tenant_id, k.role, k.secret_sha256, k.revoked_at, "
    "a.app_id, a.public_key, a.revoked_at, "
    "i.request_sha256, i.state, i.status_code, i.response "
    "FROM api_keys k "
    "LEFT JOIN api_app_keys a ON a.tenant_id = k.tenant_id AND a.kid = ? "
    "LEFT JOIN api_idempotency i ON i.tenant_id = k.tenant_id AND i.idem_key = ? "
    "WHERE k.key_id = ?"
)


class StaleCredentials(Exception):
    """An API key or app key that a request's events rest on was revoked (or is gone)
    before they could be stored: the transaction that checked it stored nothing."""

    def __init__(self, key_ids: Sequence[str], app_keys: Sequence[tuple[str, str]]) -> None:
        names = [*key_ids, *(f"{tenant}/{kid}" for tenant, kid in app_keys)]
        super().__init__(f"no longer live: {', '.join(names)}")
        self.key_ids = list(key_ids)
        self.app_keys = list(app_keys)


def _live_credentials_sql(
    key_ids: Sequence[str], app_keys: Sequence[tuple[str, str]]
) -> tuple[str, list[str]]:
    """A read of which of the API keys (by id) and app keys (``(tenant_id, kid)``) are live:
    rows ``('k', key_id, '')`` and ``('a', tenant_id, kid)`` (``""``: none named)."""
    parts: list[str] = []
    params: list[str] = []
    if key_ids:
        parts.append(
            "SELECT 'k' AS kind, key_id AS id, '' AS kid FROM api_keys WHERE revoked_at IS NULL "
            f"AND key_id IN ({','.join('?' * len(key_ids))})"
        )
        params += key_ids
    if app_keys:
        parts.append(
            "SELECT 'a' AS kind, tenant_id AS id, kid FROM api_app_keys "
            "WHERE revoked_at IS NULL AND ("
            + " OR ".join(["(tenant_id = ? AND kid = ?)"] * len(app_keys))
            + ")"
        )
        params += [value for pair in app_keys for value in pair]
    return " UNION ALL ".join(parts), params


class RememberedCredentials:
    """The live API keys and app keys this process has looked up lately, for event appends.

    An append whose API key and app key are both remembered reads nothing before its own
    transaction, which checks them again (:meth:`TenantStore.claim_streams_in`): a key revoked
    since it was remembered stores nothing, and the request is answered afresh from the
    database. API keys are remembered by id and the SHA-256 of their secret (never the
    secret), app keys by tenant and key id; an entry lapses after :attr:`max_age` seconds,
    and at most :attr:`max_entries` of each are kept.
    """

    max_age = 60.0
    max_entries = 10_000

    def __init__(self) -> None:
        self._callers: dict[tuple[str, bytes], tuple[Principal, float]] = {}
        self._app_keys: dict[tuple[str, str], tuple[AppKey, float]] = {}

    @staticmethod
    def _caller_key(token: str) -> tuple[str, bytes] | None:
        parts = _token_parts(token)
        if parts is None:
            return None
        return parts[0], hashlib.sha256(parts[1].encode()).digest()

    def caller(self, token: str) -> Principal | None:
        """The principal remembered for ``token`` (``None``: not remembered)."""
        key = self._caller_key(token)
        entry = self._callers.get(key) if key is not None else None
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def app_key(self, tenant_id: str, kid: str) -> AppKey | None:
        """The live app key remembered (``None``: not remembered)."""
        entry = self._app_keys.get((tenant_id, kid))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def remember(self, token: str, who: Principal, app_key: AppKey | None) -> None:
        """Remember a principal just read as live, and its tenant's app key if live."""
        key = self._caller_key(token)
        if key is None:
            return
        until = time.monotonic() + self.max_age
        if len(self._callers) >= self.max_entries:
            self._callers.clear()
        self._callers[key] = (who, until)
        if app_key is not None and not app_key.revoked and app_key.tenant_id == who.tenant_id:
            if len(self._app_keys) >= self.max_entries:
                self._app_keys.clear()
            self._app_keys[(app_key.tenant_id, app_key.kid)] = (app_key, until)

    def forget(self, token: str, tenant_id: str, kid: str | None) -> None:
        """Drop what is remembered of ``token`` and of the tenant's ``kid``."""
        key = self._caller_key(token)
        if key is not None:
            self._callers.pop(key, None)
        if kid is not None:
            self._app_keys.pop((tenant_id, kid), None)


def _token_parts(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed API key, else ``None``."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_id) != 16 or not secret:
        return None
    return key_id, secret


def _live(
    key_id: str, secret: str, tenant_id: str, role: str, stored: bytes, revoked_at: str | None
) -> Principal | None:
    """The principal of a stored key row, if ``secret`` is its secret and it is not revoked."""
    if not hmac.compare_digest(bytes(stored), hashlib.sha256(secret.encode()).digest()):
        return None
    if revoked_at is not None:
        return None
    return Principal(tenant_id, role, key_id)


def _owners(
    query: Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]],
    stream_ids: Sequence[UUID],
    also: tuple[str, list[str]] = ("", []),
) -> tuple[dict[UUID, str], list[tuple[str, str, str]]]:
    """The owning tenant of each of ``stream_ids`` that has one, 500 ids per query; and
    the rows of ``also`` (a read of ``(kind, id, kid)`` rows, :func:`_live_credentials_sql`),
    sent with the first of them so that it costs no round trip of its own."""
    found: dict[UUID, str] = {}
    extra: list[tuple[str, str, str]] = []
    ids = [str(s) for s in stream_ids]
    for start in range(0, max(len(ids), 1), 500):
        chunk = ids[start : start + 500]
        parts: list[str] = []
        params: list[str] = []
        if chunk:
            marks = ",".join("?" * len(chunk))
            parts.append(
                "SELECT 's' AS kind, stream_id AS id, tenant_id AS kid FROM api_streams "
                f"WHERE stream_id IN ({marks})"
            )
            params += chunk
        if start == 0 and also[0]:
            parts.append(also[0])
            params += also[1]
        if not parts:
            continue
        for kind, first, second in query(" UNION ALL ".join(parts), params):
            if kind == "s":
                found[UUID(str(first))] = str(second)
            else:
                extra.append((str(kind), str(first), str(second)))
    return found, extra


def _now() -> str:
    return format_time(datetime.now(UTC))


class TenantStore:
    """Tenancy tables on the ledger's own database (SQLite file or PostgreSQL schema)."""

    def __init__(self, store: LedgerStore) -> None:
        self._db = database_for(store)
        #: What event appends in this process may skip reading (see the class).
        self.remembered = RememberedCredentials()
        blob, integer = (
            ("BYTEA", "BIGINT") if self._db.backend == "postgres" else ("BLOB", "INTEGER")
        )
        with self._db.transaction(lock_schema=True) as tx:
            for statement in _SCHEMA.format(blob=blob, int=integer).split(";"):
                if statement.strip():
                    tx.execute(statement)

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.query(sql, params)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._db.transaction() as tx:
            tx.execute(sql, params)

    # -- tenants and API keys --------------------------------------------------------

    def create_tenant(self, name: str, tenant_id: str | None = None) -> str:
        tenant_id = tenant_id or f"t-{secrets.token_hex(6)}"
        self._execute(
            "INSERT INTO api_tenants (tenant_id, name, created_at) VALUES (?, ?, ?)",
            (tenant_id, name, _now()),
        )
        return tenant_id

    def tenant_ids(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT tenant_id FROM api_tenants ORDER BY 1")]

    def tenant_exists(self, tenant_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM api_tenants WHERE tenant_id = ?", (tenant_id,)))

    def create_api_key(self, tenant_id: str, role: str, label: str | None = None) -> str:
        """A new API key for ``tenant_id`` in ``role``; the full key is shown only now."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}")
        if not self.tenant_exists(tenant_id):
            raise ValueError(f"there is no tenant {tenant_id!r}")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        self._execute(
            "INSERT INTO api_keys (key_id, tenant_id, role, secret_sha256, label, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, tenant_id, role, hashlib.sha256(secret.encode()).digest(), label, _now()),
        )
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a live API key, or ``None`` (unknown, revoked, malformed)."""
        parts = _token_parts(token)
        if parts is None:
            return None
        rows = self._query(
            "SELECT tenant_id, role, secret_sha256, revoked_at FROM api_keys WHERE key_id = ?",
            (parts[0],),
        )
        return _live(*parts, *rows[0]) if rows else None

    def append_lookup(self, token: str, kid: str | None, idem_key: str | None) -> AppendLookup:
        """:meth:`authenticate`, :meth:`app_key` and :meth:`idempotency_record` in one query.

        An event append needs all three before it verifies or stores anything; apart, they
        would be three statements (on PostgreSQL, three round trips and transactions). The
        app key and the record are those of the authenticated key's tenant, and nothing is
        returned beside a principal that does not authenticate.
        """
        parts = _token_parts(token)
        if parts is None:
            return AppendLookup(None, None, None)
        rows = self._query(_APPEND_LOOKUP, (kid, idem_key, parts[0]))
        who = _live(*parts, *rows[0][:4]) if rows else None
        if who is None:
            return AppendLookup(None, None, None)
        app_id, public_key, key_revoked_at, request_sha256, state, status, response = rows[0][4:]
        key = None
        if kid is not None and app_id is not None:
            key = AppKey(who.tenant_id, kid, app_id, bytes(public_key), key_revoked_at is not None)
        record = None
        if idem_key is not None and state is not None:
            answer = bytes(response) if response is not None else None
            record = IdempotencyRecord(state, request_sha256, status, answer)
        return AppendLookup(who, key, record)

    def revoke_api_key(self, tenant_id: str, key_id: str) -> bool:
        rows = self._query(
            "SELECT 1 FROM api_keys WHERE key_id = ? AND tenant_id = ? AND revoked_at IS NULL",
            (key_id, tenant_id),
        )
        if rows:
            self._execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND tenant_id = ?",
                (_now(), key_id, tenant_id),
            )
        return bool(rows)

    # -- app keys ----------------------------------------------------------------------

    def register_app_key(self, tenant_id: str, app_id: str, kid: str, public_key: bytes) -> bool:
        """Register an Ed25519 public key; ``False`` if the tenant already has that key id."""
        if len(public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        created = _now()
        self._execute(
            "INSERT INTO api_app_keys (tenant_id, kid, app_id, public_key, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, kid) DO NOTHING",
            (tenant_id, kid, app_id, public_key, created),
        )
        key = self.app_key(tenant_id, kid)
        return (
            key is not None
            and not key.revoked
            and key.app_id == app_id
            and key.public_key == public_key
        )

    def app_key(self, tenant_id: str, kid: str) -> AppKey | None:
        rows = self._query(
            "SELECT app_id, public_key, revoked_at FROM api_app_keys "
            "WHERE tenant_id = ? AND kid = ?",
            (tenant_id, kid),
        )
        if not rows:
            return None
        app_id, public_key, revoked_at = rows[0]
        return AppKey(tenant_id, kid, app_id, bytes(public_key), revoked_at is not None)

    def app_keys(self, tenant_id: str) -> list[AppKey]:
        rows = self._query(
            "SELECT kid, app_id, public_key, revoked_at FROM api_app_keys WHERE tenant_id = ? "
            "ORDER BY created_at, kid",
            (tenant_id,),
        )
        return [AppKey(tenant_id, k, a, bytes(p), r is not None) for k, a, p, r in rows]

    def revoke_app_key(self, tenant_id: str, kid: str) -> bool:
        key = self.app_key(tenant_id, kid)
        if key is None or key.revoked:
            return False
        self._execute(
            "UPDATE api_app_keys SET revoked_at = ? WHERE tenant_id = ? AND kid = ?",
            (_now(), tenant_id, kid),
        )
        return True

    # -- what a tenant owns -------------------------------------------------------------

    def claim_stream(self, tenant_id: str, stream_id: UUID) -> bool:
        """Make ``stream_id`` the tenant's; ``True`` if it is theirs (now or already)."""
        with self._db.transaction() as tx:
            # ON CONFLICT: of two tenants racing for one id, exactly one row is written.
            tx.execute(
                "INSERT INTO api_streams (stream_id, tenant_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (stream_id) DO NOTHING",
                (str(stream_id), tenant_id, _now()),
            )
            rows = tx.query(
                "SELECT tenant_id FROM api_streams WHERE stream_id = ?", (str(stream_id),)
            )
            return bool(rows[0][0] == tenant_id)

    @staticmethod
    def claim_streams_in(
        tx: WriteTransaction,
        claims: Sequence[tuple[str, UUID]],
        key_ids: Sequence[str] = (),
        app_keys: Sequence[tuple[str, str]] = (),
    ) -> dict[UUID, str]:
        """Claim streams for tenants, ``(tenant_id, stream_id)`` pairs, inside another write
        transaction (an append's own); returns the owner of each stream named, which is
        another tenant where that one holds it already (or claimed it here first).

        In the same read, every API key (by id) of ``key_ids`` and app key
        (``(tenant_id, kid)``) of ``app_keys`` must still be live, or
        :class:`StaleCredentials`. What a request looked up (or remembered) before it
        verified may have been revoked since: a revocation committed before this read
        refuses the append; one committed after it finds the events stored, as sent while
        the key was live.
        """
        if claims:
            created = _now()
            tx.insert_many(
                "INSERT INTO api_streams (stream_id, tenant_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (stream_id) DO NOTHING",
                [(str(stream), tenant, created) for tenant, stream in claims],
            )
        keys = sorted(set(key_ids))
        pairs = sorted(set(app_keys))
        streams = list(dict.fromkeys(stream for _, stream in claims))
        owners, rows = _owners(tx.query, streams, _live_credentials_sql(keys, pairs))
        live = set(rows)
        if len(live) != len(keys) + len(pairs):
            raise StaleCredentials(
                [k for k in keys if ("k", k, "") not in live],
                [(t, kid) for t, kid in pairs if ("a", t, kid) not in live],
            )
        return owners

    def stream_owners(self, stream_ids: Sequence[UUID]) -> dict[UUID, str]:
        """The owning tenant of each of ``stream_ids`` that has one (a read; claims nothing)."""
        return _owners(self._query, stream_ids)[0]

    def owns_stream(self, tenant_id: str, stream_id: UUID) -> bool:
        rows = self._query(
            "SELECT 1 FROM api_streams WHERE stream_id = ? AND tenant_id = ?",
            (str(stream_id), tenant_id),
        )
        return bool(rows)

    def owned_streams(self, tenant_id: str, stream_ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``stream_ids`` the tenant owns."""
        owners = _owners(self._query, stream_ids)[0]
        return {s for s in stream_ids if owners.get(s) == tenant_id}

    def record_document(self, tenant_id: str, sha256: str, file_name: str, size: int) -> None:
        self._execute(
            "INSERT INTO api_documents (tenant_id, sha256, file_name, size, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, sha256) DO NOTHING",
            (tenant_id, sha256, file_name, size, _now()),
        )

    def owns_document(self, tenant_id: str, sha256: str) -> bool:
        return bool(
            self._query(
                "SELECT 1 FROM api_documents WHERE tenant_id = ? AND sha256 = ?",
                (tenant_id, sha256),
            )
        )

    def document(self, tenant_id: str, sha256: str) -> tuple[str, int] | None:
        """The file name and size of a document the tenant uploaded, or ``None``."""
        rows = self._query(
            "SELECT file_name, size FROM api_documents WHERE tenant_id = ? AND sha256 = ?",
            (tenant_id, sha256),
        )
        return (str(rows[0][0]), int(rows[0][1])) if rows else None

    # -- idempotency -------------------------------------------------------------------

    def begin(self, tenant_id: str, key: str, request_sha256: str) -> IdempotencyRecord:
        """Claim ``key`` for this request, or report what an earlier request left there."""
        marker = secrets.token_hex(8)
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO api_idempotency (tenant_id, idem_key, request_sha256, state, "
                "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, idem_key) DO NOTHING",
                (tenant_id, key, request_sha256, f"claim:{marker}", _now()),
            )
            rows = tx.query(
                "SELECT request_sha256, state, status_code, response FROM api_idempotency "
                "WHERE tenant_id = ? AND idem_key = ?",
                (tenant_id, key),
            )
            stored_hash, state, status_code, response = rows[0]
            lapsed = format_time(datetime.now(UTC) - PENDING_LAPSE)
            if state == "pending" and stored_hash == request_sha256:
                # Retake a claim whose worker died: only if it is old enough.
                tx.execute(
                    "UPDATE api_idempotency SET state = ?, created_at = ? WHERE tenant_id = ? "
                    "AND idem_key = ? AND state = 'pending' AND created_at < ?",
                    (f"claim:{marker}", _now(), tenant_id, key, lapsed),
                )
                state = tx.query(
                    "SELECT state FROM api_idempotency WHERE tenant_id = ? AND idem_key = ?",
                    (tenant_id, key),
                )[0][0]
            if state == f"claim:{marker}":
                tx.execute(
                    "UPDATE api_idempotency SET state = 'pending' "
                    "WHERE tenant_id = ? AND idem_key = ?",
                    (tenant_id, key),
                )
                return IdempotencyRecord("new", request_sha256)
        return IdempotencyRecord(
            state, stored_hash, status_code, bytes(response) if response is not None else None
        )

    def idempotency_record(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        """What an earlier request with ``key`` left (``None``: nothing); claims nothing."""
        rows = self._query(
            "SELECT request_sha256, state, status_code, response FROM api_idempotency "
            "WHERE tenant_id = ? AND idem_key = ?",
            (tenant_id, key),
        )
        if not rows:
            return None
        stored_hash, state, status_code, response = rows[0]
        return IdempotencyRecord(
            state, stored_hash, status_code, bytes(response) if response is not None else None
        )

    @staticmethod
    def record_answers_in(
        tx: WriteTransaction, answers: Sequence[tuple[str, str, str, int, bytes]]
    ) -> None:
        """Record finished requests' answers, ``(tenant_id, key, request_sha256, status,
        response)``, inside another write transaction (an append's own).

        A record already under one of the keys (a request that raced this one) makes the
        database refuse the rows, and so the whole transaction: the caller then answers
        from it.
        """
        created = _now()
        tx.insert_many(
            "INSERT INTO api_idempotency (tenant_id, idem_key, request_sha256, state, "
            "status_code, response, created_at) VALUES (?, ?, ?, 'done', ?, ?, ?)",
            [(*answer, created) for answer in answers],
        )

    def finish(self, tenant_id: str, key: str, status_code: int, response: bytes) -> None:
        self._execute(
            "UPDATE api_idempotency SET state = 'done', status_code = ?, response = ? "
            "WHERE tenant_id = ? AND idem_key = ?",
            (status_code, response, tenant_id, key),
        )

    def abandon(self, tenant_id: str, key: str) -> None:
        """Forget a claim whose request stored nothing (refused), so a retry runs afresh."""
        self._execute(
            "DELETE FROM api_idempotency "
            "WHERE tenant_id = ? AND idem_key = ? AND state = 'pending'",
            (tenant_id, key),
        )

    # -- templates and directories -----------------------------------------------------

    def put_template(self, tenant_id: str, template: Template) -> bool:
        """Store a new template version; ``False`` if that version exists (never changed)."""
        body = orjson.dumps(template.to_json()).decode()
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO api_templates (tenant_id, template_id, version, body, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, template_id, version) DO NOTHING",
                (tenant_id, template.id, template.version, body, _now()),
            )
            rows = tx.query(
                "SELECT body FROM api_templates WHERE tenant_id = ? AND template_id = ? "
                "AND version = ?",
                (tenant_id, template.id, template.version),
            )
            return bool(rows[0][0] == body)

    def template(self, tenant_id: str, template_id: str, version: int | None) -> Template | None:
        """The named version, or the latest one when ``version`` is ``None``."""
        if version is None:
            rows = self._query(
                "SELECT body FROM api_templates WHERE tenant_id = ? AND template_id = ? "
                "ORDER BY version DESC LIMIT 1",
                (tenant_id, template_id),
            )
        else:
            rows = self._query(
                "SELECT body FROM api_templates WHERE tenant_id = ? AND template_id = ? "
                "AND version = ?",
                (tenant_id, template_id, version),
            )
        return Template.from_json(orjson.loads(rows[0][0])) if rows else None

    def templates(self, tenant_id: str) -> list[Template]:
        rows = self._query(
            "SELECT body FROM api_templates WHERE tenant_id = ? ORDER BY template_id, version",
            (tenant_id,),
        )
        return [Template.from_json(orjson.loads(r[0])) for r in rows]

    def put_directory(self, tenant_id: str, directory: Directory) -> int:
        """Store the tenant's directory as its next version; returns the version."""
        with self._db.transaction() as tx:
            rows = tx.query(
                "SELECT MAX(version) FROM api_directories WHERE tenant_id = ?", (tenant_id,)
            )
            version = int(rows[0][0] or 0) + 1
            tx.execute(
                "INSERT INTO api_directories (tenant_id, version, body, created_at) "
                "VALUES (?, ?, ?, ?)",
                (tenant_id, version, orjson.dumps(directory.to_json()).decode(), _now()),
            )
            return version

    def directory(self, tenant_id: str) -> Directory:
        rows = self._query(
            "SELECT body FROM api_directories WHERE tenant_id = ? ORDER BY version DESC LIMIT 1",
            (tenant_id,),
        )
        return Directory.from_json(orjson.loads(rows[0][0])) if rows else Directory()
