"""Opaque, tamper-proof page tokens for ListAccounts and ListAccountRoles.

A token is an offset MACed together with what it pages (the list, the person, the account), so it
cannot be edited, nor replayed against another person's or another account's list. Pure: the key
is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_TOKEN_LENGTH = 200
# ASCII digits only: str.isdigit() also takes '²' (which int() refuses: a 500) and '١' or '５' (which it
# reads); the length bound keeps int() clear of its 4300-digit limit.
_PAGE_SIZE = re.compile(r"[0-9]{1,3}")


class BadPageRequest(ValueError):
    """The page token or size is not one this server handed out or accepts; the message is safe to show."""


class PageTokens:
    def __init__(self, key: bytes):
        self._key = hashlib.sha256(b"sso-api page tokens\x00" + key).digest()

    def _mac(self, context: str, offset: int) -> bytes:
        return hmac.new(self._key, f"{context}\x00{offset}".encode(), hashlib.sha256).digest()[:16]

    def make(self, context: str, offset: int) -> str:
        raw = offset.to_bytes(4, "big") + self._mac(context, offset)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def read(self, context: str, token: str) -> int:
        if len(token) > MAX_TOKEN_LENGTH:
            raise BadPageRequest("The page token is not valid.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise BadPageRequest("The page token is not valid.") from None
        if len(raw) != 20:
            raise BadPageRequest("The page token is not valid.")
        offset = int.from_bytes(raw[:4], "big")
        if not hmac.compare_digest(raw[4:], self._mac(context, offset)):
            raise BadPageRequest("The page token is not valid.")
        return offset


def page_size(raw: str | None) -> int:
    """`max_result` as sent in the query string: 1 to MAX_PAGE_SIZE, default DEFAULT_PAGE_SIZE."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not _PAGE_SIZE.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadPageRequest(f"max_result must be a whole number from 1 to {MAX_PAGE_SIZE}.")
    return int(raw)


def paginate(
    items: Sequence[T], tokens: PageTokens, context: str, token: str | None, size: int
) -> tuple[list[T], str | None]:
    """One page of `items` and the token of the next page (None on the last page)."""
    offset = tokens.read(context, token) if token else 0
    if offset > len(items):
        raise BadPageRequest("The page token is not valid.")
    end = offset + size
    return list(items[offset:end]), tokens.make(context, end) if end < len(items) else None
