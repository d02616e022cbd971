"""PostgreSQL backend: the durable records of replicas (the audit trail, the directory), and a StateStore
for state that must outlive a Redis restart.

`postgresql://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME&sslmode=...]`: libpq's URL, plus `schema` (ours,
default `public`), the schema the tables live in, so that two services can share a database. psycopg 3 with
a connection pool (psycopg_pool) per worker process, opened on first use in that process (a pool must not
cross a fork: its connections and threads belong to the process that opened it), one pool per URL shared by
every store on it.

Schemas are versioned: `MIGRATIONS` lists, per contract, numbered steps that are applied in order when a
store is opened (at start-up, before the server forks), each in its own transaction with its number in
`sso_schema_migrations`, under an advisory lock so that replicas starting together apply each step once.
A step is never edited once released; a change is a new step.

Failures: a connection that cannot be had within POOL_TIMEOUT, a connection lost mid-statement, a
statement over STATEMENT_TIMEOUT_MS: `StoreUnavailable` (the web layer answers 503; the portal refuses to
issue credentials it cannot audit). Messages never carry the password (`errors.scrub`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

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
from sso_common.store.errors import StoreUnavailable, redact_url, scrub
from sso_common.store.sql import POSTGRES

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2  # seconds (libpq takes whole seconds)
POOL_TIMEOUT = 2.0  # seconds a request waits for a connection before it is answered 503
STATEMENT_TIMEOUT_MS = 5000
_PURGE_EVERY = 500  # state writes between opportunistic purges of expired rows
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CHECK_IDLE_AFTER = 1.0  # seconds: a pooled connection idle longer is checked (a round trip) before it is used
_MIGRATION_LOCK = 0x550_1060  # pg_advisory_lock key: one migrating process at a time, per database
_DIRECTORY_LOCK = 0x550_1061  # every directory write holds it: writes are rare, and checks span tables
_CHANGES_LOCK = 0x550_1062  # appends hold it: positions become visible in order

# contract -> [(version, SQL)]. Append only: a released step is never changed.
MIGRATIONS: dict[str, list[tuple[int, str]]] = {
    "state": [
        (
            1,
            """
            CREATE TABLE state (
                hkey TEXT COLLATE "C" PRIMARY KEY,
                value JSONB NOT NULL,
                expires DOUBLE PRECISION NOT NULL
            );
            CREATE INDEX state_expires ON state (expires);
            """,
        )
    ],
    "directory": [
        (  # the directory before SCIM: people and their groups as the sign-ins gave them
            1,
            """
            CREATE TABLE person (
                upstream TEXT COLLATE "C" NOT NULL,
                subject TEXT COLLATE "C" NOT NULL,
                email TEXT NOT NULL,
                display_name TEXT NOT NULL,
                disabled BOOLEAN NOT NULL,
                revoked_at DOUBLE PRECISION,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (upstream, subject)
            );
            CREATE INDEX person_email ON person (email);
            CREATE TABLE membership (
                group_name TEXT COLLATE "C" NOT NULL,
                upstream TEXT COLLATE "C" NOT NULL,
                subject TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (group_name, upstream, subject)
            );
            CREATE INDEX membership_person ON membership (upstream, subject);
            """,
        ),
        (  # SCIM (issue 14): provisioned people's SCIM fields, the upstream's groups and their members
            2,
            """
            ALTER TABLE person
                ADD COLUMN scim_id TEXT COLLATE "C",
                ADD COLUMN user_name TEXT NOT NULL DEFAULT '',
                ADD COLUMN user_name_key TEXT NOT NULL DEFAULT '',
                ADD COLUMN scim_attributes TEXT NOT NULL DEFAULT '',
                ADD COLUMN created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
            CREATE UNIQUE INDEX person_scim_id ON person (scim_id) WHERE scim_id IS NOT NULL;
            CREATE UNIQUE INDEX person_user_name ON person (upstream, user_name_key) WHERE scim_id IS NOT NULL;
            CREATE TABLE directory_group (
                upstream TEXT COLLATE "C" NOT NULL,
                id TEXT COLLATE "C" NOT NULL,
                display_name TEXT NOT NULL,
                display_key TEXT NOT NULL,
                external_id TEXT,
                broker_group TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                version BIGINT NOT NULL,
                PRIMARY KEY (upstream, id)
            );
            CREATE INDEX directory_group_name ON directory_group (upstream, display_key);
            CREATE TABLE group_member (
                upstream TEXT COLLATE "C" NOT NULL,
                group_id TEXT COLLATE "C" NOT NULL,
                scim_id TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (upstream, group_id, scim_id)
            );
            CREATE INDEX group_member_person ON group_member (upstream, scim_id);
            """,
        ),
    ],
    "changes": [
        (
            1,
            """
            CREATE TABLE change_log (
                position BIGSERIAL PRIMARY KEY,
                record TEXT NOT NULL
            );
            """,
        )
    ],
    "audit": [
        (
            1,
            """
            CREATE TABLE audit (
                id BIGSERIAL PRIMARY KEY,
                time DOUBLE PRECISION NOT NULL,
                type TEXT NOT NULL,
                person_user TEXT,
                person_email TEXT,
                person_subject TEXT,
                outcome TEXT,
                channel TEXT,
                event TEXT NOT NULL
            );
            CREATE INDEX audit_type ON audit (type, id);
            CREATE INDEX audit_time ON audit (time);
            CREATE INDEX audit_user ON audit (person_user, id);
            CREATE INDEX audit_email ON audit (person_email, id);
            CREATE INDEX audit_subject ON audit (person_subject, id);
            """,
        )
    ],
}


def _text(value: Any) -> str | None:
    """A JSON value as a filter column holds it: strings only (PostgreSQL text cannot hold NUL)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else None


