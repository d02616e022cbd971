"""What a person does in the browser: sign in (OIDC, SAML, with TOTP), find their roles, copy
credentials, meet the refusals, sign out everywhere. Each journey starts in a fresh browser profile
and leaves a screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import boto3
import pytest
from playwright.sync_api import expect

from tests.browser.journey import (
    IDP_TITLE,
    OIDC,
    PORTAL_TITLE,
    SAML,
    check_page,
    expect_accounts_page,
    exports,
    role_row,
    shoot,
    sign_in,
    start_sign_in,
    tab_to,
    type_credentials,
    type_totp,
)
from tests.support.identity_center import clean_env

SANDBOX, PRODUCTION = "111111111111", "222222222222"


def roles_on_page(page) -> dict[str, list[str]]:
    """Account name -> permission sets, as listed on the accounts page."""
    listed = {}
    for account in page.locator("article.account").all():
        name = account.get_by_role("heading", level=2).inner_text().split()[0]
        listed[name] = account.locator(".role-name").all_inner_texts()
    return listed


def test_sign_in_with_oidc_shows_the_accounts_and_roles(page, urls):
    start_sign_in(page, urls["PORTAL_URL"], OIDC)
    assert page.url.startswith(urls["IDP_URL"] + "/")  # the IdP is another site, not a page of the portal
    shoot(page, "idp-sign-in")
    type_credentials(page, "bob")
    expect_accounts_page(page, urls["PORTAL_URL"])
    expect(page.get_by_role("navigation", name="Account")).to_contain_text("Bob Brown")
    assert roles_on_page(page) == {
        "example-sandbox": ["EmployeeDirectoryDeveloper"],
        "example-production": ["EmployeeDirectoryReadOnly"],
    }
    expect(page.get_by_role("link", name="Audit trail")).to_have_count(0)
    shoot(page, "portal-accounts-bob")


def test_sign_in_with_saml_shows_the_accounts_and_roles(page, urls):
    acs_requests = []
    page.on("request", lambda request: acs_requests.append(request) if request.url.endswith("/acs") else None)
    sign_in(page, urls, "alice", SAML)
    # The SAML answer reached the portal as a cross-site POST (IdP and portal are different sites).
    assert [(r.method, r.all_headers().get("sec-fetch-site")) for r in acs_requests] == [("POST", "cross-site")]
    expect(page.get_by_role("navigation", name="Account")).to_contain_text("Alice Anderson")
    assert roles_on_page(page) == {
        "example-sandbox": ["AdministratorAccess", "EmployeeDirectoryDeveloper"],
        "example-production": ["AdministratorAccess", "EmployeeDirectoryReadOnly"],
    }
    expect(page.get_by_role("link", name="Audit trail")).to_be_visible()
    shoot(page, "portal-accounts")


def test_a_roles_credentials_panel_shows_working_exports(page, urls):
    sign_in(page, urls, "bob")
    button = role_row(page, "EmployeeDirectoryDeveloper", "example-sandbox")
    tab_to(page, button)  # reachable with the keyboard, and Enter opens it
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Get credentials for EmployeeDirectoryDeveloper")).to_be_visible()
    check_page(page, "Access keys" + PORTAL_TITLE)
    expect(page.get_by_text("Account example-sandbox")).to_be_visible()
    values = exports(page)
    assert set(values) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    for title in ("fish", "Windows (PowerShell)", "AWS credentials file (~/.aws/credentials)"):
        expect(page.get_by_label(title, exact=True)).to_contain_text(values["AWS_SESSION_TOKEN"])
        expect(page.get_by_role("button", name=f"Copy {title}")).to_be_visible()
    expect(page.locator("[data-countdown]")).to_have_text(re.compile(r"\dh \d\dm \d\ds left"))
    shoot(page, "portal-credentials")
    # What was shown works: the emulator (IAM enforcement on) knows these keys as bob in that role.
    sts = boto3.client(
        "sts",
        endpoint_url=urls["AWS_URL"],
        region_name="us-east-1",
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=values["AWS_SESSION_TOKEN"],
    )
    caller = sts.get_caller_identity()
    assert caller["Account"] == SANDBOX
    assert "assumed-role/AWSReservedSSO_EmployeeDirectoryDeveloper_" in caller["Arn"]
    assert caller["Arn"].endswith("/bob@example.com")


@pytest.mark.parametrize("protocol", ["oidc", "saml"])
def test_sign_out_ends_the_portal_and_the_idp_session(page, urls, protocol):
    upstream = {"oidc": OIDC, "saml": SAML}[protocol]
    sign_in(page, urls, "carol", upstream)
    visited = []
    page.on("request", lambda request: visited.append(request.url) if request.is_navigation_request() else None)
    page.get_by_role("navigation", name="Account").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(urls["PORTAL_URL"] + "/signed-out")
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    check_page(page, "Signed out" + PORTAL_TITLE)
    shoot(page, f"portal-signed-out-{protocol}")
    # On the way out the browser went through the IdP, which ended its own session and sent it back.
    assert any(url.startswith(urls["IDP_URL"] + "/") for url in visited), visited
    # The portal session is gone ...
    page.goto(urls["PORTAL_URL"] + "/")
    expect(page).to_have_url(urls["PORTAL_URL"] + "/login")
    # ... and so is the IdP's: signing in again asks for the password.
    page.get_by_role("link", name=upstream).click()
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    page.goto(urls["IDP_URL"] + "/")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def test_a_wrong_password_shows_the_error(page, urls):
    start_sign_in(page, urls["PORTAL_URL"], OIDC)
    type_credentials(page, "carol", "not-her-password")
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("password")
    check_page(page, "Sign in" + IDP_TITLE)
    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_attribute("aria-describedby", "form-error")
    expect(page.get_by_label("Username", exact=True)).to_have_value("carol")
    expect(password).to_have_value("")
    expect(password).to_be_focused()  # the username is kept: the person types the password again
    shoot(page, "idp-wrong-password")
    page.keyboard.type("Welcome-2026")
    page.keyboard.press("Enter")
    expect_accounts_page(page, urls["PORTAL_URL"])


def test_an_mfa_user_passes_the_verification_code_step(page, urls):
    start_sign_in(page, urls["PORTAL_URL"], OIDC)
    type_credentials(page, "erin")
    expect(page.get_by_role("heading", name="Verification code")).to_be_visible()
    shoot(page, "idp-verification-code")
    type_totp(page)
    expect_accounts_page(page, urls["PORTAL_URL"])
    assert roles_on_page(page) == {
        "example-sandbox": ["EmployeeDirectoryDeveloper", "SecurityAudit"],
        "example-production": ["EmployeeDirectoryReadOnly", "SecurityAudit"],
    }
    expect(page.get_by_text("Requires MFA")).to_have_count(0)  # she signed in with a second factor
    role_row(page, "SecurityAudit", "example-production").click()
    expect(page.get_by_role("heading", name="Get credentials for SecurityAudit")).to_be_visible()
    assert exports(page)["AWS_ACCESS_KEY_ID"]


def test_a_user_without_assignments_sees_the_explanation(page, urls):
    sign_in(page, urls, "dave")
    notice = page.get_by_role("status")
    expect(notice.get_by_role("heading", name="You have no AWS access")).to_be_visible()
    expect(notice).to_contain_text("contractors")
    expect(notice).to_contain_text("ask your manager")
    expect(page.get_by_role("button", name="Access keys")).to_have_count(0)
    shoot(page, "portal-no-access")


def test_a_permission_set_that_requires_mfa_is_refused_without_it(page, urls):
    sign_in(page, urls, "grace")
    assert roles_on_page(page) == {"example-sandbox": ["SecurityAudit"], "example-production": ["SecurityAudit"]}
    expect(page.get_by_text("Requires MFA").first).to_be_visible()
    role_row(page, "SecurityAudit", "example-sandbox").click()
    expect(page.get_by_role("heading", name="Access denied")).to_be_visible()
    check_page(page, "Access denied" + PORTAL_TITLE)
    expect(page.locator("main")).to_contain_text("multi-factor")
    expect(page.get_by_text("AWS_SECRET_ACCESS_KEY")).to_have_count(0)
    shoot(page, "portal-mfa-required")


def test_a_device_code_is_approved_in_the_browser(page, urls, tmp_path):
    """`broker-login` (the real CLI, in its own HOME) prints a code; the person signs in to the portal in
    the browser, types the code, approves; the CLI then gets the role's credentials."""
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker_login",
            "--portal-url",
            urls["PORTAL_URL"],
            "--no-browser",
            "--account-id",
            SANDBOX,
            "--role",
            "EmployeeDirectoryDeveloper",
            "--format",
            "json",
        ],
        env=clean_env(tmp_path, PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = ""
        while "(or open" not in said:
            line = cli.stderr.readline()
            assert line, f"broker-login stopped: {said}"
            said += line
        verification_uri = re.search(r"open (\S+/device)\n", said).group(1)
        user_code = re.search(r"enter the code ([A-Z]{4}-[A-Z]{4})", said).group(1)
        assert verification_uri == urls["PORTAL_URL"] + "/device"

        page.goto(verification_uri)  # not signed in yet: the portal asks for a sign-in first
        check_page(page, "Sign in" + PORTAL_TITLE)
        expect(page.get_by_text("command-line tool")).to_be_visible()
        page.get_by_role("link", name=OIDC).click()
        check_page(page, "Sign in" + IDP_TITLE)
        type_credentials(page, "bob")
        expect(page).to_have_url(verification_uri)  # back where the person started
        check_page(page, "Enter your code" + PORTAL_TITLE)
        expect(page.get_by_label("Code", exact=True)).to_be_focused()
        page.keyboard.type(user_code.lower().replace("-", ""))  # as people type it
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Approve this request?")).to_be_visible()
        check_page(page, "Approve this request?" + PORTAL_TITLE)
        expect(page.get_by_text("Check that your terminal shows this code:")).to_be_visible()
        expect(page.locator(".user-code")).to_have_text(user_code)
        expect(page.locator("main")).to_contain_text("bob@example.com")
        shoot(page, "portal-device-approval")
        tab_to(page, page.get_by_role("button", name="Approve"))
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Request approved")).to_be_visible()
        check_page(page, "Request approved" + PORTAL_TITLE)
        shoot(page, "portal-device-approved")

        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 0, err
    credentials = json.loads(out)
    caller = boto3.client(
        "sts",
        endpoint_url=urls["AWS_URL"],
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ).get_caller_identity()
    assert caller["Account"] == SANDBOX and caller["Arn"].endswith("/bob@example.com")
