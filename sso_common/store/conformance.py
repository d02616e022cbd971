"""The suites every store backend must pass, one pytest class per contract (as Dex does for its storages).

A backend's tests subclass each contract it serves and give the subclass one fixture, `make_store`: a
function that opens a new, empty store. The state store's takes the clock the store must read (the tests
move it to expire entries); the directory's, the audit log's and the change log's take nothing. Audit tests give their
events an explicit "time", which `append` keeps.

    class TestSQLiteStateStore(StateStoreContract):
        @pytest.fixture
        def make_store(self, tmp_path):
            return lambda clock: SQLiteStateStore(str(tmp_path / "state.db"), clock=clock)

(tests/sso_common/test_stores.py has the memory and SQLite backends' eight such classes.)
The contracts are named `...Contract`, not `Test...`, so pytest runs them only through such subclasses.
Only tests import this module (it needs pytest).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import pytest

from sso_common.store import (
    AuditLog,
    AuditQuery,
    ChangeLog,
    DirectoryConflict,
    DirectoryGroup,
    DirectoryStore,
    GroupQuery,
    PeopleQuery,
    Person,
    StateStore,
    UnknownMember,
)

T = TypeVar("T")
Clock = Callable[[], float]

RACE_TIMEOUT = 30.0  # seconds a race may take before it counts as hung (SQLite's busy timeout)


class FakeClock:
    """A clock the tests move by hand, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run_together(count: int, action: Callable[[int], T]) -> list[T]:
    """Run `action(0)` … `action(count - 1)` in as many threads, released at once by a barrier; their
    results in order, or the first error raised. A thread still running after RACE_TIMEOUT fails the test
    instead of hanging it."""
    barrier = threading.Barrier(count, timeout=RACE_TIMEOUT)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + RACE_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    assert not hung, f"{hung} of {count} threads still running after {RACE_TIMEOUT} s"
    if errors:
        raise errors[0]
    return [results[index] for index in range(count)]


_CLOCK_TESTS = (  # the StateStore tests that move the test's clock
    "test_entries_expire",
    "test_add_refuses_a_live_entry_but_reuses_an_expired_one",
    "test_incr_counts_within_a_window_then_restarts",
    "test_incr_window_starts_at_the_first_increment",
    "test_purge_expired",
)
_REAL_TIME_TESTS = (  # their real-time counterparts
    "test_real_time_entries_expire",
    "test_real_time_add_refuses_a_live_entry_but_reuses_an_expired_one",
    "test_real_time_incr_window_starts_at_the_first_increment_then_restarts",
    "test_real_time_purge_expired",
)


