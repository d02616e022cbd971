"""Drive the IdP's login pages with plain HTTP, as a script or a test would."""

from __future__ import annotations

import re
import time
from html import unescape

import pyotp
import requests

DEMO_PASSWORD = "Welcome-2026"
ERIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"


_used_codes: dict[tuple[str, str], set[str]] = {}


def fresh_totp(idp_url: str, secret: str = ERIN_TOTP_SECRET) -> str:
    """A TOTP code this IdP has not seen yet. The IdP accepts each code once (replay protection) and
    also the next 30-second window's code (clock drift), so tests that sign the same person in within
    one window take the next code, or wait for a new window."""
    totp = pyotp.TOTP(secret)
    used = _used_codes.setdefault((idp_url, secret), set())
    while True:
        now = time.time()
        for offset in (0, 30):
            code = totp.at(now + offset)
            if code not in used:
                used.add(code)
                return code
        time.sleep(30 - now % 30 + 0.2)


def form_fields(html: str) -> dict[str, str]:
    """The hidden inputs of the first form on a page."""
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            fields[unescape(name.group(1))] = unescape(value.group(1)) if value else ""
    return fields


def submit_login(
    http: requests.Session,
    idp_url: str,
    login_page: requests.Response,
    username: str,
    password: str = DEMO_PASSWORD,
    totp_secret: str | None = None,
) -> requests.Response:
    """Fill the login form shown in `login_page` (and the TOTP step if asked); returns the final answer
    without following the redirect that leaves the IdP."""
    fields = form_fields(login_page.text)
    fields.update(username=username, password=password)
    answer = http.post(f"{idp_url}/login", data=fields, allow_redirects=False)
    if answer.status_code == 303 and answer.headers["Location"] == "/login/mfa":
        page = http.get(f"{idp_url}/login/mfa")
        code = fresh_totp(idp_url, totp_secret) if totp_secret else "000000"
        answer = http.post(f"{idp_url}/login/mfa", data={**form_fields(page.text), "totp": code}, allow_redirects=False)
    return answer
