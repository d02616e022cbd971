"""The built-in store backends against the conformance suites, what only SQLite promises, and the registry."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from sso_common.config import ConfigError, load_yaml
from sso_common.store import PeopleQuery, Person
from sso_common.store.conformance import (
    AuditLogContract,
    ChangeLogContract,
    DirectoryStoreContract,
    StateStoreContract,
)
from sso_common.store.memory import MemoryAuditLog, MemoryChangeLog, MemoryDirectoryStore, MemoryStateStore
from sso_common.store.registry import (
    Backend,
    open_audit_log,
    open_directory_store,
    open_state_store,
    parse_store_urls,
    register_backend,
)
from sso_common.store.sqlite import SQLiteAuditLog, SQLiteChangeLog, SQLiteDirectoryStore, SQLiteStateStore


class TestMemoryStateStore(StateStoreContract):
    @pytest.fixture
    def make_store(self):
        return lambda clock: MemoryStateStore(clock=clock)


class TestSQLiteStateStore(StateStoreContract):
    @pytest.fixture
    def make_store(self, tmp_path):
        return lambda clock: SQLiteStateStore(str(tmp_path / "state.db"), clock=clock)


class TestMemoryDirectoryStore(DirectoryStoreContract):
    @pytest.fixture
    def make_store(self):
        return MemoryDirectoryStore


class TestSQLiteDirectoryStore(DirectoryStoreContract):
    @pytest.fixture
    def make_store(self, tmp_path):
        return lambda: SQLiteDirectoryStore(str(tmp_path / "directory.db"))


class TestMemoryAuditLog(AuditLogContract):
    @pytest.fixture
    def make_store(self):
        return MemoryAuditLog


class TestSQLiteAuditLog(AuditLogContract):
    @pytest.fixture
    def make_store(self, tmp_path):
        return lambda: SQLiteAuditLog(str(tmp_path / "audit.db"))


class TestMemoryChangeLog(ChangeLogContract):
    @pytest.fixture
    def make_store(self):
        return MemoryChangeLog


class TestSQLiteChangeLog(ChangeLogContract):
    @pytest.fixture
    def make_store(self, tmp_path):
        return lambda: SQLiteChangeLog(str(tmp_path / "changes.db"))


def test_sqlite_keys_are_not_stored_in_clear(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    store.put("refresh_token", "very-secret-token-value", {"user": "alice"}, 60)
    wal = tmp_path / "state.db-wal"
    written = (tmp_path / "state.db").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"very-secret-token-value" not in written


@pytest.mark.parametrize(
    "write",
    [
        lambda path: SQLiteStateStore(path).put("s", "k", {"v": 1}, 60),
        lambda path: SQLiteDirectoryStore(path).put(Person("corp", "alice", "alice@example.com")),
        lambda path: SQLiteAuditLog(path).append({"type": "sign_in"}),
    ],
    ids=["state", "directory", "audit"],
)
def test_sqlite_database_files_and_their_folder_are_private(tmp_path, write):
    write(str(tmp_path / "instance" / "store.db"))
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
    for name in ("store.db", "store.db-wal", "store.db-shm"):
        path = tmp_path / "instance" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_sqlite_directory_is_shared_by_every_store_on_the_file(tmp_path):
    """Workers each open the file: what one writes, the others read."""
    alice = Person("corp", "alice", "alice@example.com", groups=frozenset({"dev"}))
    SQLiteDirectoryStore(str(tmp_path / "directory.db")).put(alice)
    assert SQLiteDirectoryStore(str(tmp_path / "directory.db")).find(PeopleQuery(group="dev")) == [alice]


@pytest.mark.parametrize(
    ("open_store", "expected"),
    [
        (open_state_store, MemoryStateStore),
        (open_directory_store, MemoryDirectoryStore),
        (open_audit_log, MemoryAuditLog),
    ],
)
def test_registry_opens_memory_stores(open_store, expected):
    assert type(open_store("memory://")) is expected


@pytest.mark.parametrize(
    ("open_store", "expected"),
    [
        (open_state_store, SQLiteStateStore),
        (open_directory_store, SQLiteDirectoryStore),
        (open_audit_log, SQLiteAuditLog),
    ],
)
def test_registry_opens_sqlite_stores_at_the_url_path(tmp_path, open_store, expected):
    path = tmp_path / "instance" / "store.db"
    assert type(open_store(f"sqlite:///{path}")) is expected
    assert path.exists()


def test_registry_refuses_a_sqlite_url_without_a_path():
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        open_state_store("sqlite:///")


def test_registry_refuses_an_unknown_scheme_naming_the_choices():
    with pytest.raises(ValueError, match="mongodb://cache") as refused:
        open_state_store("mongodb://cache")
    assert "sqlite:///PATH" in str(refused.value) and "memory://" in str(refused.value)


def test_registry_refuses_a_backend_for_an_unknown_contract():
    with pytest.raises(ValueError, match="'queue'"):
        register_backend(Backend("queue", "queue://", {"queue": lambda url: None}))


DEFAULTS = {"state": "sqlite:///instance/state.db", "audit": "sqlite:///instance/audit.db"}


def _stores_node(tmp_path, text):
    config = tmp_path / "portal.yaml"
    config.write_text(text)
    return load_yaml(config).child("stores", {})


def test_parse_store_urls_fills_in_defaults(tmp_path):
    node = _stores_node(tmp_path, "stores:\n  state: memory://\n")
    assert parse_store_urls(node, DEFAULTS) == {"state": "memory://", "audit": "sqlite:///instance/audit.db"}
    assert parse_store_urls(_stores_node(tmp_path, "other: 1\n"), DEFAULTS) == DEFAULTS


def test_parse_store_urls_names_the_key_of_a_bad_scheme(tmp_path):
    with pytest.raises(ConfigError) as refused:
        parse_store_urls(_stores_node(tmp_path, "stores:\n  audit: redis://cache\n"), DEFAULTS)
    assert refused.value.key == "stores.audit"
    assert "sqlite:///PATH" in refused.value.problem


def test_parse_store_urls_refuses_an_unknown_contract(tmp_path):
    with pytest.raises(ConfigError) as refused:
        parse_store_urls(_stores_node(tmp_path, "stores:\n  sessions: memory://\n"), DEFAULTS)
    assert refused.value.key == "stores.sessions"


def test_a_directory_made_before_scim_gets_the_new_columns_and_keeps_its_people(tmp_path):
    import sqlite3

    path = tmp_path / "directory.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE person (upstream TEXT NOT NULL, subject TEXT NOT NULL, email TEXT NOT NULL,
            display_name TEXT NOT NULL, disabled INTEGER NOT NULL, revoked_at REAL, updated_at REAL NOT NULL,
            PRIMARY KEY (upstream, subject)) WITHOUT ROWID;
        CREATE TABLE membership (group_name TEXT NOT NULL, upstream TEXT NOT NULL, subject TEXT NOT NULL,
            PRIMARY KEY (group_name, upstream, subject)) WITHOUT ROWID;
        INSERT INTO person VALUES ('corp', 'alice', 'alice@example.com', 'Alice', 0, 5.0, 1.0);
        INSERT INTO membership VALUES ('dev', 'corp', 'alice');
        """
    )
    old.commit()
    old.close()
    store = SQLiteDirectoryStore(str(path))
    assert store.get("corp", "alice") == Person(
        "corp", "alice", "alice@example.com", "Alice", frozenset({"dev"}), revoked_at=5.0, updated_at=1.0
    )
    store.put(Person("corp", "bob", "bob@example.com", scim_id="id-bob", user_name="bob", version=1))
    assert store.find(PeopleQuery(provisioned=True))[0].subject == "bob"
    SQLiteDirectoryStore(str(path))  # opened again (another worker): nothing to add, nothing fails


