"""Approve a device sign-in without a browser, for CI and test suites (`--non-interactive`).

It does what a person does: opens the verification URL, picks the identity provider, fills the
IdP's login form (and its verification-code step), submits SAML's auto-posting form where there is
one, and approves on the portal's page. Plain HTTP with cookies; no JavaScript is needed. Secrets
come from the environment or standard input, never from the command line (where `ps` shows them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import urljoin, urlsplit

from broker_login import validate
from broker_login.forms import Form, Page, read_page
from broker_login.portal import LoginError, Portal, Registration, Token

USERNAME_ENV, PASSWORD_ENV = "BROKER_LOGIN_USERNAME", "BROKER_LOGIN_PASSWORD"
TOTP_SECRET_ENV, TOTP_ENV = "BROKER_LOGIN_TOTP_SECRET", "BROKER_LOGIN_TOTP"
CODE_FIELDS = ("totp", "otp", "code")
MAX_STEPS = 15


@dataclass
class LoginSecrets:
    username: str
    password: str = field(repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    totp_code: str | None = field(default=None, repr=False)
    ask: Callable[[str], str] | None = field(default=None, repr=False)  # reads a missing value when needed

    def one_time_code(self) -> str:
        if self.totp_code:
            return self.totp_code
        if self.totp_secret:
            import pyotp

            return pyotp.TOTP(self.totp_secret).now()
        if self.ask is not None:
            return self.ask("verification code")
        raise LoginError(f"the identity provider asks for a verification code: set {TOTP_SECRET_ENV} or {TOTP_ENV}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ, stdin: TextIO = sys.stdin) -> LoginSecrets:
        """Values missing from the environment are read from standard input, one a line, in the order
        username, password, then the verification code if the IdP asks for one."""
        lines: Iterator[str] = (line.rstrip("\r\n") for line in stdin)

        def ask(what: str) -> str:
            value = next(lines, "")
            if not value:
                raise LoginError(f"no {what}: set it in the environment or give it on standard input")
            return value

        return cls(
            username=environ.get(USERNAME_ENV) or ask(f"username ({USERNAME_ENV})"),
            password=environ.get(PASSWORD_ENV) or ask(f"password ({PASSWORD_ENV})"),
            totp_secret=environ.get(TOTP_SECRET_ENV) or None,
            totp_code=environ.get(TOTP_ENV) or None,
            ask=ask,
        )


def headless_sign_in(portal: Portal, registration: Registration, idp: str, secrets: LoginSecrets) -> Token:
    """The whole device flow with nobody at a browser: start, approve over HTTP, collect the token."""
    authorization = portal.start_device_authorization(registration)
    approve_device(authorization["verificationUriComplete"], idp, secrets)
    return portal.wait_for_token(registration, authorization)


def approve_device(verification_url: str, idp: str, secrets: LoginSecrets, *, timeout: float = 20) -> None:
    """Sign in through `idp` and approve the device request behind `verification_url`; LoginError if
    any page refuses (wrong password, unknown code, denied...)."""
    import requests

    http = requests.Session()
    http.headers["User-Agent"] = "broker-login (non-interactive)"

    def submit(response, form: Form, **values):
        target = urljoin(response.url, form.action or response.url)
        fields = {**form.inputs, **values}
        if form.method == "post":
            return http.post(target, data=fields, timeout=timeout)
        return http.get(target, params=fields, timeout=timeout)

    try:
        response = http.get(verification_url, timeout=timeout)
        tried = set()
        for _ in range(MAX_STEPS):
            page = read_page(response.text)
            if page.marker == "done":
                if response.status_code == 200 and page.heading == "Request approved":
                    return
                raise LoginError(f"the portal answered {validate.one_line(page.summary)}")
            if page.marker == "signin":
                response = http.get(urljoin(response.url, _upstream_link(page, idp)), timeout=timeout)
                continue
            if page.marker == "confirm":
                approval = next(f for f in page.forms if ("decision", "approve") in f.buttons)
                response = submit(response, approval, decision="approve")
                continue
            if page.marker is not None:
                raise LoginError(f"the portal answered {validate.one_line(page.summary)}")
            step, form, values = _login_step(page.forms, secrets)
            if step in tried and step != "post":
                raise LoginError(f"the sign-in was refused at {urlsplit(response.url).netloc}: {_reason(page)}")
            if form is None:
                raise LoginError(
                    f"unexpected page from {urlsplit(response.url).netloc} "
                    f"(HTTP {response.status_code}): {validate.one_line(page.summary)}"
                )
            tried.add(step)
            response = submit(response, form, **values)
        raise LoginError("the sign-in took too many steps; is --idp right?")
    except requests.RequestException as error:
        raise LoginError(f"cannot reach {urlsplit(verification_url).netloc} ({type(error).__name__})") from None


def _upstream_link(page: Page, idp: str) -> str:
    """The sign-in page's link to `idp`; LoginError naming the ones it offers when it has none."""
    paths = {href: urlsplit(href).path for href in page.links}
    offered = {path.removeprefix("/login/"): href for href, path in paths.items() if path.startswith("/login/")}
    if idp not in offered:
        choices = ", ".join(validate.one_line(name, 64) for name in offered) or "none"
        raise LoginError(f"the portal offers no identity provider {validate.shown(idp)} (--idp): it offers {choices}")
    return offered[idp]


def _reason(page: Page) -> str:
    """Why a sign-in page came back: its error message (role="alert", as the IdP shows it next to the
    form: wrong password, disabled account, too many attempts), else its heading and first paragraph."""
    return validate.one_line(next((alert for alert in page.alerts if alert), page.summary))


def _login_step(forms: list[Form], secrets: LoginSecrets) -> tuple[str, Form | None, dict]:
    """Which of the IdP's steps this page is, the form to submit and what to fill in."""
    for form in forms:
        if form.has_type("password"):
            user_field = next((n for n, t in form.types.items() if t in ("text", "email")), "username")
            password_field = next(n for n, t in form.types.items() if t == "password")
            return "password", form, {user_field: secrets.username, password_field: secrets.password}
        code_field = next((n for n in CODE_FIELDS if n in form.types), None)
        if code_field:
            return "code", form, {code_field: secrets.one_time_code()}
        if form.only_hidden:
            return "post", form, {}
    return "unknown", None, {}
