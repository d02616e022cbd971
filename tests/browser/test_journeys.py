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
    DESKTOP,
    IDP_TITLE,
    OIDC,
    PHONE,
    PORTAL_TITLE,
    SAML,
    check_accessibility,
    check_fits_a_phone,
    check_page,
    expect_accounts_page,
    exports,
    get_credentials,
    open_account,
    role_panel,
    shoot,
    sign_in,
    start_sign_in,
    tab_to,
    type_credentials,
    type_totp,
)
from tests.support.identity_center import clean_env

SANDBOX, PRODUCTION = "111111111111", "222222222222"
SHELLS = ("macOS and Linux", "Windows (cmd)", "PowerShell")

# What a person's own tools do with what the panel shows: the AWS SDK in a fresh process, with only
# the environment it was given (no endpoint, no keys of its own; a region, as people have configured).
CALLER_SCRIPT = """
import json, boto3
print(json.dumps(boto3.client("sts").get_caller_identity()))
"""


def roles_on_page(page) -> dict[str, list[str]]:
    """Account name -> permission sets, as listed on the accounts page."""
    listed = {}
    for account in page.locator("details.account").all():
        name = account.get_by_role("heading", level=2).inner_text()
        listed[name] = account.locator(".role-name").all_inner_texts()
    return listed


def value_of(panel, term: str):
    """The value a description list of the panel gives for `term`."""
    return panel.locator(".value", has=panel.page.locator("dt", has_text=term)).locator("dd code")


