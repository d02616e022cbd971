"""The IdP's single sign-on session, shared by OIDC and SAML: one login serves both protocols.

The browser holds only a random session ID in the `idp_session` cookie; the session itself lives in
the state store. Protocol handlers ask `current_sign_in()` who is signed in, and send the browser to
`login_redirect()` when nobody is (or when a fresh login is required).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from flask import current_app, g, redirect, request
from werkzeug.wrappers import Response

from idp_mock.directory import Employee
from sso_common.records import Record
from sso_common.store import StateStore
from sso_common.web import is_local_path

COOKIE_NAME = "idp_session"
SESSION_KIND = "idp_session"
LOGOUT_LISTENERS = "idp_logout_listeners"  # app.extensions: called with (sid, SessionRecord) at each sign-out

# Authentication context, named the same way for both protocols.
ACR_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ACR_MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
AMR_PASSWORD = ("pwd",)
AMR_MFA = ("pwd", "otp", "mfa")


@dataclass(frozen=True)
class OIDCParticipant(Record):
    """An OIDC client that was issued a code in this session."""

    TAG = ("protocol", "oidc")

    client_id: str


@dataclass(frozen=True)
class SAMLParticipant(Record):
    """An SP that was sent an assertion in this session, with the NameID and SessionIndex it was given."""

    TAG = ("protocol", "saml")

    sp: str  # entity ID
    name_id: str
    name_id_format: str
    session_index: str


Participant = OIDCParticipant | SAMLParticipant


@dataclass(frozen=True)
class SessionRecord(Record):
    """A session as the state store keeps it, under the ID in the browser's cookie."""

    username: str
    auth_time: int
    amr: tuple[str, ...]
    participants: tuple[Participant, ...] = ()  # relying parties, for single logout


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


def _store() -> StateStore:
    return current_app.extensions["idp"].store


def _session(session_id: str) -> SessionRecord | None:
    record = _store().get(SESSION_KIND, session_id)
    return SessionRecord.from_record(record) if record else None


def current_sign_in() -> SignIn | None:
    """Who is signed in in this browser, or None. Disabled or removed users count as signed out."""
    if "sign_in" in g:
        return g.sign_in
    sign_in = None
    session_id = request.cookies.get(COOKIE_NAME)
    if session_id:
        record = _session(session_id)
        employee = current_app.extensions["idp"].directory.find(record.username) if record else None
        if record and employee and not employee.disabled:
            sign_in = SignIn(session_id, employee, record.auth_time, record.amr)
    g.sign_in = sign_in
    return sign_in


def start_session(employee: Employee, amr: tuple[str, ...], response: Response) -> SignIn:
    """Open a new session (a fresh ID at every login, so a planted cookie is useless)."""
    end_session()
    session_id = secrets.token_urlsafe(32)
    auth_time = int(time.time())
    lifetime = current_app.extensions["idp"].settings.session_lifetime
    _store().put(SESSION_KIND, session_id, SessionRecord(employee.username, auth_time, amr).to_record(), lifetime)
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


def record_participant(participant: Participant) -> None:
    """Remember a relying party of this session (for single logout)."""
    sign_in = current_sign_in()
    if sign_in is None:
        return
    record = _session(sign_in.session_id)
    if record is None:
        return
    if participant not in record.participants:
        record = replace(record, participants=(*record.participants, participant))
        remaining = current_app.extensions["idp"].settings.session_lifetime - (time.time() - record.auth_time)
        _store().put(SESSION_KIND, sign_in.session_id, record.to_record(), max(remaining, 1))


def participants() -> tuple[Participant, ...]:
    sign_in = current_sign_in()
    record = _session(sign_in.session_id) if sign_in else None
    return record.participants if record else ()


def sid_of(session_id: str) -> str:
    """The session's `sid` toward relying parties (OIDC Front/Back-Channel Logout): it names the session without
    being usable as its cookie."""
    return hashlib.sha256(b"oidc sid\x00" + session_id.encode()).hexdigest()[:32]


def end_session(response: Response | None = None) -> None:
    """Sign the browser out of the IdP (both protocols). With a `response` (a sign-out, not a new sign-in
    replacing the session), the relying parties that asked for it are told too (back-channel logout)."""
    session_id = request.cookies.get(COOKIE_NAME)
    record = _session(session_id) if session_id and response is not None else None
    if session_id:
        _store().delete(SESSION_KIND, session_id)
    if session_id and record is not None:
        for listener in current_app.extensions.get(LOGOUT_LISTENERS, ()):
            listener(sid_of(session_id), record)
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
