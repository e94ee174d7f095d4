"""Ledger core: events, canonical encoding, event store, Merkle log, checkpoints and timestamps."""
