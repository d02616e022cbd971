"""In-process backend: for unit tests and single-process tools. Not shared between workers."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from sso_common.store import (  # the rules every backend applies alike
    EVERY_GROUP,
    EVERYONE,
    EVERYTHING,
    AuditQuery,
    DirectoryConflict,
    DirectoryGroup,
    GroupQuery,
    PeopleQuery,
    Person,
    UnknownMember,
    check_page,
    checked_group,
    checked_person,
    hashed_key,
    later,
    user_name_key,
)


class MemoryStateStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, tuple[dict, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _live(self, hkey: str) -> dict | None:
        entry = self._entries.get(hkey)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[hkey]
            return None
        return entry[0]

    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        with self._lock:
            self._entries[hashed_key(kind, key)] = (copy.deepcopy(value), self._clock() + ttl)

    def add(self, kind: str, key: str, value: dict, ttl: float) -> bool:
        hkey = hashed_key(kind, key)
        with self._lock:
            if self._live(hkey) is not None:
                return False
            self._entries[hkey] = (copy.deepcopy(value), self._clock() + ttl)
            return True

    def get(self, kind: str, key: str) -> dict | None:
        with self._lock:
            value = self._live(hashed_key(kind, key))
            return copy.deepcopy(value) if value is not None else None

    def take(self, kind: str, key: str) -> dict | None:
        hkey = hashed_key(kind, key)
        with self._lock:
            value = self._live(hkey)
            if value is not None:
                del self._entries[hkey]
            return value

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._entries.pop(hashed_key(kind, key), None)

    def incr(self, kind: str, key: str, ttl: float, amount: int = 1) -> int:
        hkey = hashed_key(kind, key)
        with self._lock:
            current = self._live(hkey)
            if current is None:
                self._entries[hkey] = ({"count": amount}, self._clock() + ttl)
                return amount
            current["count"] += amount
            return current["count"]

    def purge_expired(self) -> int:
        with self._lock:
            now = self._clock()
            dead = [k for k, (_, expires) in self._entries.items() if expires <= now]
            for k in dead:
                del self._entries[k]
            return len(dead)


class MemoryDirectoryStore:
    def __init__(self) -> None:
        self._people: dict[tuple[str, str], Person] = {}
        self._groups: dict[tuple[str, str], DirectoryGroup] = {}
        self._lock = threading.Lock()

    def _derived(self, person: Person) -> Person:
        """The person as read: a provisioned person's groups from the groups listing them (lock held)."""
        if person.scim_id is None:
            return replace(person)
        groups = frozenset(
            group.broker_group
            for (upstream, _), group in self._groups.items()
            if upstream == person.upstream and person.scim_id in group.members and group.broker_group
        )
        return replace(person, groups=groups)

    def put(self, person: Person, *, if_version: int | None = None) -> bool:
        person = checked_person(person)
        key = (person.upstream, person.subject)
        with self._lock:
            stored = self._people.get(key)
            if if_version is not None and (stored.version if stored else 0) != if_version:
                return False
            for other_key, other in self._people.items():
                if other_key == key:
                    continue
                if person.scim_id is not None and other.scim_id == person.scim_id:
                    raise DirectoryConflict("another person has this scim_id")
                if (
                    person.scim_id is not None
                    and other.upstream == person.upstream
                    and other.scim_id is not None
                    and user_name_key(other.user_name) == user_name_key(person.user_name)
                ):
                    raise DirectoryConflict("another person of this upstream has this user_name")
            if stored is not None and stored.scim_id is not None and stored.scim_id != person.scim_id:
                self._drop_member(stored.upstream, stored.scim_id)
            self._people[key] = replace(
                person, revoked_at=later(stored.revoked_at if stored else None, person.revoked_at)
            )
            return True

    def get(self, upstream: str, subject: str) -> Person | None:
        with self._lock:
            person = self._people.get((upstream, subject))
            return self._derived(person) if person is not None else None

    def delete(self, upstream: str, subject: str) -> bool:
        with self._lock:
            person = self._people.pop((upstream, subject), None)
            if person is not None and person.scim_id is not None:
                self._drop_member(upstream, person.scim_id)
            return person is not None

    def _drop_member(self, upstream: str, scim_id: str) -> None:
        for key, group in self._groups.items():
            if key[0] == upstream and scim_id in group.members:
                self._groups[key] = replace(group, members=group.members - {scim_id})

    def _matching(self, query: PeopleQuery) -> list[Person]:
        """Every match, ordered by key; the caller holds the lock."""
        people = (self._derived(person) for _, person in sorted(self._people.items()))
        return [person for person in people if query.matches(person)]

    def find(self, query: PeopleQuery = EVERYONE, *, offset: int = 0, limit: int = 100) -> list[Person]:
        check_page(limit, offset)
        with self._lock:
            return self._matching(query)[offset : offset + limit]

    def count(self, query: PeopleQuery = EVERYONE) -> int:
        with self._lock:
            return len(self._matching(query))

    def revoke(self, upstream: str, subject: str, at: float) -> bool:
        with self._lock:
            person = self._people.get((upstream, subject))
            if person is None:
                return False
            self._people[(upstream, subject)] = replace(person, revoked_at=later(person.revoked_at, at))
            return True

    def rename(self, upstream: str, subject: str, new_subject: str) -> bool:
        if not isinstance(new_subject, str) or not new_subject:
            raise ValueError(f"a person's subject must be a non-empty string, not {new_subject!r}")
        with self._lock:
            if (upstream, new_subject) in self._people:
                raise DirectoryConflict("another person of this upstream has this subject")
            person = self._people.pop((upstream, subject), None)
            if person is None:
                return False
            self._people[(upstream, new_subject)] = replace(person, subject=new_subject)
            return True

    def put_group(self, group: DirectoryGroup, *, if_version: int | None = None) -> bool:
        group = checked_group(group)
        key = (group.upstream, group.id)
        with self._lock:
            stored = self._groups.get(key)
            if if_version is not None and (stored.version if stored else 0) != if_version:
                return False
            known = {p.scim_id for p in self._people.values() if p.upstream == group.upstream and p.scim_id}
            unknown = sorted(group.members - known)
            if unknown:
                raise UnknownMember(f"no provisioned person of this upstream has the id {unknown[0]!r}")
            self._groups[key] = group
            return True

    def get_group(self, upstream: str, group_id: str) -> DirectoryGroup | None:
        with self._lock:
            group = self._groups.get((upstream, group_id))
            return replace(group) if group is not None else None

    def delete_group(self, upstream: str, group_id: str) -> bool:
        with self._lock:
            return self._groups.pop((upstream, group_id), None) is not None

    def _matching_groups(self, query: GroupQuery) -> list[DirectoryGroup]:
        return [replace(group) for _, group in sorted(self._groups.items()) if query.matches(group)]

    def find_groups(
        self, query: GroupQuery = EVERY_GROUP, *, offset: int = 0, limit: int = 100
    ) -> list[DirectoryGroup]:
        check_page(limit, offset)
        with self._lock:
            return self._matching_groups(query)[offset : offset + limit]

    def count_groups(self, query: GroupQuery = EVERY_GROUP) -> int:
        with self._lock:
            return len(self._matching_groups(query))


