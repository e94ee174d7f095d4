"""Request body limits enforced while the body arrives, before any handler reads it whole.

A route's own size check (:func:`api.security.within_limit`, the upload loop) runs only
after the body was taken in: FastAPI parses a typed JSON body, and Starlette spools a
multipart upload to a temporary file, before the handler is called. :class:`BodyLimit`
sits in front of all of it as plain ASGI middleware:

- a ``Content-Length`` over the limit is answered 413 at once, and the body is never read;
- a body without a length (chunked) is counted as it is received; the first chunk past
  the limit stops the request, and whatever the application would have answered is
  replaced by the same 413.

The limit is :attr:`~api.security.ApiSettings.max_upload_bytes` (plus room for the
multipart framing) for document uploads and
:attr:`~api.security.ApiSettings.max_body_bytes` for every other request (RFC 9110
section 15.5.14, 413 Content Too Large).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON, TYPE_BASE
from api.security import ApiSettings

#: Room for the multipart boundaries and part headers around an uploaded document.
MULTIPART_ALLOWANCE = 64 * 1024
UPLOAD_PATH = "/v1/documents"


class BodyTooLarge(Exception):
    """Raised into the application when the body it is reading passes the limit."""


class BodyLimit:
    """Refuse request bodies over the limit with 413 ``application/problem+json``."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, method: str, path: str) -> tuple[int, str]:
        """The largest body accepted for this request, and the problem type past it."""
        if method == "POST" and path.rstrip("/") == UPLOAD_PATH:
            return self.settings.max_upload_bytes + MULTIPART_ALLOWANCE, "document-too-large"
        return self.settings.max_body_bytes, "body-too-large"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, kind = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, scope["path"], limit, kind)
            return

        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(f"the body is over {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the 413 below replaces whatever the application answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _refuse(send, scope["path"], limit, kind)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; ``None`` when absent or not a plain decimal."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, path: str, limit: int, kind: str) -> None:
    what = "document" if kind == "document-too-large" else "body"
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": 413,
        "detail": f"the {what} is over {limit} bytes",
        "instance": path,
    }
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
