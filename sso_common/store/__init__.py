"""State stores: one small contract, several backends (SQLite is the embedded default).

Every piece of server-side state (sessions, single-use codes, replay caches, throttles, device
codes, tokens) is short-lived keyed JSON with an expiry, so one contract covers it all: `StateStore`.
The audit trail is append-only and queryable: `AuditLog`. `tests/sso_common/test_store_conformance.py`
is the suite every backend must pass.

Keys are hashed by the stores before they are kept, so a copy of the database never holds a
usable code, token or session ID.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator, Protocol


class StateStore(Protocol):
    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        """Store `value` under (kind, key) for `ttl` seconds, replacing what was there."""

    def add(self, kind: str, key: str, value: dict, ttl: float) -> bool:
        """Store only if no live entry exists; True when stored. The building block of replay caches."""

    def get(self, kind: str, key: str) -> dict | None:
        """The live value, or None when absent or expired."""

    def take(self, kind: str, key: str) -> dict | None:
        """Atomically read and delete: of concurrent callers, at most one gets the value."""

    def delete(self, kind: str, key: str) -> None:
        """Remove the entry if present."""

    def incr(self, kind: str, key: str, ttl: float, amount: int = 1) -> int:
        """Atomically add `amount` (may be negative) to a count kept for a window of `ttl` seconds that
        starts at the first increment; returns the new count. Readable by `get` as {"count": n}."""

    def purge_expired(self) -> int:
        """Drop expired entries; returns how many. Stores also purge on their own from time to time."""


class AuditLog(Protocol):
    def append(self, event: dict) -> None:
        """Record one event (a JSON-serialisable dict with at least 'type'); time is added if absent."""

    def recent(self, limit: int = 100, event_type: str | None = None) -> list[dict]:
        """Newest first."""

    def export(self) -> Iterator[dict]:
        """Every event, oldest first (for JSON lines export)."""


def hashed_key(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}\x00{key}".encode()).hexdigest()


def open_state_store(url: str) -> StateStore:
    """`sqlite:///path/to/file.db` or `memory://`."""
    from .memory import MemoryStateStore
    from .sqlite import SQLiteStateStore

    if url == "memory://":
        return MemoryStateStore()
    if url.startswith("sqlite:///"):
        return SQLiteStateStore(url[len("sqlite:///"):])
    raise ValueError(f"unsupported store URL {url!r} (use sqlite:///PATH or memory://)")


def open_audit_log(url: str) -> AuditLog:
    from .memory import MemoryAuditLog
    from .sqlite import SQLiteAuditLog

    if url == "memory://":
        return MemoryAuditLog()
    if url.startswith("sqlite:///"):
        return SQLiteAuditLog(url[len("sqlite:///"):])
    raise ValueError(f"unsupported audit log URL {url!r} (use sqlite:///PATH or memory://)")


JSONDict = dict[str, Any]
