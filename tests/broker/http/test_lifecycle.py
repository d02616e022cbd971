"""Enforcement at every issuance, in process: a person provisioned over SCIM, signed in to the portal and to the
sso API (device flow), then disabled, deleted, moved between groups, revoked by an administrator or signed out at
the IdP. Every path ends with a clear page or an error in AWS's words, and what the directory says applies at
the next request, never at the next sign-in."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from broker.core.guard import SessionGuard
from broker.core.identity import Identity, LogoutHint, UpstreamLogin, UpstreamSession
from broker.core.sessions import session_reference
from broker.errors import LoginFailed, UpstreamUnavailable
from broker_login.forms import read_page
from sso_common.store import AuditQuery
from tests.broker.scim.conftest import OIDC, SAML, SAML_TOKEN, Scim, scim_app
from tests.support.identity_center import (
    PRODUCTION,
    SANDBOX,
    FakeClock,
    bearer,
    decide,
    fresh_sso_state,
    poll,
    refresh,
    register,
    sign_in,
    start,
)

ADMIN_GROUPS = ("engineering", "aws-admins")


@pytest.fixture
def app(tmp_path):
    return scim_app(tmp_path, "sqlite")


@pytest.fixture
def scim(app):
    return Scim(app.test_client())


def identity(username: str, groups: tuple[str, ...] = ("engineering",)) -> Identity:
    return Identity(
        subject=f"sub-{username}",
        username=username,
        email=f"{username}@example.com",
        display_name=username.title(),
        groups=frozenset(groups),
        department="Engineering",
        authn_methods=frozenset({"pwd"}),
        issuer="https://idp.example.test",
        auth_time=int(time.time()),
    )


def provisioned(scim, username: str, *groups: str) -> dict:
    user = scim.user(username)
    for name in groups:
        found = scim.get(f'/Groups?filter=displayName eq "{name}"').get_json()["Resources"]
        group = found[0] if found else scim.group(name)
        scim.patch(f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}])
    return user


def portal_client(app, username: str, groups=("engineering",)):
    client = app.test_client()
    sign_in(app, client, identity(username, groups))
    return client


def cli_tokens(app, username: str, groups=("engineering",)) -> tuple[dict, dict, object]:
    """A device-flow sign-in approved in the browser: (registration, tokens, the browser)."""
    browser = portal_client(app, username, groups)
    registration = register(browser).get_json()
    authorization = start(browser, registration).get_json()
    assert decide(browser, authorization["userCode"]).status_code == 200
    answer = poll(browser, registration, authorization["deviceCode"])
    assert answer.status_code == 200, answer.get_json()
    return registration, answer.get_json(), browser


def role_credentials(client, tokens, account=PRODUCTION, role="EmployeeDirectoryReadOnly"):
    return client.get(f"/federation/credentials?account_id={account}&role_name={role}", headers=bearer(tokens))


def assert_ended(answer, reason: str, name: str = "UnauthorizedException", status: int = 401) -> None:
    body = answer.get_json()
    assert answer.status_code == status and body["__type"] == name, body
    assert reason in body["message"] and "Sign in again" in body["message"]


def page_says(answer, status: int, text: str) -> None:
    page = answer.get_data(as_text=True)
    assert answer.status_code == status, page[:500]
    assert text in page, page[:2000]


# --- a disabled, deleted or revoked person ---------------------------------------------------------------------


def test_a_person_disabled_over_scim_loses_every_session_and_grant_at_their_next_request(app, scim):
    user = provisioned(scim, "bob", "engineering")
    browser = portal_client(app, "bob")
    registration, tokens, _ = cli_tokens(app, "bob")
    assert browser.get("/").status_code == 200
    assert role_credentials(app.test_client(), tokens).status_code == 200

    scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}])

    page_says(browser.get("/"), 401, "Your session has ended: your access has been disabled.")
    assert browser.get("/").status_code == 303  # the session is gone: the sign-in page next
    assert_ended(role_credentials(app.test_client(), tokens), "your access has been disabled")
    assert_ended(refresh(app.test_client(), registration, tokens["refreshToken"]), "", "InvalidGrantException", 400)
    ended = app.extensions["broker"].audit.query(AuditQuery(event_type="session_ended"))
    assert ended and all("disabled" in event["reason"] for event in ended)


def disabled_while_sts_answers(app, scim, user: dict) -> None:
    """STS (stood in for) mints the credentials, and the person is disabled over SCIM before it answers: after
    the guard let the request through, before the issuance is audited."""
    issuance = app.extensions["broker"].issuance
    minting = issuance.issuer

    class DisabledMeanwhile:
        def issue(self, identity, entitlement):
            credentials = minting.issue(identity, entitlement)
            scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}])
            return credentials

    issuance.issuer = DisabledMeanwhile()


def withheld(app) -> list[dict]:
    events = app.extensions["broker"].audit.query(AuditQuery(event_type="credentials"))
    return [event for event in events if "not handed out" in event.get("reason", "")]


def test_credentials_minted_while_the_person_was_disabled_are_withheld_from_the_portal_page(app, scim):
    user = provisioned(scim, "bob", "engineering")
    browser = portal_client(app, "bob")
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").get_data(as_text=True)).group(1)
    disabled_while_sts_answers(app, scim, user)
    fields = {"csrf_token": token, "account_id": PRODUCTION, "permission_set": "EmployeeDirectoryReadOnly"}
    answer = browser.post("/credentials", data=fields)
    page_says(answer, 401, "Your session has ended: your access has been disabled.")
    assert "fake-secret" not in answer.get_data(as_text=True)
    [event] = withheld(app)
    assert "your access has been disabled" in event["reason"] and event["role_arn"]
    assert browser.get("/").status_code == 303  # the session ended with it


def test_credentials_minted_while_the_person_was_disabled_are_withheld_from_the_sso_api(app, scim):
    user = provisioned(scim, "bob", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    disabled_while_sts_answers(app, scim, user)
    answer = role_credentials(app.test_client(), tokens)
    assert_ended(answer, "your access has been disabled")
    assert "fake-secret" not in answer.get_data(as_text=True) and len(withheld(app)) == 1


def test_a_device_approval_made_before_the_person_was_disabled_gives_no_token(app, scim):
    user = provisioned(scim, "bob", "engineering")
    browser = portal_client(app, "bob")
    registration = register(browser).get_json()
    authorization = start(browser, registration).get_json()
    assert decide(browser, authorization["userCode"]).status_code == 200
    scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}])
    assert_ended(poll(browser, registration, authorization["deviceCode"]), "disabled", "InvalidGrantException", 400)


def test_a_deleted_person_is_refused_everywhere(app, scim):
    user = provisioned(scim, "bob", "engineering")
    browser = portal_client(app, "bob")
    _, tokens, _ = cli_tokens(app, "bob")
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    page_says(browser.get("/"), 401, "removed you from the portal")
    assert_ended(role_credentials(app.test_client(), tokens), "removed you")


def test_a_page_asked_for_while_the_deletion_is_under_way_is_never_told_revoked(app, scim, monkeypatch):
    """A SCIM delete revokes in AWS, then deletes: a request in between still finds the person (the deletion's
    reason comes at the next), where a `revoked_at` written first told it "revoked" (a CI run saw it)."""
    user = provisioned(scim, "bob", "engineering")
    browser = portal_client(app, "bob")
    directory = app.extensions["broker"].people.directory
    delete, between = directory.delete, []

    def delete_after_a_page(upstream, subject):
        between.append(browser.get("/"))
        return delete(upstream, subject)

    monkeypatch.setattr(directory, "delete", delete_after_a_page)
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert [page.status_code for page in between] == [200]
    page_says(browser.get("/"), 401, "removed you from the portal")


def test_a_person_provisioned_again_does_not_get_their_old_sessions_back(app, scim):
    user = provisioned(scim, "bob", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    scim.delete(f"/Users/{user['id']}")
    provisioned(scim, "bob", "engineering")
    assert_ended(role_credentials(app.test_client(), tokens), "provisioned you again")


def test_an_administrator_revokes_one_person_from_the_people_page(app, scim):
    provisioned(scim, "alice", "engineering", "aws-admins")
    provisioned(scim, "bob", "engineering")
    admin = portal_client(app, "alice", ADMIN_GROUPS)
    victim = portal_client(app, "bob")
    _, tokens, _ = cli_tokens(app, "bob")
    page = admin.get("/admin/people?person=bob@example.com")
    page_says(page, 200, "bob@example.com")
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if f.action == "/admin/people/revoke")
    assert admin.post("/admin/people/revoke", data={**form.inputs, "csrf_token": "wrong"}).status_code == 400
    answer = admin.post("/admin/people/revoke", data=form.inputs)
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/people?person=bob%40example.com"
    page_says(admin.get(answer.headers["Location"]), 200, "Revoked bob@example.com")
    assert "Revoked" not in admin.get(answer.headers["Location"]).get_data(as_text=True)  # said once: a reload
    # shows the page, and revokes nothing again
    page_says(victim.get("/"), 401, "your access was revoked")
    assert_ended(role_credentials(app.test_client(), tokens), "your access was revoked")
    [event] = app.extensions["broker"].audit.query(AuditQuery(event_type="revocation"))
    assert (
        event["actor"] == "alice@example.com" and event["subject"] == "sub-bob" and "administrator" in event["reason"]
    )
    assert [record["subject"] for _, record in app.extensions["broker"].revocations.outbox.read()] == ["sub-bob"]
    fresh = portal_client(app, "bob")  # a new sign-in after the revocation works
    assert fresh.get("/").status_code == 200


def test_revoking_one_row_of_a_person_known_through_two_upstreams_says_the_other_goes_on(app, scim):
    """A person is (upstream, subject): the People page revokes the row pressed, and says that the same address
    signs in through the other upstream too (a newcomer revoked bob's OIDC row; his SAML session went on)."""
    provisioned(scim, "alice", "engineering", "aws-admins")
    provisioned(scim, "bob", "engineering")
    Scim(app.test_client(), SAML_TOKEN).user("bob")
    admin = portal_client(app, "alice", ADMIN_GROUPS)
    page = admin.get("/admin/people?person=bob@example.com")
    forms = [f for f in read_page(page.get_data(as_text=True)).forms if f.action == "/admin/people/revoke"]
    assert {f.inputs["upstream"] for f in forms} == {OIDC, SAML}
    oidc_row = next(f for f in forms if f.inputs["upstream"] == OIDC)
    answer = admin.post("/admin/people/revoke", data=oidc_row.inputs, follow_redirects=True)
    page_says(answer, 200, f"Revoked bob@example.com as {OIDC} knows them")
    page_says(answer, 200, f"signs in through {SAML} too, and those sign-ins go on")
    assert "through example-corp-saml</span>" in answer.get_data(as_text=True)  # each button names its upstream


def test_after_revoking_a_person_known_by_subject_alone_the_page_shows_their_row(app, scim):
    """A subject may hold an @ (an externalId like an address) while no address is kept (outside the upstream's
    domains): the page the revocation redirects to finds them by subject."""
    provisioned(scim, "alice", "engineering", "aws-admins")
    address = [{"value": "carol@partner.test", "primary": True}]
    scim.user("carol", subject="carol@partner.test", userName="carol@partner.test", emails=address)
    admin = portal_client(app, "alice", ADMIN_GROUPS)
    everyone = read_page(admin.get("/admin/people").get_data(as_text=True)).forms
    form = next(f for f in everyone if f.inputs.get("subject") == "carol@partner.test")
    answer = admin.post("/admin/people/revoke", data=form.inputs, follow_redirects=True)
    page_says(answer, 200, "Revoked carol@partner.test")
    page_says(answer, 200, 'name="subject" value="carol@partner.test"')


def test_a_revocation_notice_is_for_the_sign_in_that_revoked(app, scim):
    """An administrator who revoked themself is signed out before the notice shows: it is not shown to whoever
    signs in next in that browser."""
    provisioned(scim, "alice", "engineering", "aws-admins")
    admin = portal_client(app, "alice", ADMIN_GROUPS)
    page = admin.get("/admin/people?person=alice@example.com")
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if f.action == "/admin/people/revoke")
    answer = admin.post("/admin/people/revoke", data=form.inputs)
    assert admin.get(answer.headers["Location"]).status_code == 401  # revoked: signed out, the notice unshown
    time.sleep(1.01)  # a sign-in after the revocation's second
    sign_in(app, admin, identity("alice", ADMIN_GROUPS))
    assert "Revoked" not in admin.get("/admin/people").get_data(as_text=True)


