"""The OpenID provider end to end: real IdP, real login form, plain HTTP from the relying party's side."""

from __future__ import annotations

import os
import re
import time

import pytest
import requests

from idp_mock.directory import load_directory
from idp_mock.session import ACR_MFA, ACR_PASSWORD
from tests.support.idp_client import ERIN_TOTP_SECRET, answer_consent, form_fields, fresh_totp, is_consent_page
from tests.support.oidc_rp import (
    PRIVATE_ACCESS_TOKEN_LIFETIME,
    REGISTRATION_TOKEN,
    SIGNED_OUT,
    Client,
    authorization,
    is_login_page,
    redeem,
    redirect_params,
    register_client,
    sign_in,
    sign_in_for_code,
    sign_in_for_tokens,
    token_request,
    userinfo,
    verify_id_token,
)
from tests.support.servers import REPO

DIRECTORY = load_directory(REPO / "config" / "directory.yaml")


# --- discovery and keys -------------------------------------------------------------------------


def test_discovery_document_names_every_endpoint(idp):
    answer = requests.get(f"{idp.url}/.well-known/openid-configuration", timeout=10)
    assert answer.status_code == 200
    meta = answer.json()
    assert meta["issuer"] == idp.url
    for name, path in [
        ("authorization_endpoint", "/oidc/authorize"),
        ("token_endpoint", "/oidc/token"),
        ("userinfo_endpoint", "/oidc/userinfo"),
        ("jwks_uri", "/oidc/jwks"),
        ("end_session_endpoint", "/oidc/logout"),
        ("registration_endpoint", "/oidc/register"),
    ]:
        assert meta[name] == idp.url + path
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "profile", "email", "groups"} <= set(meta["scopes_supported"])
    assert {"sub", "groups", "department", "amr", "acr"} <= set(meta["claims_supported"])


def test_jwks_publishes_both_public_keys(idp):
    keys = requests.get(f"{idp.url}/oidc/jwks", timeout=10).json()["keys"]
    assert len(keys) == 2 and len({key["kid"] for key in keys}) == 2
    for key in keys:
        assert key["kty"] == "RSA" and key["use"] == "sig" and key["alg"] == "RS256"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private key material published"


# --- sign-in for each seeded user ---------------------------------------------------------------


@pytest.mark.parametrize("username", ["alice", "bob", "carol", "dave"])
def test_password_user_gets_tokens_with_directory_claims(idp, oidc_client, username):
    employee = DIRECTORY.employees[username]
    tokens = sign_in_for_tokens(requests.Session(), idp.url, oidc_client, username)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] > 0 and tokens["refresh_token"]
    claims = verify_id_token(idp.url, tokens["id_token"], oidc_client, nonce=tokens["_nonce"])
    assert claims["sub"] == employee.subject
    assert claims["preferred_username"] == username
    assert claims["email"] == employee.email and claims["email_verified"] is True
    assert claims["name"] == employee.name
    assert claims["groups"] == list(employee.groups)
    assert claims["department"] == employee.department
    assert claims["amr"] == ["pwd"] and claims["acr"] == ACR_PASSWORD
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["auth_time"] - time.time()) < 30


def test_the_code_flow_needs_no_nonce(idp, public_client):
    """OIDC Core 3.1.2.1: nonce is optional with response_type=code (openid-client's quick-start sends none)."""
    tokens = sign_in_for_tokens(requests.Session(), idp.url, public_client, "bob", nonce=None)
    claims = verify_id_token(idp.url, tokens["id_token"], public_client)
    assert claims["preferred_username"] == "bob" and "nonce" not in claims


def test_mfa_user_gets_otp_amr_and_mfa_acr(private_idp):
    client = register_client(private_idp.url)
    tokens = sign_in_for_tokens(requests.Session(), private_idp.url, client, "erin", totp_secret=ERIN_TOTP_SECRET)
    claims = verify_id_token(private_idp.url, tokens["id_token"], client, nonce=tokens["_nonce"])
    assert claims["preferred_username"] == "erin"
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == ACR_MFA
    assert claims["groups"] == ["security", "engineering"]


def test_disabled_user_is_refused_and_no_code_is_issued(idp, oidc_client):
    answer = sign_in(requests.Session(), idp.url, authorization(oidc_client), "frank")
    assert answer.status_code == 403 and "disabled" in answer.text
    assert "Location" not in answer.headers


