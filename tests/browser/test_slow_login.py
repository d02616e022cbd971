"""A person who takes more than two minutes on the IdP's sign-in page still gets in.

Chromium sends a cookie set without a SameSite attribute on a cross-site POST only within about two
minutes of setting it ("Lax by default" grace). A quick test would pass even if the portal relied on
that; a person who is slow to type their password would then be refused at the SAML ACS, a cross-site
POST from the IdP. So this journey waits longer than the grace before submitting, for SAML (the one
that matters) and OIDC alike, in two browser profiles side by side. A third profile is the control:
it shows that in this Chromium a cookie without SameSite does ride a cross-site POST at first and no
longer does after the wait, so the wait really outlasted the grace.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest
from playwright.sync_api import expect

from tests.browser.journey import (
    OIDC,
    SAML,
    expect_accounts_page,
    role_panel,
    shoot,
    start_sign_in,
    type_credentials,
)
from tests.support.loopback import LoopbackServer

GRACE_SECONDS = 120
MARGIN_SECONDS = 8


class _Probe(BaseHTTPRequestHandler):
    """On localhost: GET /set sets a cookie with no SameSite; POST /echo says whether it came along.
    On 127.0.0.1 (another site): GET /form is a page whose form posts to localhost's /echo."""

    def do_GET(self):
        if self.path == "/set":
            self._answer("<title>set</title>set", {"Set-Cookie": "probe=1; Path=/; HttpOnly"})
        else:
            target = f"http://localhost:{self.server.server_port}/echo"
            self._answer(
                f'<title>form</title><form method="post" action="{target}">'
                '<input type="hidden" name="x" value="1"><button>Send</button></form>'
            )

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cookie = "probe=1" in (self.headers.get("Cookie") or "")
        self._answer(f"<title>echo</title><p id=cookie>{'sent' if cookie else 'not sent'}</p>")

    def _answer(self, html: str, headers: dict | None = None):
        body = html.encode()
        self.send_response(200)
        for name, value in {"Content-Type": "text/html", "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def probe():
    with LoopbackServer(_Probe) as server:
        yield server.port


def cross_site_post_carries_the_cookie(page, port: int) -> bool:
    page.goto(f"http://127.0.0.1:{port}/form")
    page.get_by_role("button", name="Send").click()
    expect(page).to_have_title("echo")
    return page.locator("#cookie").inner_text() == "sent"


@pytest.mark.slow
def test_sign_in_after_more_than_two_minutes_on_the_idp_page(new_context, urls, probe):
    pages, acs_posts, started = {}, [], {}
    for protocol, upstream in (("saml", SAML), ("oidc", OIDC)):
        page = pages[protocol] = new_context().new_page()
        page.on(
            "request",
            lambda request: acs_posts.append((time.monotonic(), request)) if request.url.endswith("/acs") else None,
        )
        start_sign_in(page, urls["PORTAL_URL"], upstream)  # the portal has set its sign-in cookie now
        started[protocol] = time.monotonic()
    control = new_context().new_page()
    control.goto(f"http://localhost:{probe}/set")
    assert cross_site_post_carries_the_cookie(control, probe), "no Lax-by-default grace in this Chromium?"

    pages["saml"].wait_for_timeout((max(started.values()) + GRACE_SECONDS + MARGIN_SECONDS - time.monotonic()) * 1000)

    assert not cross_site_post_carries_the_cookie(control, probe), "the wait did not outlast the grace"
    for protocol, page in pages.items():
        page.get_by_label("Username", exact=True).focus()
        type_credentials(page, "bob")
        expect_accounts_page(page, urls["PORTAL_URL"])
        expect(role_panel(page, "EmployeeDirectoryDeveloper", "example-sandbox")).to_be_visible()
        shoot(page, f"slow-sign-in-{protocol}")
        assert time.monotonic() - started[protocol] > GRACE_SECONDS
    # The SAML answer came as a cross-site POST, well after the grace would have run out.
    [(posted_at, acs)] = acs_posts
    assert acs.method == "POST" and acs.all_headers()["sec-fetch-site"] == "cross-site"
    assert posted_at - started["saml"] > GRACE_SECONDS
