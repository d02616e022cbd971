"""Stores: three small contracts, several backends each (SQLite is the embedded default).

- `StateStore`: every piece of short-lived server-side state (sessions, single-use codes, replay
  caches, throttles, device codes, tokens) is keyed JSON with an expiry, so one contract covers it all.
- `DirectoryStore`: the lasting directory of people (who exists, in which groups, disabled or not,
  revoked when), and the groups an identity provider provisions over SCIM.
- `AuditLog`: the append-only audit trail, queryable by person, outcome, channel and time.
- `ChangeLog`: an append-only, totally ordered log read forward from a position: the durable outbox
  of changes that a single worker sends on (the IdP's directory changes, the broker's revocations).
`sso_common.store.conformance` holds the suites every backend must pass; `sso_common.store.registry`
opens a backend by URL.

Keys are hashed by the stores before they are kept, so a copy of the database never holds a
usable code, token or session ID.
"""

from __future__ import annotations

import hashlib
import unicodedata
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


class DirectoryConflict(ValueError):
    """A write that would give a unique value (a SCIM id, a userName) to a second record: nothing written."""


class UnknownMember(ValueError):
    """A group names a member that is not a provisioned person of its upstream: nothing written."""


@dataclass(frozen=True)
class Person:
    """Someone an upstream identity provider vouches for, as the lasting directory keeps them.

    A person's key is (upstream, subject): the same email at two upstreams is two people.

    A person the upstream provisioned over SCIM has a `scim_id` (the SCIM resource's id, unique in the
    store), a `user_name` (unique per upstream, compared case-insensitively: `user_name_key`) and the rest of
    their SCIM resource in `scim_attributes` (JSON text, kept as given). Their `groups` are not theirs to
    write: they are the `broker_group`s of the upstream's directory groups listing their `scim_id`
    (`put` ignores what it is given there), so that one group write changes every member at once."""

    upstream: str
    subject: str
    email: str
    display_name: str = ""
    groups: frozenset[str] = frozenset()
    disabled: bool = False
    revoked_at: float | None = None  # credentials and sign-ins from before this moment are void
    updated_at: float = 0.0
    scim_id: str | None = None
    user_name: str = ""
    scim_attributes: str = ""  # a JSON object (text), or "" when none
    created_at: float = 0.0
    version: int = 0  # the writer's count of its writes: `put(..., if_version=)` compares it

    @property
    def provisioned(self) -> bool:
        return self.scim_id is not None


@dataclass(frozen=True)
class DirectoryGroup:
    """A group an upstream provisioned over SCIM. `members` are SCIM ids of provisioned people of the same
    upstream; `broker_group` is the broker group it becomes through the upstream's group mapping (None: the
    mapping drops it, and membership grants nothing). Key: (upstream, id)."""

    upstream: str
    id: str
    display_name: str
    members: frozenset[str] = frozenset()
    broker_group: str | None = None
    external_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0


@dataclass(frozen=True)
class PeopleQuery:
    """Which people `DirectoryStore.find` and `count` return: those matching every filter given."""

    upstream: str | None = None
    email: str | None = None
    group: str | None = None  # a member of this (broker) group
    disabled: bool | None = None
    subject: str | None = None
    scim_id: str | None = None
    user_name: str | None = None  # a provisioned person's, compared case-insensitively (user_name_key)
    display_name: str | None = None  # compared exactly
    provisioned: bool | None = None  # has a scim_id

    def matches(self, person: Person) -> bool:
        return (
            (self.upstream is None or person.upstream == self.upstream)
            and (self.email is None or person.email == self.email)
            and (self.group is None or self.group in person.groups)
            and (self.disabled is None or person.disabled == self.disabled)
            and (self.subject is None or person.subject == self.subject)
            and (self.scim_id is None or person.scim_id == self.scim_id)
            and (
                self.user_name is None
                or (person.scim_id is not None and user_name_key(person.user_name) == user_name_key(self.user_name))
            )
            and (self.display_name is None or person.display_name == self.display_name)
            and (self.provisioned is None or person.provisioned == self.provisioned)
        )


