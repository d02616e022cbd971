"""sso-oidc on the portal, in process: RegisterClient, the device flow with its verification page,
CreateToken's grants, and every bad input answered the AWS way (a 4xx with `__type` and
x-amzn-ErrorType, never a 500, never a token)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from broker.identity_center.codes import pkce_challenge
from broker.identity_center.grants import CODE_GRANT, DEVICE_GRANT
from broker_login.forms import read_page
from sso_common.store import AuditQuery
from tests.support.identity_center import (
    create_token,
    decide,
    device_tokens,
    poll,
    refresh,
    register,
    sign_in,
    start,
)

VERIFIER = "v" * 20 + "-._~" + "0123456789" * 3
REDIRECT = "http://127.0.0.1/oauth/callback"


def aws_error(response, name: str, status: int = 400) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.headers["x-amzn-ErrorType"] == name and body["__type"] == name
    assert "accessToken" not in body and "refreshToken" not in body
    return body


def test_register_client_answers_like_aws(client):
    answer = register(client)
    body = answer.get_json()
    assert answer.status_code == 200
    assert {"clientId", "clientSecret", "clientIdIssuedAt", "clientSecretExpiresAt"} <= body.keys()
    assert body["clientSecretExpiresAt"] - body["clientIdIssuedAt"] == 90 * 86400


@pytest.mark.parametrize(
    "body, error",
    [
        ({"clientType": "confidential"}, "InvalidClientMetadataException"),
        ({"clientName": ""}, "InvalidRequestException"),
        ({"clientName": 7}, "InvalidRequestException"),
        ({"clientName": "AWS CLI\nApproved by your administrator"}, "InvalidRequestException"),
        ({"clientName": "evil\u202eILC SWA"}, "InvalidRequestException"),  # a right-to-left override
        ({"scopes": ["sso:admin"]}, "InvalidScopeException"),
        ({"scopes": "sso:account:access"}, "InvalidRequestException"),
        ({"grantTypes": ["password"]}, "UnsupportedGrantTypeException"),
        ({"grantTypes": [CODE_GRANT], "redirectUris": ["https://evil.example/cb"]}, "InvalidRedirectUriException"),
        ({"grantTypes": [CODE_GRANT]}, "InvalidRedirectUriException"),
    ],
)
def test_register_client_refuses_bad_metadata(client, body, error):
    aws_error(register(client, **body), error)


@pytest.mark.parametrize("path", ["/client/register", "/device_authorization", "/token"])
@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"", b"\xff\xfe", b'{"a": "' + b"x" * 300_000 + b'"}'])
def test_malformed_or_oversized_bodies_are_invalid_requests(client, path, data):
    body = aws_error(client.post(path, data=data, content_type="application/x-amz-json-1.1"), "InvalidRequestException")
    assert body["error"] == "invalid_request" and body["error_description"]


DEEP = b"[" * 2000 + b"]" * 2000  # past the interpreter's recursion limit, well under the size limit


@pytest.mark.parametrize("path", ["/client/register", "/device_authorization", "/token"])
@pytest.mark.parametrize(
    "data",
    [DEEP, b'{"clientId": "\\ud800", "clientSecret": "x", "clientName": "x"}', b'{"clientName": "\xed\xa0\x80"}'],
    ids=["nested-too-deeply", "lone-surrogate-escape", "lone-surrogate-bytes"],
)
def test_json_nobody_can_store_or_show_is_an_invalid_request(client, path, data):
    """json.loads takes both; the store's key hash and every page then failed with a 500."""
    body = aws_error(client.post(path, data=data, content_type="application/json"), "InvalidRequestException")
    assert body["message"] == "The request body is not valid JSON."


def test_a_client_name_with_a_lone_surrogate_is_not_registered(client):
    """Registered, its name broke the device page after the approval was recorded, and the audit page for good."""
    aws_error(register(client, clientName="evil\ud800name"), "InvalidRequestException")