def test_the_people_page_is_for_administrators_only(app, scim):
    provisioned(scim, "bob", "engineering")
    bob = portal_client(app, "bob")
    page_says(bob.get("/admin/people"), 403, "for administrators")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', bob.get("/").get_data(as_text=True)).group(1)
    answer = bob.post("/admin/people/revoke", data={"csrf_token": csrf, "upstream": OIDC, "subject": "sub-bob"})
    assert answer.status_code == 403 and app.extensions["broker"].revocations.outbox.last() == 0


# --- groups change at the next issuance ---------------------------------------------------------------------------


def test_a_removed_group_takes_its_roles_away_and_an_added_one_brings_its_roles(app, scim):
    user = provisioned(scim, "bob", "engineering")
    browser = portal_client(app, "bob", ("engineering",))
    _, tokens, _ = cli_tokens(app, "bob")
    api = app.test_client()
    assert role_credentials(api, tokens).status_code == 200
    accounts = api.get("/assignment/accounts", headers=bearer(tokens)).get_json()["accountList"]
    assert {a["accountId"] for a in accounts} == {SANDBOX, PRODUCTION}

    engineering = scim.get('/Groups?filter=displayName eq "engineering"').get_json()["Resources"][0]
    scim.patch(f"/Groups/{engineering['id']}", [{"op": "remove", "path": f'members[value eq "{user["id"]}"]'}])
    answer = role_credentials(api, tokens)
    assert answer.status_code == 403 and answer.get_json()["__type"] == "ForbiddenException"
    assert api.get("/assignment/accounts", headers=bearer(tokens)).get_json()["accountList"] == []
    assert "EmployeeDirectoryReadOnly" not in browser.get("/").get_data(as_text=True)

    admins = scim.group("aws-admins", user["id"])  # added: no new sign-in needed
    assert role_credentials(api, tokens, SANDBOX, "AdministratorAccess").status_code == 200
    assert "AdministratorAccess" in browser.get("/").get_data(as_text=True)
    assert admins["displayName"] == "aws-admins"