_returned: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()
_idle_clock = time.monotonic  # when a connection was last returned, and how long ago that was (tests set it)


def _check_when_idle(conn: psycopg.Connection) -> None:
    """The pool's check of a connection before it is handed out (an empty query: a round trip), made only for one
    idle longer than CHECK_IDLE_AFTER. One used a moment ago is alive; if the server went away since, its statement
    fails (503, StoreUnavailable) and the pool drops it. Checking every checkout cost 55 us of the client's CPU per
    statement, nearly half of one (`python -m bench.stores --engines`)."""
    if _idle_clock() - _returned.get(conn, 0.0) > CHECK_IDLE_AFTER:
        ConnectionPool.check_connection(conn)


class Database:
    """One database (and schema) of a URL: its pools per process, its migrations, its failures."""

    _pools: dict[tuple[int, str], ConnectionPool] = {}
    _pools_lock = threading.Lock()

    def __init__(self, url: str, what: str) -> None:
        self.url, self.what = url, what
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True)
        self.schema = next((value for name, value in params if name == "schema"), "public")
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"schema must be a lower-case SQL name, not {self.schema!r} (in {redact_url(url)})")
        rest = urlencode([(name, value) for name, value in params if name != "schema"])
        self.conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "sso-login-broker",
            "options": f"-c search_path={self.schema} -c statement_timeout={STATEMENT_TIMEOUT_MS}",
        }

    @contextmanager
    def reaching(self) -> Iterator[None]:
        """Client-library failures of reaching the engine, as StoreUnavailable (password scrubbed)."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise StoreUnavailable(self.what, f"{type(error).__name__}: {scrub(str(error), self.url)}") from None

    def pool(self) -> ConnectionPool:
        key = (os.getpid(), self.conninfo + "|" + self.schema)
        pool = self._pools.get(key)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.get(key)
                if pool is None:
                    size = int(os.environ.get("WEB_THREADS", "8")) + 2
                    pool = ConnectionPool(
                        self.conninfo,
                        kwargs=self.kwargs,
                        min_size=1,
                        max_size=max(size, 4),
                        timeout=POOL_TIMEOUT,
                        check=_check_when_idle,
                        max_idle=300,
                        name=f"sso-{self.schema}",
                        open=True,
                    )
                    self._pools[key] = pool
        return pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.reaching(), self.pool().connection() as conn:
            try:
                yield conn
            finally:
                _returned[conn] = _idle_clock()

    @contextmanager
    def transaction(self, lock: int | None = None) -> Iterator[psycopg.Connection]:
        """Statements that land together; with `lock`, holding that advisory lock until the commit."""
        with self.connection() as conn, conn.transaction():
            if lock is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
            yield conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement on a pooled connection (autocommit); how many rows it changed."""
        with self.connection() as conn:
            return int(conn.execute(sql, list(params)).rowcount)

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self.connection() as conn:
            return conn.execute(sql, list(params)).fetchall()

    def migrate(self, contract: str) -> list[int]:
        """Apply `contract`'s pending migrations (at start-up, on a connection of its own); their numbers."""
        applied: list[int] = []
        with self.reaching(), psycopg.connect(self.conninfo, **self.kwargs) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
            try:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS sso_schema_migrations ("
                    " contract TEXT NOT NULL, version INTEGER NOT NULL,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (contract, version))"
                )
                row = conn.execute(
                    "SELECT coalesce(max(version), 0) FROM sso_schema_migrations WHERE contract = %s", [contract]
                ).fetchone()
                current = int(row[0]) if row else 0
                known = max((version for version, _ in MIGRATIONS[contract]), default=0)
                if current > known:
                    log.warning(
                        "%s: the database's %s schema is at version %d, newer than this code's %d",
                        redact_url(self.url),
                        contract,
                        current,
                        known,
                    )
                for version, sql in MIGRATIONS[contract]:
                    if version <= current:
                        continue
                    with conn.transaction():
                        conn.execute(sql)  # our own constant SQL
                        conn.execute(
                            "INSERT INTO sso_schema_migrations (contract, version) VALUES (%s, %s)", [contract, version]
                        )
                    applied.append(version)
                    log.info("%s: %s schema migrated to version %d", redact_url(self.url), contract, version)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK])
        return applied

    def ping(self) -> None:
        self.rows("SELECT 1")

    def close(self) -> None:
        """Close this process's pool of this URL (the next use opens a new one)."""
        pool = self._pools.pop((os.getpid(), self.conninfo + "|" + self.schema), None)
        if pool is not None:
            pool.close()


