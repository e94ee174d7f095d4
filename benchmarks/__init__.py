"""Reproducible performance runs with peers side by side.

``python -m benchmarks [NAME...]`` (or ``python3 tasks.py bench [NAME...]``) runs them:

* ``append``: the ledger's full append path against plain ``eventsourcing`` appends of the
  same events, on SQLite (target: at least 0.7x the plain rate) and on PostgreSQL.
* ``proofs``: inclusion and consistency proofs from a persisted log, against pymerkle's
  ``SqliteTree`` on the same leaves (target: at least 20,000 proofs/s).

Each prints a table and writes a JSON result under ``benchmarks/results/``. See
``docs/benchmarks.md`` for what is compared, why, and the latest numbers.
"""
