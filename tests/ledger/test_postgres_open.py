"""Several processes opening one fresh PostgreSQL ledger at once all succeed."""

from __future__ import annotations

import multiprocessing

import pytest

pytestmark = pytest.mark.postgres


def _open(url: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from ledger.postgres_store import PostgresLedgerStore

    try:
        PostgresLedgerStore(url).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent
        results.put(repr(exc))


def test_concurrent_first_opens_serialise_table_creation(postgres_url: str) -> None:
    # Without a lock held across every CREATE, PostgreSQL's catalog refuses concurrent
    # creation of the same tables ("tuple concurrently updated").
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_open, args=(postgres_url, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    assert outcomes == ["ok"] * len(workers)