def test_device_flow_pending_then_approved_then_spent(app, client, clock, person):
    sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    assert authorization["expiresIn"] == 600 and authorization["interval"] == 1
    assert authorization["verificationUriComplete"] == f"http://localhost/device?user_code={authorization['userCode']}"
    assert len(authorization["userCode"]) == 9 and authorization["userCode"][4] == "-"
    pending = aws_error(poll(client, registration, authorization["deviceCode"]), "AuthorizationPendingException")
    assert pending["error"] == "authorization_pending"

    page = client.get(f"/device?user_code={authorization['userCode'].lower()}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "test-cli" in text and authorization["userCode"] in text
    assert read_page(text).marker == "confirm"
    done = decide(client, authorization["userCode"])
    assert done.status_code == 200 and read_page(done.get_data(as_text=True)).heading == "Request approved"

    clock.now += 2
    tokens = poll(client, registration, authorization["deviceCode"]).get_json()
    assert tokens["tokenType"] == "Bearer" and 8 * 3600 - 10 < tokens["expiresIn"] <= 8 * 3600
    assert tokens["accessToken"] != tokens["refreshToken"]
    clock.now += 2
    aws_error(poll(client, registration, authorization["deviceCode"]), "InvalidGrantException")
    used = client.get(f"/device?user_code={authorization['userCode']}")
    assert used.status_code == 409 and "already" in used.get_data(as_text=True)


def test_polling_faster_than_the_interval_is_told_to_slow_down(client):
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    aws_error(poll(client, registration, authorization["deviceCode"]), "AuthorizationPendingException")
    body = aws_error(poll(client, registration, authorization["deviceCode"]), "SlowDownException")
    assert body["error"] == "slow_down"


def test_slow_down_adds_five_seconds_to_the_interval(client, clock):
    registration = register(client).get_json()
    device_code = start(client, registration).get_json()["deviceCode"]
    poll(client, registration, device_code)
    aws_error(poll(client, registration, device_code), "SlowDownException")
    clock.now += 2  # the old interval is not enough any more
    aws_error(poll(client, registration, device_code), "SlowDownException")
    clock.now += 12
    aws_error(poll(client, registration, device_code), "AuthorizationPendingException")


def test_a_denied_request_gets_access_denied(app, client, person):
    sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    denied = decide(client, authorization["userCode"], "deny")
    assert read_page(denied.get_data(as_text=True)).heading == "Request denied"
    body = aws_error(poll(client, registration, authorization["deviceCode"]), "AccessDeniedException")
    assert body["error"] == "access_denied"
    events = app.extensions["broker"].audit.query(AuditQuery(event_type="cli_sign_in"))
    assert events[0]["outcome"] == "failure" and events[0]["channel"] == "sso-api" and "denied" in events[0]["reason"]


def test_an_expired_device_code_is_expired_for_the_client_and_the_page(app, client, clock, person):
    sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    opened = client.get(f"/device?user_code={authorization['userCode']}")  # approved too late, below
    form = next(f for f in read_page(opened.get_data(as_text=True)).forms if ("decision", "approve") in f.buttons)
    clock.now += 601
    body = aws_error(poll(client, registration, authorization["deviceCode"]), "ExpiredTokenException")
    assert body["error"] == "expired_token"
    page = client.get(f"/device?user_code={authorization['userCode']}")
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    late = client.post("/device", data={**form.inputs, "decision": "approve"})
    assert late.status_code == 410
    aws_error(poll(client, registration, authorization["deviceCode"]), "ExpiredTokenException")


def test_a_wrong_device_code_or_another_clients_code_is_an_invalid_grant(client):
    registration, other = register(client).get_json(), register(client).get_json()
    device_code = start(client, registration).get_json()["deviceCode"]
    aws_error(poll(client, registration, "bdc-made-up"), "InvalidGrantException")
    aws_error(poll(client, other, device_code), "InvalidGrantException")


def test_unknown_or_wrongly_authenticated_clients_are_refused(client):
    registration = register(client).get_json()
    for changed in (
        {"clientSecret": registration["clientSecret"] + "x"},
        {"clientId": "unknown"},
        {"clientSecret": "bsc-" + "A" * 64},
    ):
        body = aws_error(start(client, {**registration, **changed}), "InvalidClientException", 401)
        assert body["error"] == "invalid_client"
        aws_error(poll(client, {**registration, **changed}, "bdc-x"), "InvalidClientException", 401)


def test_an_expired_client_is_refused(client, clock):
    registration = register(client).get_json()
    clock.now += 90 * 86400 + 1
    aws_error(start(client, registration), "InvalidClientException", 401)


def test_start_url_must_be_this_portal(client):
    registration = register(client).get_json()
    answer = client.post(
        "/device_authorization",
        json={
            **{k: registration[k] for k in ("clientId", "clientSecret")},
            "startUrl": "https://d-123.awsapps.com/start",
        },
    )
    aws_error(answer, "InvalidRequestException")


def test_grant_types_the_client_did_not_register_are_unauthorized(client):
    registration = register(client, grantTypes=[DEVICE_GRANT]).get_json()
    answer = refresh(client, registration, "brt-x")
    aws_error(answer, "UnauthorizedClientException")
    answer = create_token(client, registration, "password")
    aws_error(answer, "UnsupportedGrantTypeException")


def test_refresh_rotates_and_a_spent_refresh_token_is_refused(app, client, person):
    registration, tokens = device_tokens(app, client, person("bob"))
    renewed = refresh(client, registration, tokens["refreshToken"]).get_json()
    assert renewed["accessToken"] != tokens["accessToken"] and renewed["refreshToken"] != tokens["refreshToken"]
    again = refresh(client, registration, renewed["refreshToken"])
    assert again.status_code == 200
    aws_error(refresh(client, registration, tokens["refreshToken"]), "InvalidGrantException")


def test_reusing_a_rotated_refresh_token_revokes_the_whole_grant(app, client, person):
    """RFC 9700 §4.14.2: a rotated refresh token presented again means two parties hold the sign-in;
    the server cannot tell which is legitimate, so every token of the grant ends."""
    registration, tokens = device_tokens(app, client, person("bob"))
    renewed = refresh(client, registration, tokens["refreshToken"]).get_json()
    body = aws_error(refresh(client, registration, tokens["refreshToken"]), "InvalidGrantException")
    assert body["error"] == "invalid_grant"
    aws_error(refresh(client, registration, renewed["refreshToken"]), "InvalidGrantException")
    for spent in (tokens, renewed):
        answer = client.get("/assignment/accounts", headers={"x-amz-sso_bearer_token": spent["accessToken"]})
        aws_error(answer, "UnauthorizedException", 401)


def test_a_refresh_token_presented_by_another_client_is_refused_and_not_spent(app, client, person):
    """Client authentication makes the token useless to another client, so refusing is enough; spending
    it (or revoking the grant) would let anyone who glimpsed it sign its owner out."""
    registration, tokens = device_tokens(app, client, person("bob"))
    other = register(client).get_json()
    aws_error(refresh(client, other, tokens["refreshToken"]), "InvalidGrantException")
    assert (
        client.get("/assignment/accounts", headers={"x-amz-sso_bearer_token": tokens["accessToken"]}).status_code == 200
    )
    renewed = refresh(client, registration, tokens["refreshToken"])
    assert renewed.status_code == 200 and renewed.get_json()["refreshToken"]


def test_device_page_needs_sign_in_and_comes_back_with_the_code(client):
    page = client.get("/device?user_code=BCDF-GHJK")
    links = read_page(page.get_data(as_text=True)).links
    assert "/login/example-corp-oidc?next=/device%3Fuser_code%3DBCDF-GHJK" in links


def test_device_page_explains_unknown_and_malformed_codes(app, client, person):
    sign_in(app, client, person("bob"))
    unknown = client.get("/device?user_code=BCDF-GHJK")
    assert unknown.status_code == 404 and "unknown" in unknown.get_data(as_text=True)
    malformed = client.get("/device?user_code=hello")
    assert malformed.status_code == 400 and "not a valid code" in malformed.get_data(as_text=True)
    assert client.get("/device").status_code == 200


def test_guessing_user_codes_is_throttled_even_for_a_right_code(app, client, person):
    sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    user_code = start(client, registration).get_json()["userCode"]
    for _ in range(10):
        assert client.get("/device?user_code=BCDF-GHJK").status_code == 404
    assert client.get(f"/device?user_code={user_code}").status_code == 429


def test_approving_needs_the_csrf_token(app, client, person):
    sign_in(app, client, person("bob"))
    user_code = start(client, register(client).get_json()).get_json()["userCode"]
    answer = client.post("/device", data={"user_code": user_code, "decision": "approve"})
    assert answer.status_code == 400 and "Form expired" in answer.get_data(as_text=True)


# --- authorization code with PKCE ---------------------------------------------------------------


def code_client(client) -> dict:
    return register(
        client, grantTypes=[CODE_GRANT, "refresh_token"], redirectUris=[REDIRECT], issuerUrl="http://localhost"
    ).get_json()


def authorize_query(registration: dict, **overrides) -> str:
    params = {
        "response_type": "code",
        "client_id": registration["clientId"],
        "redirect_uri": "http://127.0.0.1:41234/oauth/callback",
        "state": "state-1",
        "code_challenge_method": "S256",
        "scopes": "sso:account:access",
        "code_challenge": pkce_challenge(VERIFIER),
        **overrides,
    }
    return "/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def allow(client, registration, decision="approve", **overrides):
    page = client.get(authorize_query(registration, **overrides))
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if ("decision", decision) in f.buttons)
    answer = client.post("/authorize", data={**form.inputs, "decision": decision})
    assert answer.status_code == 303
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "http://127.0.0.1:41234/oauth/callback"
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def redeem(client, registration, code, verifier=VERIFIER, redirect_uri="http://127.0.0.1:41234/oauth/callback"):
    return create_token(client, registration, CODE_GRANT, code=code, redirectUri=redirect_uri, codeVerifier=verifier)


