"""In-process backend: for unit tests and single-process tools. Not shared between workers."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator

from sso_common.store import hashed_key


class MemoryStateStore:
    def __init__(self, clock=time.time):
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

    def put(self, kind, key, value, ttl):
        with self._lock:
            self._entries[hashed_key(kind, key)] = (copy.deepcopy(value), self._clock() + ttl)

    def add(self, kind, key, value, ttl):
        hkey = hashed_key(kind, key)
        with self._lock:
            if self._live(hkey) is not None:
                return False
            self._entries[hkey] = (copy.deepcopy(value), self._clock() + ttl)
            return True

    def get(self, kind, key):
        with self._lock:
            value = self._live(hashed_key(kind, key))
            return copy.deepcopy(value) if value is not None else None

    def take(self, kind, key):
        hkey = hashed_key(kind, key)
        with self._lock:
            value = self._live(hkey)
            if value is not None:
                del self._entries[hkey]
            return value

    def delete(self, kind, key):
        with self._lock:
            self._entries.pop(hashed_key(kind, key), None)

    def incr(self, kind, key, ttl, amount=1):
        hkey = hashed_key(kind, key)
        with self._lock:
            current = self._live(hkey)
            if current is None:
                self._entries[hkey] = ({"count": amount}, self._clock() + ttl)
                return amount
            current["count"] += amount
            return current["count"]

    def purge_expired(self):
        with self._lock:
            now = self._clock()
            dead = [k for k, (_, expires) in self._entries.items() if expires <= now]
            for k in dead:
                del self._entries[k]
            return len(dead)


class MemoryAuditLog:
    def __init__(self):
        self._events: list[dict] = []
        self._lock = threading.Lock()

    def append(self, event):
        record = dict(event)
        record.setdefault("time", time.time())
        with self._lock:
            self._events.append(copy.deepcopy(record))

    def query(self, limit=100, *, event_type=None, person=None, outcome=None, channel=None, since=None, until=None):
        def matches(event: dict) -> bool:
            return (
                (event_type is None or event.get("type") == event_type)
                and (person is None or person in (event.get("user"), event.get("email"), event.get("subject")))
                and (outcome is None or event.get("outcome") == outcome)
                and (channel is None or event.get("channel") == channel)
                and (since is None or event["time"] >= since)
                and (until is None or event["time"] < until)
            )

        with self._lock:
            return copy.deepcopy([e for e in reversed(self._events) if matches(e)][:limit])

    def export(self) -> Iterator[dict]:
        with self._lock:
            snapshot = copy.deepcopy(self._events)
        yield from snapshot
