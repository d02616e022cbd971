"""The IdP's single sign-on session, shared by OIDC and SAML: one login serves both protocols.

The browser holds only a random session ID in the `idp_session` cookie; the session itself lives in
the state store. Protocol handlers ask `current_sign_in()` who is signed in, and show the login form
(`idp_mock.login.login_page`) when nobody is (or when a fresh login is required). The session record read for
a request is kept for the rest of it (`flask.g`), so the protocol handlers that read and extend it (participants)
cost the store one read, or none right after a sign-in.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from flask import current_app, g, request
from werkzeug.wrappers import Response

from idp_mock.directory import Employee
from sso_common.records import Record
from sso_common.store import StateStore

log = logging.getLogger(__name__)

COOKIE_NAME = "idp_session"
SESSION_KIND = "idp_session"
LOCK_KIND, LOCK_SECONDS = "idp_session_lock", 2.0  # a session's record to one writer (`_locked`)
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


def _session(session_id: str, *, fresh: bool = False) -> SessionRecord | None:
    """The session's record, read once per request (`fresh`: read again, under the session's lock)."""
    cached = g.get("session_record")
    if cached is not None and cached[0] == session_id and not fresh:
        return cached[1]
    record = _store().get(SESSION_KIND, session_id)
    session = SessionRecord.from_record(record) if record else None
    g.session_record = (session_id, session)
    return session


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


def start_session(employee: Employee, amr: tuple[str, ...], *, save: bool = True) -> SignIn:
    """Open a new session (a fresh ID at every login, so a planted cookie is useless). The browser gets its
    cookie from `set_session_cookie` on the answer. With `save=False` the record is written by `save_session`
    at the end of the request, once, with the relying parties the request answered (the sign-in's POST that
    finishes an authorization: one write instead of two)."""
    end_session()
    session_id = secrets.token_urlsafe(32)
    auth_time = int(time.time())
    record = SessionRecord(employee.username, auth_time, amr)
    g.session_record = (session_id, record)
    g.sign_in = SignIn(session_id, employee, auth_time, amr)
    if save:
        save_session()
    else:
        g.session_unsaved = session_id
    return g.sign_in


def save_session() -> None:
    """Write the session opened (and perhaps extended) in this request."""
    g.pop("session_unsaved", None)
    session_id, record = g.session_record
    lifetime = current_app.extensions["idp"].settings.session_lifetime
    remaining = lifetime - (time.time() - record.auth_time)
    _store().put(SESSION_KIND, session_id, record.to_record(), max(remaining, 1))


def set_session_cookie(response: Response, sign_in: SignIn) -> None:
    response.set_cookie(
        COOKIE_NAME,
        sign_in.session_id,
        max_age=current_app.extensions["idp"].settings.session_lifetime,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        path="/",
    )


def record_participant(participant: Participant) -> None:
    """Remember a relying party of this session (for single logout). A session opened in this request is written
    once at its end; an older one is read again and written under the session's lock, since two requests of one
    session (two tabs restored at once) each adding their relying party would otherwise keep only the last."""
    sign_in = current_sign_in()
    if sign_in is None:
        return
    record = _session(sign_in.session_id)
    if record is None or participant in record.participants:
        return
    if g.get("session_unsaved") == sign_in.session_id:  # nobody else knows this session yet
        g.session_record = (sign_in.session_id, replace(record, participants=(*record.participants, participant)))
        return
    with _locked(sign_in.session_id):
        record = _session(sign_in.session_id, fresh=True)
        if record is not None and participant not in record.participants:
            g.session_record = (sign_in.session_id, replace(record, participants=(*record.participants, participant)))
            save_session()


@contextmanager
def _locked(session_id: str) -> Iterator[None]:
    """The session's record to one request while it is read and written again (a relying party added) or read
    and deleted (a sign-out): a marker taken with the store's atomic `add`, waited for at most as long as it
    lives (a worker that died holding it delays the next one that long)."""
    deadline = time.monotonic() + LOCK_SECONDS + 0.5
    while not (held := _store().add(LOCK_KIND, session_id, {}, LOCK_SECONDS)):
        if time.monotonic() > deadline:  # (its marker should have expired by now)
            log.warning("a session's lock was not free after %.1f s; going on without it", LOCK_SECONDS)
            break
        time.sleep(0.005)
    try:
        yield
    finally:
        if held:  # never another request's
            _store().delete(LOCK_KIND, session_id)


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
    record = None
    if session_id and response is not None:  # the relying parties to tell: as a request adding one leaves them
        with _locked(session_id):
            record = _session(session_id, fresh=True)
            _store().delete(SESSION_KIND, session_id)
    elif session_id:
        _store().delete(SESSION_KIND, session_id)
    g.pop("session_record", None)
    if session_id and record is not None:
        for listener in current_app.extensions.get(LOGOUT_LISTENERS, ()):
            listener(sid_of(session_id), record)
    g.sign_in = None
    if response is not None:
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="Lax", secure=current_app.config["SESSION_COOKIE_SECURE"]
        )
