"""Fixtures of the fault tests: a deployment per backend, on a scratch database for PostgreSQL.

PostgreSQL deployments get a database of their own (``faults_<pid>_<n>``) on the test
cluster (``EVIDENCE_LEDGER_TEST_DATABASE_URL``), dropped afterwards; without a reachable
server those tests skip, or fail with ``CI=true`` (as everywhere in the suite).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from psycopg import sql

from tests.conftest import TEST_DATABASE_URL, remove_lock_files, require_postgres
from tests.faults.harness import Deployment, reap_children

_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    """Kill whatever server or sealer a test left running (a failed assertion mid-run)."""
    yield
    reap_children()


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}", query=""))


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``; dropped on exit."""
    name = f"faults_{os.getpid()}_{next(_numbers)}"
    admin = _with_database(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(server_url, name)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        remove_lock_files(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A fresh ledger with a tenant, on each backend in turn."""
    if request.param == "sqlite":
        made = Deployment(tmp_path / "data")
        made.create_tenant()
        yield made
        return
    require_postgres()
    with scratch_database(TEST_DATABASE_URL) as url:
        made = Deployment(tmp_path / "data", url)
        made.create_tenant()
        yield made