# --- signing in while SCIM is on ------------------------------------------------------------------------------


def test_only_provisioned_active_people_may_sign_in(app, scim):
    people = app.extensions["broker"].people
    from broker.core.audit import RequestOrigin

    origin = RequestOrigin("127.0.0.1", "test", "portal")
    with pytest.raises(LoginFailed, match="not provisioned"):
        people.admit(OIDC, UpstreamLogin(identity("carol")), origin)
    user = provisioned(scim, "carol", "finance")
    admitted = people.admit(OIDC, UpstreamLogin(identity("carol", ("engineering", "aws-admins"))), origin)
    assert admitted.groups == {"finance"}  # the directory's groups, not what the sign-in claimed
    assert people.current(OIDC, identity("carol", ("aws-admins",)), time.time()).groups == {"finance"}
    scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}])
    with pytest.raises(LoginFailed, match="disabled"):
        people.admit(OIDC, UpstreamLogin(identity("carol")), origin)


# --- signed out at the IdP: back-channel logout -----------------------------------------------------------------


def test_a_back_channel_logout_ends_the_session_it_names_and_its_grants(app, scim, monkeypatch):
    provisioned(scim, "bob", "engineering")
    state = app.extensions["broker"]
    client = app.test_client()
    session = state.sessions.create(identity("bob"), OIDC, LogoutHint(), UpstreamSession(sid="idp-session-1"))
    client.set_cookie("portal_session", session.id)
    other = app.test_client()
    other_session = state.sessions.create(identity("bob"), OIDC, LogoutHint(), UpstreamSession(sid="idp-session-2"))
    other.set_cookie("portal_session", other_session.id)
    verified = {}
    monkeypatch.setitem(
        state.logout_tokens, OIDC, lambda token: verified.setdefault(token, ("idp-session-1", "sub-bob"))
    )
    answer = app.test_client().post(f"/login/{OIDC}/backchannel-logout", data={"logout_token": "t"})
    assert answer.status_code == 200 and answer.get_data() == b"" and answer.headers["Cache-Control"] == "no-store"
    page_says(client.get("/"), 401, "you signed out at your identity provider")
    assert other.get("/").status_code == 200  # another IdP session of the same person goes on
    [event] = state.audit.query(AuditQuery(event_type="backchannel_logout"))
    assert event["subject"] == "sub-bob" and "idp-session-1" not in str(event)


