"""Drive the IdP's login pages with plain HTTP, as a script or a test would."""

from __future__ import annotations

import re
import time
from html import unescape
from urllib.parse import urljoin

import pyotp
import requests

DEMO_PASSWORD = "Welcome-2026"
ERIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"


# Every IdP the tests start accepts codes this many 30-second steps around the current one (config/idp.yaml
# totp.look_around_steps, set by tests/support/servers.py and stack.py), so a test that signs erin in
# takes a step nobody has used yet instead of waiting for a new one. The IdP still accepts each step once.
TOTP_LOOK_AROUND_STEPS = 10
TOTP_ENV = {"IDP_TOTP_LOOK_AROUND_STEPS": str(TOTP_LOOK_AROUND_STEPS)}

_used_steps: dict[tuple[str, str], dict[int, str]] = {}


def fresh_totp(idp_url: str, secret: str = ERIN_TOTP_SECRET, look_around: int = TOTP_LOOK_AROUND_STEPS) -> str:
    """A TOTP code this IdP has not seen yet, never waiting: the code of an unused step within the IdP's
    look-around window (`look_around` steps either side of now), the nearest first. The earliest step
    of the window is left out: it may leave the window before the code arrives. Fails when every step
    of the window is used: start that IdP with a wider window (TOTP_ENV) rather than wait."""
    totp = pyotp.TOTP(secret)
    used = _used_steps.setdefault((idp_url, secret), {})
    used_codes = set(used.values())
    now_step = int(time.time() // totp.interval)
    offsets = [0] + [sign * k for k in range(1, look_around + 1) for sign in (1, -1) if sign * k > -look_around]
    for step in (now_step + offset for offset in offsets):
        code = totp.at(step * totp.interval)
        # a code equal to a used one is refused too: the IdP takes a code for the first step it matches
        if step not in used and code not in used_codes:
            used[step] = code
            return code
    raise AssertionError(
        f"every TOTP step within {look_around} of now is used at {idp_url}: start that IdP with a wider "
        "look-around window (tests.support.idp_client.TOTP_ENV) or sign erin in fewer times"
    )


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


def is_login_page(page: requests.Response) -> bool:
    """The IdP's login form, as it answers a protocol request that needs a sign-in (no redirect to /login)."""
    return page.status_code == 200 and 'action="/login"' in page.text and 'name="password"' in page.text


def is_consent_page(page: requests.Response) -> bool:
    """The IdP's consent page for a third-party application (idp_mock.consent)."""
    return page.status_code == 200 and 'name="decision" value="allow"' in page.text


def answer_consent(
    http: requests.Session, idp_url: str, page: requests.Response, decision: str = "allow"
) -> requests.Response:
    """Press Allow (or Deny) on a consent page; returns the IdP's answer without following it."""
    action = re.search(r'<form method="post" action="([^"]*)"', page.text)
    assert action, f"no consent form: {page.text[:500]}"
    fields = {**form_fields(page.text), "decision": decision}
    return http.post(urljoin(idp_url + "/", unescape(action.group(1))), data=fields, allow_redirects=False)
