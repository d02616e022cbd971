"""The sso portal API in process (STS stood in for): bearer tokens, entitlements, pagination, Logout,
and the audit trail, with every refusal in AWS's words."""

from __future__ import annotations

import time

import pytest

from broker.errors import InvalidGrant
from broker.identity_center.grants import Approval
from broker_login.forms import read_page
from sso_common.store import AuditQuery
from tests.support.identity_center import (
    PRODUCTION,
    SANDBOX,
    bearer,
    decide,
    device_tokens,
    poll,
    refresh,
    register,
    sign_in,
    start,
)


@pytest.fixture
def tokens_for(app, client, person):
    def sign_in(username: str, groups: tuple[str, ...], mfa: bool = False) -> dict:
        return device_tokens(app, client, person(username, groups=groups, mfa=mfa))[1]

    return sign_in


def aws_error(response, name: str, status: int) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.headers["x-amzn-ErrorType"] == name and body["__type"] == name and body["message"]
    assert "roleCredentials" not in body
    return body


def credentials(client, tokens, account_id, role):
    return client.get(f"/federation/credentials?account_id={account_id}&role_name={role}", headers=bearer(tokens))


def test_role_credentials_go_through_issuance_and_are_audited_on_the_api_channel(app, client, tokens_for):
    tokens = tokens_for("bob", ("engineering",))
    answer = client.get(
        f"/federation/credentials?account_id={PRODUCTION}&role_name=EmployeeDirectoryReadOnly",
        headers={**bearer(tokens), "User-Agent": "aws-cli/2 botocore/1.44"},
    )
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    role = answer.get_json()["roleCredentials"]
    assert role["accessKeyId"] == "ASIAFAKE2222" and role["secretAccessKey"] and role["sessionToken"]
    assert isinstance(role["expiration"], int) and role["expiration"] > 1e12  # epoch milliseconds
    event = app.extensions["broker"].audit.query(AuditQuery(event_type="credentials"))[0]
    assert event["outcome"] == "success" and event["channel"] == "sso-api" and event["user"] == "bob"
    assert event["permission_set"] == "EmployeeDirectoryReadOnly" and event["user_agent"].startswith("aws-cli/2")
    assert tokens["accessToken"] not in str(event)


def test_a_role_or_account_not_entitled_is_forbidden_and_audited(app, client, tokens_for):
    tokens = tokens_for("bob", ("engineering",))
    for account_id, role in (
        (PRODUCTION, "AdministratorAccess"),
        (SANDBOX, "EmployeeDirectoryReadOnly"),
        ("333333333333", "EmployeeDirectoryReadOnly"),
    ):
        body = aws_error(credentials(client, tokens, account_id, role), "ForbiddenException", 403)
        assert body["message"] == "No access"
        event = app.extensions["broker"].audit.query(AuditQuery(event_type="credentials"))[0]
        assert event["outcome"] == "failure" and event["account_id"] == account_id and event["channel"] == "sso-api"


def test_mfa_required_role_without_mfa_is_forbidden_with_the_reason(client, tokens_for):
    without = tokens_for("grace", ("security",))
    body = aws_error(credentials(client, without, SANDBOX, "SecurityAudit"), "ForbiddenException", 403)
    assert "multi-factor" in body["message"]
    with_mfa = tokens_for("erin", ("security",), mfa=True)
    assert credentials(client, with_mfa, SANDBOX, "SecurityAudit").status_code == 200


@pytest.mark.parametrize("username, groups", [("dave", ("contractors",)), ("carol", ("finance",))])
def test_people_without_assignments_get_nothing(client, tokens_for, username, groups):
    tokens = tokens_for(username, groups)
    assert client.get("/assignment/accounts", headers=bearer(tokens)).get_json() == {"accountList": []}
    aws_error(client.get(f"/assignment/roles?account_id={SANDBOX}", headers=bearer(tokens)), "ForbiddenException", 403)
    aws_error(credentials(client, tokens, SANDBOX, "EmployeeDirectoryDeveloper"), "ForbiddenException", 403)


def test_accounts_and_roles_page_through_opaque_tokens(client, tokens_for):
    tokens = tokens_for("alice", ("engineering", "aws-admins"))
    first = client.get("/assignment/accounts?max_result=1", headers=bearer(tokens)).get_json()
    assert first["accountList"] == [
        {"accountId": PRODUCTION, "accountName": "example-production", "emailAddress": "aws-production@example.com"}
    ]
    second = client.get(
        f"/assignment/accounts?max_result=1&next_token={first['nextToken']}", headers=bearer(tokens)
    ).get_json()
    assert second == {
        "accountList": [
            {"accountId": SANDBOX, "accountName": "example-sandbox", "emailAddress": "aws-sandbox@example.com"}
        ]
    }
    roles = client.get(f"/assignment/roles?account_id={SANDBOX}&max_result=1", headers=bearer(tokens)).get_json()
    assert roles["roleList"] == [{"roleName": "AdministratorAccess", "accountId": SANDBOX}] and roles["nextToken"]
    rest = client.get(
        f"/assignment/roles?account_id={SANDBOX}&next_token={roles['nextToken']}", headers=bearer(tokens)
    ).get_json()
    assert rest == {"roleList": [{"roleName": "EmployeeDirectoryDeveloper", "accountId": SANDBOX}]}