def failing_once_at_the_grant(app, monkeypatch) -> list:
    """The store fails once, as the token endpoint writes the new grant (after it took the code)."""
    from broker.identity_center.grants import GRANT_KIND
    from sso_common.store.errors import StoreUnavailable

    store, failed = app.extensions["broker"].grants.store, []
    put = store.put

    def failing(kind, *rest):
        if kind == GRANT_KIND and not failed:
            failed.append(kind)
            raise StoreUnavailable("test store", "connection lost")
        return put(kind, *rest)

    monkeypatch.setattr(store, "put", failing)
    return failed


def test_a_device_code_redeemed_during_a_store_outage_can_be_redeemed_again(app, client, clock, person, monkeypatch):
    sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    decide(client, authorization["userCode"])
    failed = failing_once_at_the_grant(app, monkeypatch)
    clock.now += 2
    assert poll(client, registration, authorization["deviceCode"]).status_code == 503 and failed
    clock.now += 2
    retried = poll(client, registration, authorization["deviceCode"])  # the AWS CLI retries a 503
    assert retried.status_code == 200 and retried.get_json()["accessToken"]
    aws_error(poll(client, registration, authorization["deviceCode"]), "InvalidGrantException")  # spent now


def test_an_authorization_code_redeemed_during_a_store_outage_can_be_redeemed_again(app, client, person, monkeypatch):
    registration = code_client(client)
    sign_in(app, client, person("bob"))
    code = allow(client, registration)["code"]
    failing_once_at_the_grant(app, monkeypatch)
    assert redeem(client, registration, code).status_code == 503
    assert redeem(client, registration, code).status_code == 200
    aws_error(redeem(client, registration, code), "InvalidGrantException")


