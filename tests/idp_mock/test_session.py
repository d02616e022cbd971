"""The IdP session's relying parties (told at sign-out, by back-channel logout): two first authorizations of one
session at once (two tabs restored together) each add theirs, and neither is lost."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading

import pytest

from idp_mock.app import create_app
from idp_mock.session import LOGOUT_LISTENERS, SESSION_KIND, SessionRecord
from idp_mock.settings import load_settings
from tests.support.idp_client import DEMO_PASSWORD

CLIENTS = {
    "access-portal": "http://localhost:8000/login/example-corp-oidc/callback",
    "employee-directory": "http://localhost:8003/auth/callback",
}


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_SCIM_PUSH", "false")
    return create_app(load_settings(instance_dir=tmp_path))


def authorize(client, client_id):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CLIENTS[client_id],
        "state": "s",
        "scope": "openid email profile groups",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return client.get("/oidc/authorize", query_string=params)


def test_two_first_authorizations_at_once_both_become_participants(app, monkeypatch):
    store = app.extensions["idp"].store
    browser = app.test_client()
    page = browser.get("/login")
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    assert browser.post("/login", data={**form, "username": "alice", "password": DEMO_PASSWORD}).status_code == 303
    other_tab = app.test_client()
    other_tab.set_cookie("idp_session", browser.get_cookie("idp_session").value)
    put, answers, tabs = store.put, [], []

    def put_while_another_tab_runs(kind, key, value, ttl):
        if kind == SESSION_KIND and not tabs:  # the portal's tab authorizes while this one writes the session
            tabs.append(threading.Thread(target=lambda: answers.append(authorize(other_tab, "access-portal"))))
            tabs[0].start()
            tabs[0].join(0.3)  # it has read the session by now, unless something makes it wait
        return put(kind, key, value, ttl)

    monkeypatch.setattr(store, "put", put_while_another_tab_runs)
    assert authorize(browser, "employee-directory").status_code == 302
    tabs[0].join(10)
    assert [answer.status_code for answer in answers] == [302]
    monkeypatch.undo()
    record = SessionRecord.from_record(store.get(SESSION_KIND, browser.get_cookie("idp_session").value))
    clients = {participant.client_id for participant in record.participants}
    assert clients == set(CLIENTS), f"at sign-out only {clients} would be told: the other's session outlives it"


def test_a_sign_out_while_a_relying_party_is_added_tells_it_and_leaves_no_session(app, monkeypatch):
    """The sign-out waits for the relying party being added, then tells it too; the session stays deleted (the
    addition, written after the sign-out had deleted the record, brought the session back, untold)."""
    store = app.extensions["idp"].store
    browser = app.test_client()
    page = browser.get("/login")
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    assert browser.post("/login", data={**form, "username": "alice", "password": DEMO_PASSWORD}).status_code == 303
    session_id = browser.get_cookie("idp_session").value
    other_tab = app.test_client()
    other_tab.set_cookie("idp_session", session_id)
    token = re.search(r'name="csrf_token" value="([^"]*)"', other_tab.get("/logout").text).group(1)
    told: list = []
    app.extensions[LOGOUT_LISTENERS] = [lambda sid, record: told.append(record.participants)]
    put, tabs = store.put, []

    def put_while_signing_out(kind, key, value, ttl):
        if kind == SESSION_KIND and not tabs:
            tabs.append(threading.Thread(target=lambda: other_tab.post("/logout", data={"csrf_token": token})))
            tabs[0].start()
            tabs[0].join(0.3)
        return put(kind, key, value, ttl)

    monkeypatch.setattr(store, "put", put_while_signing_out)
    assert authorize(browser, "employee-directory").status_code == 302
    tabs[0].join(10)
    assert store.get(SESSION_KIND, session_id) is None, "the sign-out's deleted session came back"
    assert [{p.client_id for p in participants} for participants in told] == [{"employee-directory"}]
