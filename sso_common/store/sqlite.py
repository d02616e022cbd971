"""SQLite backend, the embedded default: one file, safe across server workers and threads (WAL)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sso_common.keys import private_directory
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

_PURGE_EVERY = 500  # writes between opportunistic purges of expired rows


def _where(conditions: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """The WHERE clause that ANDs each condition whose value is given (not None), and its parameters."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    if not given:
        return "", []
    return f"WHERE {' AND '.join(clause for clause, _ in given)} ", [value for _, value in given]


class _Connections:
    """One connection per thread and process: sqlite3 connections must not cross a fork or a thread."""

    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._local = threading.local()
        private_directory(Path(path).parent)
        if not os.path.exists(path):  # SQLite gives its -wal and -shm files the database file's mode
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.get()  # create the schema now, so a bad path fails at start-up

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.executescript(self._schema)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Statements that must land together; IMMEDIATE takes the write lock up front, so two writers
        wait for each other instead of failing to upgrade a read lock."""
        conn = self.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SQLiteStateStore:
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS state (
        hkey TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS state_expires ON state (expires);
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self._db = _Connections(path, self._SCHEMA)
        self._clock = clock
        self._writes = 0

    def _after_write(self) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            self.purge_expired()

    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        now = self._clock()
        self._db.get().execute(
            "INSERT INTO state (hkey, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(hkey) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            (hashed_key(kind, key), json.dumps(value), now + ttl),
        )
        self._after_write()

    def add(self, kind: str, key: str, value: dict, ttl: float) -> bool:
        now = self._clock()
        cursor = self._db.get().execute(
            "INSERT INTO state (hkey, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(hkey) DO UPDATE SET value = excluded.value, expires = excluded.expires "
            "WHERE state.expires <= ?",
            (hashed_key(kind, key), json.dumps(value), now + ttl, now),
        )
        self._after_write()
        return cursor.rowcount == 1

    def get(self, kind: str, key: str) -> dict | None:
        row = (
            self._db.get()
            .execute("SELECT value FROM state WHERE hkey = ? AND expires > ?", (hashed_key(kind, key), self._clock()))
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def take(self, kind: str, key: str) -> dict | None:
        row = (
            self._db.get()
            .execute("DELETE FROM state WHERE hkey = ? RETURNING value, expires", (hashed_key(kind, key),))
            .fetchone()
        )
        if row is None or row[1] <= self._clock():
            return None
        return json.loads(row[0])

    def delete(self, kind: str, key: str) -> None:
        self._db.get().execute("DELETE FROM state WHERE hkey = ?", (hashed_key(kind, key),))

    def incr(self, kind: str, key: str, ttl: float, amount: int = 1) -> int:
        now = self._clock()
        row = (
            self._db.get()
            .execute(
                "INSERT INTO state (hkey, value, expires) VALUES (?, json_object('count', ?), ?) "
                "ON CONFLICT(hkey) DO UPDATE SET "
                "  value = CASE WHEN state.expires <= ? THEN excluded.value "
                "          ELSE json_object('count', json_extract(state.value, '$.count') + ?) END, "
                "  expires = CASE WHEN state.expires <= ? THEN excluded.expires ELSE state.expires END "
                "RETURNING json_extract(value, '$.count')",
                (hashed_key(kind, key), amount, now + ttl, now, amount, now),
            )
            .fetchone()
        )
        self._after_write()
        return int(row[0])

    def purge_expired(self) -> int:
        cursor = self._db.get().execute("DELETE FROM state WHERE expires <= ?", (self._clock(),))
        return cursor.rowcount


class SQLiteDirectoryStore:
    """People in one table, their groups in another, so that filtering by group is an index lookup."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS person (
        upstream TEXT NOT NULL,
        subject TEXT NOT NULL,
        email TEXT NOT NULL,
        display_name TEXT NOT NULL,
        disabled INTEGER NOT NULL,
        revoked_at REAL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (upstream, subject)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS person_email ON person (email);
    CREATE TABLE IF NOT EXISTS membership (
        group_name TEXT NOT NULL,
        upstream TEXT NOT NULL,
        subject TEXT NOT NULL,
        PRIMARY KEY (group_name, upstream, subject)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS membership_person ON membership (upstream, subject);
    """
    # One statement reads a person and their groups, so a concurrent put cannot pair old groups with new fields.
    _SELECT = (
        "SELECT upstream, subject, email, display_name, disabled, revoked_at, updated_at, "
        "(SELECT json_group_array(group_name) FROM membership m "
        " WHERE m.upstream = p.upstream AND m.subject = p.subject) "
        "FROM person p "
    )

    def __init__(self, path: str) -> None:
        self._db = _Connections(path, self._SCHEMA)

    @staticmethod
    def _person(row: tuple) -> Person:
        upstream, subject, email, display_name, disabled, revoked_at, updated_at, groups = row
        return Person(
            upstream=upstream,
            subject=subject,
            email=email,
            display_name=display_name,
            groups=frozenset(json.loads(groups)),
            disabled=bool(disabled),
            revoked_at=revoked_at,
            updated_at=updated_at,
        )

    @staticmethod
    def _filters(query: PeopleQuery) -> tuple[str, list[Any]]:
        return _where(
            (
                ("p.upstream = ?", query.upstream),
                ("p.email = ?", query.email),
                (
                    "(p.upstream, p.subject) IN (SELECT upstream, subject FROM membership WHERE group_name = ?)",
                    query.group,
                ),
                ("p.disabled = ?", None if query.disabled is None else int(query.disabled)),
            )
        )

    def put(self, person: Person) -> None:
        person = checked_person(person)
        key = (person.upstream, person.subject)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO person (upstream, subject, email, display_name, disabled, revoked_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, person.email, person.display_name, int(person.disabled), person.revoked_at, person.updated_at),
            )
            conn.execute("DELETE FROM membership WHERE upstream = ? AND subject = ?", key)
            conn.executemany(
                "INSERT INTO membership (group_name, upstream, subject) VALUES (?, ?, ?)",
                [(group, *key) for group in person.groups],
            )

    def get(self, upstream: str, subject: str) -> Person | None:
        row = (
            self._db.get()
            .execute(f"{self._SELECT}WHERE p.upstream = ? AND p.subject = ?", (upstream, subject))
            .fetchone()
        )
        return self._person(row) if row else None

    def delete(self, upstream: str, subject: str) -> bool:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM membership WHERE upstream = ? AND subject = ?", (upstream, subject))
            cursor = conn.execute("DELETE FROM person WHERE upstream = ? AND subject = ?", (upstream, subject))
            return cursor.rowcount == 1

    def find(self, query: PeopleQuery = EVERYONE, *, offset: int = 0, limit: int = 100) -> list[Person]:
        check_page(limit, offset)
        where, params = self._filters(query)
        rows = self._db.get().execute(
            f"{self._SELECT}{where}ORDER BY p.upstream, p.subject LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        return [self._person(row) for row in rows.fetchall()]

    def count(self, query: PeopleQuery = EVERYONE) -> int:
        where, params = self._filters(query)
        return int(self._db.get().execute(f"SELECT count(*) FROM person p {where}", params).fetchone()[0])

    def revoke(self, upstream: str, subject: str, at: float) -> bool:
        cursor = self._db.get().execute(
            "UPDATE person SET revoked_at = max(coalesce(revoked_at, ?), ?) WHERE upstream = ? AND subject = ?",
            (at, at, upstream, subject),
        )
        return cursor.rowcount == 1


class SQLiteAuditLog:
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        type TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_type ON audit (type, id);
    """

    def __init__(self, path: str) -> None:
        self._db = _Connections(path, self._SCHEMA)

    def append(self, event: dict) -> None:
        record = dict(event)
        record.setdefault("time", time.time())
        self._db.get().execute(
            "INSERT INTO audit (time, type, event) VALUES (?, ?, ?)",
            (record["time"], str(record.get("type", "")), json.dumps(record, sort_keys=True)),
        )

    def query(self, query: AuditQuery = EVERYTHING, *, limit: int = 100) -> list[dict]:
        check_page(limit)
        where, params = _where(
            (
                ("type = ?", query.event_type),
                (
                    "? IN (json_extract(event, '$.user'), json_extract(event, '$.email'), "
                    "json_extract(event, '$.subject'))",
                    query.person,
                ),
                ("json_extract(event, '$.outcome') = ?", query.outcome),
                ("json_extract(event, '$.channel') = ?", query.channel),
                ("time >= ?", query.since),
                ("time < ?", query.until),
            )
        )
        rows = self._db.get().execute(f"SELECT event FROM audit {where}ORDER BY id DESC LIMIT ?", (*params, limit))
        return [json.loads(r[0]) for r in rows.fetchall()]

    def export(self) -> Iterator[dict]:
        last = 0
        while True:  # pages, so a large trail streams without loading it whole
            rows = (
                self._db.get()
                .execute("SELECT id, event FROM audit WHERE id > ? ORDER BY id LIMIT 1000", (last,))
                .fetchall()
            )
            if not rows:
                return
            for row_id, event in rows:
                last = row_id
                yield json.loads(event)