def test_a_code_redeemed_when_the_store_failed_at_the_session_check_can_be_redeemed_again(
    app, client, person, monkeypatch
):
    from sso_common.store.errors import StoreUnavailable

    registration = code_client(client)
    sign_in(app, client, person("bob"))
    code = allow(client, registration)["code"]
    grants, failed = app.extensions["broker"].grants, []
    live = grants._session_live

    def failing_once(reference):
        if not failed:
            failed.append(reference)
            raise StoreUnavailable("test store", "connection lost")
        return live(reference)

    monkeypatch.setattr(grants, "_session_live", failing_once)
    assert redeem(client, registration, code).status_code == 503 and failed
    assert redeem(client, registration, code).status_code == 200


def test_authorization_code_flow_with_pkce(app, client, person):
    registration = code_client(client)
    signin = client.get(authorize_query(registration))
    links = read_page(signin.get_data(as_text=True)).links
    assert any(link.startswith("/login/example-corp-oidc?next=/authorize%3Fresponse_type%3Dcode") for link in links)
    sign_in(app, client, person("bob"))
    consent = client.get(authorize_query(registration)).get_data(as_text=True)
    assert "test-cli" in consent and read_page(consent).marker == "confirm"
    answer = allow(client, registration)
    assert answer["state"] == "state-1"
    tokens = redeem(client, registration, answer["code"]).get_json()
    assert tokens["tokenType"] == "Bearer" and tokens["refreshToken"]
    aws_error(redeem(client, registration, answer["code"]), "InvalidGrantException")  # single use


@pytest.mark.parametrize(
    "change", [{"verifier": "w" * 43}, {"verifier": None}, {"redirect_uri": "http://127.0.0.1:1/oauth/callback"}]
)
def test_code_with_a_wrong_verifier_or_redirect_uri_is_an_invalid_grant(app, client, person, change):
    sign_in(app, client, person("bob"))
    registration = code_client(client)
    code = allow(client, registration)["code"]
    aws_error(redeem(client, registration, code, **change), "InvalidGrantException")


def test_denied_consent_goes_back_as_access_denied(app, client, person):
    sign_in(app, client, person("bob"))
    answer = allow(client, code_client(client), "deny")
    assert answer == {"error": "access_denied", "error_description": "The request was denied.", "state": "state-1"}