def test_page_tokens_cannot_be_edited_or_moved_to_another_list(client, tokens_for):
    tokens = tokens_for("alice", ("engineering", "aws-admins"))
    page = client.get(f"/assignment/roles?account_id={SANDBOX}&max_result=1", headers=bearer(tokens)).get_json()
    token = page["nextToken"]
    edited = token[:10] + ("B" if token[10] == "A" else "A") + token[11:]
    for query in (
        f"/assignment/roles?account_id={PRODUCTION}&next_token={token}",
        f"/assignment/accounts?next_token={token}",
        f"/assignment/roles?account_id={SANDBOX}&next_token={edited}",
        f"/assignment/roles?account_id={SANDBOX}&max_result=0",
        "/assignment/roles?account_id=12345",
        "/assignment/roles",
    ):
        aws_error(client.get(query, headers=bearer(tokens)), "InvalidRequestException", 400)


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/assignment/accounts"),
        ("delete", f"/federation/credentials?account_id={SANDBOX}&role_name=EmployeeDirectoryDeveloper"),
        ("get", "/client/register"),
        ("get", "/token"),
    ],
)
def test_a_method_an_api_address_does_not_take_is_answered_in_the_apis_format(client, tokens_for, method, path):
    """Routing finds a 405 before Flask knows the blueprint: it was the portal's HTML page (sso_common.web)."""
    tokens = tokens_for("bob", ("engineering",))
    answer = getattr(client, method)(path, headers=bearer(tokens))
    body = aws_error(answer, "InvalidRequestException", 405)
    assert (
        body["message"] == "This address does not accept that method." and method.upper() not in answer.headers["Allow"]
    )


def test_the_portals_pages_still_answer_a_wrong_method_with_a_page(client):
    answer = client.put("/")
    assert answer.status_code == 405 and answer.mimetype == "text/html"


@pytest.mark.parametrize(
    "role, message", [("", "role_name is required."), ("A" * 65, "role_name must be at most 64 characters.")]
)
def test_a_missing_or_overlong_role_name_is_told_apart(client, tokens_for, role, message):
    tokens = tokens_for("bob", ("engineering",))
    assert aws_error(credentials(client, tokens, SANDBOX, role), "InvalidRequestException", 400)["message"] == message


@pytest.mark.parametrize("max_result", ["%C2%B2", "%D9%A1", "%EF%BC%95", "9" * 5000, "+5", " 5", "5%0A"])
def test_page_sizes_that_are_not_plain_ascii_numbers_are_invalid_requests(client, tokens_for, max_result):
    """'²' passes str.isdigit() but not int(); '١' and '５' pass both; 5000 nines are over int()'s limit."""
    tokens = tokens_for("alice", ("engineering", "aws-admins"))
    for path in (
        f"/assignment/accounts?max_result={max_result}",
        f"/assignment/roles?account_id={SANDBOX}&max_result={max_result}",
    ):
        aws_error(client.get(path, headers=bearer(tokens)), "InvalidRequestException", 400)


@pytest.mark.parametrize(
    "headers", [{}, {"x-amz-sso_bearer_token": "bat-made-up"}, {"x-amz-sso_bearer_token": "x" * 5000}]
)
def test_missing_or_unknown_bearer_tokens_are_unauthorized(client, headers):
    for path in (
        "/assignment/accounts",
        f"/assignment/roles?account_id={SANDBOX}",
        f"/federation/credentials?account_id={SANDBOX}&role_name=EmployeeDirectoryDeveloper",
    ):
        aws_error(client.get(path, headers=headers), "UnauthorizedException", 401)


def test_an_expired_access_token_is_unauthorized(client, clock, tokens_for):
    tokens = tokens_for("bob", ("engineering",))
    clock.now += tokens["expiresIn"] + 1
    aws_error(client.get("/assignment/accounts", headers=bearer(tokens)), "UnauthorizedException", 401)


def test_logout_revokes_the_token_and_its_refresh_token(app, client, person):
    registration, tokens = device_tokens(app, client, person("bob"))
    assert client.post("/logout", headers=bearer(tokens)).status_code == 200
    aws_error(client.get("/assignment/accounts", headers=bearer(tokens)), "UnauthorizedException", 401)
    aws_error(client.post("/logout", headers=bearer(tokens)), "UnauthorizedException", 401)
    refused = refresh(client, registration, tokens["refreshToken"])
    assert refused.status_code == 400 and refused.get_json()["__type"] == "InvalidGrantException"