def caller_identity(tmp_path, **env: str) -> dict:
    """sts:GetCallerIdentity by a fresh process whose only AWS setup is `env` (no region either: what the panel
    shows must be enough)."""
    done = subprocess.run(
        [sys.executable, "-c", CALLER_SCRIPT],
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


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
    # Who you are and your groups; each account with its email address.
    who = page.get_by_role("region", name="Who you are")
    expect(who).to_contain_text("bob@example.com")
    expect(who).to_contain_text("engineering")
    expect(who).to_contain_text(f"{OIDC}, without a second factor")
    expect(page.locator("details.account", has_text="example-production")).to_contain_text("aws-production@example.com")
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


def test_accounts_collapse_and_the_filter_narrows_them_as_you_type(page, urls):
    sign_in(page, urls, "alice")
    accounts = page.locator("details.account")
    expect(accounts).to_have_count(2)
    # Collapsible: the summary toggles an account with the keyboard.
    production = accounts.filter(has=page.get_by_role("heading", name="example-production"))
    summary = production.locator(":scope > summary")
    tab_to(page, summary)
    page.keyboard.press("Enter")
    expect(production).not_to_have_attribute("open", "")
    expect(role_panel(page, "AdministratorAccess", "example-production")).to_be_hidden()
    page.keyboard.press("Enter")
    expect(production).to_have_attribute("open", "")

    field = page.get_by_label("Filter accounts", exact=True)
    tab_to(page, field)
    page.keyboard.type("PROD")  # any case
    expect(page.locator("li[data-filter-text]:visible")).to_have_count(1)
    expect(production).to_be_visible()
    expect(page.locator("[data-filter-count]")).to_have_text("1 of 2 accounts match “PROD”.")
    shoot(page, "portal-accounts-filtered")
    for _ in range(4):
        page.keyboard.press("Backspace")
    page.keyboard.type("aws-sandbox@")  # the account's email address
    expect(page.locator("li[data-filter-text]:visible")).to_have_count(1)
    expect(page.get_by_role("heading", name="example-sandbox", level=2)).to_be_visible()
    page.keyboard.press("Enter")  # already applied: nothing is sent
    expect(page).to_have_url(urls["PORTAL_URL"] + "/")
    page.keyboard.type("nothing like it")
    expect(page.get_by_text("No account matches the filter.")).to_be_visible()
    check_accessibility(page)


def test_a_roles_credentials_panel_shows_working_exports(page, context, urls, tmp_path):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=urls["PORTAL_URL"])
    sign_in(page, urls, "bob")
    get_credentials(page, "EmployeeDirectoryDeveloper", "example-sandbox")
    heading = page.get_by_role("heading", name="Credentials for EmployeeDirectoryDeveloper in example-sandbox")
    expect(heading).to_be_focused()  # the panel says it has them
    expect(page).to_have_url(urls["PORTAL_URL"] + "/")  # fetched into the page: nothing in the address
    panel = role_panel(page, "EmployeeDirectoryDeveloper", "example-sandbox")

    # Tabs per shell, each with Option 1 (environment variables) and Option 2 (a profile); Option 3 below.
    tabs = panel.get_by_role("tab")
    expect(tabs).to_have_text(list(SHELLS))
    expect(panel.get_by_role("tab", name="macOS and Linux")).to_have_attribute("aria-selected", "true")
    values = exports(page)
    # Against the emulator, the exports carry its endpoint (item 3): pasted as they are, they work.
    assert set(values) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
    }
    assert values["AWS_ENDPOINT_URL"] == urls["AWS_URL"] and values["AWS_DEFAULT_REGION"] == "us-east-1"
    shown = panel.get_by_role("tabpanel")  # the selected shell's only
    expect(shown).to_have_accessible_name("macOS and Linux")
    expect(shown.get_by_role("heading", name="Option 1: Set AWS environment variables")).to_be_visible()
    expect(shown.get_by_role("heading", name="Option 2: Add a profile to your AWS credentials file")).to_be_visible()
    expect(
        panel.get_by_role("heading", name="Option 3: Use individual values in your AWS service client")
    ).to_be_visible()
    expect(value_of(panel, "AWS secret access key")).to_have_text(values["AWS_SECRET_ACCESS_KEY"])
    expect(panel.locator("[data-countdown]")).to_have_text(re.compile(r"\dh \d\dm \d\ds left"))
    expect(value_of(panel, "Start URL")).to_have_text(urls["PORTAL_URL"] + "/start")
    expect(value_of(panel, "Region")).to_have_text("us-east-1")
    expect(panel.get_by_label("Command", exact=True)).to_contain_text("broker-login configure")
    check_fits_a_phone(page)
    check_accessibility(page)
    panel.locator("xpath=..").evaluate("role => role.scrollIntoView()")  # the role's row, then its panel
    shoot(page, "portal-credentials")
    page.set_viewport_size(PHONE)
    panel.locator("[data-credentials]").evaluate("element => element.scrollIntoView()")
    shoot(page, "portal-credentials-phone")
    page.set_viewport_size(DESKTOP)

    # The tabs, with the keyboard: arrows move between shells.
    tab_to(page, panel.get_by_role("tab", name="macOS and Linux"))
    page.keyboard.press("ArrowRight")
    expect(panel.get_by_role("tab", name="Windows (cmd)")).to_be_focused()
    expect(panel.get_by_role("tab", name="Windows (cmd)")).to_have_attribute("aria-selected", "true")
    assert exports(page, "Windows (cmd)") == values
    page.keyboard.press("ArrowRight")
    assert exports(page, "PowerShell") == values
    check_accessibility(page)

    # Copy, with the keyboard: the clipboard has the block, and the page says so to screen readers.
    copy = panel.get_by_role("button", name="Copy Environment variables (PowerShell)")
    tab_to(page, copy)
    page.keyboard.press("Enter")
    expect(page.locator("#announcer")).to_have_text("Copied: Environment variables (PowerShell).")
    assert (
        page.evaluate("navigator.clipboard.readText()")
        == panel.get_by_label("Environment variables (PowerShell)", exact=True).inner_text()
    )

    # What was shown works where it was issued: the exports alone reach the emulator, as bob in that role.
    caller = caller_identity(tmp_path, **values)
    assert caller["Account"] == SANDBOX and caller["Arn"].endswith("/bob@example.com")
    assert "assumed-role/AWSReservedSSO_EmployeeDirectoryDeveloper_" in caller["Arn"]
    # So does Option 2: the profile in a credentials file, its calls sent to the emulator by a services
    # section in the config file, never a global endpoint_url.
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    profile = panel.get_by_label("Credentials file profile (macOS and Linux)", exact=True).inner_text()
    config = panel.get_by_label("Config file sections (macOS and Linux)", exact=True).inner_text()
    assert not re.search(r"^endpoint_url", config, re.MULTILINE) and "services = " in config
    (tmp_path / "credentials").write_text(profile + "\n")
    (tmp_path / "config").write_text(config + "\n")
    caller = caller_identity(
        tmp_path,
        AWS_PROFILE=f"{SANDBOX}_EmployeeDirectoryDeveloper",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
    )
    assert caller["Arn"].endswith("/bob@example.com")

    # New credentials replace them in the panel, on request only.
    page.get_by_role("button", name="Get new credentials for EmployeeDirectoryDeveloper in example-sandbox").click()
    expect(value_of(panel, "AWS access key ID")).not_to_have_text(values["AWS_ACCESS_KEY_ID"])
    expect(panel.locator("[data-credentials]")).to_have_count(1)

    # A reload shows the page again and issues nothing; the address itself is a sensible page.
    page.reload()
    expect_accounts_page(page, urls["PORTAL_URL"])
    expect(page.get_by_text("AWS_SECRET_ACCESS_KEY")).to_have_count(0)
    page.goto(urls["PORTAL_URL"] + "/credentials")
    expect_accounts_page(page, urls["PORTAL_URL"])