class PostgresStateStore:
    """StateStore in one table; expiry compares with the apps' clock (keep replicas' clocks in sync)."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self._db = Database(url, "the state store (PostgreSQL)")
        self._db.migrate("state")
        self._clock = clock
        self._writes = 0

    def __repr__(self) -> str:
        return f"PostgresStateStore({redact_url(self._db.url)!r})"

    def _after_write(self) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            self.purge_expired()

    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        self._db.execute(
            "INSERT INTO state (hkey, value, expires) VALUES (%s, %s, %s) "
            "ON CONFLICT (hkey) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires",
            (hashed_key(kind, key), Jsonb(value), self._clock() + ttl),
        )
        self._after_write()

    def add(self, kind: str, key: str, value: dict, ttl: float) -> bool:
        now = self._clock()
        stored = self._db.execute(
            "INSERT INTO state (hkey, value, expires) VALUES (%s, %s, %s) "
            "ON CONFLICT (hkey) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires "
            "WHERE state.expires <= %s",
            (hashed_key(kind, key), Jsonb(value), now + ttl, now),
        )
        self._after_write()
        return stored == 1

    def get(self, kind: str, key: str) -> dict | None:
        rows = self._db.rows(
            "SELECT value FROM state WHERE hkey = %s AND expires > %s", (hashed_key(kind, key), self._clock())
        )
        return dict(rows[0][0]) if rows else None

    def take(self, kind: str, key: str) -> dict | None:
        rows = self._db.rows("DELETE FROM state WHERE hkey = %s RETURNING value, expires", (hashed_key(kind, key),))
        if not rows or rows[0][1] <= self._clock():
            return None
        return dict(rows[0][0])

    def delete(self, kind: str, key: str) -> None:
        self._db.execute("DELETE FROM state WHERE hkey = %s", (hashed_key(kind, key),))

    def incr(self, kind: str, key: str, ttl: float, amount: int = 1) -> int:
        now = self._clock()
        rows = self._db.rows(
            "INSERT INTO state (hkey, value, expires) VALUES (%s, jsonb_build_object('count', %s::bigint), %s) "
            "ON CONFLICT (hkey) DO UPDATE SET "
            "  value = CASE WHEN state.expires <= %s THEN EXCLUDED.value "
            "          ELSE jsonb_build_object('count', (state.value->>'count')::bigint + %s::bigint) END, "
            "  expires = CASE WHEN state.expires <= %s THEN EXCLUDED.expires ELSE state.expires END "
            "RETURNING (value->>'count')::bigint",
            (hashed_key(kind, key), amount, now + ttl, now, amount, now),
        )
        self._after_write()
        return int(rows[0][0])

    def purge_expired(self) -> int:
        return self._db.execute("DELETE FROM state WHERE expires <= %s", (self._clock(),))

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()


class PostgresAuditLog:
    """The audit trail: the event as JSON text, and the fields queries filter on as indexed columns."""

    def __init__(self, url: str) -> None:
        self._db = Database(url, "the audit trail (PostgreSQL)")
        self._db.migrate("audit")

    def __repr__(self) -> str:
        return f"PostgresAuditLog({redact_url(self._db.url)!r})"

    def append(self, event: dict) -> None:
        record = dict(event)
        record.setdefault("time", time.time())
        self._db.execute(
            "INSERT INTO audit (time, type, person_user, person_email, person_subject, outcome, channel, event) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record["time"],
                str(record.get("type", "")).replace("\x00", "\ufffd"),
                _text(record.get("user")),
                _text(record.get("email")),
                _text(record.get("subject")),
                _text(record.get("outcome")),
                _text(record.get("channel")),
                json.dumps(record, sort_keys=True),  # ASCII: a NUL in a value is written \u0000
            ),
        )

    def query(self, query: AuditQuery = EVERYTHING, *, limit: int = 100) -> list[dict]:
        check_page(limit)
        where, params = POSTGRES.where(
            (
                ("type = ?", _text(query.event_type)),
                ("(person_user = ? OR person_email = ? OR person_subject = ?)", _text(query.person)),
                ("outcome = ?", _text(query.outcome)),
                ("channel = ?", _text(query.channel)),
                ("time >= ?", query.since),
                ("time < ?", query.until),
            )
        )
        rows = self._db.rows(f"SELECT event FROM audit {where}ORDER BY id DESC LIMIT %s", (*params, limit))
        return [json.loads(row[0]) for row in rows]

    def export(self) -> Iterator[dict]:
        last = 0
        while True:  # pages, so a large trail streams without loading it whole
            rows = self._db.rows("SELECT id, event FROM audit WHERE id > %s ORDER BY id LIMIT 1000", (last,))
            if not rows:
                return
            for row_id, event in rows:
                last = row_id
                yield json.loads(event)

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()


class PostgresDirectoryStore:
    """The directory as the SQLite backend keeps it (people, their groups, SCIM groups and members), every
    write under one advisory lock: writes are rare (a sign-in, a SCIM call), and their checks (versions,
    unknown members) span tables."""

    # One statement reads a person and their groups, so a concurrent put cannot pair old groups with new fields.
    def __init__(self, url: str) -> None:
        self._db = Database(url, "the directory (PostgreSQL)")
        self._db.migrate("directory")

    def __repr__(self) -> str:
        return f"PostgresDirectoryStore({redact_url(self._db.url)!r})"

    def put(self, person: Person, *, if_version: int | None = None) -> bool:
        person = checked_person(person)
        key = (person.upstream, person.subject)
        try:
            with self._db.transaction(_DIRECTORY_LOCK) as conn:
                stored = conn.execute(
                    "SELECT version, scim_id, revoked_at FROM person WHERE upstream = %s AND subject = %s", key
                ).fetchone()
                if if_version is not None and (stored[0] if stored else 0) != if_version:
                    return False
                if stored is not None and stored[1] is not None and stored[1] != person.scim_id:
                    conn.execute(
                        "DELETE FROM group_member WHERE upstream = %s AND scim_id = %s", (person.upstream, stored[1])
                    )
                conn.execute(
                    "INSERT INTO person (upstream, subject, email, display_name, disabled, revoked_at, updated_at, "
                    "scim_id, user_name, user_name_key, scim_attributes, created_at, version) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (upstream, subject) DO UPDATE SET email = EXCLUDED.email, "
                    "display_name = EXCLUDED.display_name, disabled = EXCLUDED.disabled, "
                    # the row as it is now: a revoke() commits without the directory lock, after the SELECT above
                    "revoked_at = GREATEST(person.revoked_at, EXCLUDED.revoked_at), "
                    "updated_at = EXCLUDED.updated_at, scim_id = EXCLUDED.scim_id, "
                    "user_name = EXCLUDED.user_name, user_name_key = EXCLUDED.user_name_key, "
                    "scim_attributes = EXCLUDED.scim_attributes, created_at = EXCLUDED.created_at, "
                    "version = EXCLUDED.version",
                    (
                        *key,
                        person.email,
                        person.display_name,
                        person.disabled,
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
                conn.execute("DELETE FROM membership WHERE upstream = %s AND subject = %s", key)
                if person.groups:
                    with conn.cursor() as cursor:
                        cursor.executemany(
                            "INSERT INTO membership (group_name, upstream, subject) VALUES (%s, %s, %s)",
                            [(group, *key) for group in sorted(person.groups)],
                        )
        except psycopg.errors.UniqueViolation:
            raise DirectoryConflict("another person has this scim_id, or this user_name at this upstream") from None
        return True

    def get(self, upstream: str, subject: str) -> Person | None:
        rows = self._db.rows(f"{POSTGRES.person_select}WHERE p.upstream = %s AND p.subject = %s", (upstream, subject))
        return POSTGRES.person(rows[0]) if rows else None

    def delete(self, upstream: str, subject: str) -> bool:
        with self._db.transaction(_DIRECTORY_LOCK) as conn:
            conn.execute("DELETE FROM membership WHERE upstream = %s AND subject = %s", (upstream, subject))
            conn.execute(
                "DELETE FROM group_member WHERE upstream = %s AND scim_id = "
                "(SELECT scim_id FROM person WHERE upstream = %s AND subject = %s)",
                (upstream, upstream, subject),
            )
            return (
                conn.execute("DELETE FROM person WHERE upstream = %s AND subject = %s", (upstream, subject)).rowcount
                == 1
            )

    def find(self, query: PeopleQuery = EVERYONE, *, offset: int = 0, limit: int = 100) -> list[Person]:
        check_page(limit, offset)
        where, params = POSTGRES.people_filters(query)
        ordered = f"{POSTGRES.person_select}{where}ORDER BY p.upstream, p.subject LIMIT %s OFFSET %s"
        rows = self._db.rows(ordered, (*params, limit, offset))
        return [POSTGRES.person(row) for row in rows]

    def count(self, query: PeopleQuery = EVERYONE) -> int:
        where, params = POSTGRES.people_filters(query)
        return int(self._db.rows(f"SELECT count(*) FROM person p {where}", params)[0][0])

    def revoke(self, upstream: str, subject: str, at: float) -> bool:
        changed = self._db.execute(
            "UPDATE person SET revoked_at = greatest(coalesce(revoked_at, %s), %s) "
            "WHERE upstream = %s AND subject = %s",
            (at, at, upstream, subject),
        )
        return changed == 1

    def rename(self, upstream: str, subject: str, new_subject: str) -> bool:
        if not isinstance(new_subject, str) or not new_subject:
            raise ValueError(f"a person's subject must be a non-empty string, not {new_subject!r}")
        try:
            with self._db.transaction(_DIRECTORY_LOCK) as conn:
                renamed = conn.execute(
                    "UPDATE person SET subject = %s WHERE upstream = %s AND subject = %s",
                    (new_subject, upstream, subject),
                ).rowcount
                conn.execute(
                    "UPDATE membership SET subject = %s WHERE upstream = %s AND subject = %s",
                    (new_subject, upstream, subject),
                )
        except psycopg.errors.UniqueViolation:
            raise DirectoryConflict("another person of this upstream has this subject") from None
        return renamed == 1

    def put_group(self, group: DirectoryGroup, *, if_version: int | None = None) -> bool:
        group = checked_group(group)
        key = (group.upstream, group.id)
        with self._db.transaction(_DIRECTORY_LOCK) as conn:
            stored = conn.execute("SELECT version FROM directory_group WHERE upstream = %s AND id = %s", key).fetchone()
            if if_version is not None and (stored[0] if stored else 0) != if_version:
                return False
            known = {
                row[0]
                for row in conn.execute(
                    "SELECT scim_id FROM person WHERE upstream = %s AND scim_id = ANY(%s)",
                    (group.upstream, sorted(group.members)),
                ).fetchall()
            }
            unknown = sorted(group.members - known)
            if unknown:
                raise UnknownMember(f"no provisioned person of this upstream has the id {unknown[0]!r}")
            conn.execute(
                "INSERT INTO directory_group (upstream, id, display_name, display_key, external_id, broker_group, "
                "created_at, updated_at, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (upstream, id) DO UPDATE SET display_name = EXCLUDED.display_name, "
                "display_key = EXCLUDED.display_key, external_id = EXCLUDED.external_id, "
                "broker_group = EXCLUDED.broker_group, created_at = EXCLUDED.created_at, "
                "updated_at = EXCLUDED.updated_at, version = EXCLUDED.version",
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
            conn.execute(
                "DELETE FROM group_member WHERE upstream = %s AND group_id = %s AND NOT (scim_id = ANY(%s))",
                (*key, sorted(group.members)),
            )
            if group.members:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO group_member (upstream, group_id, scim_id) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        [(*key, member) for member in sorted(group.members)],
                    )
        return True

    def get_group(self, upstream: str, group_id: str) -> DirectoryGroup | None:
        rows = self._db.rows(f"{POSTGRES.group_select}WHERE g.upstream = %s AND g.id = %s", (upstream, group_id))
        return POSTGRES.group(rows[0]) if rows else None

    def delete_group(self, upstream: str, group_id: str) -> bool:
        with self._db.transaction(_DIRECTORY_LOCK) as conn:
            conn.execute("DELETE FROM group_member WHERE upstream = %s AND group_id = %s", (upstream, group_id))
            deleted = conn.execute("DELETE FROM directory_group WHERE upstream = %s AND id = %s", (upstream, group_id))
            return deleted.rowcount == 1

    def find_groups(
        self, query: GroupQuery = EVERY_GROUP, *, offset: int = 0, limit: int = 100
    ) -> list[DirectoryGroup]:
        check_page(limit, offset)
        where, params = POSTGRES.group_filters(query)
        rows = self._db.rows(
            f"{POSTGRES.group_select}{where}ORDER BY g.upstream, g.id LIMIT %s OFFSET %s", (*params, limit, offset)
        )
        return [POSTGRES.group(row) for row in rows]

    def count_groups(self, query: GroupQuery = EVERY_GROUP) -> int:
        where, params = POSTGRES.group_filters(query)
        return int(self._db.rows(f"SELECT count(*) FROM directory_group g {where}", params)[0][0])

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()


class PostgresChangeLog:
    """The durable outbox: appends hold an advisory lock until they commit, so positions become visible in
    order (a reader never finds, later, a record before one it has already read)."""

    def __init__(self, url: str) -> None:
        self._db = Database(url, "the change log (PostgreSQL)")
        self._db.migrate("changes")

    def __repr__(self) -> str:
        return f"PostgresChangeLog({redact_url(self._db.url)!r})"

    def append(self, record: dict) -> int:
        with self._db.transaction(_CHANGES_LOCK) as conn:
            row = conn.execute(
                "INSERT INTO change_log (record) VALUES (%s) RETURNING position", (json.dumps(record),)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def read(self, after: int = 0, *, limit: int = 100) -> list[tuple[int, dict]]:
        check_page(limit, max(after, 0))
        rows = self._db.rows(
            "SELECT position, record FROM change_log WHERE position > %s ORDER BY position LIMIT %s", (after, limit)
        )
        return [(int(position), json.loads(record)) for position, record in rows]

    def last(self) -> int:
        return int(self._db.rows("SELECT coalesce(max(position), 0) FROM change_log")[0][0])

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
