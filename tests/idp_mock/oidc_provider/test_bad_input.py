"""Bad input to the OpenID provider, one case per test: each gets the protocol's error, never a 500,
and never a redirect to an address the client has not registered."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.oidc_rp import (
    CALLBACK,
    PRIVATE_CODE_LIFETIME,
    authorization,
    authorize_url,
    redeem,
    redirect_params,
    register_client,
    sign_in,
    sign_in_for_code,
    sign_in_for_tokens,
    token_request,
    userinfo,
)


def _authorize(idp_url, request, http=None):
    return (http or requests.Session()).get(authorize_url(idp_url, request), allow_redirects=False)


def _refused_without_redirect(answer):
    assert answer.status_code == 400, answer.text[:300]
    assert "Location" not in answer.headers
    assert answer.headers["Content-Type"].startswith("text/html")


def _error_redirect(answer, request, error):
    params = redirect_params(answer)
    assert answer.headers["Location"].startswith(CALLBACK + "?")
    assert params["error"] == error, params
    assert params.get("state") == request.state
    return params


def _token_error(answer, status, error):
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["error"] == error
    return answer.json()


# --- authorization endpoint: client and redirect URI -----------------------------------------


def test_unknown_client_id_gets_an_error_page(idp, oidc_client):
    _refused_without_redirect(_authorize(idp.url, authorization(oidc_client, client_id="no-such-client")))


def test_missing_client_id_gets_an_error_page(idp, oidc_client):
    _refused_without_redirect(_authorize(idp.url, authorization(oidc_client, client_id=None)))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        CALLBACK + "/more",
        CALLBACK + "?x=1",
        CALLBACK.upper(),
        CALLBACK + "#",
        "https://rp.example.test/",
        CALLBACK[:-1],
    ],
    ids=["other-host", "longer-path", "extra-query", "case", "fragment", "prefix", "shorter"],
)
def test_unregistered_redirect_uri_is_never_redirected_to(idp, oidc_client, redirect_uri):
    _refused_without_redirect(_authorize(idp.url, authorization(oidc_client, redirect_uri=redirect_uri)))


def test_missing_redirect_uri_gets_an_error_page(idp, oidc_client):
    _refused_without_redirect(_authorize(idp.url, authorization(oidc_client, redirect_uri=None)))


def test_repeated_redirect_uri_gets_an_error_page(idp, oidc_client):
    url = authorize_url(idp.url, authorization(oidc_client)) + "&redirect_uri=https%3A%2F%2Fevil.example%2F"
    _refused_without_redirect(requests.get(url, allow_redirects=False, timeout=10))


# --- authorization endpoint: other errors go back to the client ------------------------------


def test_public_client_without_pkce_is_refused(idp, public_client):
    request = authorization(public_client, pkce=False)
    _error_redirect(_authorize(idp.url, request), request, "invalid_request")


def test_plain_pkce_method_is_refused(idp, oidc_client):
    request = authorization(oidc_client, code_challenge_method="plain")
    _error_redirect(_authorize(idp.url, request), request, "invalid_request")


def test_pkce_challenge_without_method_is_refused(idp, oidc_client):
    request = authorization(oidc_client, code_challenge_method=None)  # would mean plain
    _error_redirect(_authorize(idp.url, request), request, "invalid_request")


def test_a_nonce_used_before_by_the_client_is_refused(idp, oidc_client):
    first = authorization(oidc_client)
    sign_in_for_tokens(requests.Session(), idp.url, oidc_client, "bob", nonce=first.nonce)
    replay = authorization(oidc_client, nonce=first.nonce)
    _error_redirect(_authorize(idp.url, replay), replay, "invalid_request")


def test_response_type_token_is_refused(idp, oidc_client):
    request = authorization(oidc_client, response_type="token")
    _error_redirect(_authorize(idp.url, request), request, "unsupported_response_type")


def test_response_type_with_quotes_is_refused(idp, oidc_client):
    request = authorization(oidc_client, response_type='co"de\\')
    _error_redirect(_authorize(idp.url, request), request, "unsupported_response_type")


def test_scope_without_openid_is_refused(idp, oidc_client):
    request = authorization(oidc_client, scope="profile email")
    _error_redirect(_authorize(idp.url, request), request, "invalid_scope")


def test_unknown_scope_is_refused(idp, oidc_client):
    request = authorization(oidc_client, scope="openid admin")
    _error_redirect(_authorize(idp.url, request), request, "invalid_scope")


def test_prompt_none_combined_with_login_is_refused(idp, oidc_client):
    request = authorization(oidc_client, prompt="none login")
    _error_redirect(_authorize(idp.url, request), request, "invalid_request")


def test_max_age_that_is_not_a_number_is_refused(idp, oidc_client):
    request = authorization(oidc_client, max_age="soon")
    _error_redirect(_authorize(idp.url, request), request, "invalid_request")


def test_repeated_state_is_refused(idp, oidc_client):
    request = authorization(oidc_client)
    answer = requests.get(authorize_url(idp.url, request) + "&state=second", allow_redirects=False, timeout=10)
    params = redirect_params(answer)
    assert params["error"] == "invalid_request" and "state" not in params


def test_replayed_authorization_request_is_refused(idp, oidc_client):
    http = requests.Session()
    request, _ = sign_in_for_code(http, idp.url, oidc_client, "alice")
    _error_redirect(_authorize(idp.url, request, http), request, "invalid_request")  # same nonce again


def test_huge_state_in_a_post_gets_an_error_without_echoing_it(idp, oidc_client):
    request = authorization(oidc_client, state="s" * 100_000)
    answer = requests.post(f"{idp.url}/oidc/authorize", data=request.params, allow_redirects=False, timeout=10)
    params = redirect_params(answer)
    assert params["error"] == "invalid_request" and "state" not in params
    assert len(answer.headers["Location"]) < 1000


def test_huge_state_in_a_query_is_refused(idp, oidc_client):
    answer = _authorize(idp.url, authorization(oidc_client, state="s" * 100_000))
    assert 400 <= answer.status_code < 500 and "Location" not in answer.headers


def test_expired_login_continuation_gets_an_error_page(idp):
    answer = requests.get(f"{idp.url}/oidc/authorize/continue/not-a-pending-request", allow_redirects=False, timeout=10)
    _refused_without_redirect(answer)


def test_login_does_not_continue_to_another_site(idp):
    answer = requests.get(f"{idp.url}/login", params={"continue": "https://evil.example/"}, timeout=10)
    assert answer.status_code == 400


# --- token endpoint: codes and PKCE ----------------------------------------------------------


def test_missing_code_verifier_is_refused(idp, oidc_client):
    _, code = sign_in_for_code(requests.Session(), idp.url, oidc_client, "bob")
    answer = token_request(
        idp.url, oidc_client, grant_type="authorization_code", code=code, redirect_uri=oidc_client.redirect_uri
    )
    _token_error(answer, 400, "invalid_request")


def test_wrong_code_verifier_is_refused(idp, oidc_client):
    request, code = sign_in_for_code(requests.Session(), idp.url, oidc_client, "bob")
    request.verifier = "x" * 64
    _token_error(redeem(idp.url, oidc_client, request, code), 400, "invalid_grant")


def test_public_client_without_code_verifier_is_refused(idp, public_client):
    request, code = sign_in_for_code(requests.Session(), idp.url, public_client, "bob")
    request.verifier = None
    _token_error(redeem(idp.url, public_client, request, code), 400, "invalid_request")


def test_reused_code_fails_and_revokes_its_tokens(idp, oidc_client):
    request, code = sign_in_for_code(requests.Session(), idp.url, oidc_client, "carol")
    first = redeem(idp.url, oidc_client, request, code)
    assert first.status_code == 200
    assert userinfo(idp.url, first.json()["access_token"]).status_code == 200
    _token_error(redeem(idp.url, oidc_client, request, code), 400, "invalid_grant")
    revoked = userinfo(idp.url, first.json()["access_token"])
    assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    refresh = token_request(
        idp.url, oidc_client, grant_type="refresh_token", refresh_token=first.json()["refresh_token"]
    )
    _token_error(refresh, 400, "invalid_grant")


def test_expired_code_is_refused(private_idp):
    client = register_client(private_idp.url)
    request, code = sign_in_for_code(requests.Session(), private_idp.url, client, "dave")
    time.sleep(PRIVATE_CODE_LIFETIME + 0.1)  # waits out the private IdP's short configured code lifetime
    _token_error(redeem(private_idp.url, client, request, code), 400, "invalid_grant")


def test_unknown_code_is_refused(idp, oidc_client):
    answer = token_request(
        idp.url,
        oidc_client,
        grant_type="authorization_code",
        code="made-up",
        redirect_uri=oidc_client.redirect_uri,
        code_verifier="v" * 50,
    )
    _token_error(answer, 400, "invalid_grant")


def test_code_of_another_client_is_refused(idp, oidc_client):
    request, code = sign_in_for_code(requests.Session(), idp.url, oidc_client, "dave")
    other = register_client(idp.url)
    _token_error(redeem(idp.url, other, request, code), 400, "invalid_grant")


def test_redirect_uri_differing_from_the_authorization_request_is_refused(idp):
    client = register_client(idp.url, redirect_uris=[CALLBACK, CALLBACK + "2"])
    request, code = sign_in_for_code(requests.Session(), idp.url, client, "dave")
    answer = token_request(
        idp.url,
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=CALLBACK + "2",
        code_verifier=request.verifier,
    )
    _token_error(answer, 400, "invalid_grant")


# --- token endpoint: client authentication ---------------------------------------------------


def test_wrong_client_secret_basic_is_401_with_www_authenticate(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data={"grant_type": "authorization_code", "code": "x"},
        auth=(oidc_client.client_id, "wrong-secret"),
        timeout=10,
    )
    _token_error(answer, 401, "invalid_client")
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert "(" not in answer.json()["error_description"]  # words, not a Python tuple


def test_wrong_client_secret_post_is_invalid_client(idp):
    client = register_client(idp.url, auth_method="client_secret_post")
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data={"grant_type": "authorization_code", "code": "x", "client_id": client.client_id, "client_secret": "wrong"},
        timeout=10,
    )
    _token_error(answer, 400, "invalid_client")
    assert "WWW-Authenticate" not in answer.headers  # only a client that tried HTTP Basic is told to use it
    description = answer.json()["error_description"]
    assert description.startswith("Client authentication failed") and "(" not in description, description


def test_confidential_client_without_secret_is_invalid_client(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data={"grant_type": "authorization_code", "code": "x", "client_id": oidc_client.client_id},
        timeout=10,
    )
    _token_error(answer, 400, "invalid_client")  # it did not try HTTP Basic: no 401 asking for it
    assert "WWW-Authenticate" not in answer.headers


def test_unknown_client_at_the_token_endpoint_is_invalid_client(idp):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data={"grant_type": "authorization_code", "code": "x"},
        auth=("no-such-client", "secret"),
        timeout=10,
    )
    _token_error(answer, 401, "invalid_client")


def test_basic_credentials_that_are_not_utf8_are_invalid_client(idp):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data={"grant_type": "authorization_code", "code": "x"},
        headers={"Authorization": "Basic //79"},
        timeout=10,
    )
    _token_error(answer, 401, "invalid_client")


# --- token endpoint: malformed requests --------------------------------------------------------


def test_unknown_grant_type_is_refused(idp, oidc_client):
    _token_error(
        token_request(idp.url, oidc_client, grant_type="password", username="alice", password="x"),
        400,
        "unsupported_grant_type",
    )


def test_missing_grant_type_is_refused(idp, oidc_client):
    _token_error(token_request(idp.url, oidc_client, code="x"), 400, "unsupported_grant_type")


def test_json_body_at_the_token_endpoint_is_refused(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data='{"grant_type": "authorization_code", ',
        headers={"Content-Type": "application/json"},
        auth=(oidc_client.client_id, oidc_client.secret),
        timeout=10,
    )
    _token_error(answer, 400, "invalid_request")


def test_garbage_form_body_is_refused(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data=b"\xff\xfe%%%&&==\x00grant_type",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(oidc_client.client_id, oidc_client.secret),
        timeout=10,
    )
    _token_error(answer, 400, "unsupported_grant_type")


def test_broken_multipart_body_is_refused(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data=b"--x\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=10,
    )
    _token_error(answer, 400, "invalid_request")


def test_one_megabyte_body_is_refused(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/token",
        data={"grant_type": "authorization_code", "code": "c" * 1_000_000},
        auth=(oidc_client.client_id, oidc_client.secret),
        timeout=10,
    )
    _token_error(answer, 413, "invalid_request")


def test_refresh_token_of_another_client_is_refused(idp, oidc_client):
    tokens = sign_in_for_tokens(requests.Session(), idp.url, oidc_client, "alice")
    other = register_client(idp.url)
    _token_error(
        token_request(idp.url, other, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
        400,
        "invalid_grant",
    )


def test_refresh_for_a_client_without_the_refresh_grant_is_refused(idp):
    client = register_client(idp.url, refresh=False)
    tokens = sign_in_for_tokens(requests.Session(), idp.url, client, "alice")
    assert "refresh_token" not in tokens
    _token_error(
        token_request(idp.url, client, grant_type="refresh_token", refresh_token="x"), 400, "unauthorized_client"
    )


# --- registration and userinfo ---------------------------------------------------------------


def test_registration_with_malformed_json_is_refused(idp):
    answer = requests.post(
        f"{idp.url}/oidc/register",
        data='{"redirect_uris": [',
        headers={"Authorization": "Bearer demo-registration-token", "Content-Type": "application/json"},
        timeout=10,
    )
    _token_error(answer, 400, "invalid_client_metadata")


@pytest.mark.parametrize(
    "body",
    [b"[" * 2000 + b"]" * 2000, b'{"redirect_uris": ["https://app.example.test/cb"], "client_name": "Evil\\ud800App"}'],
    ids=["nested-too-deeply", "lone-surrogate"],
)
@pytest.mark.parametrize("token", [True, False])
def test_registration_with_json_nobody_can_keep_is_refused(idp, body, token):
    """Deep nesting was a 500 even without a token; a client name with a lone surrogate was registered, and
    then every person's sign-in to that client ended in a 500 at its consent page."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer demo-registration-token"
    answer = requests.post(f"{idp.url}/oidc/register", data=body, headers=headers, timeout=10)
    if token:
        _token_error(answer, 400, "invalid_client_metadata")
    else:
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"