def test_the_portals_own_sign_out_is_untouched(app, client, person):
    """POST /logout without the bearer header is the browser sign-out: with a session it wants its CSRF
    token; without one (a stale tab) it says the session ended. Neither answers in the API's words."""
    stale = client.post("/logout")
    assert stale.status_code == 401 and "Your session has ended" in stale.get_data(as_text=True)
    sign_in(app, client, person("bob"))
    answer = client.post("/logout")
    assert answer.status_code == 400 and "Form expired" in answer.get_data(as_text=True)
    assert "x-amzn-ErrorType" not in answer.headers and "x-amzn-ErrorType" not in stale.headers


# --- CLI sign-ins end with the portal session that approved them ----------------------------------


def portal_sign_out(client):
    """Press the portal's Sign out button (scope=local: the stand-in upstream has no IdP to visit)."""
    page = client.get("/")
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if f.action == "/logout")
    answer = client.post("/logout", data={**form.inputs, "scope": "local"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/signed-out"
    return client.get("/signed-out")


def test_portal_sign_out_ends_the_cli_sign_ins_approved_from_that_session(app, client, person):
    registration, tokens = device_tokens(app, client, person("bob"))
    assert credentials(client, tokens, PRODUCTION, "EmployeeDirectoryReadOnly").status_code == 200
    signed_out = portal_sign_out(client)
    assert "command-line sign-ins" in signed_out.get_data(as_text=True).lower()
    aws_error(credentials(client, tokens, PRODUCTION, "EmployeeDirectoryReadOnly"), "UnauthorizedException", 401)
    aws_error(client.get("/assignment/accounts", headers=bearer(tokens)), "UnauthorizedException", 401)
    body = refresh(client, registration, tokens["refreshToken"]).get_json()
    assert body["__type"] == "InvalidGrantException" and "accessToken" not in body
    # The API's Logout still answers at the same address, in the API's words.
    aws_error(client.post("/logout", headers=bearer(tokens)), "UnauthorizedException", 401)


def test_a_refreshed_token_still_ends_with_the_portal_session(app, client, person):
    registration, tokens = device_tokens(app, client, person("bob"))
    renewed = refresh(client, registration, tokens["refreshToken"]).get_json()
    portal_sign_out(client)
    aws_error(client.get("/assignment/accounts", headers=bearer(renewed)), "UnauthorizedException", 401)
    assert refresh(client, registration, renewed["refreshToken"]).status_code == 400


def test_signing_out_another_browser_leaves_this_sessions_cli_sign_ins_alone(app, client, person):
    bob = person("bob")
    _, tokens = device_tokens(app, client, bob)
    other_browser = app.test_client()
    sign_in(app, other_browser, bob)
    portal_sign_out(other_browser)
    assert client.get("/assignment/accounts", headers=bearer(tokens)).status_code == 200


def test_the_api_logout_leaves_the_portal_session_alone(app, client, person):
    _, tokens = device_tokens(app, client, person("bob"))
    assert client.post("/logout", headers=bearer(tokens)).status_code == 200
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in to the portal


def test_an_approval_whose_portal_session_ended_before_the_token_was_fetched_gives_no_token(app, client, clock, person):
    sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    assert decide(client, authorization["userCode"]).status_code == 200
    portal_sign_out(client)
    clock.now += 2
    body = poll(client, registration, authorization["deviceCode"]).get_json()
    assert body["__type"] == "InvalidGrantException" and "accessToken" not in body


def test_grants_keep_no_portal_session_id(app, client, person):
    """The grant names its portal session by a one-way reference: a copy of the store lets nobody
    act as that browser."""
    session = sign_in(app, client, person("bob"))
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    decide(client, authorization["userCode"])
    poll(client, registration, authorization["deviceCode"])
    for store in (app.extensions["broker"].grants.store, app.extensions["broker"].store):
        assert not any(session.id in str(value) for value, _ in store._entries.values())


def test_an_approval_without_a_portal_session_reference_gives_no_token(app, person):
    """Fail closed: approvals and grants from before sign-ins were tied to their portal session (or
    any record that lost its reference) count as ended."""
    grants = app.extensions["broker"].grants
    registration = grants.register_client("old-cli", ["sso:account:access"], ["refresh_token"], [], "127.0.0.1")
    client_record = grants.public_client(registration.client_id)
    approval = Approval(person("bob"), time.time() + 3600, None, ["sso:account:access"])
    with pytest.raises(InvalidGrant):
        grants.issue_tokens(registration.client_id, client_record, approval)