def test_the_credentials_panel_works_without_javascript(new_context, urls):
    context = new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, urls, "bob")
        get_credentials(page, "EmployeeDirectoryReadOnly", "example-production")
        # The form was sent by the browser itself: the answer is the accounts page, that panel open.
        expect(page).to_have_url(urls["PORTAL_URL"] + "/credentials")
        expect(page).to_have_title("AWS accounts" + PORTAL_TITLE)
        panel = role_panel(page, "EmployeeDirectoryReadOnly", "example-production")
        expect(panel).to_have_attribute("open", "")
        for shell in SHELLS:  # no tabs: every shell's section, one after another
            expect(panel.get_by_role("heading", name=shell, level=4)).to_be_visible()
            assert exports(page, shell)["AWS_ENDPOINT_URL"] == urls["AWS_URL"]
        expect(panel.get_by_role("button", name=re.compile("^Copy"))).to_have_count(0)  # they need JavaScript
        check_accessibility(page)
        check_fits_a_phone(page)
    finally:
        context.close()


def test_the_expiry_is_announced_at_thresholds_not_every_second(page, urls):
    page.clock.install()
    sign_in(page, urls, "alice")
    get_credentials(page, "AdministratorAccess", "example-sandbox")  # one hour
    countdown = page.locator("[data-countdown]")
    announcer = page.locator("#announcer")
    assert countdown.get_attribute("aria-live") is None
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first)  # it counts down on screen...
    expect(announcer).to_have_text("")  # ... in silence
    page.clock.fast_forward("45:05")  # 14:5x left
    expect(announcer).to_have_text(re.compile(r"expire in 15 minutes\.$"))
    page.clock.fast_forward("10:00")
    expect(announcer).to_have_text(re.compile(r"expire in 5 minutes\.$"))
    page.clock.fast_forward("04:00")
    expect(announcer).to_have_text(re.compile(r"expire in 1 minute\.$"))
    page.clock.fast_forward("01:05")
    expect(announcer).to_have_text(re.compile(r"have expired"))
    expect(countdown).to_have_text("expired")


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
    # ... the sign-in choice remembers the way used last (first, and said so) ...
    choices = page.get_by_role("link", name=re.compile("Example Corp"))
    expect(choices.first).to_have_text(upstream)
    expect(page.get_by_text("Used last time.")).to_have_count(1)
    expect(choices.first).to_have_accessible_description(re.compile("^Used last time"))
    # ... and the IdP's session is gone too: signing in again asks for the password.
    page.get_by_role("link", name=upstream).click()
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    page.goto(urls["IDP_URL"] + "/")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def test_the_sign_in_choice_explains_each_way_in_and_remembers_the_last(page, context, urls):
    page.goto(urls["PORTAL_URL"] + "/login")
    check_page(page, "Sign in" + PORTAL_TITLE)
    expect(page.get_by_role("link", name=OIDC)).to_have_accessible_description(re.compile("OpenID Connect"))
    expect(page.get_by_role("link", name=SAML)).to_have_accessible_description(re.compile("SAML 2.0"))
    expect(page.get_by_text("Used last time.")).to_have_count(0)  # a new browser: nothing remembered
    shoot(page, "portal-sign-in")
    page.get_by_role("link", name=SAML).click()
    type_credentials(page, "carol")
    expect_accounts_page(page, urls["PORTAL_URL"])
    [cookie] = [c for c in context.cookies(urls["PORTAL_URL"]) if c["name"] == "portal_last_upstream"]
    assert cookie["value"] == "example-corp-saml" and cookie["sameSite"] == "Lax"  # an ID, no secret


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
    expect(page.get_by_role("region", name="Who you are")).to_contain_text("with a second factor")
    get_credentials(page, "SecurityAudit", "example-production")
    assert exports(page)["AWS_ACCESS_KEY_ID"]


