"""What one login costs the state store at the IdP, counted on the app in-process (Flask's test client):
the operations each request makes, so that a change that adds reads or writes to the login path shows here; and
what the OAuth endpoints answer when the store is down."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest

from idp_mock.app import create_app
from idp_mock.oidc_provider.storage import grant_of_code
from idp_mock.settings import load_settings
from sso_common.store.errors import RETRY_AFTER_SECONDS, StoreUnavailable
from tests.support.idp_client import DEMO_PASSWORD

REDIRECT_URI = "http://localhost:8000/login/example-corp-oidc/callback"
BASIC = "Basic " + base64.b64encode(b"access-portal:demo-portal-oidc-secret").decode()
OPERATIONS = ("put", "add", "get", "take", "delete", "incr")


class Counting:
    """The app's StateStore, counting its operations by name and kind."""

    def __init__(self, store):
        self._store, self.counts, self.down, self.failing = store, Counter(), False, set()

    def __getattr__(self, name):
        method = getattr(self._store, name)
        if name not in OPERATIONS:
            return method

        def counted(kind, *args, **kwargs):
            if self.down or (name, kind) in self.failing:
                self.failing.discard((name, kind))
                raise StoreUnavailable("the state store", "ConnectionError: connection refused")
            self.counts[(name, kind)] += 1
            return method(kind, *args, **kwargs)

        return counted

    def take_counts(self) -> Counter:
        counts, self.counts = self.counts, Counter()
        return counts


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_SCIM_PUSH", "false")
    app = create_app(load_settings(instance_dir=tmp_path))
    counting = Counting(app.extensions["idp"].store)
    for holder in (
        app.extensions["idp"],
        app.extensions["idp"].authenticator,
        app.extensions["idp"].faults,
        app.extensions["idp"].consents,
        app.extensions["oidc"].faults,
    ):
        holder.store = counting
    app.extensions["oidc"].oidc_store._store = counting
    app.extensions["counting"] = counting
    return app


def _authorize(client):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": "access-portal",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile groups",
        "state": "s",
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return client.get("/oidc/authorize", query_string=params), verifier


def _redeem(client, answer, verifier):
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    return client.post("/oidc/token", data=form, headers={"Authorization": BASIC})


def test_a_password_login_and_its_code_exchange_cost_the_store_this_much(app):
    counting, client = app.extensions["counting"], app.test_client()
    page, verifier = _authorize(client)
    assert page.status_code == 200 and 'name="password"' in page.text
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    opening = counting.take_counts()
    assert sum(opening.values()) <= 3, opening  # the faults of the client, the nonce, the request kept
    answer = client.post("/login", data={**form, "username": "alice", "password": DEMO_PASSWORD})
    assert answer.status_code == 303 and "code=" in answer.headers["Location"]
    login = counting.take_counts()
    assert login[("put", "idp_session")] == 1  # one write of the new session, its participant included
    assert login[("get", "fault")] <= 1  # the faults once per request
    assert ("put", "oidc_code_grant") not in login  # a replayed code finds its grant without a marker
    assert ("put", "oidc_code") not in login and login[("put", "oidc_grant")] == 1  # the code is kept in its grant
    assert login[("add", "oidc_nonce")] == 1 and ("get", "oidc_nonce") not in login  # one atomic check-and-keep
    assert sum(login.values()) <= 15, login
    tokens = _redeem(client, answer, verifier)
    assert tokens.status_code == 200 and "id_token" in tokens.json
    exchange = counting.take_counts()
    assert exchange[("get", "fault")] <= 1
    assert exchange[("add", "oidc_code_used")] == 1  # single use: the atomic add of a used marker
    assert not {key for key in exchange if key[1] == "oidc_refresh_grant"}  # the refresh record names its grant
    assert sum(exchange.values()) <= 6, exchange  # the grant is read again just before the tokens are stored


def test_with_a_session_an_authorization_and_its_code_exchange_cost_the_store_this_much(app):
    counting, client = app.extensions["counting"], app.test_client()
    page, _ = _authorize(client)
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    client.post("/login", data={**form, "username": "bob", "password": DEMO_PASSWORD})
    counting.take_counts()
    answer, verifier = _authorize(client)
    assert answer.status_code == 302
    authorization = counting.take_counts()
    assert authorization[("get", "idp_session")] == 1 and ("put", "idp_session") not in authorization
    assert authorization[("add", "oidc_nonce")] == 1 and ("get", "oidc_nonce") not in authorization
    assert sum(authorization.values()) <= 4, authorization  # faults, session, nonce, grant (with its code)
    assert _redeem(client, answer, verifier).status_code == 200
    assert sum(counting.take_counts().values()) <= 6


def test_signing_in_again_from_the_same_browser_does_not_write_it_again(app):
    counting, client = app.extensions["counting"], app.test_client()
    for _ in range(2):
        client.delete_cookie("idp_session")  # signed out, the device cookie kept
        page, _ = _authorize(client)
        form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
        counting.take_counts()
        assert client.post("/login", data={**form, "username": "bob", "password": DEMO_PASSWORD})
        login = counting.take_counts()
    assert ("put", "login_device") not in login, login  # remembered moments ago (idp_mock.authn.trust)
    assert login[("incr", "login_failures_device")] == 2  # the browser's own counter only: taken, given back
    assert sum(login.values()) <= 10, login


