"""The Redis and PostgreSQL backends against the conformance suites, on real servers (Debian's packages, free
loopback ports), and what only they promise: migrations, failures as StoreUnavailable without the password,
recovery after the engine restarts, pools that do not cross a fork, routing of the lasting kinds."""

from __future__ import annotations

import os
import threading
import time

import psycopg
import pytest

from sso_common.config import ConfigError, load_yaml
from sso_common.store import PeopleQuery, Person
from sso_common.store.conformance import (
    AuditLogContract,
    ChangeLogContract,
    DirectoryStoreContract,
    StateStoreContract,
)
from sso_common.store.errors import StoreUnavailable, redact_url, scrub
from sso_common.store.memory import MemoryStateStore
from sso_common.store.postgres import (
    MIGRATIONS,
    Database,
    PostgresAuditLog,
    PostgresChangeLog,
    PostgresDirectoryStore,
    PostgresStateStore,
)
from sso_common.store.redis_store import RedisStateStore
from sso_common.store.registry import open_state_store, parse_store_urls
from sso_common.store.routing import RoutedStateStore
from tests.support.engines import fresh_schema

REDIS_DB = 15  # the conformance suite's database: emptied before each test


@pytest.fixture
def opened():
    """Stores a test opened, closed after it (each holds a pool of connections to its own schema)."""
    stores: list = []

    def keep(store):
        stores.append(store)
        return store

    yield keep
    for store in stores:
        store.close()


class TestRedisStateStore(StateStoreContract):
    REAL_TIME_EXPIRY = True

    @pytest.fixture
    def make_store(self, redis_server):
        def make(clock):
            store = RedisStateStore(redis_server.url(REDIS_DB))
            store._redis.flushdb()
            return store

        return make


class TestPostgresStateStore(StateStoreContract):
    @pytest.fixture
    def make_store(self, postgres_server, opened):
        return lambda clock: opened(PostgresStateStore(postgres_server.url(fresh_schema()), clock=clock))


class TestPostgresDirectoryStore(DirectoryStoreContract):
    @pytest.fixture
    def make_store(self, postgres_server, opened):
        return lambda: opened(PostgresDirectoryStore(postgres_server.url(fresh_schema())))


class TestPostgresChangeLog(ChangeLogContract):
    @pytest.fixture
    def make_store(self, postgres_server, opened):
        return lambda: opened(PostgresChangeLog(postgres_server.url(fresh_schema())))


class TestPostgresAuditLog(AuditLogContract):
    @pytest.fixture
    def make_store(self, postgres_server, opened):
        return lambda: opened(PostgresAuditLog(postgres_server.url(fresh_schema())))


# --- Redis -------------------------------------------------------------------------------------------


def test_redis_keeps_keys_hashed_and_expiring(redis_server):
    store = RedisStateStore(redis_server.url(14))
    store.put("refresh_token", "very-secret-token-value", {"user": "alice"}, 60)
    keys = store._redis.keys("*")
    assert keys and all(b"very-secret-token-value" not in key for key in keys)
    assert all(0 < store._redis.pttl(key) <= 60_000 for key in keys)  # Redis expires them itself
    store._redis.flushdb()


def test_redis_unreachable_is_store_unavailable_quickly_and_without_the_password():
    store = RedisStateStore("redis://:hunter2-redis-secret@127.0.0.1:1/0")
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as down:
        store.get("session", "k")
    assert time.monotonic() - began < 2.0
    assert "hunter2-redis-secret" not in str(down.value) and "hunter2-redis-secret" not in repr(store)


def test_redis_restart_without_persistence_loses_the_state_and_the_store_recovers(tmp_path):
    from devstack.engines import RedisServer

    server = RedisServer.start(tmp_path / "redis")
    try:
        store = RedisStateStore(server.url())
        store.put("portal_session", "s1", {"user": "bob"}, 300)
        assert store.incr("fail", "bob", 300) == 1
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.get("portal_session", "s1")
        server.launch()
        # The pooled connections died with the server: the next command reconnects by itself.
        assert store.get("portal_session", "s1") is None  # without persistence, sessions are gone
        assert store.incr("fail", "bob", 300) == 1  # and throttles start over
        store.put("portal_session", "s2", {"user": "bob"}, 300)
        assert store.get("portal_session", "s2") == {"user": "bob"}
    finally:
        server.stop()


# --- PostgreSQL ---------------------------------------------------------------------------------------


def test_postgres_migrations_are_recorded_once_even_when_replicas_start_together(postgres_server):
    url = postgres_server.url(fresh_schema())
    run_together = [threading.Thread(target=lambda: PostgresAuditLog(url)) for _ in range(5)]
    for thread in run_together:
        thread.start()
    for thread in run_together:
        thread.join(30)
    PostgresStateStore(url)
    schema = url.rsplit("=", 1)[1]
    with psycopg.connect(postgres_server.url().replace("postgresql://", "postgresql://", 1)) as conn:
        rows = conn.execute(
            f"SELECT contract, version FROM {schema}.sso_schema_migrations ORDER BY contract, version"
        ).fetchall()
    assert rows == [("audit", v) for v, _ in MIGRATIONS["audit"]] + [("state", v) for v, _ in MIGRATIONS["state"]]


