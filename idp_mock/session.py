"""The IdP's single sign-on session, shared by OIDC and SAML: one login serves both protocols.

The browser holds only a random session ID in the `idp_session` cookie; the session itself lives in
the state store. Protocol handlers ask `current_sign_in()` who is signed in, and send the browser to
`login_redirect()` when nobody is (or when a fresh login is required).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Response, current_app, g, redirect, request

from idp_mock.directory import Employee
from sso_common.web import is_local_path

COOKIE_NAME = "idp_session"
SESSION_KIND = "idp_session"

# Authentication context, named the same way for both protocols.
ACR_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ACR_MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
AMR_PASSWORD = ("pwd",)
AMR_MFA = ("pwd", "otp", "mfa")


@dataclass(frozen=True)
class SignIn:
    session_id: str
    employee: Employee
    auth_time: int
    amr: tuple[str, ...]

    @property
    def mfa(self) -> bool:
        return "otp" in self.amr

    @property
    def acr(self) -> str:
        return ACR_MFA if self.mfa else ACR_PASSWORD


def _store():
    return current_app.extensions["idp"].store


def current_sign_in() -> SignIn | None:
    """Who is signed in in this browser, or None. Disabled or removed users count as signed out."""
    if "sign_in" in g:
        return g.sign_in
    sign_in = None
    session_id = request.cookies.get(COOKIE_NAME)
    if session_id:
        record = _store().get(SESSION_KIND, session_id)
        employee = current_app.extensions["idp"].directory.find(record["username"]) if record else None
        if employee and not employee.disabled:
            sign_in = SignIn(session_id, employee, record["auth_time"], tuple(record["amr"]))
    g.sign_in = sign_in
    return sign_in


def start_session(employee: Employee, amr: tuple[str, ...], response: Response) -> SignIn:
    """Open a new session (a fresh ID at every login, so a planted cookie is useless)."""
    end_session()
    session_id = secrets.token_urlsafe(32)
    auth_time = int(time.time())
    lifetime = current_app.extensions["idp"].settings.session_lifetime
    _store().put(
        SESSION_KIND,
        session_id,
        {"username": employee.username, "auth_time": auth_time, "amr": list(amr), "participants": []},
        lifetime,
    )
    response.set_cookie(
        COOKIE_NAME,
        session_id,
        max_age=lifetime,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        path="/",
    )
    g.sign_in = SignIn(session_id, employee, auth_time, amr)
    return g.sign_in


def record_participant(participant: dict) -> None:
    """Remember a relying party of this session (for single logout)."""
    sign_in = current_sign_in()
    if sign_in is None:
        return
    record = _store().get(SESSION_KIND, sign_in.session_id)
    if record is None:
        return
    if participant not in record["participants"]:
        record["participants"].append(participant)
        remaining = current_app.extensions["idp"].settings.session_lifetime - (time.time() - record["auth_time"])
        _store().put(SESSION_KIND, sign_in.session_id, record, max(remaining, 1))


def participants() -> list[dict]:
    sign_in = current_sign_in()
    record = _store().get(SESSION_KIND, sign_in.session_id) if sign_in else None
    return record["participants"] if record else []


def end_session(response: Response | None = None) -> None:
    """Sign the browser out of the IdP (both protocols)."""
    session_id = request.cookies.get(COOKIE_NAME)
    if session_id:
        _store().delete(SESSION_KIND, session_id)
    g.sign_in = None
    if response is not None:
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="Lax", secure=current_app.config["SESSION_COOKIE_SECURE"]
        )


def login_redirect(continue_to: str, *, force: bool = False, login_hint: str | None = None) -> Response:
    """Send the browser to the login page; after login it returns to `continue_to` (a local path).

    With `force`, a login is asked for even if a session exists (OIDC prompt=login, SAML ForceAuthn);
    the caller then checks that the sign-in's auth_time is recent enough.
    """
    if not is_local_path(continue_to):
        raise ValueError("continue_to must be a local path")
    params = {"continue": continue_to}
    if force:
        params["force"] = "1"
    if login_hint:
        params["login_hint"] = login_hint[:128]
    return redirect("/login?" + urlencode(params), code=302)