def test_a_user_without_assignments_sees_the_explanation(page, urls):
    sign_in(page, urls, "dave")
    notice = page.get_by_role("status").filter(has=page.get_by_role("heading", name="You have no AWS access"))
    expect(notice).to_contain_text("contractors")
    expect(notice).to_contain_text("ask your manager")
    expect(page.locator("details.keys")).to_have_count(0)
    expect(page.get_by_label("Filter accounts")).to_have_count(0)
    shoot(page, "portal-no-access")


def test_a_permission_set_that_requires_mfa_is_disabled_with_the_reason(page, urls):
    sign_in(page, urls, "grace")
    assert roles_on_page(page) == {"example-sandbox": ["SecurityAudit"], "example-production": ["SecurityAudit"]}
    for account in ("example-sandbox", "example-production"):
        button = page.get_by_role("button", name=f"Access keys for SecurityAudit in {account}")
        expect(button).to_be_disabled()
        expect(button).to_have_accessible_description(re.compile(r"Requires MFA\. SecurityAudit requires multi-factor"))
    expect(page.locator("details.keys")).to_have_count(0)  # nothing to open, nothing to ask for
    expect(page.get_by_role("region", name="Who you are")).to_contain_text("without a second factor")
    shoot(page, "portal-mfa-required")


def test_a_stale_tab_after_sign_out_says_the_session_ended(page, context, urls):
    sign_in(page, urls, "bob")
    stale = context.new_page()
    stale.goto(urls["PORTAL_URL"] + "/")
    open_account(stale, "example-sandbox")
    role_panel(stale, "EmployeeDirectoryDeveloper", "example-sandbox").locator(":scope > summary").click()
    page.get_by_role("navigation", name="Account").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(urls["PORTAL_URL"] + "/signed-out")

    stale.get_by_role("button", name="Get credentials for EmployeeDirectoryDeveloper in example-sandbox").click()
    notice = role_panel(stale, "EmployeeDirectoryDeveloper", "example-sandbox").get_by_role("alert")
    expect(notice).to_contain_text("Your session has ended. Sign in again.")
    check_accessibility(stale)
    stale.get_by_role("navigation", name="Account").get_by_role("button", name="Sign out").click()
    expect(stale.get_by_role("heading", name="Session ended")).to_be_visible()
    check_page(stale, "Session ended" + PORTAL_TITLE)
    expect(stale.get_by_role("main")).to_contain_text("Your session has ended. Sign in again.")
    shoot(stale, "portal-session-ended")
    stale.get_by_role("link", name="Sign in again").click()
    check_page(stale, "Sign in" + PORTAL_TITLE)


def test_an_unknown_address_says_not_found(page, urls):
    page.goto(urls["PORTAL_URL"] + "/no-such-page")
    check_page(page, "Not found" + PORTAL_TITLE)
    expect(page.get_by_role("main")).to_contain_text("Not found")
    page.goto(urls["PORTAL_URL"] + "/start")  # the start URL, as IAM Identity Center writes it
    check_page(page, "Sign in" + PORTAL_TITLE)