class StateStoreContract:
    """Fixture: `make_store(clock) -> StateStore`.

    A backend whose engine expires entries on its own clock (Redis: the TTL of the key) sets
    `REAL_TIME_EXPIRY = True`. Its store cannot follow the test's clock, so the five tests that move the
    clock are replaced for it by the same checks in real time (`test_real_time_...`): short TTLs, an entry
    checked well before its TTL (alive) and well after it (gone), about 4 s in all. The other backends keep
    the exact clock-driven tests; every other test is the same for all."""

    REAL_TIME_EXPIRY: ClassVar[bool] = False
    REAL_TTL: ClassVar[float] = 0.5  # seconds: the real-time tests' TTL
    REAL_MARGIN: ClassVar[float] = 0.25  # seconds kept from each side of an expiry (a loaded machine's jitter)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A backend's class gets one of the two sets of expiry tests (None is not collected)."""
        super().__init_subclass__(**kwargs)
        for name in _REAL_TIME_TESTS if not cls.REAL_TIME_EXPIRY else _CLOCK_TESTS:
            setattr(cls, name, None)

    def _sleep_until(self, started: float, seconds: float) -> None:
        time.sleep(max(0.0, started + seconds - time.monotonic()))

    @pytest.fixture
    def store(self, make_store: Callable[[Clock], StateStore], clock: FakeClock) -> StateStore:
        return make_store(clock)

    def test_put_get_round_trip_and_replace(self, store: StateStore) -> None:
        store.put("session", "k1", {"user": "alice", "groups": ["a", "b"]}, 60)
        assert store.get("session", "k1") == {"user": "alice", "groups": ["a", "b"]}
        store.put("session", "k1", {"user": "bob"}, 60)
        assert store.get("session", "k1") == {"user": "bob"}

    def test_kinds_are_separate_namespaces(self, store: StateStore) -> None:
        store.put("code", "same", {"v": 1}, 60)
        assert store.get("session", "same") is None

    def test_entries_expire(self, store: StateStore, clock: FakeClock) -> None:
        store.put("code", "k", {"v": 1}, 10)
        clock.now += 9.9
        assert store.get("code", "k") == {"v": 1}
        clock.now += 0.2
        assert store.get("code", "k") is None
        assert store.take("code", "k") is None

    def test_returned_values_are_copies(self, store: StateStore) -> None:
        store.put("s", "k", {"list": [1]}, 60)
        returned = store.get("s", "k")
        assert returned is not None
        returned["list"].append(2)
        assert store.get("s", "k") == {"list": [1]}

    def test_stored_values_are_copies(self, store: StateStore) -> None:
        value = {"list": [1]}
        store.put("s", "k", value, 60)
        value["list"].append(2)
        assert store.get("s", "k") == {"list": [1]}

    def test_add_refuses_a_live_entry_but_reuses_an_expired_one(self, store: StateStore, clock: FakeClock) -> None:
        assert store.add("replay", "assertion-1", {}, 30) is True
        assert store.add("replay", "assertion-1", {}, 30) is False
        clock.now += 31
        assert store.add("replay", "assertion-1", {}, 30) is True

    def test_add_raced_by_50_threads_stores_once(self, store: StateStore) -> None:
        stored = run_together(50, lambda index: store.add("replay", "assertion-1", {"by": index}, 60))
        assert stored.count(True) == 1
        assert store.get("replay", "assertion-1") == {"by": stored.index(True)}

    def test_take_is_single_use(self, store: StateStore) -> None:
        store.put("code", "k", {"v": 1}, 60)
        assert store.take("code", "k") == {"v": 1}
        assert store.take("code", "k") is None
        assert store.get("code", "k") is None

    def test_take_under_concurrency_hands_the_value_out_once(self, store: StateStore) -> None:
        for round_ in range(20):
            store.put("code", f"k{round_}", {"v": round_}, 60)

        def take_every_key(_: int) -> list[int]:
            return [round_ for round_ in range(20) if store.take("code", f"k{round_}") is not None]

        winners = run_together(4, take_every_key)
        assert sorted(round_ for taken in winners for round_ in taken) == list(range(20))

    def test_take_raced_by_50_threads_hands_the_value_out_once(self, store: StateStore) -> None:
        store.put("code", "k", {"v": 1}, 60)
        taken = run_together(50, lambda _: store.take("code", "k"))
        assert [value for value in taken if value is not None] == [{"v": 1}]

    def test_delete(self, store: StateStore) -> None:
        store.put("s", "k", {}, 60)
        store.delete("s", "k")
        store.delete("s", "missing")
        assert store.get("s", "k") is None

    def test_incr_counts_within_a_window_then_restarts(self, store: StateStore, clock: FakeClock) -> None:
        assert [store.incr("fail", "bob", 300) for _ in range(3)] == [1, 2, 3]
        clock.now += 301
        assert store.incr("fail", "bob", 300) == 1

    def test_incr_window_starts_at_the_first_increment(self, store: StateStore, clock: FakeClock) -> None:
        store.incr("fail", "bob", 300)
        clock.now += 200
        assert store.incr("fail", "bob", 300) == 2
        clock.now += 101
        assert store.incr("fail", "bob", 300) == 1

    def test_incr_value_is_readable_as_count(self, store: StateStore) -> None:
        store.incr("fail", "bob", 300)
        store.incr("fail", "bob", 300)
        assert store.get("fail", "bob") == {"count": 2}

    def test_incr_by_other_amounts_including_negative(self, store: StateStore) -> None:
        assert store.incr("slots", "bob", 300, amount=3) == 3
        assert store.incr("slots", "bob", 300, amount=-1) == 2
        assert store.incr("slots", "bob", 300) == 3
        assert store.get("slots", "bob") == {"count": 3}

    def test_incr_under_concurrency_loses_no_update(self, store: StateStore) -> None:
        run_together(4, lambda _: [store.incr("race", "k", 300) for _ in range(50)])
        assert store.get("race", "k") == {"count": 200}

    def test_incr_raced_by_50_threads_counts_every_one(self, store: StateStore) -> None:
        counts = run_together(50, lambda _: store.incr("race", "k", 300))
        assert sorted(counts) == list(range(1, 51))
        assert store.get("race", "k") == {"count": 50}

    def test_purge_expired(self, store: StateStore, clock: FakeClock) -> None:
        store.put("a", "old", {}, 5)
        store.put("a", "new", {}, 500)
        clock.now += 10
        assert store.purge_expired() == 1
        assert store.get("a", "new") == {}

    # --- the same, in real time, for a backend that expires on its engine's clock (REAL_TIME_EXPIRY) ---

    def test_real_time_entries_expire(self, store: StateStore) -> None:
        started = time.monotonic()
        store.put("code", "k", {"v": 1}, self.REAL_TTL)
        self._sleep_until(started, self.REAL_TTL - self.REAL_MARGIN)
        assert store.get("code", "k") == {"v": 1}
        self._sleep_until(started, self.REAL_TTL + self.REAL_MARGIN)
        assert store.get("code", "k") is None
        assert store.take("code", "k") is None

    def test_real_time_add_refuses_a_live_entry_but_reuses_an_expired_one(self, store: StateStore) -> None:
        started = time.monotonic()
        assert store.add("replay", "assertion-1", {}, self.REAL_TTL) is True
        assert store.add("replay", "assertion-1", {}, self.REAL_TTL) is False
        self._sleep_until(started, self.REAL_TTL + self.REAL_MARGIN)
        assert store.add("replay", "assertion-1", {}, self.REAL_TTL) is True

    def test_real_time_incr_window_starts_at_the_first_increment_then_restarts(self, store: StateStore) -> None:
        window = 2 * self.REAL_TTL  # a later increment inside it must not move its end
        started = time.monotonic()
        assert store.incr("fail", "bob", window) == 1
        self._sleep_until(started, self.REAL_TTL)
        assert store.incr("fail", "bob", window) == 2
        # past the first increment's window, before the end a second increment would have set
        self._sleep_until(started, window + self.REAL_MARGIN)
        assert store.incr("fail", "bob", window) == 1
        assert store.get("fail", "bob") == {"count": 1}

    def test_real_time_purge_expired(self, store: StateStore) -> None:
        started = time.monotonic()
        store.put("a", "old", {}, self.REAL_TTL)
        store.put("a", "new", {}, 60)
        self._sleep_until(started, self.REAL_TTL + self.REAL_MARGIN)
        assert store.purge_expired() in (0, 1)  # the engine may have dropped it already
        assert store.get("a", "old") is None
        assert store.get("a", "new") == {}


