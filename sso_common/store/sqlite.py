"""SQLite backend, the embedded default: one file, safe across server workers and threads (WAL)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sso_common.keys import private_directory
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
from sso_common.store.sql import SQLITE

_PURGE_EVERY = 500  # writes between opportunistic purges of expired rows


class _Connections:
    """One connection per thread and process: sqlite3 connections must not cross a fork or a thread."""

    def __init__(self, path: str, schema: str, migrate: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = path
        self._schema = schema
        self._migrate = migrate
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
            if self._migrate is not None:
                self._migrate(conn)
            conn.executescript(self._schema)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return _immediate(self.get())


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Statements that must land together; IMMEDIATE takes the write lock up front, so two writers wait for
    each other instead of failing to upgrade a read lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_STATE_TABLE = """
    CREATE TABLE IF NOT EXISTS state (
        hkey TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS state_expires ON state (expires);
    """


def _state_with_rowid(conn: sqlite3.Connection) -> None:
    """Move a state table made WITHOUT ROWID (before 2026-12) into the current one, entries kept (idempotent).

    Values are JSON of 0.2-20 KB (sessions, codes, sign-in stories), and a WITHOUT ROWID table keeps whole rows
    in its key's b-tree, a few per page: a 1 KB put cost 97 us and a get 22 us, against 41 and 9 with a rowid
    table (20 KB: 366/119 against 219/29). SQLite's documentation advises WITHOUT ROWID only for rows under
    about a twentieth of a page."""

    def without_rowid() -> bool:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'state'").fetchone()
        return row is not None and "WITHOUT ROWID" in row[0].upper()

    if not without_rowid():
        return
    with _immediate(conn):  # one process moves it; the others find it moved
        if without_rowid():
            conn.execute("ALTER TABLE state RENAME TO state_without_rowid")
            conn.execute("DROP INDEX IF EXISTS state_expires")
            for statement in _STATE_TABLE.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO state SELECT hkey, value, expires FROM state_without_rowid")
            conn.execute("DROP TABLE state_without_rowid")


class SQLiteStateStore:
    _SCHEMA = _STATE_TABLE

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self._db = _Connections(path, self._SCHEMA, _state_with_rowid)
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


_PERSON_COLUMNS = {  # added after the first release: databases made before get them at first open
    "scim_id": "TEXT",
    "user_name": "TEXT NOT NULL DEFAULT ''",
    "user_name_key": "TEXT NOT NULL DEFAULT ''",
    "scim_attributes": "TEXT NOT NULL DEFAULT ''",
    "created_at": "REAL NOT NULL DEFAULT 0",
    "version": "INTEGER NOT NULL DEFAULT 0",
}


def _add_person_columns(conn: sqlite3.Connection) -> None:
    """Bring a directory database made before SCIM up to the current person table (idempotent)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(person)")}
    if not columns:
        return  # a new database: the schema creates the whole table
    for name, declaration in _PERSON_COLUMNS.items():
        if name not in columns:
            try:
                conn.execute(f"ALTER TABLE person ADD COLUMN {name} {declaration}")
            except sqlite3.OperationalError as error:  # another process added it meanwhile
                if "duplicate column" not in str(error):
                    raise


class SQLiteDirectoryStore:
    """People in one table, their groups in another, so that filtering by group is an index lookup; the
    SCIM groups and their members in two more. A provisioned person's groups are read through the latter."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS person (
        upstream TEXT NOT NULL,
        subject TEXT NOT NULL,
        email TEXT NOT NULL,
        display_name TEXT NOT NULL,
        disabled INTEGER NOT NULL,
        revoked_at REAL,
        updated_at REAL NOT NULL,
        scim_id TEXT,
        user_name TEXT NOT NULL DEFAULT '',
        user_name_key TEXT NOT NULL DEFAULT '',
        scim_attributes TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (upstream, subject)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS person_email ON person (email);
    CREATE UNIQUE INDEX IF NOT EXISTS person_scim_id ON person (scim_id) WHERE scim_id IS NOT NULL;
    CREATE UNIQUE INDEX IF NOT EXISTS person_user_name ON person (upstream, user_name_key) WHERE scim_id IS NOT NULL;
    CREATE TABLE IF NOT EXISTS membership (
        group_name TEXT NOT NULL,
        upstream TEXT NOT NULL,
        subject TEXT NOT NULL,
        PRIMARY KEY (group_name, upstream, subject)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS membership_person ON membership (upstream, subject);
    CREATE TABLE IF NOT EXISTS directory_group (
        upstream TEXT NOT NULL,
        id TEXT NOT NULL,
        display_name TEXT NOT NULL,
        display_key TEXT NOT NULL,
        external_id TEXT,
        broker_group TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (upstream, id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS directory_group_name ON directory_group (upstream, display_key);
    CREATE TABLE IF NOT EXISTS group_member (
        upstream TEXT NOT NULL,
        group_id TEXT NOT NULL,
        scim_id TEXT NOT NULL,
        PRIMARY KEY (upstream, group_id, scim_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS group_member_person ON group_member (upstream, scim_id);
    """

    def __init__(self, path: str) -> None:
        self._db = _Connections(path, self._SCHEMA, _add_person_columns)

    def put(self, person: Person, *, if_version: int | None = None) -> bool:
        person = checked_person(person)
        key = (person.upstream, person.subject)
        try:
            with self._db.transaction() as conn:
                stored = conn.execute(
                    "SELECT version, scim_id, revoked_at FROM person WHERE upstream = ? AND subject = ?", key
                ).fetchone()
                if if_version is not None and (stored[0] if stored else 0) != if_version:
                    return False
                if stored is not None and stored[1] is not None and stored[1] != person.scim_id:
                    conn.execute(
                        "DELETE FROM group_member WHERE upstream = ? AND scim_id = ?", (person.upstream, stored[1])
                    )
                conn.execute(
                    "INSERT INTO person (upstream, subject, email, display_name, disabled, revoked_at, updated_at, "
                    "scim_id, user_name, user_name_key, scim_attributes, created_at, version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (upstream, subject) DO UPDATE SET email = excluded.email, "
                    "display_name = excluded.display_name, disabled = excluded.disabled, "
                    "revoked_at = excluded.revoked_at, "
                    "updated_at = excluded.updated_at, scim_id = excluded.scim_id, user_name = excluded.user_name, "
                    "user_name_key = excluded.user_name_key, scim_attributes = excluded.scim_attributes, "
                    "created_at = excluded.created_at, version = excluded.version",
                    (
                        *key,
                        person.email,
                        person.display_name,
                        int(person.disabled),
                        later(stored[2] if stored else None, person.revoked_at),
                        person.updated_at,
                        person.scim_id,
                        person.user_name,
                        user_name_key(person.user_name),
                        person.scim_attributes,
                        person.created_at,
                        person.version,
                    ),
                )
                conn.execute("DELETE FROM membership WHERE upstream = ? AND subject = ?", key)
                conn.executemany(
                    "INSERT INTO membership (group_name, upstream, subject) VALUES (?, ?, ?)",
                    [(group, *key) for group in person.groups],
                )
        except sqlite3.IntegrityError:
            raise DirectoryConflict("another person has this scim_id, or this user_name at this upstream") from None
        return True

    def get(self, upstream: str, subject: str) -> Person | None:
        row = (
            self._db.get()
            .execute(f"{SQLITE.person_select}WHERE p.upstream = ? AND p.subject = ?", (upstream, subject))
            .fetchone()
        )
        return SQLITE.person(row) if row else None

    def delete(self, upstream: str, subject: str) -> bool:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM membership WHERE upstream = ? AND subject = ?", (upstream, subject))
            conn.execute(
                "DELETE FROM group_member WHERE upstream = ? AND scim_id = "
                "(SELECT scim_id FROM person WHERE upstream = ? AND subject = ?)",
                (upstream, upstream, subject),
            )
            cursor = conn.execute("DELETE FROM person WHERE upstream = ? AND subject = ?", (upstream, subject))
            return cursor.rowcount == 1

    def find(self, query: PeopleQuery = EVERYONE, *, offset: int = 0, limit: int = 100) -> list[Person]:
        check_page(limit, offset)
        where, params = SQLITE.people_filters(query)
        rows = self._db.get().execute(
            f"{SQLITE.person_select}{where}ORDER BY p.upstream, p.subject LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        return [SQLITE.person(row) for row in rows.fetchall()]

    def count(self, query: PeopleQuery = EVERYONE) -> int:
        where, params = SQLITE.people_filters(query)
        return int(self._db.get().execute(f"SELECT count(*) FROM person p {where}", params).fetchone()[0])

    def revoke(self, upstream: str, subject: str, at: float) -> bool:
        cursor = self._db.get().execute(
            "UPDATE person SET revoked_at = max(coalesce(revoked_at, ?), ?) WHERE upstream = ? AND subject = ?",
            (at, at, upstream, subject),
        )
        return cursor.rowcount == 1

    def rename(self, upstream: str, subject: str, new_subject: str) -> bool:
        if not isinstance(new_subject, str) or not new_subject:
            raise ValueError(f"a person's subject must be a non-empty string, not {new_subject!r}")
        try:
            with self._db.transaction() as conn:
                cursor = conn.execute(
                    "UPDATE person SET subject = ? WHERE upstream = ? AND subject = ?", (new_subject, upstream, subject)
                )
                conn.execute(
                    "UPDATE membership SET subject = ? WHERE upstream = ? AND subject = ?",
                    (new_subject, upstream, subject),
                )
                return cursor.rowcount == 1
        except sqlite3.IntegrityError:
            raise DirectoryConflict("another person of this upstream has this subject") from None

    def put_group(self, group: DirectoryGroup, *, if_version: int | None = None) -> bool:
        group = checked_group(group)
        key = (group.upstream, group.id)
        with self._db.transaction() as conn:
            stored = conn.execute("SELECT version FROM directory_group WHERE upstream = ? AND id = ?", key).fetchone()
            if if_version is not None and (stored[0] if stored else 0) != if_version:
                return False
            conn.execute(
                "INSERT INTO directory_group (upstream, id, display_name, display_key, external_id, broker_group, "
                "created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (upstream, id) DO UPDATE SET display_name = excluded.display_name, "
                "display_key = excluded.display_key, external_id = excluded.external_id, "
                "broker_group = excluded.broker_group, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, version = excluded.version",
                (
                    *key,
                    group.display_name,
                    user_name_key(group.display_name),
                    group.external_id,
                    group.broker_group,
                    group.created_at,
                    group.updated_at,
                    group.version,
                ),
            )
            current = {
                row[0]
                for row in conn.execute("SELECT scim_id FROM group_member WHERE upstream = ? AND group_id = ?", key)
            }
            conn.executemany(
                "DELETE FROM group_member WHERE upstream = ? AND group_id = ? AND scim_id = ?",
                [(*key, member) for member in current - group.members],
            )
            conn.executemany(
                "INSERT INTO group_member (upstream, group_id, scim_id) VALUES (?, ?, ?)",
                [(*key, member) for member in group.members - current],
            )
            unknown = conn.execute(
                "SELECT m.scim_id FROM group_member m LEFT JOIN person p ON p.upstream = m.upstream "
                "AND p.scim_id = m.scim_id WHERE m.upstream = ? AND m.group_id = ? AND p.subject IS NULL "
                "ORDER BY m.scim_id LIMIT 1",
                key,
            ).fetchone()
            if unknown is not None:  # raised inside the transaction: it rolls back, nothing is written
                raise UnknownMember(f"no provisioned person of this upstream has the id {unknown[0]!r}")
        return True

    def get_group(self, upstream: str, group_id: str) -> DirectoryGroup | None:
        row = (
            self._db.get()
            .execute(f"{SQLITE.group_select}WHERE g.upstream = ? AND g.id = ?", (upstream, group_id))
            .fetchone()
        )
        return SQLITE.group(row) if row else None

    def delete_group(self, upstream: str, group_id: str) -> bool:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM group_member WHERE upstream = ? AND group_id = ?", (upstream, group_id))
            cursor = conn.execute("DELETE FROM directory_group WHERE upstream = ? AND id = ?", (upstream, group_id))
            return cursor.rowcount == 1

    def find_groups(
        self, query: GroupQuery = EVERY_GROUP, *, offset: int = 0, limit: int = 100
    ) -> list[DirectoryGroup]:
        check_page(limit, offset)
        where, params = SQLITE.group_filters(query)
        rows = self._db.get().execute(
            f"{SQLITE.group_select}{where}ORDER BY g.upstream, g.id LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        return [SQLITE.group(row) for row in rows.fetchall()]

    def count_groups(self, query: GroupQuery = EVERY_GROUP) -> int:
        where, params = SQLITE.group_filters(query)
        return int(self._db.get().execute(f"SELECT count(*) FROM directory_group g {where}", params).fetchone()[0])


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
        where, params = SQLITE.where(
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


class SQLiteChangeLog:
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS change_log (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        record TEXT NOT NULL
    );
    """

    def __init__(self, path: str) -> None:
        self._db = _Connections(path, self._SCHEMA)

    def append(self, record: dict) -> int:
        row = (
            self._db.get()
            .execute("INSERT INTO change_log (record) VALUES (?) RETURNING position", (json.dumps(record),))
            .fetchone()
        )
        return int(row[0])

    def read(self, after: int = 0, *, limit: int = 100) -> list[tuple[int, dict]]:
        check_page(limit, max(after, 0))
        rows = self._db.get().execute(
            "SELECT position, record FROM change_log WHERE position > ? ORDER BY position LIMIT ?", (after, limit)
        )
        return [(int(position), json.loads(record)) for position, record in rows.fetchall()]

    def last(self) -> int:
        row = self._db.get().execute("SELECT max(position) FROM change_log").fetchone()
        return int(row[0] or 0)
