"""Login pages: password, TOTP step, "signed in as", sign-out. Works without JavaScript.

A protocol request that needs a sign-in shows the login form at once (`login_page`), at its own address, with
the local path to come back to in the form. That path is a *continuation* the protocol registered
(`register_continuation`): the POST that signs the person in (password, or the TOTP step) finishes it in place
and answers what a GET of the path would have (the redirect with the code, the auto-posting SAML Response),
so a login costs no redirect to the form and none back to the request. Any other local path is redirected to.

Wrong credentials always get the same message (no user enumeration); repeated failures are throttled
(idp_mock.authn) with 429, a Retry-After header and a page that says how long to wait. A successful
sign-in leaves a device token in the `idp_device` cookie, so that this browser is known for that person.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Flask, current_app, make_response, redirect, render_template, request, session
from werkzeug.wrappers import Response

from idp_mock.authn import Attempt, Outcome, Result
from idp_mock.directory import Employee
from idp_mock.session import (
    AMR_MFA,
    AMR_PASSWORD,
    current_sign_in,
    end_session,
    save_session,
    set_session_cookie,
    start_session,
)
from sso_common.records import Record
from sso_common.web import UserFacingError, check_csrf, csrf_token, error_response, is_local_path

log = logging.getLogger(__name__)
blueprint = Blueprint("login", __name__)

BAD_CREDENTIALS = "The username or password is incorrect."
BAD_CODE = "That verification code is not valid. Codes change every 30 seconds and work once."
DEVICE_COOKIE = "idp_device"
DISABLED = "This account is disabled. Contact the IT service desk."
PENDING_KIND = "login_pending_mfa"
PENDING_TTL = 300
CONTINUATIONS = "idp_login_continuations"  # app.extensions: {path prefix: finisher}


@dataclass(frozen=True)
class PendingMFA(Record):
    """A correct password waiting for its TOTP code, kept server-side under the handle in the form session."""

    username: str
    continue_to: str


def _idp():
    return current_app.extensions["idp"]


def _continue_target(value: str | None) -> str:
    target = value or "/"
    if not is_local_path(target):
        raise UserFacingError("The sign-in link is not valid.", 400, "Invalid sign-in link")
    return target


def throttled_message(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}" if seconds > 90 else f"{seconds} seconds"
    return f"Too many failed sign-in attempts. Try again in {wait}."


def _attempt() -> Attempt:
    return Attempt(request.remote_addr or "", request.cookies.get(DEVICE_COOKIE) or None)


def _throttled(result: Result, page):
    response = page(429, throttled_message(result.retry_after))
    response.headers["Retry-After"] = str(result.retry_after)
    return response


def _login_page(status=200, error=None, username="", continue_to="/", force=False):
    page = render_template(
        "login.html",
        error=error,
        username=username,
        continue_to=continue_to,
        force=force,
        csrf_token=csrf_token(),
        demo_people=_demo_people() if _idp().settings.demo_hint else None,
    )
    return make_response(page, status)


DEMO_HINT_PEOPLE = 12  # a generated directory of thousands is not listed on every login page


def _demo_people() -> tuple[list[Employee], int]:
    """The people the demo hint lists, from the directory file (a list written in the template missed one added
    to the file), and how many more there are. Not those added at run time: they have passwords of their own."""
    everyone = _idp().settings.directory.employees
    return list(itertools.islice(everyone.values(), DEMO_HINT_PEOPLE)), max(0, len(everyone) - DEMO_HINT_PEOPLE)


def register_continuation(app: Flask, prefix: str, finish: Callable[[str], Response]) -> None:
    """Local paths starting with `prefix` are finished in place by the sign-in: `finish(rest of the path)`
    answers what a GET of the path would, for the person just signed in (current_sign_in)."""
    app.extensions.setdefault(CONTINUATIONS, {})[prefix] = finish


def login_page(continue_to: str, *, force: bool = False, login_hint: str | None = None) -> Response:
    """The login form, shown where a protocol request found nobody signed in (or needs a fresh login, `force`:
    OIDC prompt=login or max_age, SAML ForceAuthn; the caller then checks the sign-in's auth_time). After the
    sign-in the request goes on at `continue_to` (a local path), in the same POST when it is a continuation."""
    if not is_local_path(continue_to):
        raise ValueError("continue_to must be a local path")
    return _login_page(username=(login_hint or "")[:128], continue_to=continue_to, force=force)


def _continuation(continue_to: str) -> Response:
    """The answer for `continue_to` once signed in: finished in place when a protocol registered it, else a
    redirect. A redirect answering the POST is a 303 (the browser then GETs it)."""
    for prefix, finish in current_app.extensions.get(CONTINUATIONS, {}).items():
        if continue_to.startswith(prefix):
            response = finish(continue_to[len(prefix) :])
            if response.status_code in (301, 302, 307):
                response.status_code = 303
            return response
    return redirect(continue_to, code=303)


def _signed_in(employee, amr, continue_to, fresh: frozenset[str] = frozenset()):
    sign_in = start_session(employee, amr, save=False)  # written once below, with what the continuation adds
    try:
        response = _continuation(continue_to)
    except UserFacingError as error:  # signed in all the same (the cookie below), as after a redirect
        log.info("refused %s %s: %s", request.method, continue_to.split("?", 1)[0], error.message)
        response = error_response(error.message, error.status, error.title)
    save_session()
    set_session_cookie(response, sign_in)
    settings = _idp().settings
    response.set_cookie(
        DEVICE_COOKIE,
        _idp().authenticator.trust(employee.username, _attempt(), fresh),
        max_age=settings.throttle.trusted_seconds,
        httponly=True,
        samesite="Lax",
        secure=settings.secure_cookies,
        path="/login",
    )
    log.info("sign-in succeeded for %s (%s)", employee.username, "+".join(amr))
    return response


@blueprint.get("/")
def home():
    signed_out = request.args.get("signed_out") == "1"
    return render_template("home.html", sign_in=current_sign_in(), signed_out=signed_out, csrf_token=csrf_token())


@blueprint.get("/login")
def login_form():
    continue_to = _continue_target(request.args.get("continue"))
    force = request.args.get("force") == "1"
    if current_sign_in() and not force:
        return redirect(continue_to, code=303)
    hint = (request.args.get("login_hint") or "")[:128]
    return _login_page(username=hint, continue_to=continue_to, force=force)


@blueprint.post("/login")
def login_submit():
    check_csrf()
    continue_to = _continue_target(request.form.get("continue"))
    force = request.form.get("force") == "1"
    username = (request.form.get("username") or "").strip().lower()[:128]
    password = request.form.get("password") or ""
    if not username or not password or len(password) > 1024:
        return _login_page(401, BAD_CREDENTIALS, username, continue_to, force)
    result = _idp().authenticator.check_password(username, password, _attempt())
    if result.outcome is Outcome.THROTTLED:
        log.warning("sign-in throttled for a user or address (%s s)", result.retry_after)
        return _throttled(result, lambda status, error: _login_page(status, error, username, continue_to, force))
    if result.outcome is Outcome.BAD_CREDENTIALS:
        log.info("sign-in failed: bad credentials")
        return _login_page(401, BAD_CREDENTIALS, username, continue_to, force)
    if result.outcome is Outcome.DISABLED:
        log.info("sign-in refused: account %s is disabled", username)
        return _login_page(403, DISABLED, username, continue_to, force)
    if result.outcome is Outcome.NEEDS_TOTP:
        handle = secrets.token_urlsafe(32)
        _idp().store.put(
            PENDING_KIND, handle, PendingMFA(result.employee.username, continue_to).to_record(), PENDING_TTL
        )
        session["pending_mfa"] = handle
        return redirect("/login/mfa", code=303)
    return _signed_in(result.employee, AMR_PASSWORD, continue_to, result.fresh)


def _pending() -> tuple[str, PendingMFA, Employee]:
    handle = session.get("pending_mfa")
    record = _idp().store.get(PENDING_KIND, handle) if handle else None
    pending = PendingMFA.from_record(record) if record else None
    employee = _idp().directory.find(pending.username) if pending else None
    if handle is None or pending is None or employee is None or employee.disabled:
        raise UserFacingError("This sign-in has expired. Start again.", 400, "Sign-in expired")
    return handle, pending, employee


def _mfa_page(pending: PendingMFA, employee: Employee, status: int = 200, error: str | None = None):
    page = render_template(
        "mfa.html", username=employee.username, continue_to=pending.continue_to, csrf_token=csrf_token(), error=error
    )
    return make_response(page, status)


@blueprint.get("/login/mfa")
def mfa_form():
    _, pending, employee = _pending()
    return _mfa_page(pending, employee)


@blueprint.post("/login/mfa")
def mfa_submit():
    check_csrf()
    handle, pending, employee = _pending()
    result = _idp().authenticator.check_totp(employee, request.form.get("totp") or "", _attempt())
    if result.outcome is Outcome.THROTTLED:
        log.info("verification codes throttled for %s", employee.username)
        return _throttled(result, lambda status, error: _mfa_page(pending, employee, status, error))
    if result.outcome is not Outcome.OK:
        log.info("verification code refused for %s", employee.username)
        return _mfa_page(pending, employee, 401, BAD_CODE)
    _idp().store.delete(PENDING_KIND, handle)
    session.pop("pending_mfa", None)
    return _signed_in(employee, AMR_MFA, pending.continue_to)


@blueprint.get("/logout")
def logout_form():
    return render_template("logout.html", action="/logout", hidden={}, client_name=None, csrf_token=csrf_token())


@blueprint.post("/logout")
def logout_submit():
    check_csrf()
    response = redirect("/?signed_out=1", code=303)
    end_session(response)
    return response