UNCHECKED_REDIRECTS = [
    {"client_id": "unknown"},
    {"redirect_uri": "http://evil.example/cb"},
    {"redirect_uri": "http://127.0.0.1:41234/elsewhere"},
    # urlsplit drops tabs and newlines, so these once passed the check and broke the redirect (a 500)
    {"redirect_uri": "http://127.0.0.1:41234/oauth/callback\n"},
    {"redirect_uri": "http://127.0.0.1:41234/oauth/call\r\nback"},
    {"redirect_uri": "http://127.0.0.1:41234/oauth/\tcallback"},
    {"redirect_uri": "http://127.0.0.1:41234\n/oauth/callback"},
    {"redirect_uri": "http://127.0.0.1:41234/oauth/callback\x00"},
    {"redirect_uri": "http://127.0.0.1:41234/oauth/callback "},
    {"redirect_uri": "http://127.0.0.1:41234/oauth/callbäck"},
    {"redirect_uri": "HTTP://127.0.0.1:41234/oauth/callback"},
]


@pytest.mark.parametrize("overrides", UNCHECKED_REDIRECTS)
def test_authorize_never_redirects_to_an_unchecked_address(app, client, person, overrides):
    sign_in(app, client, person("bob"))
    answer = client.get(authorize_query(code_client(client), **overrides))
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert "Invalid sign-in request" in answer.get_data(as_text=True)


@pytest.mark.parametrize("overrides", UNCHECKED_REDIRECTS)
def test_an_approval_posted_with_an_unchecked_address_is_not_redirected(app, client, person, overrides):
    sign_in(app, client, person("bob"))
    registration = code_client(client)
    page = client.get(authorize_query(registration))
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if ("decision", "approve") in f.buttons)
    for decision in ("approve", "deny"):
        answer = client.post("/authorize", data={**form.inputs, **overrides, "decision": decision})
        assert answer.status_code == 400 and "Location" not in answer.headers


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"state": None}, "invalid_request"),
        ({"scopes": "sso:admin"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_authorize_sends_request_errors_back_to_the_client(app, client, person, overrides, error):
    sign_in(app, client, person("bob"))
    answer = client.get(authorize_query(code_client(client), **overrides))
    assert answer.status_code == 303
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == [error]


def test_a_device_only_client_cannot_use_the_code_flow(app, client, person):
    sign_in(app, client, person("bob"))
    registration = register(client, redirectUris=[REDIRECT]).get_json()
    answer = client.get(authorize_query(registration))
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["unauthorized_client"]


def portal_sign_out(client):
    page = client.get("/")
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if f.action == "/logout")
    assert client.post("/logout", data={**form.inputs, "scope": "local"}).status_code == 303


def test_portal_sign_out_ends_code_flow_tokens_approved_from_that_session(app, client, person):
    sign_in(app, client, person("bob"))
    registration = code_client(client)
    tokens = redeem(client, registration, allow(client, registration)["code"]).get_json()
    bearer = {"x-amz-sso_bearer_token": tokens["accessToken"]}
    assert client.get("/assignment/accounts", headers=bearer).status_code == 200
    portal_sign_out(client)
    aws_error(client.get("/assignment/accounts", headers=bearer), "UnauthorizedException", 401)
    aws_error(refresh(client, registration, tokens["refreshToken"]), "InvalidGrantException")


def test_a_code_whose_portal_session_ended_before_redemption_gives_no_token(app, client, person):
    sign_in(app, client, person("bob"))
    registration = code_client(client)
    code = allow(client, registration)["code"]
    portal_sign_out(client)
    aws_error(redeem(client, registration, code), "InvalidGrantException")


@pytest.mark.parametrize(
    "start_url",
    [
        "http://localhost",
        "http://localhost/",
        "http://localhost/start",
        "http://localhost/start/",
        "http://localhost/start/#",
        "http://localhost/start#/",
        "http://localhost/start/#/",
    ],
)
def test_start_url_may_be_written_as_identity_center_users_do(client, start_url):
    registration = register(client).get_json()
    body = {**{k: registration[k] for k in ("clientId", "clientSecret")}, "startUrl": start_url}
    answer = client.post("/device_authorization", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["verificationUri"] == "http://localhost/device"


@pytest.mark.parametrize(
    "start_url",
    [
        "http://localhost:8000/start",
        "http://localhost.evil.example/start",
        "http://localhost/starts",
        "http://localhost/other/start",
        "http://localhost/start?x=1",
        "http://localhost/start#/accounts",
        "https://localhost/start",
    ],
)
def test_start_urls_of_other_portals_are_refused(client, start_url):
    registration = register(client).get_json()
    body = {**{k: registration[k] for k in ("clientId", "clientSecret")}, "startUrl": start_url}
    message = aws_error(client.post("/device_authorization", json=body), "InvalidRequestException")["message"]
    assert message == "startUrl must be this portal's URL, http://localhost (or http://localhost/start)."
