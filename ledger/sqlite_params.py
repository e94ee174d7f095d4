"""Quicker binding of ``None`` and ``bytes`` parameters in Python's ``sqlite3`` module.

The module binds ``int``, ``float``, ``str`` and ``bytearray`` parameters at once, but it
sends every other value, ``None`` and ``bytes`` among them, through its adaptation
protocol first: a registry lookup that misses, then a search for ``__adapt__`` and
``__conform__``, before binding the value as it was. The projection's rows are full of
``None`` (an act without a step, a participant who has not acted yet) and the log's rows
of ``bytes`` (hashes, event ids), so that search ran millions of times per catch-up.

:func:`install` registers adapters that return the value unchanged, so the registry lookup
finds them straight away: the same value is bound (``NULL``, the same blob), sooner.
Measured here (Python 3.11, SQLite 3.40): 200,000 inserts of 22 ``None`` parameters took
2.0 s without and 0.8 s with them; of four 32-byte blobs, 0.68 s and 0.49 s. A program
that registered its own adapter for either type keeps it.

The registry is the ``sqlite3`` module's, shared by every connection of the process
(eventsourcing's included); :mod:`ledger.sqlite_store` and :mod:`projections.database`
install them when imported.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

#: ``None`` for any argument, called from C: a lookup in a dictionary that stays empty.
_NULL: Callable[[Any], None] = {}.get
#: The same object back for an exact ``bytes`` (subclasses are not adapted by it).
_SAME_BYTES: Callable[[bytes], bytes] = bytes


def install() -> None:
    """Register the pass-through adapters unless the types already have adapters."""
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), _NULL)
    if (bytes, sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(bytes, _SAME_BYTES)
