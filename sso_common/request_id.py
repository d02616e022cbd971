"""Request IDs: one ID per request, accepted from the edge or made here, carried on every call the request
makes (the portal's calls to the IdP, the STS call) and written in every log line.

nginx (devstack/edge.py) passes a client's `X-Request-ID` on or makes one (`$request_id`, 32 hex digits).
`RequestId`, the outermost WSGI middleware of both apps (sso_common/serve.py), takes the header when it is
well formed (`ACCEPTED`: letters, digits and `._:-`, at most 128 characters, so it cannot forge a log line
or carry a payload), makes one otherwise, keeps it in a context variable for the request's thread, and
sends it back in the answer's `X-Request-ID`. `outgoing_headers()` is what a back-channel call adds;
`RequestIdField` puts it on every log record (`-` outside a request), and the log format
(sso_common/logs.py) writes it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

HEADER = "X-Request-ID"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
ACCEPTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
NONE = "-"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted(value: str | None) -> str | None:
    """`value` if it is a well-formed request ID, else None."""
    return value if value and ACCEPTED.fullmatch(value) else None


def current_request_id() -> str | None:
    return _current.get()


def outgoing_headers() -> dict[str, str]:
    """The header a call made on behalf of the current request carries (none outside a request)."""
    request_id = _current.get()
    return {HEADER: request_id} if request_id else {}


class RequestId:
    """WSGI middleware: the request's ID in the context, the environ and the answer (see the module doc)."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request_id = accepted(environ.get(ENVIRON_KEY)) or new_request_id()
        environ[ENVIRON_KEY] = request_id
        token = _current.set(request_id)

        def with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            headers = [(name, value) for name, value in headers if name.lower() != "x-request-id"]
            headers.append((HEADER, request_id))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            return self.app(environ, with_id)
        finally:
            _current.reset(token)


class RequestIdField(logging.Filter):
    """Gives every record a `request_id` attribute: the current request's, or `-`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current.get() or NONE
        return True
