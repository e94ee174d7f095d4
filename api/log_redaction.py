"""Keep credentials out of the server's logs, uvicorn's access log included.

The API takes keys only in the ``Authorization`` header, which no log line shows. A
careless client may still put one in the query string (``?api_key=elk_…``), and uvicorn's
access log prints every request's path with its query. :func:`install` adds a filter to
uvicorn's loggers that rewrites such lines before any handler sees them: every
``elk_<key id>_<secret>`` token, and the value of any query parameter whose name says it
carries a credential, becomes ``[redacted]``.
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "RedactCredentials", "install", "redact"]

REDACTED = "[redacted]"
_API_KEY = re.compile(r"elk_[0-9A-Za-z]+_[A-Za-z0-9_\-%.~]+")
_CREDENTIAL_PARAMETER = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:key|token|secret|password|passwd|auth|signature|jws)"
    r"[a-z0-9_.-]*)=)[^&;#\s\"]*"
)
#: The loggers uvicorn writes requests to.
LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """``text`` with API keys and credential-named query values replaced."""
    if "elk_" in text:
        text = _API_KEY.sub(REDACTED, text)
    if "=" in text:  # every credential parameter has one; most log lines have none
        text = _CREDENTIAL_PARAMETER.sub(rf"\1{REDACTED}", text)
    return text


class RedactCredentials(logging.Filter):
    """Rewrites a record's message and string arguments through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install() -> None:
    """Add the filter to uvicorn's loggers (once; each worker process calls this)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
