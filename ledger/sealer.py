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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from ledger import merkle
from ledger.checkpoints import CheckpointBody, sign_note
from ledger.errors import ConstraintViolation, InconsistentCheckpoint
from ledger.events import format_time
from ledger.keys import NoteKey
from ledger.store import LedgerStore, StoredCheckpoint, StoredTimestamp

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.25
MAX_SEALING_DELAY = 1.0
MAX_RETRY_DELAY = 60.0


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


class Sealer:
    """Signs checkpoints of one log and requests their timestamps."""

    def __init__(
        self,
        store: LedgerStore,
        key: NoteKey,
        timestamper: Timestamper | None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.timestamper = timestamper
        self.clock = clock or (lambda: datetime.now(UTC))
        self.origin = key.name

    def seal(self) -> StoredCheckpoint | None:
        """Sign a checkpoint of the current tree if it grew; return it (or ``None``)."""
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
            self.store.insert_checkpoint(checkpoint)
        except ConstraintViolation:
            # Another sealer signed this very size first; both heads are the same tree.
            return None
        return checkpoint

    def timestamp_pending(self, limit: int = 20) -> int:
        """Request tokens for untimestamped checkpoints, oldest first; return how many got one.

        Stops at the first failure (the TSA is likely down) and re-raises it.
        """
        if self.timestamper is None:
            return 0
        done = 0
        for checkpoint in self.store.untimestamped_checkpoints(limit):
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
            except ConstraintViolation:
                continue  # another sealer stored one first
            done += 1
        return done


class SealerThread:
    """Runs a :class:`Sealer` in the background until stopped."""

    def __init__(self, sealer: Sealer, interval: float = DEFAULT_INTERVAL) -> None:
        self.sealer = sealer
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-sealer", daemon=True)
        self._retry_at = 0.0
        self._failures = 0
        self.last_error: Exception | None = None

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Run a sealing pass now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sealer.seal()
            except Exception as exc:  # keep sealing later; the audit names the cause
                self.last_error = exc
                log.error("sealing failed: %s", exc)
            now = time.monotonic()
            if now >= self._retry_at:
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
            self._wake.wait(self.interval)
            self._wake.clear()