def test_config_client_of_the_portal_works_with_its_default_secret(idp):
    portal = os.environ.get("PORTAL_URL", "http://localhost:8000")
    secret = os.environ.get("BROKER_OIDC_CLIENT_SECRET", "demo-portal-oidc-secret")
    client = Client(
        "access-portal", "client_secret_basic", secret, redirect_uri=f"{portal}/login/example-corp-oidc/callback"
    )
    tokens = sign_in_for_tokens(requests.Session(), idp.url, client, "alice")
    assert verify_id_token(idp.url, tokens["id_token"], client)["aud"] == "access-portal"


# --- single sign-on and the prompt / max_age / login_hint parameters ----------------------------


def test_second_request_from_the_same_browser_needs_no_password(idp, oidc_client, public_client):
    http = requests.Session()
    first = verify_id_token(idp.url, sign_in_for_tokens(http, idp.url, oidc_client, "bob")["id_token"], oidc_client)
    for client in (oidc_client, public_client):
        request = authorization(client)
        answer = sign_in(http, idp.url, request, username=None)  # no login form may appear
        code = redirect_params(answer)["code"]
        claims = verify_id_token(
            idp.url, redeem(idp.url, client, request, code).json()["id_token"], client, nonce=request.nonce
        )
        assert claims["sub"] == first["sub"] and claims["auth_time"] == first["auth_time"]


def test_prompt_login_forces_a_fresh_login(idp, oidc_client):
    http = requests.Session()
    first = verify_id_token(idp.url, sign_in_for_tokens(http, idp.url, oidc_client, "carol")["id_token"], oidc_client)
    first_session = http.cookies["idp_session"]
    request = authorization(oidc_client, prompt="login")
    assert is_login_page(sign_in(http, idp.url, request, username=None))
    logging_in_at = int(time.time())
    code = redirect_params(sign_in(http, idp.url, request, "carol"))["code"]
    second = verify_id_token(idp.url, redeem(idp.url, oidc_client, request, code).json()["id_token"], oidc_client)
    # auth_time counts whole seconds: a new session and an auth_time of this login prove it, with no wait
    assert http.cookies["idp_session"] != first_session
    assert second["sub"] == first["sub"] and second["auth_time"] >= logging_in_at


def test_prompt_none_without_a_session_answers_login_required(idp, oidc_client):
    request = authorization(oidc_client, prompt="none")
    answer = redirect_params(sign_in(requests.Session(), idp.url, request, username=None))
    assert answer == {"error": "login_required", "state": request.state}


def test_prompt_none_with_a_session_answers_with_a_code(idp, oidc_client):
    http = requests.Session()
    sign_in_for_code(http, idp.url, oidc_client, "dave")
    request = authorization(oidc_client, prompt="none")
    assert "code" in redirect_params(sign_in(http, idp.url, request, username=None))


def test_max_age_exceeded_asks_for_login_again(idp, oidc_client):
    http = requests.Session()
    sign_in_for_code(http, idp.url, oidc_client, "alice")
    recent_enough = authorization(oidc_client, max_age="3600")
    assert "code" in redirect_params(sign_in(http, idp.url, recent_enough, username=None))
    first_session = http.cookies["idp_session"]
    # no wait: max_age=0 asks for a login even within the second of the last one (as prompt=login does)
    too_old = authorization(oidc_client, max_age="0")
    assert is_login_page(sign_in(http, idp.url, too_old, username=None))
    logging_in_at = int(time.time())
    code = redirect_params(sign_in(http, idp.url, too_old, "alice"))["code"]
    claims = verify_id_token(idp.url, redeem(idp.url, oidc_client, too_old, code).json()["id_token"], oidc_client)
    assert http.cookies["idp_session"] != first_session and claims["auth_time"] >= logging_in_at


def test_login_hint_prefills_the_username(idp, oidc_client):
    page = sign_in(requests.Session(), idp.url, authorization(oidc_client, login_hint="bob"), username=None)
    assert is_login_page(page) and 'value="bob"' in page.text


# --- tokens -------------------------------------------------------------------------------------


