"""Writes in several steps, in process on SQLite: what a store failure midway leaves (the retry the 503 asks for
must finish the work, never find it half done and do nothing), and what a request in between sees."""

from __future__ import annotations

import time

import pytest

from broker.core.revocation import Revocation
from broker.core.sessions import REFERENCE_KIND
from broker.identity_center.grants import REFRESH_KIND
from sso_common.store.errors import StoreUnavailable
from tests.broker.http.test_lifecycle import cli_tokens, provisioned, role_credentials
from tests.broker.scim.conftest import OIDC, Scim, scim_app
from tests.support.identity_center import refresh


@pytest.fixture
def app(tmp_path):
    return scim_app(tmp_path, "sqlite")


@pytest.fixture
def scim(app):
    return Scim(app.test_client())


def _fail_once(monkeypatch, target, name, when=lambda *a, **k: True):
    original, failed = getattr(target, name), []

    def failing(*args, **kwargs):
        if not failed and when(*args, **kwargs):
            failed.append(args)
            raise StoreUnavailable("test store", "connection lost")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)
    return failed


# --- 1. SCIM disable: the person is written disabled before the revocation reaches the outbox ----------------


def test_a_disable_whose_revocation_failed_is_revoked_in_aws_when_the_idp_retries(app, scim, monkeypatch):
    user = provisioned(scim, "bob", "engineering")
    outbox = app.extensions["broker"].revocations.outbox
    failed = _fail_once(monkeypatch, outbox, "append")
    disable = [{"op": "replace", "path": "active", "value": False}]
    assert scim.patch(f"/Users/{user['id']}", disable).status_code == 503  # the IdP's pusher will retry
    assert failed
    assert scim.patch(f"/Users/{user['id']}", disable).status_code in (200, 204)  # the retry
    assert {record["subject"] for _, record in outbox.read()} == {"sub-bob"}, "no revocation reached AWS"


def test_a_user_provisioned_inactive_over_a_known_person_is_revoked_in_aws_when_the_idp_retries(tmp_path, monkeypatch):
    """Known from sign-in before SCIM was turned on, then provisioned with active=false."""
    from sso_common.store import Person
    from tests.broker.scim.conftest import OIDC

    app = scim_app(tmp_path, "sqlite")
    scim = Scim(app.test_client())
    state = app.extensions["broker"]
    state.people.directory.put(Person(OIDC, "sub-bob", "bob@example.com", updated_at=time.time()))
    failed = _fail_once(monkeypatch, state.revocations.outbox, "append")
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bob@example.com",
        "externalId": "sub-bob",
        "emails": [{"value": "bob@example.com", "primary": True}],
        "active": False,
    }
    assert scim.post("/Users", body).status_code == 503
    assert failed
    retried = scim.post("/Users", body)  # 409 now: the IdP's pusher then finds the user and replaces it
    if retried.status_code == 409:
        user = scim.get('/Users?filter=externalId eq "sub-bob"').get_json()["Resources"][0]
        scim.put(f"/Users/{user['id']}", {**body, "id": user["id"]})
    outbox = {record["subject"] for _, record in state.revocations.outbox.read()}
    assert outbox == {"sub-bob"}, (retried.status_code, outbox)


# --- 5. Sign-out: the session goes first, its grants' reference and standing after ---------------------------


def test_a_sign_out_cut_short_by_the_store_still_ends_the_cli_grants(app, scim, monkeypatch):
    provisioned(scim, "bob", "engineering")
    _, tokens, browser = cli_tokens(app, "bob")
    store = app.extensions["broker"].store
    assert role_credentials(app.test_client(), tokens).status_code == 200
    csrf = browser.get("/").get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    _fail_once(monkeypatch, store, "delete", lambda kind, key: kind == REFERENCE_KIND)
    answer = browser.post("/logout", data={"csrf_token": csrf, "scope": "local"})
    assert answer.status_code == 503
    browser.post("/logout", data={"csrf_token": csrf, "scope": "local"})  # the person tries again
    assert browser.get("/").status_code == 303  # the portal says: signed out
    assert role_credentials(app.test_client(), tokens).status_code == 401, "the CLI sign-in outlived the sign-out"


