"""The contract every state store and audit log backend must pass (as Dex does for its storages)."""

from __future__ import annotations

import threading

import pytest

from sso_common.store.memory import MemoryAuditLog, MemoryStateStore
from sso_common.store.sqlite import SQLiteAuditLog, SQLiteStateStore


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def clock_and_store(request, tmp_path):
    clock = FakeClock()
    if request.param == "memory":
        return clock, MemoryStateStore(clock=clock)
    return clock, SQLiteStateStore(str(tmp_path / "state.db"), clock=clock)


@pytest.fixture(params=["memory", "sqlite"])
def audit_log(request, tmp_path):
    return MemoryAuditLog() if request.param == "memory" else SQLiteAuditLog(str(tmp_path / "audit.db"))


def test_put_get_round_trip_and_replace(clock_and_store):
    _, store = clock_and_store
    store.put("session", "k1", {"user": "alice", "groups": ["a", "b"]}, 60)
    assert store.get("session", "k1") == {"user": "alice", "groups": ["a", "b"]}
    store.put("session", "k1", {"user": "bob"}, 60)
    assert store.get("session", "k1") == {"user": "bob"}


def test_kinds_are_separate_namespaces(clock_and_store):
    _, store = clock_and_store
    store.put("code", "same", {"v": 1}, 60)
    assert store.get("session", "same") is None


def test_entries_expire(clock_and_store):
    clock, store = clock_and_store
    store.put("code", "k", {"v": 1}, 10)
    clock.now += 9.9
    assert store.get("code", "k") == {"v": 1}
    clock.now += 0.2
    assert store.get("code", "k") is None
    assert store.take("code", "k") is None


def test_returned_values_are_copies(clock_and_store):
    _, store = clock_and_store
    store.put("s", "k", {"list": [1]}, 60)
    store.get("s", "k")["list"].append(2)
    assert store.get("s", "k") == {"list": [1]}


def test_add_refuses_a_live_entry_but_reuses_an_expired_one(clock_and_store):
    clock, store = clock_and_store
    assert store.add("replay", "assertion-1", {}, 30) is True
    assert store.add("replay", "assertion-1", {}, 30) is False
    clock.now += 31
    assert store.add("replay", "assertion-1", {}, 30) is True


def test_take_is_single_use(clock_and_store):
    _, store = clock_and_store
    store.put("code", "k", {"v": 1}, 60)
    assert store.take("code", "k") == {"v": 1}
    assert store.take("code", "k") is None
    assert store.get("code", "k") is None


def test_take_under_concurrency_hands_the_value_out_once(clock_and_store):
    _, store = clock_and_store
    for round_ in range(20):
        store.put("code", f"k{round_}", {"v": round_}, 60)
    winners = []

    def race():
        for round_ in range(20):
            if store.take("code", f"k{round_}") is not None:
                winners.append(round_)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == list(range(20))


def test_delete(clock_and_store):
    _, store = clock_and_store
    store.put("s", "k", {}, 60)
    store.delete("s", "k")
    store.delete("s", "missing")
    assert store.get("s", "k") is None


def test_incr_counts_within_a_window_then_restarts(clock_and_store):
    clock, store = clock_and_store
    assert [store.incr("fail", "bob", 300) for _ in range(3)] == [1, 2, 3]
    clock.now += 301
    assert store.incr("fail", "bob", 300) == 1


def test_incr_value_is_readable_as_count(clock_and_store):
    _, store = clock_and_store
    store.incr("fail", "bob", 300)
    store.incr("fail", "bob", 300)
    assert store.get("fail", "bob") == {"count": 2}


def test_incr_by_other_amounts_including_negative(clock_and_store):
    _, store = clock_and_store
    assert store.incr("slots", "bob", 300, amount=3) == 3
    assert store.incr("slots", "bob", 300, amount=-1) == 2
    assert store.incr("slots", "bob", 300) == 3
    assert store.get("slots", "bob") == {"count": 3}


def test_incr_under_concurrency_loses_no_update(clock_and_store):
    _, store = clock_and_store

    def add():
        for _ in range(50):
            store.incr("race", "k", 300)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("race", "k") == {"count": 200}


def test_purge_expired(clock_and_store):
    clock, store = clock_and_store
    store.put("a", "old", {}, 5)
    store.put("a", "new", {}, 500)
    clock.now += 10
    assert store.purge_expired() == 1
    assert store.get("a", "new") == {}


def test_keys_are_not_stored_in_clear(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    store.put("refresh_token", "very-secret-token-value", {"user": "alice"}, 60)
    assert b"very-secret-token-value" not in (tmp_path / "state.db").read_bytes() + _wal(tmp_path)


def _wal(tmp_path):
    wal = tmp_path / "state.db-wal"
    return wal.read_bytes() if wal.exists() else b""


def test_audit_log_append_recent_and_export(audit_log):
    for i in range(5):
        audit_log.append({"type": "sign_in" if i % 2 == 0 else "credentials", "n": i})
    recent = audit_log.query(limit=2)
    assert [e["n"] for e in recent] == [4, 3]
    assert [e["n"] for e in audit_log.query(event_type="credentials")] == [3, 1]
    exported = list(audit_log.export())
    assert [e["n"] for e in exported] == [0, 1, 2, 3, 4]
    assert all("time" in e for e in exported)


def test_database_files_and_their_folder_are_private(tmp_path):
    import stat

    store = SQLiteStateStore(str(tmp_path / "instance" / "state.db"))
    store.put("s", "k", {"v": 1}, 60)
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        path = tmp_path / "instance" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
