"""SQLite backend, the embedded default: one file, safe across gunicorn workers and threads (WAL)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sso_common.keys import private_directory
from sso_common.store import hashed_key

_PURGE_EVERY = 500  # writes between opportunistic purges of expired rows


class _Connections:
    """One connection per thread and process: sqlite3 connections must not cross a fork or a thread."""

    def __init__(self, path: str, schema: str):
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


class SQLiteStateStore:
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS state (
        hkey TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS state_expires ON state (expires);
    """

    def __init__(self, path: str, clock=time.time):
        self._db = _Connections(path, self._SCHEMA)
        self._clock = clock
        self._writes = 0

    def _after_write(self):
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            self.purge_expired()

    def put(self, kind, key, value, ttl):
        now = self._clock()
        self._db.get().execute(
            "INSERT INTO state (hkey, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(hkey) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            (hashed_key(kind, key), json.dumps(value), now + ttl),
        )
        self._after_write()

    def add(self, kind, key, value, ttl):
        now = self._clock()
        cursor = self._db.get().execute(
            "INSERT INTO state (hkey, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(hkey) DO UPDATE SET value = excluded.value, expires = excluded.expires "
            "WHERE state.expires <= ?",
            (hashed_key(kind, key), json.dumps(value), now + ttl, now),
        )
        self._after_write()
        return cursor.rowcount == 1

    def get(self, kind, key):
        row = (
            self._db.get()
            .execute("SELECT value FROM state WHERE hkey = ? AND expires > ?", (hashed_key(kind, key), self._clock()))
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def take(self, kind, key):
        row = (
            self._db.get()
            .execute("DELETE FROM state WHERE hkey = ? RETURNING value, expires", (hashed_key(kind, key),))
            .fetchone()
        )
        if row is None or row[1] <= self._clock():
            return None
        return json.loads(row[0])

    def delete(self, kind, key):
        self._db.get().execute("DELETE FROM state WHERE hkey = ?", (hashed_key(kind, key),))

    def incr(self, kind, key, ttl, amount=1):
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

    def purge_expired(self):
        cursor = self._db.get().execute("DELETE FROM state WHERE expires <= ?", (self._clock(),))
        return cursor.rowcount


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

    def __init__(self, path: str):
        self._db = _Connections(path, self._SCHEMA)

    def append(self, event):
        record = dict(event)
        record.setdefault("time", time.time())
        self._db.get().execute(
            "INSERT INTO audit (time, type, event) VALUES (?, ?, ?)",
            (record["time"], str(record.get("type", "")), json.dumps(record, sort_keys=True)),
        )

    def query(self, limit=100, *, event_type=None, person=None, outcome=None, channel=None, since=None, until=None):
        clauses, params = [], []
        for clause, value in (
            ("type = ?", event_type),
            ("json_extract(event, '$.outcome') = ?", outcome),
            ("json_extract(event, '$.channel') = ?", channel),
            ("time >= ?", since),
            ("time < ?", until),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if person is not None:
            clauses.append(
                "? IN (json_extract(event, '$.user'), json_extract(event, '$.email'), json_extract(event, '$.subject'))"
            )
            params.append(person)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
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