def test_the_audit_trail_shows_failures_and_filters_and_exports_them(page, urls):
    portal = urls["PORTAL_URL"]
    # A sign-in that fails at the portal before anyone is known: an answer for no sign-in it started.
    page.goto(f"{portal}/login/example-corp-oidc/callback?state=made-up&code=x")
    check_page(page, "Sign-in failed" + PORTAL_TITLE)
    sign_in(page, urls, "alice")
    tab_to(page, page.get_by_role("link", name="Audit trail"))
    page.keyboard.press("Enter")
    check_page(page, "Audit trail" + PORTAL_TITLE)
    failures = page.locator("tr.failure")
    expect(failures.first).to_contain_text("unknown (not signed in)")
    expect(failures.first).to_contain_text("unknown, expired or was already used")
    expect(page.locator("tbody time").first).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))

    outcome = page.get_by_label("Outcome", exact=True)
    tab_to(page, outcome)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # Any -> Success -> Failure
    expect(outcome).to_have_value("failure")
    event = page.get_by_label("Event", exact=True)
    tab_to(page, event)
    page.keyboard.press("ArrowDown")  # Any -> Sign-in
    expect(event).to_have_value("sign_in")
    tab_to(page, page.get_by_role("button", name="Apply filters"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/admin/audit\?.*outcome=failure"))
    check_page(page, "Audit trail" + PORTAL_TITLE)
    rows = page.locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert set(rows.locator("td[data-label=Outcome]").all_inner_texts()) == {"Failure"}
    assert set(rows.locator("td[data-label=Event]").all_inner_texts()) == {"Sign-in"}
    shoot(page, "portal-audit")

    # The export is the filtered view, as JSON lines.
    export = page.get_by_role("link", name="Export these events as JSON lines")
    answer = page.request.get(portal + export.get_attribute("href"))
    events = [json.loads(line) for line in answer.text().splitlines()]
    assert events and {(e["type"], e["outcome"]) for e in events} == {("sign_in", "failure")}

    # A bad filter value: a clear 400 page naming the field, never a 500.
    answer = page.goto(portal + "/admin/audit?since=yesterday")
    assert answer.status == 400
    check_page(page, "Audit trail" + PORTAL_TITLE)
    expect(page.get_by_role("alert")).to_contain_text("From: 'yesterday' is not a date and time")
    expect(page.get_by_label("From (UTC)", exact=True)).to_have_attribute("aria-invalid", "true")


def test_focus_rings_contrast_at_least_3_to_1(page, urls):
    sign_in(page, urls, "alice")
    open_account(page, "example-sandbox")
    targets = [
        page.get_by_role("navigation", name="Account").get_by_role("button", name="Sign out"),  # on the dark bar
        page.get_by_label("Filter accounts", exact=True),
        page.locator("details.account > summary").first,
        role_panel(page, "AdministratorAccess", "example-sandbox").locator(":scope > summary"),
        page.get_by_role("link", name="Audit trail"),
    ]
    for target in targets:
        tab_to(page, target)
        ratio = target.evaluate(FOCUS_RING_CONTRAST)
        assert ratio >= 3, f"focus ring of {target} has contrast {ratio:.2f}:1"


# The contrast between an element's focus outline and the background around it (WCAG relative luminance).
FOCUS_RING_CONTRAST = """element => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const style = getComputedStyle(element);
  if (style.outlineStyle === "none" || parseFloat(style.outlineWidth) < 2) return 0;
  let node = element.parentElement, background = null;
  while (node && !background) {
    const color = rgb(getComputedStyle(node).backgroundColor);
    if (color.length === 3 || (color.length === 4 && color[3] > 0)) background = color.slice(0, 3);
    node = node.parentElement;
  }
  const [a, b] = [luminance(rgb(style.outlineColor)), luminance(background || [255, 255, 255])];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


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
        main = page.get_by_role("main")
        # What approving grants, as Identity Center says it; the client's name is its own claim.
        said = " ".join(main.inner_text().split())
        assert re.search(
            r"broker-login\S* unverified name will be able to access your AWS accounts and roles as "
            r"bob@example\.com until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, when your portal session ends\.",
            said,
        ), said
        expect(main).to_contain_text("cannot confirm it")
        expect(main).to_contain_text(re.compile(r"Requested at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
        expect(page.get_by_text("Check that your terminal shows this code:")).to_be_visible()
        expect(page.locator(".user-code")).to_have_text(user_code)
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
