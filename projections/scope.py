"""Which tasks a reader may see: every task, or one owner's (the API's tenants)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scope:
    """Every task, or the tasks an ownership table gives to one owner.

    ``owners`` is ``(table, task column, owner column)``: a table with one row per task
    (the task column unique, holding task ids as text) and an index on (owner column, task
    column); the API passes ``("api_streams", "stream_id", "tenant_id")``. ``owner`` is the
    owner's key. The names are the caller's own constants, never a user's input.

    Readers test ownership per row they already have (:meth:`where`), or walk the owner's
    index in task id order (:meth:`TaskProjection.list_tasks`), so what a read costs
    follows what it returns, not how many tasks the owner has. A subquery selecting the
    owner's task ids read every one of them for each statement: with 100,000 tasks, about
    70 ms for a KPI refresh statement and 25-45 ms for a page of the task list, on SQLite.
    """

    owners: tuple[str, str, str] | None = None
    owner: Any = None

    def where(self, column: str) -> tuple[str, list[Any]]:
        """A condition keeping the rows whose task id (the SQL ``column``) is in scope."""
        if self.owners is None:
            return "1 = 1", []
        table, task, owner = self.owners
        # A scalar subquery, not EXISTS: PostgreSQL may turn EXISTS into a join that
        # reads all of the owner's rows; this is looked up by key for each row.
        return f"(SELECT o.{owner} FROM {table} o WHERE o.{task} = {column}) = ?", [self.owner]


#: The API's ownership table: the tenant of each task (``api.tenancy``).
TENANT_STREAMS = ("api_streams", "stream_id", "tenant_id")


def tenant_scope(tenant_id: str) -> Scope:
    """The tasks of one API tenant."""
    return Scope(TENANT_STREAMS, tenant_id)