def test_a_replayed_code_revokes_its_grant(app):
    client = app.test_client()
    page, verifier = _authorize(client)
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    answer = client.post("/login", data={**form, "username": "carol", "password": DEMO_PASSWORD})
    tokens = _redeem(client, answer, verifier).json
    assert (
        client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
    )
    assert _redeem(client, answer, verifier).status_code == 400  # the code again
    assert (
        client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
    )


def test_codes_and_tokens_come_from_one_read_of_the_random_source(app, monkeypatch):
    """authlib's generator draws every character with its own system call: ours read once, as many bits or more."""
    import authlib.common.security
    import authlib.integrations.flask_oauth2.authorization_server as flask_server
    import authlib.oauth2.rfc6749.grants.authorization_code as code_grant

    def refused(*args, **kwargs):
        raise AssertionError("authlib's per-character token generator was used")

    for module in (authlib.common.security, flask_server, code_grant):
        monkeypatch.setattr(module, "generate_token", refused, raising=False)
    client = app.test_client()
    page, verifier = _authorize(client)
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    answer = client.post("/login", data={**form, "username": "dave", "password": DEMO_PASSWORD})
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = _redeem(client, answer, verifier).json
    urlsafe = re.compile(r"[A-Za-z0-9_-]+")
    assert len(code) == 48 and urlsafe.fullmatch(code)
    assert len(tokens["access_token"]) == 43 and urlsafe.fullmatch(tokens["access_token"])
    assert len(tokens["refresh_token"]) == 48 and urlsafe.fullmatch(tokens["refresh_token"])


def test_of_concurrent_redemptions_of_a_code_or_refresh_token_at_most_one_succeeds_and_the_grant_ends(app):
    """Single use without `take`: the atomic add of a used marker lets at most one of them through, and the
    others, replays, revoke the grant; when a replay revokes it before the first reads it, none succeeds (seen
    in a CI run), which is what a replay should cost."""
    oidc_store = app.extensions["oidc"].oidc_store
    client = app.test_client()
    page, verifier = _authorize(client)
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    answer = client.post("/login", data={**form, "username": "alice", "password": DEMO_PASSWORD})
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: oidc_store.take_code(code), range(8)))
    winners = [item for item in found if item is not None]
    assert len(winners) <= 1 and all(issued.grant_id == grant.code.grant_id for issued, grant in winners)
    assert oidc_store.grant(grant_of_code(code)) is None  # the replays revoked it

    page, verifier = _authorize(client)  # signed in: straight to a code
    tokens = _redeem(client, page, verifier).json
    grant_id = oidc_store.access_token(tokens["access_token"]).grant_id
    assert oidc_store.grant(grant_id) is not None
    with ThreadPoolExecutor(8) as pool:
        refreshed = list(pool.map(lambda _: oidc_store.take_refresh_token(tokens["refresh_token"]), range(8)))
    assert sum(item is not None for item in refreshed) <= 1  # one, unless a replay revoked the grant before it
    assert oidc_store.grant(grant_id) is None


def test_with_the_store_down_the_token_and_userinfo_endpoints_answer_oauth_503s_and_the_code_still_works(app):
    counting, client = app.extensions["counting"], app.test_client()
    page, verifier = _authorize(client)
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    answer = client.post("/login", data={**form, "username": "bob", "password": DEMO_PASSWORD})
    tokens = _redeem(client, answer, verifier).json
    page, verifier = _authorize(client)  # a second code, redeemed while the store is down
    counting.down = True
    refused = [
        _redeem(client, page, verifier),
        client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}),
    ]
    for answer in refused:
        assert answer.status_code == 503 and answer.mimetype == "application/json", answer.text
        assert answer.json["error"] == "temporarily_unavailable"
        assert "try again" in answer.json["error_description"].lower()
        assert answer.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert answer.headers["Cache-Control"] == "no-store"
        assert "ConnectionError" not in answer.text and "access_token" not in answer.json
    counting.down = False
    metrics = client.get("/metrics").text
    assert re.search(r'sso_refusals_total\{reason="store_unavailable",service="idp"\} [1-9]', metrics), metrics
    assert _redeem(client, page, verifier).status_code == 200  # nothing was spent: the code works once it is back


@pytest.mark.parametrize("failing", [("get", "oidc_grant"), ("put", "oidc_access"), ("put", "oidc_refresh")])
def test_a_store_outage_after_the_code_is_spent_gives_it_back_so_the_retry_works(app, failing):
    """The 503 says "try again": a retry must not be taken for a replay of a code this request had spent."""
    counting, client = app.extensions["counting"], app.test_client()
    page, verifier = _authorize(client)
    form = dict(re.findall(r'name="(csrf_token|continue)" value="([^"]*)"', page.text))
    answer = client.post("/login", data={**form, "username": "carol", "password": DEMO_PASSWORD})
    counting.failing = {failing}  # once, after the code's single-use marker is set
    refused = _redeem(client, answer, verifier)
    assert refused.status_code == 503 and refused.json["error"] == "temporarily_unavailable"
    tokens = _redeem(client, answer, verifier)
    assert tokens.status_code == 200 and "id_token" in tokens.json
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens.json["refresh_token"]}
    counting.failing = {("get", "oidc_grant")}  # a refresh token spent, then the outage
    assert client.post("/oidc/token", data=refresh, headers={"Authorization": BASIC}).status_code == 503
    assert client.post("/oidc/token", data=refresh, headers={"Authorization": BASIC}).status_code == 200
    assert client.post("/oidc/token", data=refresh, headers={"Authorization": BASIC}).status_code == 400  # rotated
    assert _redeem(client, answer, verifier).status_code == 400  # and the code is still single use