def test_a_back_channel_logout_naming_only_the_person_ends_all_their_sessions(app, scim, monkeypatch):
    provisioned(scim, "bob", "engineering")
    state = app.extensions["broker"]
    browser = portal_client(app, "bob")
    monkeypatch.setitem(state.logout_tokens, OIDC, lambda token: (None, "sub-bob"))
    assert app.test_client().post(f"/login/{OIDC}/backchannel-logout", data={"logout_token": "t"}).status_code == 200
    page_says(browser.get("/"), 401, "signed out at your identity provider")
    assert portal_client(app, "bob").get("/").status_code == 200  # a sign-in after it is not affected


def test_an_oversized_logout_request_is_413_with_an_oauth_error(app):
    answer = app.test_client().post(f"/login/{OIDC}/backchannel-logout", data={"logout_token": "x" * 2_000_000})
    assert answer.status_code == 413 and answer.get_json()["error"] == "invalid_request"


def test_a_bad_logout_token_is_400_with_an_oauth_error(app, monkeypatch):
    def refuse(token):
        raise LoginFailed("The logout token was rejected: it is meant for another client.")

    monkeypatch.setitem(app.extensions["broker"].logout_tokens, OIDC, refuse)
    answer = app.test_client().post(f"/login/{OIDC}/backchannel-logout", data={"logout_token": "t"})
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request"
    saml = app.test_client().post("/login/example-corp-saml/backchannel-logout", data={"logout_token": "t"})
    assert saml.status_code == 400