def test_a_state_table_made_without_rowid_is_moved_keeping_its_entries(tmp_path):
    """State kept by a release before 2026-12 (a WITHOUT ROWID table, slow for values of kilobytes) is moved
    into the current table at first open: live sessions survive the upgrade, expired ones stay expired."""
    import sqlite3

    path = tmp_path / "state.db"
    before = SQLiteStateStore(str(path))
    before.put("session", "live", {"who": "alice"}, 600)
    before.put("session", "gone", {"who": "bob"}, 600)
    del before
    with sqlite3.connect(path) as old:  # the table as that release made it, with the entries above
        old.executescript(
            """
            ALTER TABLE state RENAME TO current;
            DROP INDEX state_expires;
            CREATE TABLE state (hkey TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
            CREATE INDEX state_expires ON state (expires);
            INSERT INTO state SELECT hkey, value, expires FROM current;
            DROP TABLE current;
            """
        )
        old.execute("UPDATE state SET expires = 1 WHERE value LIKE '%bob%'")
    with ThreadPoolExecutor(4) as pool:  # workers opening it at once: one moves it, the others find it moved
        stores = list(pool.map(lambda _: SQLiteStateStore(str(path)), range(4)))
    assert stores[0].get("session", "live") == {"who": "alice"}
    assert stores[1].get("session", "gone") is None
    stores[2].put("session", "new", {"who": "carol"}, 600)
    assert stores[3].get("session", "new") == {"who": "carol"}
    with sqlite3.connect(path) as conn:
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert set(tables) == {"state"} and "WITHOUT ROWID" not in tables["state"].upper()
    assert "state_expires" in indexes