def test_registration_with_a_json_array_is_refused(idp):
    answer = requests.post(
        f"{idp.url}/oidc/register",
        json=["https://app.example.test/cb"],
        headers={"Authorization": "Bearer demo-registration-token"},
        timeout=10,
    )
    _token_error(answer, 400, "invalid_client_metadata")


def test_registration_with_a_one_megabyte_body_is_refused(idp):
    answer = requests.post(
        f"{idp.url}/oidc/register",
        json={"redirect_uris": [CALLBACK], "client_name": "x" * 1_000_000},
        headers={"Authorization": "Bearer demo-registration-token"},
        timeout=10,
    )
    _token_error(answer, 413, "invalid_request")


@pytest.mark.parametrize(
    "method, path", [("GET", "/oidc/token"), ("DELETE", "/oidc/userinfo"), ("PUT", "/oidc/register")]
)
def test_a_method_an_endpoint_does_not_take_is_an_oauth_error(idp, method, path):
    """Found while routing, before Flask knows the blueprint: it was the HTML error page (sso_common.web)."""
    answer = requests.request(method, idp.url + path, timeout=10)
    assert answer.status_code == 405 and answer.json()["error"] == "invalid_request"
    assert method not in answer.headers["Allow"] and "POST" in answer.headers["Allow"]