def _person(subject: str, upstream: str = "corp", **fields: Any) -> Person:
    fields.setdefault("email", f"{subject}@example.com")
    return Person(upstream=upstream, subject=subject, **fields)


def _keys(people: list[Person]) -> list[tuple[str, str]]:
    return [(person.upstream, person.subject) for person in people]


class DirectoryStoreContract:
    """Fixture: `make_store() -> DirectoryStore`."""

    @pytest.fixture
    def store(self, make_store: Callable[[], DirectoryStore]) -> DirectoryStore:
        return make_store()

    @pytest.fixture
    def populated(self, store: DirectoryStore) -> DirectoryStore:
        """Four people across two upstreams, to filter."""
        for person in (
            _person("alice", groups=frozenset({"admins", "dev"})),
            _person("bob", groups=frozenset({"dev"}), disabled=True),
            _person("carol", email="shared@example.com"),
            _person("alice", upstream="partner", email="shared@example.com", groups=frozenset({"dev"})),
        ):
            store.put(person)
        return store

    def test_put_get_round_trip(self, store: DirectoryStore) -> None:
        alice = Person(
            upstream="corp",
            subject="alice",
            email="alice@example.com",
            display_name="Alice Liddell",
            groups=frozenset({"admins", "dev"}),
            disabled=True,
            revoked_at=1_000.5,
            updated_at=900.25,
        )
        store.put(alice)
        assert store.get("corp", "alice") == alice
        assert store.find() == [alice]

    def test_put_replaces_the_person_with_the_same_key(self, store: DirectoryStore) -> None:
        store.put(_person("alice", groups=frozenset({"admins", "dev"})))
        renamed = _person("alice", email="alice@new.example.com", display_name="Alice", groups=frozenset({"ops"}))
        store.put(renamed)
        assert store.get("corp", "alice") == renamed
        assert store.count() == 1
        assert store.find(PeopleQuery(group="admins")) == []
        assert store.find(PeopleQuery(group="ops")) == [renamed]

    def test_the_same_subject_at_two_upstreams_is_two_people(self, store: DirectoryStore) -> None:
        store.put(_person("alice", upstream="corp"))
        store.put(_person("alice", upstream="partner", display_name="Other Alice"))
        assert store.count() == 2
        corp_alice = store.get("corp", "alice")
        assert corp_alice is not None and corp_alice.display_name == ""

    def test_delete(self, store: DirectoryStore) -> None:
        store.put(_person("alice", groups=frozenset({"dev"})))
        assert store.delete("corp", "alice") is True
        assert store.get("corp", "alice") is None
        assert store.delete("corp", "alice") is False
        assert store.find(PeopleQuery(group="dev")) == []
        assert store.count() == 0

    def test_unknown_person(self, store: DirectoryStore) -> None:
        assert store.get("corp", "nobody") is None
        assert store.delete("corp", "nobody") is False
        assert store.revoke("corp", "nobody", 1_000.0) is False
        assert store.count() == 0

    def test_find_orders_by_upstream_then_subject(self, store: DirectoryStore) -> None:
        for upstream, subject in [("corp", "zed"), ("partner", "amy"), ("corp", "amy"), ("a-corp", "zed")]:
            store.put(_person(subject, upstream=upstream))
        assert _keys(store.find()) == [("a-corp", "zed"), ("corp", "amy"), ("corp", "zed"), ("partner", "amy")]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({}, [("corp", "alice"), ("corp", "bob"), ("corp", "carol"), ("partner", "alice")]),
            ({"upstream": "corp"}, [("corp", "alice"), ("corp", "bob"), ("corp", "carol")]),
            ({"email": "shared@example.com"}, [("corp", "carol"), ("partner", "alice")]),
            ({"group": "dev"}, [("corp", "alice"), ("corp", "bob"), ("partner", "alice")]),
            ({"group": "admins"}, [("corp", "alice")]),
            ({"disabled": True}, [("corp", "bob")]),
            ({"disabled": False}, [("corp", "alice"), ("corp", "carol"), ("partner", "alice")]),
            ({"upstream": "corp", "group": "dev"}, [("corp", "alice"), ("corp", "bob")]),
            ({"upstream": "corp", "group": "dev", "disabled": False}, [("corp", "alice")]),
            (
                {"upstream": "partner", "email": "shared@example.com", "group": "dev", "disabled": False},
                [("partner", "alice")],
            ),
            ({"email": "shared@example.com", "group": "admins"}, []),
            ({"group": "nobody-is-in-this"}, []),
        ],
    )
    def test_filters_alone_and_combined(
        self, populated: DirectoryStore, filters: dict[str, Any], expected: list[tuple[str, str]]
    ) -> None:
        assert _keys(populated.find(PeopleQuery(**filters))) == expected
        assert populated.count(PeopleQuery(**filters)) == len(expected)

    def test_paging_with_count(self, store: DirectoryStore) -> None:
        for number in range(25):
            store.put(_person(f"user{number:02}", groups=frozenset({"even" if number % 2 == 0 else "odd"})))
        pages = [store.find(offset=offset, limit=10) for offset in (0, 10, 20)]
        assert [len(page) for page in pages] == [10, 10, 5]
        assert [person for page in pages for person in page] == store.find(limit=100)
        assert store.count() == 25
        assert store.find(offset=25) == []
        assert store.find(limit=0) == []
        assert _keys(store.find(PeopleQuery(group="even"), offset=10, limit=10)) == [
            ("corp", "user20"),
            ("corp", "user22"),
            ("corp", "user24"),
        ]
        assert store.count(PeopleQuery(group="even")) == 13

    @pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, -1)])
    def test_negative_paging_is_refused(self, store: DirectoryStore, offset: int, limit: int) -> None:
        with pytest.raises(ValueError):
            store.find(offset=offset, limit=limit)

    def test_revoke_never_moves_back(self, store: DirectoryStore) -> None:
        alice = _person("alice", groups=frozenset({"dev"}))
        store.put(alice)
        assert store.revoke("corp", "alice", 2_000.0) is True
        assert store.revoke("corp", "alice", 1_000.0) is True
        assert store.get("corp", "alice") == replace(alice, revoked_at=2_000.0)
        assert store.revoke("corp", "alice", 3_000.0) is True
        revoked = store.get("corp", "alice")
        assert revoked is not None and revoked.revoked_at == 3_000.0

    def test_returned_values_are_copies(self, store: DirectoryStore) -> None:
        alice = _person("alice", groups=frozenset({"dev"}))
        store.put(alice)
        first, second = store.get("corp", "alice"), store.get("corp", "alice")
        assert first == second == alice
        assert first is not alice and second is not first and store.find()[0] is not first

    @pytest.mark.parametrize(
        "fields",
        [{"groups": "admins"}, {"groups": frozenset({""})}, {"subject": ""}, {"upstream": ""}],
        ids=["groups as one string", "empty group", "empty subject", "empty upstream"],
    )
    def test_a_malformed_person_is_refused(self, store: DirectoryStore, fields: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            store.put(replace(_person("alice"), **fields))
        assert store.count() == 0

    def test_racing_puts_of_different_people_keep_them_all(self, store: DirectoryStore) -> None:
        run_together(20, lambda index: store.put(_person(f"user{index:02}", groups=frozenset({"dev", f"team{index}"}))))
        assert store.count() == 20
        assert _keys(store.find(PeopleQuery(group="dev"))) == [("corp", f"user{index:02}") for index in range(20)]
        assert all(store.count(PeopleQuery(group=f"team{index}")) == 1 for index in range(20))

    # --- people provisioned over SCIM, and their groups -------------------------------------------------

    def test_a_provisioned_person_round_trips(self, store: DirectoryStore) -> None:
        alice = _provisioned("alice", display_name="Alice", scim_attributes='{"name": {"givenName": "Alice"}}')
        alice = replace(alice, created_at=10.5, version=3, disabled=True)
        assert store.put(alice) is True
        assert store.get("corp", "alice") == alice
        assert store.find(PeopleQuery(scim_id="id-alice")) == [alice]

    def test_put_if_version_writes_only_over_that_version(self, store: DirectoryStore) -> None:
        alice = _provisioned("alice", version=1)
        assert store.put(alice, if_version=1) is False  # missing counts as version 0
        assert store.get("corp", "alice") is None
        assert store.put(alice, if_version=0) is True
        assert store.put(replace(alice, display_name="stale", version=2), if_version=0) is False
        assert store.put(replace(alice, display_name="fresh", version=2), if_version=1) is True
        stored = store.get("corp", "alice")
        assert stored is not None and (stored.display_name, stored.version) == ("fresh", 2)

    def test_racing_read_modify_writes_lose_no_update(self, store: DirectoryStore) -> None:
        for index in range(20):
            store.put(_provisioned(f"user{index:02}"))
        store.put_group(DirectoryGroup("corp", "g1", "Developers", broker_group="dev", version=1))

        def add_member(index: int) -> int:
            attempts = 0
            while True:
                attempts += 1
                group = store.get_group("corp", "g1")
                assert group is not None
                grown = replace(group, members=group.members | {f"id-user{index:02}"}, version=group.version + 1)
                if store.put_group(grown, if_version=group.version):
                    return attempts

        run_together(20, add_member)
        group = store.get_group("corp", "g1")
        assert group is not None and group.members == {f"id-user{index:02}" for index in range(20)}
        assert group.version == 21
        assert store.count(PeopleQuery(group="dev")) == 20

    def test_put_never_moves_revoked_at_back(self, store: DirectoryStore) -> None:
        alice = _person("alice")
        store.put(alice)
        store.revoke("corp", "alice", 2_000.0)
        store.put(replace(alice, display_name="renamed"))  # read before the revocation: no revoked_at
        stored = store.get("corp", "alice")
        assert stored is not None and (stored.display_name, stored.revoked_at) == ("renamed", 2_000.0)
        store.put(replace(alice, revoked_at=1_000.0))
        assert store.get("corp", "alice").revoked_at == 2_000.0  # type: ignore[union-attr]
        store.put(replace(alice, revoked_at=3_000.0))
        assert store.get("corp", "alice").revoked_at == 3_000.0  # type: ignore[union-attr]

    def test_a_scim_id_names_one_person(self, store: DirectoryStore) -> None:
        store.put(_provisioned("alice"))
        with pytest.raises(DirectoryConflict):
            store.put(_provisioned("bob", scim_id="id-alice"))
        with pytest.raises(DirectoryConflict):  # at another upstream too: the SCIM id is the resource's address
            store.put(_provisioned("bob", upstream="partner", scim_id="id-alice"))
        assert store.count() == 1

    def test_user_names_are_unique_per_upstream_whatever_their_case(self, store: DirectoryStore) -> None:
        store.put(_provisioned("alice", user_name="Alice@Example.com"))
        with pytest.raises(DirectoryConflict):
            store.put(_provisioned("alice2", user_name="ALICE@example.COM"))
        store.put(_provisioned("alice3", upstream="partner", user_name="alice@example.com"))
        store.put(replace(_person("carol"), user_name="alice@example.com"))  # not provisioned: no SCIM userName
        assert store.count() == 3
        found = store.find(PeopleQuery(upstream="corp", user_name="aLiCe@example.com"))
        assert _keys(found) == [("corp", "alice")]

    def test_a_person_can_be_renamed_and_keep_their_user_name(self, store: DirectoryStore) -> None:
        alice = _provisioned("alice")
        store.put(alice)
        store.put(replace(alice, user_name=alice.user_name.upper(), version=1))
        assert store.get("corp", "alice").user_name == alice.user_name.upper()  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"provisioned": True}, [("corp", "alice"), ("corp", "bob")]),
            ({"provisioned": False}, [("corp", "carol")]),
            ({"subject": "bob"}, [("corp", "bob")]),
            ({"scim_id": "id-bob"}, [("corp", "bob")]),
            ({"user_name": "BOB@EXAMPLE.COM"}, [("corp", "bob")]),
            ({"display_name": "Bob"}, [("corp", "bob")]),
            ({"display_name": "bob"}, []),
            ({"group": "dev"}, [("corp", "alice"), ("corp", "carol")]),
            ({"group": "dev", "provisioned": True}, [("corp", "alice")]),
        ],
    )
    def test_filters_of_provisioned_people(
        self, store: DirectoryStore, filters: dict[str, Any], expected: list[tuple[str, str]]
    ) -> None:
        store.put(_provisioned("alice"))
        store.put(_provisioned("bob", display_name="Bob"))
        store.put(_person("carol", groups=frozenset({"dev"})))
        store.put_group(DirectoryGroup("corp", "g1", "Developers", frozenset({"id-alice"}), broker_group="dev"))
        assert _keys(store.find(PeopleQuery(**filters))) == expected
        assert store.count(PeopleQuery(**filters)) == len(expected)

    def test_a_provisioned_persons_groups_come_from_the_groups(self, store: DirectoryStore) -> None:
        store.put(_provisioned("alice", groups=frozenset({"ignored"})))
        assert store.get("corp", "alice").groups == frozenset()  # type: ignore[union-attr]
        store.put_group(DirectoryGroup("corp", "g1", "Developers", frozenset({"id-alice"}), broker_group="dev"))
        store.put_group(DirectoryGroup("corp", "g2", "Devs too", frozenset({"id-alice"}), broker_group="dev"))
        store.put_group(DirectoryGroup("corp", "g3", "Admins", frozenset({"id-alice"}), broker_group="admins"))
        store.put_group(DirectoryGroup("corp", "g4", "Unmapped", frozenset({"id-alice"}), broker_group=None))
        assert store.get("corp", "alice").groups == {"dev", "admins"}  # type: ignore[union-attr]
        assert store.find(PeopleQuery(group="admins"))[0].groups == {"dev", "admins"}
        store.put_group(DirectoryGroup("corp", "g3", "Admins", frozenset(), broker_group="admins", version=1))
        store.delete_group("corp", "g1")
        assert store.get("corp", "alice").groups == {"dev"}  # type: ignore[union-attr]
        store.delete_group("corp", "g2")
        assert store.get("corp", "alice").groups == frozenset()  # type: ignore[union-attr]
        assert store.count(PeopleQuery(group="dev")) == 0

    def test_groups_round_trip_filter_and_page(self, store: DirectoryStore) -> None:
        store.put(_provisioned("alice"))
        groups = [
            DirectoryGroup(
                "corp",
                f"g{index:02}",
                f"Team {index}",
                frozenset({"id-alice"}) if index % 2 else frozenset(),
                broker_group=f"team{index}",
                external_id=f"ext-{index}",
                created_at=1.5,
                updated_at=2.5,
                version=index,
            )
            for index in range(25)
        ]
        for group in groups:
            assert store.put_group(group) is True
        store.put_group(DirectoryGroup("partner", "g00", "Team 0"))
        assert store.get_group("corp", "g07") == groups[7]
        assert store.get_group("corp", "missing") is None
        corp = GroupQuery(upstream="corp")
        assert [group.id for page in (0, 10, 20) for group in store.find_groups(corp, offset=page, limit=10)] == [
            f"g{index:02}" for index in range(25)
        ]
        assert store.count_groups() == 26 and store.count_groups(corp) == 25
        assert store.find_groups(GroupQuery(upstream="corp", display_name="TEAM 3")) == [groups[3]]
        assert store.find_groups(GroupQuery(external_id="ext-4")) == [groups[4]]
        assert store.count_groups(GroupQuery(member="id-alice")) == 12
        assert [g.id for g in store.find_groups(GroupQuery(id="g00"))] == ["g00", "g00"]
        with pytest.raises(ValueError):
            store.find_groups(limit=-1)

    def test_a_group_of_strangers_is_refused_whole(self, store: DirectoryStore) -> None:
        store.put(_provisioned("alice"))
        store.put(_provisioned("bob", upstream="partner"))
        store.put(_person("carol"))  # signed in, never provisioned: no SCIM id to be a member by
        group = DirectoryGroup("corp", "g1", "Developers", frozenset({"id-alice"}), broker_group="dev")
        store.put_group(group)
        for stranger in ("id-nobody", "id-bob", "carol"):
            with pytest.raises(UnknownMember):
                store.put_group(replace(group, display_name="Renamed", members=group.members | {stranger}, version=1))
        assert store.get_group("corp", "g1") == group

    def test_deleting_a_person_takes_them_out_of_their_groups(self, store: DirectoryStore) -> None:
        store.put(_provisioned("alice"))
        store.put(_provisioned("bob"))
        store.put_group(
            DirectoryGroup("corp", "g1", "Developers", frozenset({"id-alice", "id-bob"}), broker_group="dev")
        )
        assert store.delete("corp", "alice") is True
        assert store.get_group("corp", "g1").members == {"id-bob"}  # type: ignore[union-attr]
        store.put(_provisioned("alice"))  # the same SCIM id again: not a member until a group says so
        assert store.get("corp", "alice").groups == frozenset()  # type: ignore[union-attr]
        assert store.delete_group("corp", "g1") is True and store.delete_group("corp", "g1") is False

    def test_changing_a_persons_scim_id_leaves_their_old_groups(self, store: DirectoryStore) -> None:
        alice = _provisioned("alice")
        store.put(alice)
        store.put_group(DirectoryGroup("corp", "g1", "Developers", frozenset({"id-alice"}), broker_group="dev"))
        store.put(replace(alice, scim_id="id-alice-2", version=1))
        assert store.get_group("corp", "g1").members == frozenset()  # type: ignore[union-attr]
        assert store.get("corp", "alice").groups == frozenset()  # type: ignore[union-attr]

    def test_rename_moves_a_person_and_keeps_their_groups(self, store: DirectoryStore) -> None:
        alice = _provisioned("alice", version=3)
        store.put(alice)
        store.put(_person("carol", groups=frozenset({"dev"})))
        store.put_group(DirectoryGroup("corp", "g1", "Developers", frozenset({"id-alice"}), broker_group="dev"))
        store.revoke("corp", "alice", 5.0)
        assert store.rename("corp", "alice", "alice-2") is True
        assert store.get("corp", "alice") is None
        moved = replace(alice, subject="alice-2", groups=frozenset({"dev"}), revoked_at=5.0)
        assert store.get("corp", "alice-2") == moved
        assert store.rename("corp", "carol", "carol-2") is True
        assert store.get("corp", "carol-2").groups == {"dev"}  # type: ignore[union-attr]
        assert _keys(store.find(PeopleQuery(group="dev"))) == [("corp", "alice-2"), ("corp", "carol-2")]
        with pytest.raises(DirectoryConflict):
            store.rename("corp", "alice-2", "carol-2")
        assert store.rename("corp", "nobody", "somebody") is False
        assert store.count() == 2

    def test_put_group_if_version(self, store: DirectoryStore) -> None:
        group = DirectoryGroup("corp", "g1", "Developers", version=1)
        assert store.put_group(group, if_version=1) is False
        assert store.put_group(group, if_version=0) is True
        assert store.put_group(replace(group, display_name="x", version=2), if_version=0) is False
        assert store.put_group(replace(group, display_name="y", version=2), if_version=1) is True
        assert store.get_group("corp", "g1").display_name == "y"  # type: ignore[union-attr]


