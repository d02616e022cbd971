"""Steps the browser journeys share: sign in with the keyboard, check a page's basics, take screenshots.

Checked on every page a journey passes through (`check_page`): a meaningful `<title>`, every visible
form field labelled (fields are then found by their label, `get_by_label`, as assistive technology
finds them), no serious or critical violation found by axe-core (injected into every page by
conftest's `context`), and nothing wider than a 375 px phone screen. Forms are filled and submitted
with the keyboard only: autofocus, Tab, Enter.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from tests.browser.conftest import AXE_SCRIPT, DOCS_SCREENSHOTS, SCREENSHOTS
from tests.support.idp_client import DEMO_PASSWORD, ERIN_TOTP_SECRET, fresh_totp

OIDC, SAML = "Example Corp (OIDC)", "Example Corp (SAML)"
IDP_TITLE = " - Example Corp"
PORTAL_TITLE = " - AWS access portal"
# The screens the README shows. `DOCS_SCREENSHOTS=1 ./run test tests/browser` refreshes docs/screenshots/.
DOCS = {
    "idp-sign-in",
    "idp-verification-code",
    "portal-sign-in",
    "portal-accounts",
    "portal-accounts-filtered",
    "portal-credentials",
    "portal-credentials-phone",
    "portal-no-access",
    "portal-mfa-required",
    "portal-device-approval",
    "portal-audit",
    "portal-session-ended",
    "portal-explain",
    "portal-explain-aws",
    "portal-explain-saml",
    "portal-explain-refused",
    "portal-explain-mfa",
    "portal-explain-no-access",
}
BLOCKING_IMPACTS = ("serious", "critical")
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1000, "height": 720}  # conftest's browser_context_args

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


_AXE_RUN = """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"""
AXE_LOG = SCREENSHOTS.parent / "axe-violations.jsonl"


def axe_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now (every impact), also logged to test-artifacts.

    axe-core runs asynchronously, which a page without JavaScript cannot: its markup is then checked as
    a copy, at the same address, in a browser context that runs axe-core but none of the page's scripts."""
    if page.evaluate("matchMedia('(scripting: none)').matches"):
        violations = _axe_on_a_copy(page)
    else:
        violations = page.evaluate(_AXE_RUN)
    with AXE_LOG.open("a") as log:
        log.write(json.dumps({"url": urlsplit(page.url).path, "title": page.title(), "violations": violations}) + "\n")
    return violations


def _axe_on_a_copy(page: Page) -> list[dict]:
    html, url = page.content(), page.url
    browser = page.context.browser
    assert browser is not None
    copy_context = browser.new_context(viewport=page.viewport_size, locale="en-US")
    try:
        copy_context.add_init_script(path=AXE_SCRIPT)
        copy_context.route(
            re.compile(r"\.js(\?.*)?$"), lambda route: route.fulfill(body="", content_type="text/javascript")
        )
        copy = copy_context.new_page()
        copy.goto(url, wait_until="commit")
        copy.set_content(html)
        return copy.evaluate(_AXE_RUN)
    finally:
        copy_context.close()


def check_accessibility(page: Page) -> None:
    """axe-core finds nothing serious or critical on the page as it is now."""
    blocking = [v for v in axe_violations(page) if v["impact"] in BLOCKING_IMPACTS]
    assert blocking == [], f"axe-core on {page.url}: {json.dumps(blocking, indent=1)}"


def check_fits_a_phone(page: Page) -> None:
    """At 375 px wide, nothing makes the page scroll sideways."""
    size = page.viewport_size or DESKTOP
    page.set_viewport_size(PHONE)
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(_WIDER_THAN_THE_SCREEN)
    finally:
        page.set_viewport_size(size)
    assert width <= PHONE["width"], f"{page.url} is {width} px wide at {PHONE['width']} px: {wide}"


_WIDER_THAN_THE_SCREEN = """() => Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
  .slice(0, 5).map(e => e.outerHTML.slice(0, 120))"""


def check_page(page: Page, title: str) -> None:
    """The page's title names the page and the service, no field or button lacks a name, axe-core finds
    nothing serious, and it fits a phone's screen."""
    expect(page).to_have_title(title)
    assert page.evaluate(_UNLABELLED_FIELDS) == [], f"unlabelled form fields on {page.url}"
    assert page.locator("html").get_attribute("lang") == "en"
    check_accessibility(page)
    check_fits_a_phone(page)


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


def tab_to(page: Page, locator, limit: int = 150) -> None:
    """Press Tab from the top of the page until `locator` has the focus: proof it is keyboard-reachable."""
    page.locator("body").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if locator.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{locator} cannot be reached with the Tab key")


def role_panel(page: Page, permission_set: str, account_name: str):
    """A role's credentials panel (a <details>), found by what its summary says."""
    summary = page.locator("summary", has_text=f"Access keys for {permission_set} in {account_name}")
    return page.locator("details.keys", has=summary)


def open_account(page: Page, account_name: str) -> None:
    """Expand an account with the keyboard, unless it is expanded already."""
    account = page.locator("details.account", has=page.get_by_role("heading", name=account_name, level=2))
    if account.get_attribute("open") is None:
        summary = account.locator(":scope > summary")
        tab_to(page, summary)
        page.keyboard.press("Enter")
    expect(account).to_have_attribute("open", "")


def get_credentials(page: Page, permission_set: str, account_name: str) -> None:
    """Open the role's panel and get its credentials, with the keyboard only."""
    open_account(page, account_name)
    panel = role_panel(page, permission_set, account_name)
    tab_to(page, panel.locator(":scope > summary"))
    page.keyboard.press("Enter")
    expect(panel).to_have_attribute("open", "")
    button = page.get_by_role("button", name=f"Get credentials for {permission_set} in {account_name}")
    tab_to(page, button)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Credentials for {permission_set} in {account_name}")).to_be_visible()


def exports(page: Page, shell: str = "macOS and Linux") -> dict[str, str]:
    """The variables of a shell's Option 1 in the credentials panel, read as a person would copy them."""
    text = page.get_by_label(f"Environment variables ({shell})", exact=True).inner_text()
    pattern = {
        "macOS and Linux": r'export (AWS_[A-Z_]+)="([^"]+)"',
        "Windows (cmd)": r"set (AWS_[A-Z_]+)=(\S+)",
        "PowerShell": r'\$Env:(AWS_[A-Z_]+)="([^"]+)"',
    }[shell]
    return dict(re.findall(pattern, text))