def test_postgres_migrates_a_directory_of_before_scim_keeping_its_people(postgres_server, monkeypatch):
    """A database made by the first release (version 1, no SCIM columns) is brought to the current schema
    at start-up, its people kept."""
    url = postgres_server.url(fresh_schema())
    monkeypatch.setitem(MIGRATIONS, "directory", MIGRATIONS["directory"][:1])
    Database(url, "the directory").migrate("directory")
    schema = url.rsplit("=", 1)[1]
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {schema}.person VALUES ('corp', 'alice', 'alice@example.com', 'Alice', false, NULL, 5.0)"
        )
        conn.execute(f"INSERT INTO {schema}.membership VALUES ('dev', 'corp', 'alice')")
    monkeypatch.undo()
    directory = PostgresDirectoryStore(url)
    assert directory.get("corp", "alice") == Person(
        "corp", "alice", "alice@example.com", "Alice", frozenset({"dev"}), updated_at=5.0
    )
    assert directory.count(PeopleQuery(provisioned=False)) == 1
    assert Database(url, "the directory").migrate("directory") == []  # nothing left to apply


def test_postgres_keeps_state_keys_hashed(postgres_server):
    url = postgres_server.url(fresh_schema())
    PostgresStateStore(url).put("refresh_token", "very-secret-token-value", {"user": "alice"}, 60)
    schema = url.rsplit("=", 1)[1]
    with psycopg.connect(postgres_server.url()) as conn:
        dumped = str(conn.execute(f"SELECT * FROM {schema}.state").fetchall())
    assert "very-secret-token-value" not in dumped and "alice" in dumped


def test_postgres_checks_a_pooled_connection_only_after_it_sat_idle(postgres_server, monkeypatch):
    """The check before a connection is handed out is a round trip: made for one idle longer than
    CHECK_IDLE_AFTER (it may have died meanwhile), not for one used a moment ago."""
    from sso_common.store import postgres

    checked = []
    original = postgres.ConnectionPool.check_connection
    now = [1000.0]  # the idle clock stands still unless the test moves it: no timing on a busy machine
    monkeypatch.setattr(postgres, "_idle_clock", lambda: now[0])
    monkeypatch.setattr(postgres.ConnectionPool, "check_connection", lambda conn: checked.append(1) or original(conn))
    store = PostgresStateStore(postgres_server.url(fresh_schema()))
    store.put("kind", "key", {"n": 1}, 60)
    pool = store._db.pool()
    deadline = time.monotonic() + 10
    while (stats := pool.get_stats())["pool_available"] < stats["pool_size"]:  # a connection still being opened
        assert time.monotonic() < deadline, stats
        time.sleep(0.02)
    for _ in range(stats["pool_size"]):  # every connection the pool has used once (a new one is checked)
        assert store.get("kind", "key") == {"n": 1}
    before = len(checked)
    for _ in range(5):
        assert store.get("kind", "key") == {"n": 1}
    assert len(checked) == before  # used a moment ago each time
    now[0] += postgres.CHECK_IDLE_AFTER + 0.1
    assert store.get("kind", "key") == {"n": 1}
    assert len(checked) == before + 1


def test_postgres_a_revocation_while_a_put_is_under_way_is_kept(postgres_server, monkeypatch):
    """`revoke` commits without the directory's lock: one landing between a put's read of the row and its write
    (another replica revoking the person while they sign in) must not be undone by the put."""
    from sso_common.store import postgres

    store = PostgresDirectoryStore(postgres_server.url(fresh_schema()))
    try:
        store.put(Person("corp", "sub-bob", "bob@example.com", updated_at=1.0))
        later = postgres.later

        def revoked_meanwhile(stored, given):  # the put has read the row
            assert store.revoke("corp", "sub-bob", 1000.0)
            return later(stored, given)

        monkeypatch.setattr(postgres, "later", revoked_meanwhile)
        store.put(Person("corp", "sub-bob", "bob@example.com", display_name="Bob", updated_at=2.0))
        monkeypatch.undo()
        assert store.get("corp", "sub-bob").revoked_at == 1000.0, "the put moved revoked_at back"
    finally:
        store.close()


def test_postgres_audit_keeps_an_event_with_a_nul_character(postgres_server):
    log = PostgresAuditLog(postgres_server.url(fresh_schema()))
    event = {"type": "sign_in", "time": 1.0, "user": "a\x00b", "user_agent": "x\x00y"}
    log.append(event)
    assert log.query() == [event]


def test_postgres_unreachable_is_store_unavailable_without_the_password(postgres_server):
    url = postgres_server.url(fresh_schema())
    log = PostgresAuditLog(url)
    wrong_port = url.replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(StoreUnavailable) as down:
        PostgresAuditLog(wrong_port)
    assert postgres_server.password not in str(down.value)
    log.append({"type": "sign_in"})  # the real one still works


