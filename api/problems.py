"""Errors as RFC 9457 ``application/problem+json``, each with a specific type and message.

Handlers raise :class:`Problem` (or let a ledger error through); one exception handler
turns both into a problem document. Ledger errors map by class to a status and a type URI
under ``https://evidence-ledger.dev/problems/``; the ``detail`` is the error's own message,
which names the field, rule or id at fault. Nothing internal (SQL, paths, stack traces)
ever reaches the caller: unexpected errors become a bare 500.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from eventsourcing.persistence import InterfaceError as DatabaseInterfaceError
from eventsourcing.persistence import OperationalError as DatabaseOperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.blobs import BlobError, BlobNotFound, BlobTooLarge
from ledger.errors import (
    DuplicateEvent,
    InvalidEvent,
    LedgerError,
    StoreUnavailable,
    StreamConflict,
)
from ledger.task_service import DocumentRefused, SigningUnavailable, TaskNotFound
from ledger.workflow import errors as workflow_errors

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://evidence-ledger.dev/problems/"
_LOG = logging.getLogger(__name__)


class Problem(Exception):
    """An HTTP error with an RFC 9457 body."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.title = title or kind.replace("-", " ").capitalize()
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def response(self, instance: str | None = None) -> JSONResponse:
        return JSONResponse(
            self.body(instance),
            status_code=self.status,
            media_type=PROBLEM_JSON,
            headers=self.headers,
        )


#: Ledger errors by class (the first match in this order wins): status and problem type.
_MAPPING: tuple[tuple[type[BaseException], int, str], ...] = (
    (TaskNotFound, 404, "task-not-found"),
    (workflow_errors.TaskNotCreated, 404, "task-not-found"),
    (workflow_errors.NotAParticipant, 403, "not-a-participant"),
    (workflow_errors.NotInitiator, 403, "not-the-initiator"),
    (workflow_errors.NotSystemActor, 403, "system-only"),
    (workflow_errors.SelfApprovalNotAllowed, 403, "self-approval-not-allowed"),
    (workflow_errors.IdentityCheckRequired, 403, "identity-check-required"),
    (workflow_errors.NotYourTurn, 409, "not-your-turn"),
    (workflow_errors.AlreadyActed, 409, "already-acted"),
    (workflow_errors.TaskFinished, 409, "task-finished"),
    (workflow_errors.TaskNotStarted, 409, "task-not-started"),
    (workflow_errors.TaskExists, 409, "task-exists"),
    (workflow_errors.NotDue, 409, "not-due"),
    (workflow_errors.ActionRefused, 422, "action-refused"),
    (workflow_errors.RoutingError, 422, "routing-failed"),
    (workflow_errors.TemplateError, 422, "invalid-template"),
    (workflow_errors.WorkflowError, 422, "workflow-error"),
    (StreamConflict, 409, "stream-conflict"),
    (DuplicateEvent, 409, "duplicate-event"),
    (InvalidEvent, 422, "invalid-event"),
    (BlobTooLarge, 413, "document-too-large"),
    (BlobNotFound, 404, "document-not-found"),
    (DocumentRefused, 422, "document-refused"),
    (BlobError, 422, "document-refused"),
    (SigningUnavailable, 503, "signing-unavailable"),
    (StoreUnavailable, 503, "store-unavailable"),
    (LedgerError, 422, "request-refused"),
)


def problem_for(exc: LedgerError) -> Problem:
    for cls, status, kind in _MAPPING:
        if isinstance(exc, cls):
            headers = {"Retry-After": "1"} if status == 503 else None
            return Problem(status, kind, str(exc), headers=headers)
    raise AssertionError("LedgerError is the last entry")  # pragma: no cover


#: Errors of the database libraries that mean "unavailable now", not "wrong request": a
#: lost or refused connection, a pool that found none in time, a full disk, a lock held
#: too long. They reach the edge from code that talks to the database without going
#: through the store (tenancy, projections); each is answered 503 with ``Retry-After``.
UNAVAILABLE: tuple[type[Exception], ...] = (
    DatabaseOperationalError,
    DatabaseInterfaceError,
    sqlite3.OperationalError,
)


def store_unavailable(exc: BaseException) -> Problem:
    """The 503 for a database that is away; its detail says so without internals."""
    return Problem(
        503,
        "store-unavailable",
        "the ledger database is unavailable (connection lost, restarting or out of space); "
        "retry later with the same Idempotency-Key (if this request was stored after all, "
        "the retry gets its first answer)",
        headers={"Retry-After": "1"},
    )


def install(app: FastAPI) -> None:
    """Route every error through one problem+json shape."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return exc.response(request.url.path)

    async def on_ledger_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LedgerError)
        return problem_for(exc).response(request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = str(exc.detail) if exc.detail else kind.replace("-", " ")
        return Problem(exc.status_code, kind, detail).response(request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "reason": "invalid"}
        detail = f"{first['field']}: {first['reason']}"
        return Problem(422, "invalid-request", detail, errors=errors).response(request.url.path)

    async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
        # The database went away (restarted, unreachable, out of space) under code that
        # reads or writes it directly; a retry with the same key is safe.
        _LOG.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return store_unavailable(exc).response(request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        _LOG.exception("unexpected error on %s %s", request.method, request.url.path)
        return Problem(500, "internal-error", "the ledger could not handle this request").response(
            request.url.path
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(LedgerError, on_ledger_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    for database_down in UNAVAILABLE:
        app.add_exception_handler(database_down, on_database_down)
    app.add_exception_handler(Exception, on_unexpected)
