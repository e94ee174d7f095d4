"""Reading PostgreSQL's plans of the ledger's statements, as a generic plan would run them.

psycopg prepares a statement run often, and PostgreSQL may then plan it once for any
parameter values (a generic plan) and keep that plan while the tables grow. Tests here
force such a plan and check that it reads by index, not whole tables.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg


def numbered(statement: str) -> str:
    """``?`` placeholders as ``$1``, ``$2``, ... for PREPARE."""
    count = iter(range(1, 100))
    return re.sub(r"\?", lambda _: f"${next(count)}", statement)


def generic_plan(
    connection: psycopg.Connection[Any], name: str, statement: str, values: str
) -> str:
    connection.execute("SET plan_cache_mode = force_generic_plan")
    connection.execute(f"PREPARE {name} AS {numbered(statement)}")
    return "\n".join(row[0] for row in connection.execute(f"EXPLAIN EXECUTE {name}({values})"))


def whole_scans(plan: str) -> list[str]:
    """The plan's scans that read a whole table or index: those with no index condition."""
    lines = plan.splitlines()
    return [
        line.strip()
        for i, line in enumerate(lines)
        if " Scan " in line and not (i + 1 < len(lines) and "Index Cond" in lines[i + 1])
    ]
