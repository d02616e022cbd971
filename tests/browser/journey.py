"""Steps the browser journeys share: sign in with the keyboard, check a page's basics, take screenshots.

Accessibility basics, checked on every page a journey passes through (`check_page`): a meaningful
`<title>`, and every visible form field labelled (fields are then found by their label,
`get_by_label`, as assistive technology finds them). Forms are filled and submitted with the
keyboard only: autofocus, Tab, Enter.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from tests.browser.conftest import DOCS_SCREENSHOTS, SCREENSHOTS
from tests.support.idp_client import DEMO_PASSWORD, ERIN_TOTP_SECRET, fresh_totp

OIDC, SAML = "Example Corp (OIDC)", "Example Corp (SAML)"
IDP_TITLE = " - Example Corp"
PORTAL_TITLE = " - AWS access portal"
# The screens the README shows. `DOCS_SCREENSHOTS=1 ./run test tests/browser` refreshes docs/screenshots/.
DOCS = {
    "idp-sign-in",
    "idp-verification-code",
    "portal-accounts",
    "portal-credentials",
    "portal-no-access",
    "portal-mfa-required",
    "portal-device-approval",
}

_UNLABELLED_FIELDS = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button'))
  .filter(e => e.offsetParent !== null)
  .filter(e => e.tagName === 'BUTTON'
      ? !(e.getAttribute('aria-label') || e.textContent.trim())
      : !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')))
  .map(e => e.outerHTML)"""


def shoot(page: Page, name: str) -> None:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    if name in DOCS and os.environ.get("DOCS_SCREENSHOTS") == "1":  # the visible part only: small files
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOTS / path.name)


def check_page(page: Page, title: str) -> None:
    """The page's title names the page and the service, and no field or button lacks a name."""
    expect(page).to_have_title(title)
    assert page.evaluate(_UNLABELLED_FIELDS) == [], f"unlabelled form fields on {page.url}"
    assert page.locator("html").get_attribute("lang") == "en"


def start_sign_in(page: Page, portal_url: str, upstream: str) -> None:
    """From the portal's front door to the IdP's sign-in page."""
    page.goto(portal_url + "/")
    expect(page).to_have_url(portal_url + "/login")
    check_page(page, "Sign in" + PORTAL_TITLE)
    page.get_by_role("link", name=upstream).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    check_page(page, "Sign in" + IDP_TITLE)


def type_credentials(page: Page, username: str, password: str = DEMO_PASSWORD) -> None:
    """Keyboard only: the username field has the focus on arrival, Tab moves to the password, Enter submits."""
    expect(page.get_by_label("Username", exact=True)).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(password)
    page.keyboard.press("Enter")


def type_totp(page: Page, secret: str = ERIN_TOTP_SECRET) -> None:
    expect(page.get_by_role("heading", name="Verification code")).to_be_visible()
    check_page(page, "Verification code" + IDP_TITLE)
    field = page.get_by_label("Verification code", exact=True)
    expect(field).to_be_focused()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    page.keyboard.type(fresh_totp(origin, secret))  # never a code this IdP has already seen
    page.keyboard.press("Enter")


def expect_accounts_page(page: Page, portal_url: str) -> None:
    expect(page).to_have_url(portal_url + "/")
    expect(page.get_by_role("heading", name="AWS accounts", level=1)).to_be_visible()
    check_page(page, "AWS accounts" + PORTAL_TITLE)


def sign_in(page: Page, urls: dict, username: str, upstream: str = OIDC, totp: bool = False) -> None:
    """The whole sign-in, ending on the portal's accounts page."""
    start_sign_in(page, urls["PORTAL_URL"], upstream)
    type_credentials(page, username)
    if totp:
        type_totp(page)
    expect_accounts_page(page, urls["PORTAL_URL"])


def tab_to(page: Page, locator, limit: int = 60) -> None:
    """Press Tab from the top of the page until `locator` has the focus: proof it is keyboard-reachable."""
    page.locator("body").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if locator.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{locator} cannot be reached with the Tab key")


def role_row(page: Page, permission_set: str, account_name: str):
    return page.get_by_role("button", name=f"Access keys for {permission_set} in {account_name}")


def exports(page: Page) -> dict[str, str]:
    """The values of the bash snippet on the credentials page, read as a person would copy them."""
    text = page.get_by_label("macOS and Linux (bash, zsh)", exact=True).inner_text()
    return dict(re.findall(r'export (AWS_[A-Z_]+)="([^"]+)"', text))
