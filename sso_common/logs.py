"""Log lines that cannot be forged: every record is written on one line, control characters escaped.

Paths, form values and upstream answers reach log messages (a decoded path `/%0aFORGED` holds a newline).
`EscapeControlCharacters`, a filter on every handler of the root logger (and on the access log), rewrites
each record before any formatter sees it: the message with its arguments filled in, non-printable
characters written as Python escapes (`\\n`, `\\x1b`, `\\u2028`), so one record is always one line and
its text cannot move the cursor or pose as another line. A traceback keeps its own line breaks (frames
come from source files), but the exception's message inside it is escaped like any other message.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"  # request ID: sso_common/request_id.py
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` with every non-printable character (str.isprintable: controls, format characters, line and
    paragraph separators, lone surrogates) written as a Python escape. Printable text, accented letters
    included, is unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _SHORT_ESCAPES.get(c) or _escaped(c) for c in text)


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _traceback(exc_info) -> str:
    """The traceback, with frames as Python prints them and each exception's message escaped."""
    kind, value, tb = exc_info
    lines = []
    for chunk in traceback.TracebackException(kind, value, tb).format():
        if chunk.startswith("  File ") or chunk.startswith("Traceback ") or not chunk.strip():
            lines.append(chunk.rstrip("\n"))  # a frame (from a source file) or a fixed header
        elif chunk.startswith("\nDuring handling") or chunk.startswith("\nThe above exception"):
            lines.append(chunk.strip("\n"))
        else:
            lines.append(escape(chunk.rstrip("\n")))  # "Error: message", the message being anyone's text
    return "\n".join(lines)


class EscapeControlCharacters(logging.Filter):
    """Rewrites a record so that whatever formats it writes one line per record (see the module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_escaped", False):
            record.msg, record.args = escape(record.getMessage()), None
            if record.exc_info and record.exc_info[0] is not None:
                record.exc_text = _traceback(record.exc_info)
            if record.stack_info:
                record.stack_info = "\n".join(escape(line) for line in record.stack_info.splitlines())
            record._escaped = True
        return True


def configure_logging(level: str | int | None = None) -> None:
    """The apps' logging: one line per record on standard error, escaped, with the request's ID (`-` outside
    a request), at LOG_LEVEL (default info).

    Safe to call more than once. When the root logger already has handlers (a test runner's), they are
    kept and get the escaping filter too."""
    root = logging.getLogger()
    level = level or os.environ.get("LOG_LEVEL", "info").upper()
    root.setLevel(level)
    if not root.handlers:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(stream)
    from sso_common.request_id import RequestIdField

    for handler in root.handlers:
        if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            handler.addFilter(EscapeControlCharacters())
        if not any(isinstance(f, RequestIdField) for f in handler.filters):
            handler.addFilter(RequestIdField())