# --- 6. sso-oidc refresh: the old token is spent before the new pair is stored ------------------------------


def test_a_refresh_cut_short_by_the_store_can_be_retried(app, scim, monkeypatch):
    provisioned(scim, "bob", "engineering")
    registration, tokens, _ = cli_tokens(app, "bob")
    store = app.extensions["broker"].grants.store
    _fail_once(monkeypatch, store, "put", lambda kind, *rest: kind == REFRESH_KIND)
    first = refresh(app.test_client(), registration, tokens["refreshToken"])
    assert first.status_code == 503, first.get_json()
    again = refresh(app.test_client(), registration, tokens["refreshToken"])  # what the 503 says to do
    assert again.status_code == 200, again.get_json()
    assert role_credentials(app.test_client(), again.get_json()).status_code == 200


# --- 3. SCIM delete: between the outbox append and the delete the person may still be issued credentials ------


def test_credentials_issued_while_the_deletion_is_under_way_are_denied_in_aws(app, scim, monkeypatch, access):
    from broker.aws.revocation import AwsRevoker
    from sso_common.store.memory import MemoryStateStore

    user = provisioned(scim, "bob", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    state = app.extensions["broker"]
    minted = recording_mints(state)
    between = issued_during(monkeypatch, app, tokens, "delete")
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert [answer.status_code for answer in between] == [200]  # handed out after the first revocation's moment
    assert latest_revocation(state, "sub-bob") >= minted[-1]  # the second: recorded after the record went
    [(_, record), *_] = state.revocations.outbox.read()
    revoker = AwsRevoker(access, None, state.revocations.outbox, state.audit, MemoryStateStore())
    assert revoker.denied_roles(Revocation.from_record(record)), "audited after the first: its role counts too"


# --- a SCIM externalId change: the record moves to the new subject, and the update is written there --------------


def unchanged(scim, user) -> tuple:
    after = scim.get(f"/Users/{user['id']}").get_json()
    return after.get("displayName"), after.get("active", True), after["meta"]["version"], after.get("externalId")


def test_an_externalid_change_refused_at_the_move_writes_nothing(app, scim, monkeypatch):
    from sso_common.store import DirectoryConflict

    user = provisioned(scim, "bob", "engineering")
    before = unchanged(scim, user)
    directory = app.extensions["broker"].people.directory

    def taken_meanwhile(upstream, subject, new_subject):  # another SCIM create took the subject after the check
        raise DirectoryConflict("another person of this upstream has this subject")

    monkeypatch.setattr(directory, "rename", taken_meanwhile)
    answer = scim.put(
        f"/Users/{user['id']}", {**user, "externalId": "sub-robert", "displayName": "Robert", "active": False}
    )
    assert answer.status_code == 409
    assert unchanged(scim, user) == before


def test_an_externalid_change_refused_at_the_update_moves_the_user_back(app, scim, monkeypatch):
    user = provisioned(scim, "bob", "engineering")
    before = unchanged(scim, user)
    directory = app.extensions["broker"].people.directory
    put = directory.put

    def changed_meanwhile(person, **options):  # another write of the user came between the move and the update
        return False if person.subject == "sub-robert" else put(person, **options)

    monkeypatch.setattr(directory, "put", changed_meanwhile)
    answer = scim.put(f"/Users/{user['id']}", {**user, "externalId": "sub-robert", "displayName": "Robert"})
    assert answer.status_code == 412
    assert unchanged(scim, user) == before
    assert directory.get(OIDC, "sub-bob") is not None and directory.get(OIDC, "sub-robert") is None


# --- a revocation recorded after the directory write: its cutoff is after every issuance the guard let through ----


def test_a_revocation_is_recorded_after_every_issuance_the_guard_admitted_while_the_disable_was_written(
    app, scim, monkeypatch
):
    """A SCIM disable records the revocation (for AWS) before writing the directory, which the guard reads: a
    request in between is admitted and handed credentials. Their deny's cutoff must be after their issue, however
    long the directory write took (behind PostgreSQL's directory lock, say): the revocation is recorded again
    once the write has landed."""
    user = provisioned(scim, "bob", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    state = app.extensions["broker"]
    minted = recording_mints(state)
    between = issued_during(monkeypatch, app, tokens, "put")
    disable = [{"op": "replace", "path": "active", "value": False}]
    assert scim.patch(f"/Users/{user['id']}", disable).status_code in (200, 204)
    assert [answer.status_code for answer in between] == [200]  # admitted: the directory was not written yet
    assert latest_revocation(state, "sub-bob") >= minted[0], (
        "no revocation after the issuance: a slow write would leave it outside every cutoff"
    )


def test_an_externalid_change_refused_after_the_move_leaves_the_sessions_alone(app, scim):
    """The former subject is revoked in AWS before the move (one revocation too many if refused), but not in the
    directory: the refused change leaves bob signed in."""
    bob = provisioned(scim, "bob", "engineering")
    carol = provisioned(scim, "carol", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    answer = scim.put(f"/Users/{bob['id']}", {**bob, "externalId": "sub-robert", "userName": carol["userName"]})
    assert answer.status_code == 409
    assert app.extensions["broker"].people.directory.get(OIDC, "sub-bob").revoked_at is None
    assert role_credentials(app.test_client(), tokens).status_code == 200


def test_an_administrators_revocation_is_recorded_for_aws_after_the_directory_write(app, scim, monkeypatch):
    """The guard admits the person until the directory's `revoked_at` is written: the revocation the outbox
    carries to AWS (its cutoff) follows that write, however long it took."""
    provisioned(scim, "bob", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    state = app.extensions["broker"]
    minted = recording_mints(state)
    between = issued_during(monkeypatch, app, tokens, "revoke")
    state.revocations.revoke(OIDC, "sub-bob", "revoked by an administrator (alice)", "alice@example.com")
    assert [answer.status_code for answer in between] == [200]
    assert latest_revocation(state, "sub-bob") >= minted[-1]


def test_an_externalid_change_records_the_former_subjects_revocation_after_the_move(app, scim, monkeypatch):
    user = provisioned(scim, "bob", "engineering")
    _, tokens, _ = cli_tokens(app, "bob")
    state = app.extensions["broker"]
    minted = recording_mints(state)
    between = issued_during(monkeypatch, app, tokens, "rename")
    assert scim.put(f"/Users/{user['id']}", {**user, "externalId": "sub-robert"}).status_code == 200
    assert [answer.status_code for answer in between] == [200]
    assert role_credentials(app.test_client(), tokens).status_code == 401  # the move ended the grant
    assert latest_revocation(state, "sub-bob") >= minted[-1]


def recording_mints(state) -> list[float]:
    """When STS (stood in for) minted each issuance's credentials."""
    minted, fake = [], state.issuance.issuer

    class Recording:
        def issue(self, identity, entitlement):
            minted.append(time.time())
            return fake.issue(identity, entitlement)

    state.issuance.issuer = Recording()
    return minted


def latest_revocation(state, subject: str) -> float:
    records = state.revocations.outbox.read()
    return max((Revocation.from_record(r).at for _, r in records if r["subject"] == subject), default=0.0)


def issued_during(monkeypatch, app, tokens: dict, method: str) -> list:
    """GetRoleCredentials asked once while the directory's `method` runs, before it writes (admitted by the guard,
    which reads what that write changes): the answers."""
    directory = app.extensions["broker"].people.directory
    original, between = getattr(directory, method), []

    def after_an_issuance(*args, **kwargs):
        if not between:
            between.append(role_credentials(app.test_client(), tokens))
        return original(*args, **kwargs)

    monkeypatch.setattr(directory, method, after_an_issuance)
    return between