def test_userinfo_with_a_non_bearer_scheme_is_refused(idp):
    answer = requests.get(f"{idp.url}/oidc/userinfo", headers={"Authorization": "Basic YTpi"}, timeout=10)
    assert answer.status_code == 401


# --- logout ------------------------------------------------------------------------------------


def test_logout_with_a_garbage_id_token_hint_is_refused(idp):
    answer = requests.get(
        f"{idp.url}/oidc/logout", params={"id_token_hint": "garbage"}, allow_redirects=False, timeout=10
    )
    _refused_without_redirect(answer)


def test_logout_redirect_without_a_client_is_refused(idp):
    answer = requests.get(
        f"{idp.url}/oidc/logout",
        params={"post_logout_redirect_uri": "https://evil.example/"},
        allow_redirects=False,
        timeout=10,
    )
    _refused_without_redirect(answer)


def test_logout_with_a_hint_for_another_client_is_refused(idp, oidc_client, public_client):
    tokens = sign_in_for_tokens(requests.Session(), idp.url, oidc_client, "bob")
    answer = requests.get(
        f"{idp.url}/oidc/logout",
        params={"id_token_hint": tokens["id_token"], "client_id": public_client.client_id},
        allow_redirects=False,
        timeout=10,
    )
    _refused_without_redirect(answer)


def test_logout_with_a_huge_state_is_refused(idp, oidc_client):
    answer = requests.post(
        f"{idp.url}/oidc/logout",
        data={"client_id": oidc_client.client_id, "state": "s" * 100_000},
        allow_redirects=False,
        timeout=10,
    )
    _refused_without_redirect(answer)


def test_signed_out_browser_is_not_sent_back_without_login(idp, oidc_client):
    request = authorization(oidc_client)
    answer = sign_in(requests.Session(), idp.url, request, username=None)
    assert answer.status_code == 200 and 'action="/login"' in answer.text
