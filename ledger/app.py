"""The ledger as one object: store, checkpoint key, timestamp authority and sealer.

``Ledger.open(settings)`` is what every command and the HTTP API start from. On first
start it makes the ledger key under the data dir and records the log origin and the key's
public half in the database, so that every worker of one log signs with the same identity
and a wrong key is refused at start. The embedded default's local TSA is loaded, or made,
only when something needs it (timestamping, or its root for the audit).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from types import TracebackType
from uuid import UUID

from cryptography import x509

from ledger.errors import ConfigurationError, KeyMismatch, LedgerError
from ledger.events import EventDraft
from ledger.files import write_new_file
from ledger.keys import NoteKey, load_or_create_private_key
from ledger.local_tsa import LocalTimestampAuthority, LocalTsaServer
from ledger.sealer import FileSealerLock, Sealer, SealerLock, SealerThread
from ledger.settings import Settings
from ledger.sqlite_store import SQLiteLedgerStore
from ledger.store import LedgerStore, Receipt, StoredCheckpoint
from ledger.timestamping import TimestampClient


def open_store(settings: Settings) -> LedgerStore:
    """The event store the settings name: PostgreSQL if a URL is given, else SQLite."""
    if settings.database_url:
        from ledger.postgres_store import PostgresLedgerStore

        return PostgresLedgerStore(settings.database_url)
    return SQLiteLedgerStore(settings.sqlite_path)


def default_origin() -> str:
    """A fresh log origin: a schema-less URL-like name, unique per log."""
    return f"evidence-ledger.local/{secrets.token_hex(8)}"


def _load_certificates(paths: Sequence[Path]) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            certificates.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read trust root {path}: {exc}") from exc
    return certificates


class Ledger:
    """One evidence ledger: append events, seal checkpoints, prove and audit."""

    def __init__(self, settings: Settings, store: LedgerStore, key: NoteKey) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        self._tsa_server: LocalTsaServer | None = None
        self._timestamp_client: TimestampClient | None = None
        self._sealer_thread: SealerThread | None = None
        self._sealer_lock: SealerLock | None = None

    @classmethod
    def open(cls, settings: Settings) -> Ledger:
        store = open_store(settings)
        try:
            private_key = load_or_create_private_key(settings.key_path)
            origin = store.claim_meta("origin", default_origin())
            key = NoteKey(origin, private_key)
            recorded = store.claim_meta("ledger_public_key", key.public_key.hex())
            if recorded != key.public_key.hex():
                raise KeyMismatch(
                    f"{settings.key_path} is not the key this ledger's checkpoints were "
                    "signed with; refusing to sign with another key"
                )
            return cls(settings, store, key)
        except BaseException:
            store.close()
            raise

    # -- timestamps ------------------------------------------------------------------

    @cached_property
    def _local_tsa(self) -> LocalTimestampAuthority | None:
        """The local TSA of the embedded default, loaded (or made) only once needed."""
        if self.settings.tsa_urls:
            return None
        return LocalTimestampAuthority.load_or_create(self.settings.local_tsa_dir)

    @property
    def tsa_trust_roots(self) -> list[x509.Certificate]:
        """The certificates TSA tokens must chain to."""
        roots = _load_certificates(self.settings.tsa_trust_roots)
        if self._local_tsa is not None:
            roots.append(self._local_tsa.root_certificate)
        return roots

    def timestamp_client(self) -> TimestampClient:
        """The TSA client, starting the local TSA on loopback if that is the default."""
        if self._timestamp_client is None:
            urls = list(self.settings.tsa_urls)
            if self._local_tsa is not None:
                self._tsa_server = self._local_tsa.serve()
                urls = [self._tsa_server.url]
            self._timestamp_client = TimestampClient(urls, self.tsa_trust_roots)
        return self._timestamp_client

    def signature_tsa_url(self) -> str:
        """The TSA URL for signature and document timestamps inside PDFs (the first one)."""
        self.timestamp_client()
        if self._tsa_server is not None:
            return self._tsa_server.url
        return self.settings.tsa_urls[0]

    def key_passphrase(self) -> bytes:
        """The passphrase of the local CA's keys: configured, or made once under the data dir.

        A passphrase file beside the keys protects them from copies of the key files alone;
        production sets ``EVIDENCE_LEDGER_KEY_PASSPHRASE`` (or a KMS) instead.
        """
        if self.settings.key_passphrase:
            return self.settings.key_passphrase.encode()
        path = self.settings.passphrase_path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process made it first
                write_new_file(path, secrets.token_urlsafe(32).encode(), mode=0o600)
        return path.read_bytes().strip()

    # -- appending and sealing ---------------------------------------------------------

    def append(
        self, drafts: Sequence[EventDraft], *, expected: Mapping[UUID, int] | None = None
    ) -> list[Receipt]:
        return self.store.append(drafts, expected=expected)

    def sealer_lock(self) -> SealerLock:
        """This process's ticket in the election of the log's one sealer.

        PostgreSQL: a session advisory lock, so one sealer among every worker and host on
        the database. SQLite: a ``flock`` beside the database file, so one among the
        processes (``serve --workers N``, ``evidence-ledger sealer``) sharing the file.
        """
        if self._sealer_lock is None:
            if self.store.backend == "postgres":
                from ledger.postgres_store import PostgresSealerLock

                assert self.settings.database_url is not None
                self._sealer_lock = PostgresSealerLock(self.settings.database_url)
            else:
                path = self.settings.sqlite_path
                self._sealer_lock = FileSealerLock(
                    path.with_name(path.name + ".sealer-lock"), self.store
                )
        return self._sealer_lock

    def sealer(self) -> Sealer:
        """The sealer of this log, signing only while this process holds the sealer lock."""
        return Sealer(self.store, self.key, self.timestamp_client(), lock=self.sealer_lock())

    def start_sealer(self, on_change: Callable[[bool], None] | None = None) -> SealerThread:
        """Run the sealer in the background: it seals when elected, else stands by."""
        if self._sealer_thread is None:
            self._sealer_thread = SealerThread(
                self.sealer(), self.settings.seal_interval, on_change=on_change
            )
            self._sealer_thread.start()
        return self._sealer_thread

    def wait_for_checkpoint(
        self, leaf_index: int, *, timestamped: bool = True, timeout: float = 30.0
    ) -> StoredCheckpoint:
        """Block until a checkpoint covers ``leaf_index`` (and has its token, if asked)."""
        deadline = time.monotonic() + timeout
        while True:
            checkpoint = self.store.checkpoint_covering(leaf_index)
            if checkpoint is not None and (
                not timestamped or self.store.timestamp_for(checkpoint.tree_size)
            ):
                return checkpoint
            if time.monotonic() > deadline:
                raise LedgerError(
                    f"no {'timestamped ' if timestamped else ''}checkpoint covers leaf "
                    f"{leaf_index} after {timeout:.0f}s"
                )
            if self._sealer_thread is not None:
                self._sealer_thread.notify()
            time.sleep(0.05)

    def close(self) -> None:
        if self._sealer_thread is not None:
            self._sealer_thread.stop()
            self._sealer_thread = None
        if self._sealer_lock is not None:
            self._sealer_lock.release()
            self._sealer_lock = None
        if self._tsa_server is not None:
            self._tsa_server.stop()
            self._tsa_server = None
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
