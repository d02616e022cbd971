"""Stores: three small contracts, several backends each (SQLite is the embedded default).

- `StateStore`: every piece of short-lived server-side state (sessions, single-use codes, replay
  caches, throttles, device codes, tokens) is keyed JSON with an expiry, so one contract covers it all.
- `DirectoryStore`: the lasting directory of people (who exists, in which groups, disabled or not,
  revoked when).
- `AuditLog`: the append-only audit trail, queryable by person, outcome, channel and time.
`sso_common.store.conformance` holds the suites every backend must pass; `sso_common.store.registry`
opens a backend by URL.

Keys are hashed by the stores before they are kept, so a copy of the database never holds a
usable code, token or session ID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol


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


@dataclass(frozen=True)
class Person:
    """Someone an upstream identity provider vouches for, as the lasting directory keeps them.

    A person's key is (upstream, subject): the same email at two upstreams is two people."""

    upstream: str
    subject: str
    email: str
    display_name: str = ""
    groups: frozenset[str] = frozenset()
    disabled: bool = False
    revoked_at: float | None = None  # credentials and sign-ins from before this moment are void
    updated_at: float = 0.0


@dataclass(frozen=True)
class PeopleQuery:
    """Which people `DirectoryStore.find` and `count` return: those matching every filter given."""

    upstream: str | None = None
    email: str | None = None
    group: str | None = None  # a member of this group
    disabled: bool | None = None

    def matches(self, person: Person) -> bool:
        return (
            (self.upstream is None or person.upstream == self.upstream)
            and (self.email is None or person.email == self.email)
            and (self.group is None or self.group in person.groups)
            and (self.disabled is None or person.disabled == self.disabled)
        )


@dataclass(frozen=True)
class AuditQuery:
    """Which events `AuditLog.query` returns: those matching every filter given. `person` matches the
    event's user, email or subject; `since` and `until` bound its time (inclusive, exclusive)."""

    event_type: str | None = None
    person: str | None = None
    outcome: str | None = None
    channel: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, event: dict) -> bool:
        return (
            (self.event_type is None or event.get("type") == self.event_type)
            and (self.person is None or self.person in (event.get("user"), event.get("email"), event.get("subject")))
            and (self.outcome is None or event.get("outcome") == self.outcome)
            and (self.channel is None or event.get("channel") == self.channel)
            and (self.since is None or event["time"] >= self.since)
            and (self.until is None or event["time"] < self.until)
        )


EVERYONE = PeopleQuery()
EVERYTHING = AuditQuery()


class DirectoryStore(Protocol):
    """The lasting directory of people: no expiry; listed and filtered for provisioning and revocation."""

    def put(self, person: Person) -> None:
        """Insert or replace the person with this (upstream, subject)."""

    def get(self, upstream: str, subject: str) -> Person | None:
        """The person, or None."""

    def delete(self, upstream: str, subject: str) -> bool:
        """Remove the person; True when there was one."""

    def find(self, query: PeopleQuery = EVERYONE, *, offset: int = 0, limit: int = 100) -> list[Person]:
        """The people `query` matches, ordered by (upstream, subject), one page of them."""

    def count(self, query: PeopleQuery = EVERYONE) -> int:
        """How many people `query` matches (the total behind `find`'s pages)."""

    def revoke(self, upstream: str, subject: str, at: float) -> bool:
        """Void everything issued to the person before `at` (never moves back); False if unknown."""


class AuditLog(Protocol):
    def append(self, event: dict) -> None:
        """Record one event (a JSON-serialisable dict with at least 'type'); time is added if absent."""

    def query(self, query: AuditQuery = EVERYTHING, *, limit: int = 100) -> list[dict]:
        """The events `query` matches, newest first, at most `limit` of them."""

    def export(self) -> Iterator[dict]:
        """Every event, oldest first (for JSON lines export)."""


def hashed_key(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}\x00{key}".encode()).hexdigest()


def check_page(limit: int, offset: int = 0) -> None:
    """Refuse a negative or fractional limit or offset: SQLite reads LIMIT -1 as "no limit" while a Python
    slice counts from the end, so the backends would silently disagree about what the caller gets."""
    for name, value in (("limit", limit), ("offset", offset)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number of at least 0, not {value!r}")


def checked_person(person: Person) -> Person:
    """The person with `groups` as a frozenset, after refusing a key or group that is not a non-empty
    string: a plain string as `groups` would otherwise be stored as one group per character."""
    for name, value in (("upstream", person.upstream), ("subject", person.subject)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"a person's {name} must be a non-empty string, not {value!r}")
    if isinstance(person.groups, str) or not all(isinstance(group, str) and group for group in person.groups):
        raise ValueError(f"a person's groups must be a set of non-empty strings, not {person.groups!r}")
    return replace(person, groups=frozenset(person.groups))