def test_refresh_token_rotates(idp, oidc_client):
    tokens = sign_in_for_tokens(requests.Session(), idp.url, oidc_client, "alice")
    answer = token_request(idp.url, oidc_client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert answer.status_code == 200, answer.text
    refreshed = answer.json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert userinfo(idp.url, refreshed["access_token"]).json()["preferred_username"] == "alice"
    again = token_request(idp.url, oidc_client, grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
    assert again.status_code == 200


def test_reused_refresh_token_revokes_the_whole_grant(idp, oidc_client):
    tokens = sign_in_for_tokens(requests.Session(), idp.url, oidc_client, "bob")
    refreshed = token_request(
        idp.url, oidc_client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    ).json()
    replay = token_request(idp.url, oidc_client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # the family is gone: the rotated refresh token and every access token of the grant
    later = token_request(idp.url, oidc_client, grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
    assert later.status_code == 400 and later.json()["error"] == "invalid_grant"
    for access_token in (tokens["access_token"], refreshed["access_token"]):
        assert userinfo(idp.url, access_token).status_code == 401


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post", "none"])
def test_each_client_authentication_method(idp, auth_method):
    client = register_client(idp.url, auth_method=auth_method)
    assert (client.secret is None) == (auth_method == "none")
    tokens = sign_in_for_tokens(requests.Session(), idp.url, client, "carol")
    verify_id_token(idp.url, tokens["id_token"], client, nonce=tokens["_nonce"])
    refreshed = token_request(idp.url, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


def test_token_responses_are_not_cached(idp, oidc_client):
    request, code = sign_in_for_code(requests.Session(), idp.url, oidc_client, "dave")
    answer = redeem(idp.url, oidc_client, request, code)
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_answers_the_scoped_claims(idp, oidc_client, method):
    tokens = sign_in_for_tokens(requests.Session(), idp.url, oidc_client, "carol", scope="openid email")
    answer = userinfo(idp.url, tokens["access_token"], method)
    assert answer.status_code == 200
    assert answer.json() == {
        "sub": DIRECTORY.employees["carol"].subject,
        "email": "carol@example.com",
        "email_verified": True,
    }


def test_userinfo_rejects_a_garbage_token(idp):
    answer = userinfo(idp.url, "not-a-token")
    assert answer.status_code == 401
    assert (
        answer.headers["WWW-Authenticate"].startswith("Bearer ")
        and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    )


def test_userinfo_rejects_an_expired_token(private_idp):
    client = register_client(private_idp.url)
    tokens = sign_in_for_tokens(requests.Session(), private_idp.url, client, "dave")
    assert tokens["expires_in"] == PRIVATE_ACCESS_TOKEN_LIFETIME
    assert userinfo(private_idp.url, tokens["access_token"]).status_code == 200
    deadline = time.monotonic() + PRIVATE_ACCESS_TOKEN_LIFETIME + 2  # polled, not slept: refused once expired
    while (answer := userinfo(private_idp.url, tokens["access_token"])).status_code == 200:
        assert time.monotonic() < deadline, "the access token outlived its lifetime"
        time.sleep(0.05)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_userinfo_without_a_token_is_refused(idp):
    answer = requests.get(f"{idp.url}/oidc/userinfo", timeout=10)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].lower().startswith("bearer")


# --- RP-initiated logout ------------------------------------------------------------------------


def _still_signed_in(http, idp_url, client) -> bool:
    return "code" in redirect_params(sign_in(http, idp_url, authorization(client, prompt="none"), None))


# Example Corp's own client from config/idp.yaml (the portal's), as the repository's config defines it.
PORTAL_CLIENT = Client(
    "access-portal",
    "client_secret_basic",
    "demo-portal-oidc-secret",
    redirect_uri="http://localhost:8000/login/example-corp-oidc/callback",
    post_logout_redirect_uri="http://localhost:8000/signed-out",
)


def test_logout_with_matching_id_token_hint_needs_no_confirmation(idp):
    http = requests.Session()
    tokens = sign_in_for_tokens(http, idp.url, PORTAL_CLIENT, "alice")
    answer = http.get(
        f"{idp.url}/oidc/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": PORTAL_CLIENT.post_logout_redirect_uri,
            "state": "bye-1",
        },
        allow_redirects=False,
    )
    assert answer.status_code in (302, 303)
    assert answer.headers["Location"] == f"{PORTAL_CLIENT.post_logout_redirect_uri}?state=bye-1"
    assert not _still_signed_in(http, idp.url, PORTAL_CLIENT)


def test_logout_to_a_self_registered_client_is_confirmed_even_with_a_matching_hint(idp, oidc_client):
    http = requests.Session()
    tokens = sign_in_for_tokens(http, idp.url, oidc_client, "alice")
    params = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": SIGNED_OUT, "state": "bye-3"}
    page = http.get(f"{idp.url}/oidc/logout", params=params, allow_redirects=False)
    assert page.status_code == 200 and "rp.example.test" in page.text and 'name="confirm"' in page.text
    assert _still_signed_in(http, idp.url, oidc_client)
    answer = http.post(f"{idp.url}/oidc/logout", data=form_fields(page.text), allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == f"{SIGNED_OUT}?state=bye-3"
    assert not _still_signed_in(http, idp.url, oidc_client)


def test_signed_out_visitors_are_not_bounced_to_a_self_registered_address(idp, oidc_client):
    """Without a session, a logout link naming a registered address of a client that registered itself
    would make the IdP an open redirector for whoever holds the registration token: the person decides."""
    http = requests.Session()
    params = {"client_id": oidc_client.client_id, "post_logout_redirect_uri": SIGNED_OUT}
    page = http.get(f"{idp.url}/oidc/logout", params=params, allow_redirects=False)
    assert page.status_code == 200 and "Location" not in page.headers
    assert "You are signed out" in page.text and "rp.example.test" in page.text
    answer = http.post(f"{idp.url}/oidc/logout", data=form_fields(page.text), allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == SIGNED_OUT
    # Example Corp's own client is sent back at once
    own = {"client_id": "access-portal", "post_logout_redirect_uri": PORTAL_CLIENT.post_logout_redirect_uri}
    answer = http.get(f"{idp.url}/oidc/logout", params=own, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == PORTAL_CLIENT.post_logout_redirect_uri


def test_logout_without_hint_asks_for_confirmation(idp, oidc_client):
    http = requests.Session()
    sign_in_for_code(http, idp.url, oidc_client, "bob")
    params = {"client_id": oidc_client.client_id, "post_logout_redirect_uri": SIGNED_OUT, "state": "bye-2"}
    page = http.get(f"{idp.url}/oidc/logout", params=params, allow_redirects=False)
    assert page.status_code == 200 and "Sign out" in page.text
    assert _still_signed_in(http, idp.url, oidc_client)
    fields = form_fields(page.text)
    forged = http.post(f"{idp.url}/oidc/logout", data={**fields, "csrf_token": "forged"}, allow_redirects=False)
    assert forged.status_code == 400 and _still_signed_in(http, idp.url, oidc_client)
    answer = http.post(f"{idp.url}/oidc/logout", data=fields, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == f"{SIGNED_OUT}?state=bye-2"
    assert not _still_signed_in(http, idp.url, oidc_client)


def test_logout_with_a_hint_from_an_earlier_session_still_asks(idp, oidc_client):
    http = requests.Session()
    old = sign_in_for_tokens(http, idp.url, oidc_client, "carol")["id_token"]
    # The IdP tells this browser's sessions apart by auth_time, in whole seconds (its ID tokens carry no
    # sid): the new session must start in a later second than the old one. At most 1 s, often less.
    time.sleep(max(0.0, verify_id_token(idp.url, old, oidc_client)["auth_time"] + 1 - time.time()))
    sign_in(http, idp.url, authorization(oidc_client, prompt="login"), "carol")  # a new session here
    page = http.get(f"{idp.url}/oidc/logout", params={"id_token_hint": old}, allow_redirects=False)
    assert page.status_code == 200 and 'name="confirm"' in page.text


def test_logout_refuses_an_unregistered_post_logout_redirect_uri(idp, oidc_client):
    http = requests.Session()
    tokens = sign_in_for_tokens(http, idp.url, oidc_client, "dave")
    answer = http.get(
        f"{idp.url}/oidc/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/steal"},
        allow_redirects=False,
    )
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert _still_signed_in(http, idp.url, oidc_client)


def test_logout_refuses_a_forged_id_token_hint(idp, oidc_client):
    http = requests.Session()
    tokens = sign_in_for_tokens(http, idp.url, oidc_client, "alice")
    header, payload, signature = tokens["id_token"].split(".")
    forged = ".".join([header, payload, signature[::-1]])
    answer = http.get(
        f"{idp.url}/oidc/logout",
        params={"id_token_hint": forged, "post_logout_redirect_uri": SIGNED_OUT},
        allow_redirects=False,
    )
    assert answer.status_code == 400 and "Location" not in answer.headers


# --- dynamic client registration ---------------------------------------------------------------


def _register(idp_url, body, token=REGISTRATION_TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{idp_url}/oidc/register", json=body, headers=headers, timeout=10)


def test_registration_returns_credentials_for_a_confidential_client(idp):
    answer = _register(idp.url, {"redirect_uris": ["https://app.example.test/cb"], "client_name": "App"})
    assert answer.status_code == 201
    data = answer.json()
    assert data["client_id"] and len(data["client_secret"]) >= 32 and data["client_id_issued_at"] > 0
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    # RFC 7591 3.2.1: the defaults the server applied are in the answer too
    assert data["grant_types"] == ["authorization_code"] and data["response_types"] == ["code"]
    assert data["redirect_uris"] == ["https://app.example.test/cb"] and data["client_name"] == "App"


def test_registration_of_a_public_client_returns_no_secret(idp):
    answer = _register(idp.url, {"redirect_uris": ["http://127.0.0.1:8765/cb"], "token_endpoint_auth_method": "none"})
    assert answer.status_code == 201 and "client_secret" not in answer.json()


@pytest.mark.parametrize("token", ["wrong-registration-token", None])
def test_registration_needs_the_initial_access_token(idp, token):
    answer = _register(idp.url, {"redirect_uris": ["https://app.example.test/cb"]}, token=token)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "redirect_uris",
    [
        ["https://app.example.test/cb#fragment"],
        ["/relative/cb"],
        ["javascript:alert(1)"],
        ["ftp://app.example.test/"],
        ["https://user@app.example.test/cb"],
        [],
        "https://app.example.test/cb",
        [42],
    ],
    ids=["fragment", "relative", "javascript", "ftp", "userinfo", "empty", "not-a-list", "not-a-string"],
)
def test_registration_refuses_bad_redirect_uris(idp, redirect_uris):
    answer = _register(idp.url, {"redirect_uris": redirect_uris})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "metadata",
    [
        {"grant_types": ["password"]},
        {"grant_types": ["refresh_token"]},
        {"response_types": ["token"]},
        {"response_types": ["code", "code id_token"]},
        {"grant_types": ["authorization_code", "client_credentials"]},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"post_logout_redirect_uris": ["nope"]},
        {"client_name": "x" * 500},
        {"client_name": "App\u202eevil"},
        {"scope": "openid admin"},
        {"grant_types": 42},
        {"logo_uri": 42},
        {"jwks": {"a": 1}},
        {"token_endpoint_auth_method": "none", "post_logout_redirect_uris": ["http://rp.example/"]},
    ],
    ids=[
        "password-grant",
        "no-code-grant",
        "token-response",
        "hybrid-response",
        "client-credentials-grant",
        "auth-method",
        "logout-uri",
        "long-name",
        "name-with-a-right-to-left-override",
        "scope",
        "grant-types-number",
        "logo-uri-number",
        "jwks-garbage",
        "public-http-logout-uri",
    ],
)
def test_registration_refuses_bad_metadata(idp, metadata):
    answer = _register(idp.url, {"redirect_uris": ["https://app.example.test/cb"], **metadata})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client_metadata", answer.text


# --- consent for clients that registered themselves ------------------------------------------------


def test_a_self_registered_client_asks_consent_once_and_it_is_remembered(idp):
    client = register_client(idp.url)
    http = requests.Session()
    page = sign_in(http, idp.url, authorization(client, scope="openid email"), "bob", consent=False)
    assert is_consent_page(page) and "test client" in page.text and "rp.example.test" in page.text
    assert "your email address" in page.text
    forged = http.post(
        idp.url + re.search(r'action="([^"]*)"', page.text).group(1),
        data={**form_fields(page.text), "csrf_token": "forged", "decision": "allow"},
        allow_redirects=False,
    )
    assert forged.status_code == 400 and "Form expired" in forged.text
    answer = redirect_params(answer_consent(http, idp.url, page))
    assert "code" in answer
    # remembered: the same scopes again go straight through, more scopes ask again
    assert "code" in redirect_params(sign_in(http, idp.url, authorization(client, scope="openid"), None, consent=False))
    more = sign_in(http, idp.url, authorization(client, scope="openid email groups"), None, consent=False)
    assert is_consent_page(more) and "the groups you belong to" in more.text
    # prompt=consent asks even for what was allowed; prompt=none cannot ask: consent_required
    assert is_consent_page(sign_in(http, idp.url, authorization(client, prompt="consent"), None, consent=False))
    silent = authorization(client, scope="openid email groups", prompt="none")
    assert redirect_params(sign_in(http, idp.url, silent, None, consent=False))["error"] == "consent_required"


def test_denied_consent_is_access_denied_for_the_client(idp):
    client = register_client(idp.url)
    http = requests.Session()
    request = authorization(client)
    page = sign_in(http, idp.url, request, "carol", consent=False)
    answer = redirect_params(answer_consent(http, idp.url, page, decision="deny"))
    assert answer["error"] == "access_denied" and answer["state"] == request.state and "code" not in answer
    assert is_consent_page(sign_in(http, idp.url, authorization(client), None, consent=False))  # not remembered


def test_example_corp_s_own_clients_ask_no_consent(idp):
    http = requests.Session()
    answer = sign_in(http, idp.url, authorization(PORTAL_CLIENT), "dave", consent=False)
    assert "code" in redirect_params(answer)


# --- round trips: the login form answers the request, the sign-in's POST answers with the code ------------


def _counting(http: requests.Session) -> list[str]:
    """Every request the browser makes, as "METHOD path"."""
    seen: list[str] = []
    http.hooks["response"].append(lambda answer, *args, **kwargs: seen.append(f"{answer.request.method} {answer.url}"))
    return seen


def test_a_password_login_takes_two_requests_at_the_idp(idp):
    """The authorization request is answered with the login form (no redirect to /login), and the POST that
    signs the person in answers with the code (no redirect back to the request)."""
    http = requests.Session()
    seen = _counting(http)
    request = authorization(PORTAL_CLIENT)
    page = http.get(f"{idp.url}/oidc/authorize", params=request.params, allow_redirects=False)
    assert is_login_page(page)
    fields = {**form_fields(page.text), "username": "bob", "password": "Welcome-2026"}
    answer = http.post(f"{idp.url}/login", data=fields, allow_redirects=False)
    assert answer.status_code == 303  # a POST is answered with a See Other to the client, which GETs it
    assert answer.headers["Location"].startswith(PORTAL_CLIENT.redirect_uri + "?")
    assert redirect_params(answer)["state"] == request.state and "code" in redirect_params(answer)
    assert "idp_session=" in answer.headers["Set-Cookie"]
    assert [line.split("?")[0] for line in seen] == [f"GET {idp.url}/oidc/authorize", f"POST {idp.url}/login"]
    # signed in: the next request is answered at once, no form
    again = http.get(f"{idp.url}/oidc/authorize", params=authorization(PORTAL_CLIENT).params, allow_redirects=False)
    assert again.status_code == 302 and "code" in redirect_params(again)


def test_the_totp_step_answers_with_the_code_too(private_idp):
    """With MFA: the form, the password (to the TOTP step), the step's page, the code: four requests."""
    client = Client(
        "access-portal", "client_secret_basic", "demo-portal-oidc-secret", redirect_uri=PORTAL_CLIENT.redirect_uri
    )
    http = requests.Session()
    seen = _counting(http)
    request = authorization(client)
    page = http.get(f"{private_idp.url}/oidc/authorize", params=request.params, allow_redirects=False)
    answer = http.post(
        f"{private_idp.url}/login",
        data={**form_fields(page.text), "username": "erin", "password": "Welcome-2026"},
        allow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/login/mfa"
    step = http.get(f"{private_idp.url}/login/mfa")
    answer = http.post(
        f"{private_idp.url}/login/mfa",
        data={**form_fields(step.text), "totp": fresh_totp(private_idp.url)},
        allow_redirects=False,
    )
    assert answer.status_code == 303 and "code" in redirect_params(answer)
    assert redirect_params(answer)["state"] == request.state
    assert len(seen) == 4


def test_the_login_form_shown_at_the_request_keeps_its_csrf_check(idp):
    request = authorization(PORTAL_CLIENT)
    http = requests.Session()
    page = http.get(f"{idp.url}/oidc/authorize", params=request.params, allow_redirects=False)
    fields = {**form_fields(page.text), "username": "bob", "password": "Welcome-2026", "csrf_token": "forged"}
    answer = http.post(f"{idp.url}/login", data=fields, allow_redirects=False)
    assert answer.status_code == 400 and "Location" not in answer.headers