def _provisioned(subject: str, upstream: str = "corp", **fields: Any) -> Person:
    fields.setdefault("email", f"{subject}@example.com")
    fields.setdefault("scim_id", f"id-{subject}")
    fields.setdefault("user_name", f"{subject}@example.com")
    return Person(upstream=upstream, subject=subject, **fields)


_EVENTS = [
    {"n": 0, "time": 100.0, "type": "sign_in", "user": "alice", "outcome": "success", "channel": "web"},
    {"n": 1, "time": 110.0, "type": "sign_in", "email": "bob@example.com", "outcome": "failure", "channel": "cli"},
    {"n": 2, "time": 120.0, "type": "credentials", "subject": "alice", "outcome": "success", "channel": "cli"},
    {
        "n": 3,
        "time": 130.0,
        "type": "credentials",
        "user": "bob",
        "email": "bob@example.com",
        "outcome": "denied",
        "channel": "web",
    },
    {"n": 4, "time": 140.0, "type": "sign_out", "user": "alice", "channel": "web"},
]


class AuditLogContract:
    """Fixture: `make_store() -> AuditLog`."""

    @pytest.fixture
    def log(self, make_store: Callable[[], AuditLog]) -> AuditLog:
        return make_store()

    @pytest.fixture
    def populated(self, log: AuditLog) -> AuditLog:
        for event in _EVENTS:
            log.append(event)
        return log

    def test_append_query_and_export(self, log: AuditLog) -> None:
        for i in range(5):
            log.append({"type": "sign_in" if i % 2 == 0 else "credentials", "n": i})
        assert [e["n"] for e in log.query(limit=2)] == [4, 3]
        assert [e["n"] for e in log.query(AuditQuery(event_type="credentials"))] == [3, 1]
        exported = list(log.export())
        assert [e["n"] for e in exported] == [0, 1, 2, 3, 4]
        assert all("time" in e for e in exported)

    def test_append_keeps_a_given_time_and_the_whole_event(self, log: AuditLog) -> None:
        event = {"type": "sign_in", "time": 123.5, "user": "alice", "detail": {"groups": ["dev"]}}
        log.append(event)
        assert log.query() == [event]
        assert list(log.export()) == [event]

    def test_query_is_newest_first_and_limited(self, populated: AuditLog) -> None:
        assert [e["n"] for e in populated.query()] == [4, 3, 2, 1, 0]
        assert [e["n"] for e in populated.query(limit=3)] == [4, 3, 2]
        assert populated.query(limit=0) == []

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"event_type": "credentials"}, [3, 2]),
            ({"person": "alice"}, [4, 2, 0]),
            ({"person": "bob@example.com"}, [3, 1]),
            ({"outcome": "success"}, [2, 0]),
            ({"channel": "cli"}, [2, 1]),
            ({"since": 120.0}, [4, 3, 2]),
            ({"until": 120.0}, [1, 0]),
            ({"since": 110.0, "until": 140.0}, [3, 2, 1]),
            (
                {
                    "event_type": "credentials",
                    "person": "alice",
                    "outcome": "success",
                    "channel": "cli",
                    "since": 110.0,
                    "until": 130.0,
                },
                [2],
            ),
            ({"event_type": "sign_in", "channel": "web", "outcome": "failure"}, []),
        ],
    )
    def test_query_filters_alone_and_together(
        self, populated: AuditLog, filters: dict[str, Any], expected: list[int]
    ) -> None:
        assert [e["n"] for e in populated.query(AuditQuery(**filters))] == expected

    def test_a_limit_applies_after_the_filters(self, populated: AuditLog) -> None:
        assert [e["n"] for e in populated.query(AuditQuery(person="alice"), limit=2)] == [4, 2]

    def test_person_matches_user_email_or_subject(self, log: AuditLog) -> None:
        for n, field in enumerate(("user", "email", "subject", "display_name")):
            log.append({"n": n, "type": "sign_in", "time": 100.0 + n, field: "alice@example.com"})
        assert [e["n"] for e in log.query(AuditQuery(person="alice@example.com"))] == [2, 1, 0]

    def test_negative_limit_is_refused(self, log: AuditLog) -> None:
        with pytest.raises(ValueError):
            log.query(limit=-1)

    def test_export_is_oldest_first_across_pages(self, log: AuditLog) -> None:
        for n in range(2_001):  # SQLite pages by 1,000: two full pages and a partial one
            log.append({"n": n, "type": "sign_in", "time": 100.0 + n})
        assert [e["n"] for e in log.export()] == list(range(2_001))


