"""End to end through real processes: IdP, portal and AWS emulator (IAM enforcement on).

Sign in through each protocol with plain HTTP, pick a role, get credentials, use them with boto3.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.portal import (
    UPSTREAMS,
    credentials_from_page,
    follow,
    forms,
    portal_login,
    request_credentials,
    signed_in_session,
)

SANDBOX, PRODUCTION = "111111111111", "222222222222"


def aws(stack, credentials, service):
    return boto3.client(service, endpoint_url=stack.addresses["AWS_URL"], region_name="us-east-1", **credentials)


def bucket(account_id):
    return f"employee-directory-photos-{account_id}"


@pytest.fixture(scope="module", params=UPSTREAMS)
def bob(request, stack):
    return request.param, signed_in_session(stack.addresses["PORTAL_URL"], "bob", request.param)


def test_bob_sees_exactly_his_groups_roles(stack, bob):
    _, http = bob
    page = http.get(stack.addresses["PORTAL_URL"] + "/").text
    assert "example-sandbox" in page and "example-production" in page
    assert "EmployeeDirectoryDeveloper" in page and "EmployeeDirectoryReadOnly" in page
    assert "AdministratorAccess" not in page and "SecurityAudit" not in page


def test_read_only_credentials_read_and_are_denied_a_write(stack, bob):
    upstream, http = bob
    answer = request_credentials(http, stack.addresses["PORTAL_URL"], PRODUCTION, "EmployeeDirectoryReadOnly")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    credentials = credentials_from_page(answer.text)
    caller = aws(stack, credentials, "sts").get_caller_identity()
    assert caller["Account"] == PRODUCTION
    assert "assumed-role/AWSReservedSSO_EmployeeDirectoryReadOnly_" in caller["Arn"]
    assert caller["Arn"].endswith("/bob@example.com")
    s3 = aws(stack, credentials, "s3")
    assert s3.get_object(Bucket=bucket(PRODUCTION), Key="photos/bob.svg")["Body"].read().startswith(b"<?xml")
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=bucket(PRODUCTION), Key="photos/mallory.svg", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_developer_credentials_can_write(stack, bob):
    _, http = bob
    answer = request_credentials(http, stack.addresses["PORTAL_URL"], SANDBOX, "EmployeeDirectoryDeveloper")
    credentials = credentials_from_page(answer.text)
    s3 = aws(stack, credentials, "s3")
    s3.put_object(Bucket=bucket(SANDBOX), Key="photos/new-hire.svg", Body=b"<svg/>")
    assert s3.get_object(Bucket=bucket(SANDBOX), Key="photos/new-hire.svg")["Body"].read() == b"<svg/>"


def test_credentials_page_has_every_format_and_the_expiry(stack, bob):
    _, http = bob
    page = request_credentials(http, stack.addresses["PORTAL_URL"], SANDBOX, "EmployeeDirectoryDeveloper").text
    emulator = stack.addresses["AWS_URL"]
    for marker in (
        "export AWS_ACCESS_KEY_ID=",
        "set AWS_ACCESS_KEY_ID=",
        "$Env:AWS_ACCESS_KEY_ID=",
        "aws_access_key_id = ",
        f"set AWS_ENDPOINT_URL={emulator}",  # the emulator's, as people's tools reach it
        f"  endpoint_url = {emulator}",
        "data-countdown=",
        "<time datetime=",
        "broker-login configure",
        f"{stack.addresses['PORTAL_URL']}/start",
    ):
        assert marker in page, marker


@pytest.mark.parametrize(
    "account_id, permission_set",
    [
        (PRODUCTION, "EmployeeDirectoryDeveloper"),  # a real set, in the wrong account
        (SANDBOX, "AdministratorAccess"),  # someone else's role
        ("999999999999", "EmployeeDirectoryReadOnly"),  # an account that does not exist
        (SANDBOX, "../../AdministratorAccess"),
    ],
)
def test_tampered_account_or_role_is_refused(stack, bob, account_id, permission_set):
    _, http = bob
    answer = request_credentials(http, stack.addresses["PORTAL_URL"], account_id, permission_set)
    assert answer.status_code == 403 and "AWS_SECRET_ACCESS_KEY" not in answer.text


@pytest.mark.parametrize("username", ["dave", "carol"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_users_without_assignments_get_an_explanation_and_no_credentials(stack, username, upstream):
    http = signed_in_session(stack.addresses["PORTAL_URL"], username, upstream)
    page = http.get(stack.addresses["PORTAL_URL"] + "/").text
    assert "You have no AWS access" in page and "Access keys" not in page
    for account_id in (SANDBOX, PRODUCTION):
        for permission_set in (
            "AdministratorAccess",
            "EmployeeDirectoryDeveloper",
            "EmployeeDirectoryReadOnly",
            "SecurityAudit",
        ):
            answer = request_credentials(http, stack.addresses["PORTAL_URL"], account_id, permission_set)
            assert answer.status_code == 403 and "AWS_SESSION_TOKEN" not in answer.text


def test_mfa_permission_set_refused_without_mfa_and_granted_with_it(stack):
    portal = stack.addresses["PORTAL_URL"]
    grace = signed_in_session(portal, "grace")
    page = grace.get(portal + "/").text
    assert "SecurityAudit" in page and "Requires MFA" in page
    refused = request_credentials(grace, portal, SANDBOX, "SecurityAudit")
    assert refused.status_code == 403 and "multi-factor" in refused.text
    erin = signed_in_session(portal, "erin")
    granted = request_credentials(erin, portal, SANDBOX, "SecurityAudit")
    assert granted.status_code == 200 and "AWS_SESSION_TOKEN" in granted.text


def test_admin_sees_the_audit_trail_and_exports_it(stack):
    portal = stack.addresses["PORTAL_URL"]
    alice = signed_in_session(portal, "alice")
    request_credentials(alice, portal, SANDBOX, "AdministratorAccess")
    assert "Audit trail" in alice.get(portal + "/admin/audit").text
    events = [json.loads(line) for line in alice.get(portal + "/admin/audit.jsonl").text.splitlines()]
    issued = [
        e for e in events if e["type"] == "credentials" and e.get("user") == "alice" and e["outcome"] == "success"
    ]
    assert issued, events[-5:]
    record = issued[-1]
    assert record["account_id"] == SANDBOX and "AWSReservedSSO_AdministratorAccess_" in record["role_arn"]
    assert record["session_name"] == record["source_identity"] == "alice@example.com"  # unique across upstreams
    assert (
        record["expiration"] and record["client_address"] == "127.0.0.1" and "python-requests" in record["user_agent"]
    )
    assert "aws-admins" in record["groups"]
    assert any(e["type"] == "sign_in" and e.get("user") == "alice" for e in events)
    text = alice.get(portal + "/admin/audit.jsonl").text
    assert "SecretAccessKey" not in text and "secret_access_key" not in text


def test_non_admins_cannot_see_the_audit_trail(stack, bob):
    _, http = bob
    assert http.get(stack.addresses["PORTAL_URL"] + "/admin/audit").status_code == 403
    assert http.get(stack.addresses["PORTAL_URL"] + "/admin/audit.jsonl").status_code == 403


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_sign_out_ends_the_portal_and_the_idp_session(stack, upstream):
    portal = stack.addresses["PORTAL_URL"]
    http = signed_in_session(portal, "carol", upstream)
    page = http.get(portal + "/")
    csrf = next(f["fields"]["csrf_token"] for f in forms(page.text) if f["action"] == "/logout")
    answer = http.post(portal + "/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert answer.status_code == 303
    assert http.get(portal + "/", allow_redirects=False).headers["Location"] == "/login"
    # The portal sends the browser on to the IdP's end_session, which comes back to /signed-out.
    final = follow(http, answer)
    assert final.url == portal + "/signed-out" and "You are signed out" in final.text
    # Upstream too: the IdP asks for a password again.
    login_page = follow(http, http.get(f"{portal}/login/{upstream}", allow_redirects=False))
    assert 'name="password"' in login_page.text
    assert "AWS accounts" in portal_login(portal, "carol", upstream, http=http).text


def test_credentials_request_without_csrf_is_refused(stack, bob):
    _, http = bob
    answer = http.post(
        stack.addresses["PORTAL_URL"] + "/credentials",
        data={"account_id": SANDBOX, "permission_set": "EmployeeDirectoryDeveloper"},
    )
    assert answer.status_code == 400 and "AWS_SESSION_TOKEN" not in answer.text


def test_signed_out_people_are_sent_to_sign_in(stack):
    import requests

    portal = stack.addresses["PORTAL_URL"]
    assert requests.get(portal + "/", allow_redirects=False).headers["Location"] == "/login"
    page = requests.get(portal + "/login").text
    assert "Example Corp (OIDC)" in page and "Example Corp (SAML)" in page
    answer = requests.post(
        portal + "/credentials", data={"account_id": SANDBOX, "permission_set": "x"}, allow_redirects=False
    )
    assert answer.status_code == 401 and "Your session has ended. Sign in again." in answer.text
    opened = requests.get(portal + "/credentials")  # the address opened directly: a page, not a 405
    assert opened.status_code == 200 and opened.url == portal + "/login"


def test_no_credentials_in_the_logs(stack, bob):
    _, http = bob
    page = request_credentials(http, stack.addresses["PORTAL_URL"], SANDBOX, "EmployeeDirectoryDeveloper").text
    secret = credentials_from_page(page)["aws_secret_access_key"]
    token = credentials_from_page(page)["aws_session_token"]
    logs = stack.logs("broker") + stack.logs("idp")
    assert secret not in logs and token not in logs and "Welcome-2026" not in logs