@dataclass(frozen=True)
class GroupQuery:
    """Which groups `DirectoryStore.find_groups` and `count_groups` return: those matching every filter given."""

    upstream: str | None = None
    id: str | None = None
    display_name: str | None = None  # compared case-insensitively (user_name_key)
    external_id: str | None = None
    member: str | None = None  # lists this SCIM id

    def matches(self, group: DirectoryGroup) -> bool:
        return (
            (self.upstream is None or group.upstream == self.upstream)
            and (self.id is None or group.id == self.id)
            and (self.display_name is None or user_name_key(group.display_name) == user_name_key(self.display_name))
            and (self.external_id is None or group.external_id == self.external_id)
            and (self.member is None or self.member in group.members)
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
EVERY_GROUP = GroupQuery()
EVERYTHING = AuditQuery()


class DirectoryStore(Protocol):
    """The lasting directory of people: no expiry; listed and filtered for provisioning and revocation.

    Writes are atomic: a refused write (a conflict, an unknown member, a version that moved) writes nothing."""

    def put(self, person: Person, *, if_version: int | None = None) -> bool:
        """Insert or replace the person with this (upstream, subject). With `if_version`, only if the stored
        person has that version (a missing person counts as version 0); False, and nothing written, otherwise.
        `revoked_at` never moves back: a put carrying an earlier one (or None) keeps the stored one. A
        provisioned person's `groups` are derived (see `Person`), whatever is given. DirectoryConflict when
        another person has the same `scim_id`, or the same `user_name_key` at the same upstream."""

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

    def rename(self, upstream: str, subject: str, new_subject: str) -> bool:
        """Give the person a new subject (their key at the upstream), keeping all else (their SCIM id, hence
        their groups); False when there is nobody to rename; DirectoryConflict when `new_subject` is taken."""

    def put_group(self, group: DirectoryGroup, *, if_version: int | None = None) -> bool:
        """Insert or replace the group with this (upstream, id); `if_version` as for `put`. UnknownMember when
        a member is not the `scim_id` of a person of the same upstream."""

    def get_group(self, upstream: str, group_id: str) -> DirectoryGroup | None:
        """The group, or None."""

    def delete_group(self, upstream: str, group_id: str) -> bool:
        """Remove the group (its members lose what it gave them); True when there was one."""

    def find_groups(
        self, query: GroupQuery = EVERY_GROUP, *, offset: int = 0, limit: int = 100
    ) -> list[DirectoryGroup]:
        """The groups `query` matches, ordered by (upstream, id), one page of them."""

    def count_groups(self, query: GroupQuery = EVERY_GROUP) -> int:
        """How many groups `query` matches."""


class AuditLog(Protocol):
    def append(self, event: dict) -> None:
        """Record one event (a JSON-serialisable dict with at least 'type'); time is added if absent."""

    def query(self, query: AuditQuery = EVERYTHING, *, limit: int = 100) -> list[dict]:
        """The events `query` matches, newest first, at most `limit` of them."""

    def export(self) -> Iterator[dict]:
        """Every event, oldest first (for JSON lines export)."""


class ChangeLog(Protocol):
    """An append-only log, read forward: the durable outbox of one sender (a lease decides which worker).

    Positions are whole numbers that grow with every append; a record becomes readable in position order
    (a reader that saw position n never later finds a record before n it had not seen)."""

    def append(self, record: dict) -> int:
        """Add a JSON-serialisable record at the end; its position."""

    def read(self, after: int = 0, *, limit: int = 100) -> list[tuple[int, dict]]:
        """(position, record) of the records after `after`, oldest first, at most `limit` of them."""

    def last(self) -> int:
        """The position of the last record, 0 when the log is empty."""


def user_name_key(name: str) -> str:
    """How userNames (and SCIM group names) are compared: NFC, then case-folded (RFC 7643: caseExact false)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


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
    if person.scim_id is not None and (not isinstance(person.scim_id, str) or not person.scim_id):
        raise ValueError(f"a person's scim_id must be None or a non-empty string, not {person.scim_id!r}")
    return replace(person, groups=frozenset(person.groups) if person.scim_id is None else frozenset())


def checked_group(group: DirectoryGroup) -> DirectoryGroup:
    """The group with `members` as a frozenset, after refusing an empty key or member."""
    for name, value in (("upstream", group.upstream), ("id", group.id)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"a group's {name} must be a non-empty string, not {value!r}")
    if isinstance(group.members, str) or not all(isinstance(member, str) and member for member in group.members):
        raise ValueError(f"a group's members must be a set of non-empty strings, not {group.members!r}")
    if group.broker_group is not None and (not isinstance(group.broker_group, str) or not group.broker_group):
        raise ValueError(f"a group's broker_group must be None or a non-empty string, not {group.broker_group!r}")
    return replace(group, members=frozenset(group.members))


def later(stored: float | None, given: float | None) -> float | None:
    """The revocation time a write keeps: the later of the stored and the given one."""
    if stored is None or given is None:
        return given if stored is None else stored
    return max(stored, given)
