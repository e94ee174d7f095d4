"""The ledger's exception hierarchy.

One root, :class:`LedgerError`, with a subtree per concern. Persistence errors raised by
the storage libraries are translated into this hierarchy at the store boundary, so callers
never need to know which database is underneath.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class InvalidEvent(LedgerError, ValueError):
    """An event envelope was refused before anything was stored."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid event: {field}: {reason}")
        self.field = field
        self.reason = reason


class StoreError(LedgerError):
    """The event store could not complete an operation; nothing was stored."""


class StreamConflict(StoreError):
    """Another writer appended to the same stream first (optimistic concurrency)."""

    def __init__(self, stream_id: object, sequence: int) -> None:
        super().__init__(
            f"stream {stream_id} already has an event at sequence {sequence}; "
            "another writer appended first, re-read the stream and try again"
        )
        self.stream_id = stream_id
        self.sequence = sequence


class DuplicateEvent(StoreError):
    """An event with the same event id is already in the ledger.

    ``taken`` holds every event id of the refused append that is stored already (empty
    when the append named one id twice itself).
    """

    def __init__(self, event_id: object, taken: frozenset[object] = frozenset()) -> None:
        super().__init__(f"event {event_id} is already in the ledger")
        self.event_id = event_id
        self.taken = taken


class ConstraintViolation(StoreError):
    """The database's own uniqueness checks refused a write the ledger thought valid."""


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the transaction."""


class LogError(LedgerError):
    """The Merkle log was asked for something it cannot answer."""


class CheckpointError(LedgerError):
    """A checkpoint could not be made, or was refused."""


class InconsistentCheckpoint(CheckpointError):
    """Signing was refused: the new tree head does not extend an earlier checkpoint."""


class SealerLockLost(CheckpointError):
    """This process no longer holds the sealer lock (its connection closed): it must not sign."""


class KeyMismatch(CheckpointError):
    """The ledger key on disk is not the key this database was first sealed with."""


class ConfigurationError(LedgerError):
    """Settings are missing, contradictory or unsafe."""