class ChangeLogContract:
    """Fixture: `make_store() -> ChangeLog`."""

    @pytest.fixture
    def log(self, make_store: Callable[[], ChangeLog]) -> ChangeLog:
        return make_store()

    def test_an_empty_log(self, log: ChangeLog) -> None:
        assert log.last() == 0
        assert log.read() == []

    def test_append_then_read_forward(self, log: ChangeLog) -> None:
        positions = [log.append({"n": n, "nested": {"list": [n]}}) for n in range(5)]
        assert positions == sorted(positions) and len(set(positions)) == 5 and positions[0] > 0
        assert log.last() == positions[-1]
        assert [record["n"] for _, record in log.read()] == [0, 1, 2, 3, 4]
        assert log.read(after=positions[1]) == [(positions[n], {"n": n, "nested": {"list": [n]}}) for n in (2, 3, 4)]
        assert [record["n"] for _, record in log.read(after=positions[0], limit=2)] == [1, 2]
        assert log.read(after=positions[-1]) == []
        assert log.read(limit=0) == []

    def test_records_are_copies(self, log: ChangeLog) -> None:
        record = {"list": [1]}
        log.append(record)
        record["list"].append(2)
        ((_, read),) = log.read()
        read["list"].append(3)
        assert log.read() == [(log.last(), {"list": [1]})]

    def test_a_negative_limit_is_refused(self, log: ChangeLog) -> None:
        with pytest.raises(ValueError):
            log.read(limit=-1)

    def test_racing_appends_each_get_their_own_position(self, log: ChangeLog) -> None:
        positions = run_together(50, lambda index: log.append({"by": index}))
        assert len(set(positions)) == 50
        read = log.read(limit=100)
        assert [position for position, _ in read] == sorted(positions)
        assert {record["by"] for _, record in read} == set(range(50))
        assert log.read(after=sorted(positions)[24], limit=100) == read[25:]
