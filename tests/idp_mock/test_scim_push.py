"""The mock IdP as a SCIM client (idp_mock/scim_push.py), pushing to the portal's real SCIM service in process
(scim2-client's WSGI engine instead of httpx2): the full sync, each kind of change, failures retried without
losing a change, the cursor kept across restarts."""

from __future__ import annotations

import pytest
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_models import Group, ScimProvider, User

from idp_mock.directory import LiveDirectory
from idp_mock.passwords import hash_password
from idp_mock.scim_push import PushFailed, ScimPusher, ScimTarget, push_now, sync_status
from idp_mock.settings import load_settings
from sso_common.store import PeopleQuery
from sso_common.store.memory import MemoryChangeLog, MemoryStateStore
from tests.broker.scim.conftest import OIDC, OIDC_TOKEN, Scim, scim_app

TARGET = ScimTarget("portal-oidc", "http://localhost/scim/v2", OIDC_TOKEN)


class Flaky:
    """A scim2-client that fails its next `failures` requests as a network error would."""

    def __init__(self, client, failures: int = 0):
        self.client, self.failures = client, failures

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def call(*args, **kwargs):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("the portal is down")
            return method(*args, **kwargs)

        return call


@pytest.fixture
def portal(tmp_path):
    return scim_app(tmp_path, "sqlite")


@pytest.fixture
def world(portal):
    """The IdP's side (its live directory, change log and state store) and a pusher to the in-process portal."""
    live = LiveDirectory(load_settings().directory, MemoryChangeLog())
    store = MemoryStateStore()
    flaky = Flaky(
        WSGISCIMClient(
            portal,
            base_url=TARGET.url,
            headers={"Authorization": f"Bearer {OIDC_TOKEN}"},
            provider=ScimProvider(models=[User, Group]),
        )
    )
    pusher = ScimPusher(live, live.log, store, [TARGET], client_for=lambda target: flaky, clock=lambda: 0.0)
    return live, store, pusher, flaky


def directory(portal):
    return portal.extensions["broker"].people.directory


def person(portal, live, username):
    return directory(portal).get(OIDC, live.find(username).subject)


def test_the_first_step_is_a_full_sync_of_users_groups_and_memberships(portal, world):
    live, store, pusher, _ = world
    extra = Scim(portal.test_client()).user("mallory")  # at the portal, not in the directory: deleted
    pusher.step()
    assert directory(portal).count(PeopleQuery(upstream=OIDC)) == len(live.employees) == 8
    assert directory(portal).get(OIDC, extra["externalId"]) is None
    bob = person(portal, live, "bob")
    assert (bob.user_name, bob.email, bob.groups, bob.disabled) == (
        "bob@example.com",
        "bob@example.com",
        {"engineering"},
        False,
    )
    assert person(portal, live, "frank").disabled is True  # disabled in directory.yaml
    assert person(portal, live, "erin").groups == {"security", "engineering"}
    assert directory(portal).count_groups() == len(live.groups)
    status = sync_status(store, live.log, [TARGET])["targets"][0]
    assert status["synced"] and status["pending_changes"] == 0 and status["last_error"] is None
    # `idp-mock directory status` has settings of its own environment: the URL shown is the running pusher's
    elsewhere = ScimTarget(TARGET.name, "http://localhost:8000/scim/v2", OIDC_TOKEN)
    assert sync_status(store, live.log, [elsewhere])["targets"][0]["url"] == TARGET.url
    versions = {p.subject: p.version for p in directory(portal).find(PeopleQuery(upstream=OIDC))}
    pusher._synced.clear()
    pusher.step()  # a second full sync changes nobody
    assert {p.subject: p.version for p in directory(portal).find(PeopleQuery(upstream=OIDC))} == versions


def test_each_change_is_pushed_at_the_next_step(portal, world):
    live, store, pusher, _ = world
    pusher.step()
    live.change({"op": "disable", "username": "bob"})
    pusher.step()
    assert person(portal, live, "bob").disabled is True
    assert person(portal, live, "bob").revoked_at is not None  # disabling at the portal revokes
    live.change({"op": "enable", "username": "bob"})
    live.change({"op": "add_member", "username": "bob", "group": "aws-admins"})
    live.change({"op": "remove_member", "username": "bob", "group": "engineering"})
    pusher.step()
    assert person(portal, live, "bob").disabled is False and person(portal, live, "bob").groups == {"aws-admins"}
    user = {
        "username": "ivan",
        "email": "ivan@example.com",
        "name": "Ivan I",
        "groups": ["finance", "hr"],
        "password_hash": hash_password("A-long-password-1"),
    }
    live.change({"op": "add_user", "user": user})
    pusher.step()
    assert person(portal, live, "ivan").groups == {"finance", "hr"}
    subject = live.find("ivan").subject
    live.change({"op": "delete_user", "username": "ivan"})
    pusher.step()
    assert directory(portal).get(OIDC, subject) is None
    assert pusher.cursor(TARGET) == live.log.last()


def test_a_failing_target_is_retried_and_no_change_is_lost(portal, world):
    live, store, pusher, flaky = world
    pusher.step()
    live.change({"op": "disable", "username": "alice"})
    flaky.failures = 3
    clock = [0.0]
    pusher._clock = lambda: clock[0]
    pusher.step()
    status = sync_status(store, live.log, [TARGET])["targets"][0]
    assert status["pending_changes"] == 1 and "ConnectionError" in status["last_error"]
    assert OIDC_TOKEN not in status["last_error"]
    assert person(portal, live, "alice").disabled is False
    pusher.step()  # within the backoff: not tried
    assert flaky.failures == 2
    for _ in range(10):  # each retry after its backoff (0.2 s doubling), until the target answers
        clock[0] += 11
        pusher.step()
    assert person(portal, live, "alice").disabled is True
    status = sync_status(store, live.log, [TARGET])["targets"][0]
    assert status["pending_changes"] == 0 and status["last_error"] is None


def test_asked_to_push_now_it_forgets_its_backoff(portal, world):
    live, store, pusher, flaky = world
    pusher.step()
    live.change({"op": "disable", "username": "carol"})
    flaky.failures = 1
    pusher.step()
    assert person(portal, live, "carol").disabled is False
    push_now(store)
    pusher.step()
    assert person(portal, live, "carol").disabled is True


def test_a_restarted_pusher_syncs_again_then_goes_on_from_its_cursor(portal, world):
    live, store, pusher, flaky = world
    pusher.step()
    live.change({"op": "disable", "username": "dave"})
    pusher.step()
    cursor = pusher.cursor(TARGET)
    live.change({"op": "disable", "username": "carol"})  # written while no pusher runs
    restarted = ScimPusher(live, live.log, store, [TARGET], client_for=lambda target: flaky, clock=lambda: 0.0)
    assert restarted.cursor(TARGET) == cursor
    restarted.step()  # the full sync: carol is disabled at the portal as the directory has her
    assert person(portal, live, "carol").disabled is True and person(portal, live, "dave").disabled is True
    assert restarted.cursor(TARGET) == live.log.last()


def test_a_refusal_by_the_target_names_the_request_and_never_the_token(portal, world):
    live, store, pusher, flaky = world
    pusher.step()
    target_pusher = pusher._pusher(TARGET)
    with pytest.raises(PushFailed) as failure:
        target_pusher._call(
            "create user x", flaky.client.create, User(user_name="bob@example.com", external_id="other")
        )
    assert "create user x: HTTP 409" in str(failure.value) and OIDC_TOKEN not in str(failure.value)