def test_postgres_wrong_password_is_store_unavailable_without_either_password(postgres_server):
    wrong = postgres_server.url(fresh_schema(), password="not-the-right-secret")
    with pytest.raises(StoreUnavailable) as refused:
        PostgresAuditLog(wrong)
    assert "not-the-right-secret" not in str(refused.value) and postgres_server.password not in str(refused.value)


def test_postgres_pool_is_opened_again_in_a_forked_worker(postgres_server):
    """The app opens its stores before the server forks its workers: each worker must get connections of
    its own (a connection shared across a fork would interleave two processes' messages)."""
    store = PostgresStateStore(postgres_server.url(fresh_schema()))
    store.put("s", "parent", {"v": 1}, 60)
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            store.put("s", "child", {"v": 2}, 60)
            ok = store.get("s", "parent") == {"v": 1}
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert store.get("s", "child") == {"v": 2}


def test_postgres_down_then_up_again(tmp_path):
    from devstack.engines import PostgresServer

    server = PostgresServer.start()
    try:
        log = PostgresAuditLog(server.url("audit_restart"))
        log.append({"type": "sign_in", "n": 1})
        server.stop()
        began = time.monotonic()
        with pytest.raises(StoreUnavailable):
            log.append({"type": "sign_in", "n": 2})
        assert time.monotonic() - began < 5.0  # a clear refusal within the pool's timeout, not a hang
        server.launch()
        deadline = time.monotonic() + 10
        while True:  # the pool reconnects on its own
            try:
                log.append({"type": "sign_in", "n": 3})
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the audit log did not recover within 10 s"
                time.sleep(0.2)
        assert [event["n"] for event in log.export()] == [1, 3]  # durable: what was written survived
    finally:
        server.destroy()


# --- the registry and routing ------------------------------------------------------------------------


def test_redaction_of_store_urls():
    assert redact_url("postgresql://sso:s3cr%2Ft@db:5432/sso?schema=x") == "postgresql://sso:***@db:5432/sso?schema=x"
    assert redact_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("postgresql://db/sso?password=pw&sslmode=require") == (
        "postgresql://db/sso?password=***&sslmode=require"
    )
    assert redact_url("sqlite:///var/lib/state.db") == "sqlite:///var/lib/state.db"
    assert "s3cr/t" not in scrub("failed for s3cr/t and s3cr%2Ft", "postgresql://sso:s3cr%2Ft@db/sso")


def test_config_errors_never_show_a_store_password(tmp_path):
    config = tmp_path / "portal.yaml"
    config.write_text("stores:\n  directory: redis://:very-secret@cache:6379/0\n")
    with pytest.raises(ConfigError) as refused:
        parse_store_urls(load_yaml(config).child("stores"), {"state": "memory://", "directory": "memory://"})
    assert refused.value.key == "stores.directory" and "very-secret" not in str(refused.value)
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in refused.value.problem


def test_empty_store_urls_mean_the_default_and_lasting_is_optional(tmp_path):
    config = tmp_path / "portal.yaml"
    config.write_text("stores:\n  state: ''\n  lasting: ''\n")
    urls = parse_store_urls(load_yaml(config).child("stores"), {"state": "memory://", "lasting": ""})
    assert urls == {"state": "memory://", "lasting": ""}
    config.write_text("stores:\n  lasting: redis://cache:6379/0\n")
    urls = parse_store_urls(load_yaml(config).child("stores"), {"state": "memory://", "lasting": ""})
    assert urls["lasting"] == "redis://cache:6379/0"


def test_lasting_kinds_go_to_the_lasting_store():
    default, lasting = MemoryStateStore(), MemoryStateStore()
    store = RoutedStateStore(default, lasting, frozenset({"sso_client"}))
    store.put("sso_client", "c1", {"name": "aws-cli"}, 60)
    store.put("portal_session", "s1", {"user": "bob"}, 60)
    assert lasting.get("sso_client", "c1") == {"name": "aws-cli"} and default.get("sso_client", "c1") is None
    assert default.get("portal_session", "s1") == {"user": "bob"} and lasting.get("portal_session", "s1") is None
    assert store.take("sso_client", "c1") == {"name": "aws-cli"} and store.get("sso_client", "c1") is None
    assert store.incr("throttle", "bob", 60) == 1 and default.get("throttle", "bob") == {"count": 1}


def test_registry_routes_lasting_kinds_only_when_a_different_url_is_given(redis_server, postgres_server):
    redis_url, postgres_url = redis_server.url(13), postgres_server.url(fresh_schema())
    assert isinstance(open_state_store(redis_url), RedisStateStore)
    assert isinstance(
        open_state_store(redis_url, lasting_url=redis_url, lasting_kinds=frozenset({"x"})), RedisStateStore
    )
    routed = open_state_store(redis_url, lasting_url=postgres_url, lasting_kinds=frozenset({"sso_client"}))
    assert isinstance(routed, RoutedStateStore)
    assert isinstance(routed.default, RedisStateStore) and isinstance(routed.lasting, PostgresStateStore)