class MemoryAuditLog:
    def __init__(self) -> None:
        self._events: list[dict] = []
        self._lock = threading.Lock()

    def append(self, event: dict) -> None:
        record = dict(event)
        record.setdefault("time", time.time())
        with self._lock:
            self._events.append(copy.deepcopy(record))

    def query(self, query: AuditQuery = EVERYTHING, *, limit: int = 100) -> list[dict]:
        check_page(limit)
        with self._lock:
            return copy.deepcopy([e for e in reversed(self._events) if query.matches(e)][:limit])

    def export(self) -> Iterator[dict]:
        with self._lock:
            snapshot = copy.deepcopy(self._events)
        yield from snapshot


class MemoryChangeLog:
    def __init__(self) -> None:
        self._records: list[dict] = []
        self._lock = threading.Lock()

    def append(self, record: dict) -> int:
        stored = copy.deepcopy(record)
        with self._lock:
            self._records.append(stored)
            return len(self._records)

    def read(self, after: int = 0, *, limit: int = 100) -> list[tuple[int, dict]]:
        check_page(limit, max(after, 0))
        with self._lock:
            page = self._records[after : after + limit]
            return [(after + index + 1, copy.deepcopy(record)) for index, record in enumerate(page)]

    def last(self) -> int:
        with self._lock:
            return len(self._records)
