"""The sealer: turns new leaves into signed checkpoints and gets them timestamped.

Sealing delay (tested): while a sealer runs, every acknowledged event is covered by a
signed checkpoint within ``interval`` seconds plus one sealing pass, which stays under
:data:`MAX_SEALING_DELAY` with the default interval. One checkpoint covers every event
appended since the last, so a busy log makes few, large checkpoints.

Before signing, the sealer recomputes the previous checkpoint's root from storage and
checks the RFC 9162 consistency proof from it to the new head with the ledger's own
verifier. If either check fails it refuses to sign: the ledger never signs two
inconsistent checkpoints. Timestamping is separate and fails closed: a checkpoint whose
TSA request fails stays untimestamped and is retried with backoff; no time is recorded
in place of a verified RFC 3161 token.

One sealer per log (election): when several processes run a sealer over one log (API
workers, hosts, a separate ``evidence-ledger sealer``), only the holder of the log's
:class:`SealerLock` signs. The others stand by and try to take the lock every interval,
so when the holder dies (and its lock with it) another takes over within one interval of
the lock's release. The holder confirms the lock with its keeper before every signature
and stores each checkpoint only through the lock (:meth:`SealerLock.publish`), so a
process that lost the lock stops signing at once and never stores what it signed.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ledger import merkle
from ledger.checkpoints import CheckpointBody, sign_note
from ledger.errors import ConstraintViolation, InconsistentCheckpoint, SealerLockLost
from ledger.events import format_time
from ledger.files import ExclusiveFileLock
from ledger.keys import NoteKey
from ledger.store import LedgerStore, StoredCheckpoint, StoredTimestamp

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.25
MAX_SEALING_DELAY = 1.0
MAX_RETRY_DELAY = 60.0
#: Seconds between the timestamp passes that look for waiting checkpoints from the log's
#: first checkpoint on, rather than from the last size known to be timestamped.
FULL_SCAN_SECONDS = 600.0


class Token(Protocol):
    """What the sealer needs from a verified RFC 3161 answer."""

    @property
    def response_der(self) -> bytes: ...

    @property
    def gen_time(self) -> datetime: ...

    @property
    def tsa_url(self) -> str: ...

    @property
    def tsa_name(self) -> str: ...


class Timestamper(Protocol):
    """Anything that returns a verified token for some bytes, or raises."""

    def timestamp(self, data: bytes) -> Token: ...


class SealerLock(ABC):
    """The right to sign one log's checkpoints, held by at most one process at a time.

    The lock belongs to something that ends with its holder: a PostgreSQL session
    (:class:`ledger.postgres_store.PostgresSealerLock`) or an open file
    (:class:`FileSealerLock`), so a holder that dies releases it.
    """

    @abstractmethod
    def acquire(self) -> bool:
        """Take the lock if it is free, or confirm with its keeper that this process holds it.

        ``False`` when another process holds it, or when the lock's keeper cannot be
        reached (a holder whose connection closed holds nothing any more).
        """

    @abstractmethod
    def publish(self, checkpoint: StoredCheckpoint) -> None:
        """Store a signed checkpoint, only while holding the lock.

        Raises :class:`~ledger.errors.SealerLockLost` (nothing stored) if the lock is
        not held, or :class:`~ledger.errors.ConstraintViolation` if that size is stored.
        """

    @abstractmethod
    def release(self) -> None:
        """Give the lock up (no-op if not held)."""

    @property
    @abstractmethod
    def held(self) -> bool:
        """Whether this process held the lock when last confirmed."""


class FileSealerLock(SealerLock):
    """An exclusive ``flock`` on a file beside a SQLite log.

    Every process that opens the SQLite file runs on this host, so the kernel is the keeper:
    the lock goes with the open file, released when the holder closes it or dies.
    """

    def __init__(self, path: Path, store: LedgerStore) -> None:
        self.path = path
        self.store = store
        self._lock = ExclusiveFileLock(path)

    @property
    def held(self) -> bool:
        return self._lock.held

    def acquire(self) -> bool:
        return self._lock.acquire()

    def publish(self, checkpoint: StoredCheckpoint) -> None:
        if not self._lock.held:
            raise SealerLockLost("this process does not hold the sealer lock")
        self.store.insert_checkpoint(checkpoint)

    def release(self) -> None:
        self._lock.release()


class Sealer:
    """Signs checkpoints of one log and requests their timestamps.

    With a ``lock``, it signs only while holding it (confirmed just before signing) and
    stores checkpoints through it; without one (tests, single-process tools) it signs
    whenever asked and the unique tree size settles any race.
    """

    def __init__(
        self,
        store: LedgerStore,
        key: NoteKey,
        timestamper: Timestamper | None,
        *,
        clock: Callable[[], datetime] | None = None,
        lock: SealerLock | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.timestamper = timestamper
        self.clock = clock or (lambda: datetime.now(UTC))
        self.origin = key.name
        self.lock = lock
        # Every checkpoint up to this size has its token. Tokens are never removed, so
        # this stays true; timestamp passes look only above it (see timestamp_pending).
        self._stamped_through = 0
        self._full_scan_at = 0.0

    def seal(self) -> StoredCheckpoint | None:
        """Sign a checkpoint of the current tree if it grew; return it (or ``None``).

        With a lock, ``None`` too when another process holds it; if the lock is lost
        between the check and the store, :class:`~ledger.errors.SealerLockLost`.
        """
        if self.lock is not None and not self.lock.acquire():
            return None
        size = self.store.tree_size()
        previous = self.store.latest_checkpoint()
        if size == 0 or (previous is not None and previous.tree_size >= size):
            return None
        # Read from storage, not from any cache: these reads are the check before signing.
        root = self.store.root(size, fresh=True)
        proof: list[bytes] = []
        if previous is not None:
            recomputed = self.store.root(previous.tree_size, fresh=True)
            if recomputed != previous.root_hash:
                raise InconsistentCheckpoint(
                    f"the stored tree no longer has the root signed at size "
                    f"{previous.tree_size}; refusing to sign"
                )
            proof = self.store.consistency_proof(previous.tree_size, size, fresh=True)
            if not merkle.verify_consistency(
                previous.tree_size, size, previous.root_hash, root, proof
            ):
                raise InconsistentCheckpoint(
                    f"size {size} does not extend the checkpoint at size "
                    f"{previous.tree_size}; refusing to sign"
                )
        # Confirm the lock once more right before signing: reads above may have taken a
        # while, and a sealer that lost the lock in the meantime must not sign at all.
        if self.lock is not None and not self.lock.acquire():
            return None
        body = CheckpointBody(origin=self.origin, tree_size=size, root_hash=root)
        checkpoint = StoredCheckpoint(
            tree_size=size,
            root_hash=root,
            note=sign_note(body.text(), self.key),
            previous_size=previous.tree_size if previous else None,
            consistency_proof=tuple(proof),
            signed_at=format_time(self.clock()),
        )
        try:
            if self.lock is not None:
                self.lock.publish(checkpoint)
            else:
                self.store.insert_checkpoint(checkpoint)
        except ConstraintViolation:
            # Another sealer signed this very size first; both heads are the same tree.
            return None
        return checkpoint

    def timestamp_pending(self, limit: int = 20) -> int:
        """Request tokens for untimestamped checkpoints, oldest first; return how many got one.

        Stops at the first failure (the TSA is likely down) and re-raises it.

        Each pass reads only the checkpoints above the largest size up to which every
        checkpoint is known to have its token, so its cost does not grow with the log's
        history of checkpoints (one a second on a busy log). Once every
        :data:`FULL_SCAN_SECONDS` a pass looks from the first checkpoint on, in case one
        below that size was ever left waiting (a checkpoint is stored only above the
        latest, so none should be).
        """
        if self.timestamper is None:
            return 0
        now = time.monotonic()
        if now >= self._full_scan_at:
            self._stamped_through = 0
            self._full_scan_at = now + FULL_SCAN_SECONDS
        # Read before the waiting ones: every checkpoint up to it is then in their read.
        latest = self.store.latest_checkpoint()
        waiting = self.store.untimestamped_checkpoints(limit, after=self._stamped_through)
        done = 0
        for checkpoint in waiting:
            token = self.timestamper.timestamp(checkpoint.note.encode("utf-8"))
            stamp = StoredTimestamp(
                tree_size=checkpoint.tree_size,
                response_der=token.response_der,
                gen_time=format_time(token.gen_time),
                tsa_url=token.tsa_url,
                tsa_name=token.tsa_name,
            )
            try:
                self.store.insert_timestamp(stamp)
                done += 1
            except ConstraintViolation:
                pass  # another sealer stored one first
            # The read lists every waiting checkpoint above the bound in order, so all
            # up to this one now have their token.
            self._stamped_through = checkpoint.tree_size
        if len(waiting) < limit and latest is not None:
            self._stamped_through = max(self._stamped_through, latest.tree_size)
        return done


class SealerThread:
    """Runs a :class:`Sealer` in the background until stopped.

    With a lock on the sealer, each pass first takes or confirms the lock; a process
    that does not hold it stands by (signs nothing, requests no timestamps) and tries
    again next interval. ``on_change(holding)`` is called whenever that changes.

    Timestamps are requested from a second thread, so a TSA that is slow or hangs (until
    its client's timeout) never holds up signing: checkpoints keep their sealing delay
    whatever the TSA does, and wait untimestamped until it answers.
    """

    def __init__(
        self,
        sealer: Sealer,
        interval: float = DEFAULT_INTERVAL,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.sealer = sealer
        self.interval = interval
        self.on_change = on_change
        self.holding = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-sealer", daemon=True)
        self._stamp_wake = threading.Event()
        self._stamper = threading.Thread(
            target=self._run_timestamps, name="ledger-timestamps", daemon=True
        )
        self._retry_at = 0.0
        self._failures = 0
        self.last_error: Exception | None = None

    def start(self) -> None:
        self._thread.start()
        self._stamper.start()

    def notify(self) -> None:
        """Run a sealing pass now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._stamp_wake.set()
        self._thread.join(timeout)
        self._stamper.join(timeout)
        lock = self.sealer.lock
        if lock is not None and not self._thread.is_alive():
            lock.release()
            self._set_holding(False)

    def _set_holding(self, holding: bool) -> None:
        if holding != self.holding:
            self.holding = holding
            if holding:
                log.info("holding the sealer lock: this process seals")
            else:
                log.info("not holding the sealer lock: standing by")
            if self.on_change is not None:
                self.on_change(holding)

    def _elected(self) -> bool:
        lock = self.sealer.lock
        if lock is None:
            return True
        try:
            holding = lock.acquire()
        except Exception as exc:  # the keeper is unreachable: hold nothing, try again
            self.last_error = exc
            holding = False
        self._set_holding(holding)
        return holding

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._elected():
                self._wake.wait(self.interval)
                self._wake.clear()
                continue
            try:
                if self.sealer.seal() is not None:
                    self._stamp_wake.set()
            except SealerLockLost as exc:
                self.last_error = exc
                self._set_holding(False)
                log.warning("sealer lock lost, nothing stored: %s", exc)
                self._wake.wait(self.interval)
                self._wake.clear()
                continue
            except Exception as exc:  # keep sealing later; the audit names the cause
                self.last_error = exc
                log.error("sealing failed: %s", exc)
            self._wake.wait(self.interval)
            self._wake.clear()

    def _run_timestamps(self) -> None:
        """Timestamp waiting checkpoints while this process holds the lock (or has none)."""
        while not self._stop.is_set():
            now = time.monotonic()
            if (self.holding or self.sealer.lock is None) and now >= self._retry_at:
                try:
                    self.sealer.timestamp_pending()
                    self._failures = 0
                    self._retry_at = 0.0
                except Exception as exc:  # fail closed: stays untimestamped, retried
                    self.last_error = exc
                    self._failures += 1
                    delay = min(MAX_RETRY_DELAY, 0.5 * 2**self._failures)
                    self._retry_at = now + delay
                    log.warning("timestamping failed, retrying in %.1fs: %s", delay, exc)
            self._stamp_wake.wait(self.interval)
            self._stamp_wake.clear()