# --- without SCIM: re-validation with the upstream, and the session cap ------------------------------------------


class Upstream:
    """A Revalidator that answers as the test says."""

    def __init__(self):
        self.answers: list = []
        self.calls = 0

    def revalidate(self, upstream_session, identity):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return UpstreamLogin(replace(identity, groups=frozenset(answer)), upstream_session=upstream_session)


@pytest.fixture
def revalidated(tmp_path):
    """A portal whose OIDC upstream has no SCIM: re-validated every 300 s; its SAML upstream capped at 60 min."""
    from broker.settings import UpstreamLifecycle
    from tests.support.identity_center import portal_app

    lifecycles = (
        UpstreamLifecycle(OIDC, "oidc", revalidate_seconds=300),
        UpstreamLifecycle("example-corp-saml", "saml", max_session_seconds=3600),
    )
    app = portal_app(tmp_path / "p", lifecycles=lifecycles)
    state = app.extensions["broker"]
    clock = [time.time()]
    upstream = Upstream()
    state.guard = SessionGuard(
        state.sessions, state.people, state.store, state.settings.lifecycle, {OIDC: upstream}, lambda: clock[0]
    )
    fresh_sso_state(app, FakeClock())  # the sso API's grants ask this guard
    return app, upstream, clock


def test_a_session_is_re_validated_with_the_upstream_when_its_interval_is_over(revalidated):
    app, upstream, clock = revalidated
    browser = portal_client(app, "bob")
    assert browser.get("/").status_code == 200 and upstream.calls == 0
    clock[0] += 301
    upstream.answers.append(["engineering", "aws-admins"])
    page = browser.get("/")
    assert page.status_code == 200 and "AdministratorAccess" in page.get_data(as_text=True)  # the new group, at once
    assert upstream.calls == 1
    assert browser.get("/").status_code == 200 and upstream.calls == 1  # confirmed: not asked again for 300 s
    clock[0] += 301
    upstream.answers.append(LoginFailed("invalid_grant"))
    page_says(browser.get("/"), 401, "your identity provider no longer confirms your access")


def test_an_upstream_that_does_not_answer_refuses_for_now_and_keeps_the_session(revalidated):
    app, upstream, clock = revalidated
    browser = portal_client(app, "bob")
    clock[0] += 301
    upstream.answers += [UpstreamUnavailable("down"), ["engineering"]]
    page_says(browser.get("/"), 503, "could not confirm your access just now")
    assert browser.get("/").status_code == 200  # the session was kept; the next try confirms it


def test_cli_grants_are_re_validated_too(revalidated):
    app, upstream, clock = revalidated
    _, tokens, _ = cli_tokens(app, "bob")
    clock[0] += 301
    upstream.answers.append(UpstreamUnavailable("down"))
    answer = role_credentials(app.test_client(), tokens)
    assert answer.status_code == 503 and answer.get_json()["__type"] == "ServiceUnavailableException"
    upstream.answers.append(LoginFailed("disabled"))
    assert_ended(role_credentials(app.test_client(), tokens), "no longer confirms your access")


def test_a_saml_session_without_scim_is_capped(revalidated):
    app, upstream, clock = revalidated
    state = app.extensions["broker"]
    client = app.test_client()
    session = state.sessions.create(identity("bob"), "example-corp-saml", LogoutHint())
    client.set_cookie("portal_session", session.id)
    assert client.get("/").status_code == 200
    clock[0] += 3601
    page_says(client.get("/"), 401, "last at most 60 minutes")
    assert upstream.calls == 0 and state.sessions.standing(session_reference(session.id)) is None
