"""In-process backend: for unit tests and single-process tools. Not shared between workers."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from sso_common.store import (  # the rules every backend applies alike
    EVERYONE,
    EVERYTHING,
    AuditQuery,
    PeopleQuery,
    Person,
    check_page,
    checked_person,
    hashed_key,
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
        self._lock = threading.Lock()

    def put(self, person: Person) -> None:
        person = checked_person(person)
        with self._lock:
            self._people[(person.upstream, person.subject)] = person

    def get(self, upstream: str, subject: str) -> Person | None:
        with self._lock:
            person = self._people.get((upstream, subject))
        return replace(person) if person is not None else None

    def delete(self, upstream: str, subject: str) -> bool:
        with self._lock:
            return self._people.pop((upstream, subject), None) is not None

    def _matching(self, query: PeopleQuery) -> list[Person]:
        """Every match, ordered by key; the caller holds the lock."""
        return [person for _, person in sorted(self._people.items()) if query.matches(person)]

    def find(self, query: PeopleQuery = EVERYONE, *, offset: int = 0, limit: int = 100) -> list[Person]:
        check_page(limit, offset)
        with self._lock:
            page = self._matching(query)[offset : offset + limit]
        return [replace(person) for person in page]

    def count(self, query: PeopleQuery = EVERYONE) -> int:
        with self._lock:
            return len(self._matching(query))

    def revoke(self, upstream: str, subject: str, at: float) -> bool:
        with self._lock:
            person = self._people.get((upstream, subject))
            if person is None:
                return False
            if person.revoked_at is None or person.revoked_at < at:
                self._people[(upstream, subject)] = replace(person, revoked_at=at)
            return True


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
