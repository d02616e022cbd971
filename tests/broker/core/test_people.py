"""The directory of people at sign-in: (upstream, subject) is the person; an address one upstream gave to one
subject is never silently given to another; dropped groups are audited."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from broker.core.audit import RequestOrigin
from broker.core.identity import UpstreamLogin
from broker.core.people import People
from broker.errors import LoginFailed
from sso_common.store import AuditQuery, PeopleQuery
from sso_common.store.memory import MemoryAuditLog, MemoryDirectoryStore

ORIGIN = RequestOrigin("192.0.2.1", "pytest", "portal")


@pytest.fixture
def people():
    return People(MemoryDirectoryStore(), MemoryAuditLog(), clock=lambda: 1_800_000_000.0)


def login(person, username="alice", subject="sub-1", **fields) -> UpstreamLogin:
    dropped = fields.pop("dropped", frozenset())
    return UpstreamLogin(person(username, subject=subject, **fields), dropped_groups=frozenset(dropped))


def test_a_sign_in_records_the_person(people, person):
    people.admit("corp", login(person, groups=("engineering",)), ORIGIN)
    recorded = people.directory.get("corp", "sub-1")
    assert recorded.email == "alice@example.com" and recorded.groups == {"engineering"}
    assert recorded.updated_at == 1_800_000_000.0


def test_the_same_subject_signs_in_again_and_may_change_address(people, person):
    people.admit("corp", login(person), ORIGIN)
    people.admit("corp", login(person), ORIGIN)
    people.admit("corp", login(person, email="alice.anderson@example.com"), ORIGIN)
    assert people.directory.get("corp", "sub-1").email == "alice.anderson@example.com"
    assert people.directory.count() == 1


def test_a_changed_subject_for_the_same_address_is_refused_not_merged(people, person):
    people.admit("corp", login(person, subject="sub-1"), ORIGIN)
    with pytest.raises(LoginFailed) as refused:
        people.admit("corp", login(person, subject="sub-2"), ORIGIN)
    assert refused.value.status == 403 and "alice@example.com" in refused.value.reason
    assert "never merges" in refused.value.reason
    assert people.directory.get("corp", "sub-2") is None  # nothing recorded for the newcomer


def test_the_same_address_at_another_upstream_is_another_key(people, person):
    """(upstream, subject) is the key: Example Corp over OIDC and over SAML use different subjects for alice."""
    people.admit("corp-oidc", login(person, subject="oidc-sub"), ORIGIN)
    people.admit("corp-saml", login(person, subject="saml-nameid"), ORIGIN)
    assert people.directory.count(PeopleQuery(email="alice@example.com")) == 2


def test_after_an_administrator_forgets_the_old_subject_the_new_one_signs_in(people, person):
    people.admit("corp", login(person, subject="sub-1"), ORIGIN)
    assert people.directory.delete("corp", "sub-1")  # `broker people forget corp sub-1`
    people.admit("corp", login(person, subject="sub-2"), ORIGIN)


def test_a_disabled_person_is_refused(people, person):
    people.admit("corp", login(person), ORIGIN)
    people.directory.put(replace(people.directory.get("corp", "sub-1"), disabled=True))
    with pytest.raises(LoginFailed, match="disabled"):
        people.admit("corp", login(person), ORIGIN)


def test_dropped_groups_are_audited_with_the_person(people, person):
    people.admit("corp", login(person, groups=("engineering",), dropped={"lunch-club", "CN=Domain Users"}), ORIGIN)
    [event] = people.audit.query(AuditQuery(person="alice@example.com"))
    assert event["type"] == "groups_dropped" and event["upstream"] == "corp" and event["subject"] == "sub-1"
    assert event["dropped_groups"] == ["CN=Domain Users", "lunch-club"] and event["dropped_count"] == 2
    assert "lunch-club" in event["reason"] and event["groups"] == ["engineering"]


def test_no_audit_record_when_nothing_was_dropped(people, person):
    people.admit("corp", login(person), ORIGIN)
    assert people.audit.query() == []


def test_two_subjects_racing_for_one_address_never_both_get_it(people, person):
    """Many sign-ins at once, each a different subject with the same address: at most one is admitted."""
    admitted, barrier = [], threading.Barrier(20)

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            people.admit("corp", login(person, subject=f"sub-{index}"), ORIGIN)
            admitted.append(index)
        except LoginFailed:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    holders = people.directory.find(PeopleQuery(upstream="corp", email="alice@example.com"))
    assert len(admitted) <= 1 and len(holders) == len(admitted)
