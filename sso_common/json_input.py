"""JSON a client sent, read so that what it holds can be stored, hashed and shown.

`json.loads` accepts two things the rest of a service cannot use: a lone UTF-16 surrogate (`"\\ud800"`, or
the bytes ED A0 80) in a string, which no UTF-8 encoder takes (a store's key hash, SQLite, a page: each
failed with UnicodeEncodeError, a 500), and nesting deep enough to exhaust the interpreter's recursion
limit (RecursionError, not a ValueError, so Flask's `get_json` let it through as a 500). Both are refused
here as malformed JSON, the answer every other malformed body gets.
"""

from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider


class UnusableJSON(ValueError):
    """Well-formed or not, JSON this service refuses: a ValueError, as every JSON parse error is."""


def loads(data: str | bytes | bytearray) -> Any:
    """`json.loads(data)`, or UnusableJSON for nesting too deep or a string that is not Unicode text (a lone
    surrogate), besides json's own ValueError (or UnicodeDecodeError) for malformed JSON."""
    try:
        value = json.loads(data)
        if _may_hold_a_lone_surrogate(data):
            # Encoding what was read finds a lone surrogate in any string, key or value, at any depth.
            json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise UnusableJSON("the JSON is nested too deeply") from None
    except UnicodeEncodeError:
        raise UnusableJSON("a JSON string holds a lone surrogate (not Unicode text)") from None
    return value


def _may_hold_a_lone_surrogate(data: str | bytes | bytearray) -> bool:
    """Cheap, and never wrong when False: a lone surrogate comes from a \\u escape, from bytes json decodes with
    surrogatepass (UTF-8's ED A0-BF; UTF-16 and UTF-32, whose ASCII holds NULs), or from text that holds one."""
    if isinstance(data, str):
        return "\\u" in data or not is_text(data)
    return b"\\u" in data or b"\x00" in data or not data.isascii()


def is_text(value: str) -> bool:
    """Whether `value` is Unicode text that encodes as UTF-8 (no lone surrogate): what can be stored or shown."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading request bodies with `loads`: `request.get_json()` then answers 400 (or None
    when silent) for what `loads` refuses, as for any malformed body."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        value = loads(s)
        return json.loads(s, **kwargs) if kwargs else value  # a caller's own decoder options, once checked
