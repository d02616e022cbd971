"""Sign-in through an upstream IdP, sign-out, and the pages around them."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import NoReturn

from flask import Blueprint, abort, make_response, redirect, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from broker.connectors import Connector
from broker.connectors.transactions import (
    FINISH_LIFETIME,
    TRANSACTION_LIFETIME,
    LoginTransaction,
    ParkedLogin,
    binding_matches,
)
from broker.core import audit, evidence
from broker.core.catalogue import human_duration
from broker.core.evidence import BROKER, SectionRecorder
from broker.core.identity import Identity, UpstreamLogin
from broker.errors import AccessEnded, LoginFailed
from broker.http import explain, sso_portal
from broker.http.context import (
    LAST_UPSTREAM_COOKIE,
    LAST_UPSTREAM_MAX_AGE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    cookie_options,
    current_session,
    request_origin,
    session_ended,
    state,
    upstream_choices,
)
from sso_common.web import UserFacingError, check_csrf, csrf_token, is_local_path

log = logging.getLogger(__name__)
blueprint = Blueprint("login", __name__)

# The checks of this glue, for the explanation (broker.core.evidence); the connectors record their own.
STARTED_HERE = "a sign-in this portal started (state)"
SAME_BROWSER = "finished in the browser that started it (binding cookie)"
ADMITTED = "admitted to the directory of people"
STARTED_AT_THE_IDP = "the sign-in started (the identity provider's discovery, keys or metadata read)"


def _connector(upstream_id: str) -> Connector:
    connector = state().connectors.get(upstream_id)
    if connector is None:
        abort(404)
    return connector


def _transaction_checks() -> SectionRecorder:
    record = evidence.recorder()
    if record.has("transaction"):
        return record.section("transaction")
    return record.section("transaction", "The sign-in transaction").plan(
        (STARTED_HERE, BROKER, "the state (OIDC) or RelayState (SAML) of a live transaction, used once"),
        (SAME_BROWSER, BROKER, "the portal_login cookie set in this browser when the sign-in started"),
    )


def _refuse(
    upstream_id: str, failure: LoginFailed, identity: Identity | None = None, earlier: explain.Explanation | None = None
) -> NoReturn:
    story = explain.conclude(upstream_id, identity, failure.reason, earlier=earlier)  # the page links to it
    audit.sign_in(
        state().audit, request_origin(), upstream_id, identity, failure.reason, explanation=story.id if story else None
    )
    log.info("sign-in through %s refused: %s", upstream_id, failure.reason)
    title = "Identity provider unavailable" if failure.status >= 500 else "Sign-in failed"
    raise UserFacingError(f"{failure.reason} Start again from the sign-in page.", failure.status, title)


def _start_session(
    login: UpstreamLogin, upstream_id: str, return_to: str, earlier: explain.Explanation | None = None
) -> Response:
    person = evidence.recorder().section("person", "The person at the portal")
    person.plan((ADMITTED, BROKER, "not disabled; the address held by no other subject of this upstream"))
    try:  # the person's (upstream, subject, email) in the directory; refused if another subject holds the address
        with person.run(ADMITTED, received=f"{upstream_id}, subject {login.identity.subject}"):
            state().people.admit(upstream_id, login, request_origin())
    except LoginFailed as failure:
        _refuse(upstream_id, failure, login.identity, earlier)
    # The session's identity as the directory has it: for a SCIM upstream, its groups (broker.core.people).
    try:
        identity = state().people.current(upstream_id, login.identity, time.time())
    except AccessEnded as ended:  # disabled or removed between the admission and now
        _refuse(upstream_id, LoginFailed(f"Sign-in refused: {ended.reason}.", 403), login.identity, earlier)
    session = state().sessions.create(identity, upstream_id, login.logout_hint, login.upstream_session)
    story = explain.conclude(upstream_id, login.identity, None, session=session, earlier=earlier)
    audit.sign_in(state().audit, request_origin(), upstream_id, login.identity, explanation=story.id if story else None)
    response = redirect(return_to if is_local_path(return_to) else "/", code=303)
    response.set_cookie(SESSION_COOKIE, session.id, **cookie_options(state().settings.session_lifetime))
    response.set_cookie(
        LAST_UPSTREAM_COOKIE, upstream_id, **{**cookie_options(LAST_UPSTREAM_MAX_AGE), "httponly": False}
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@blueprint.get("/login")
def choose():
    if current_session() is not None:
        return redirect("/", code=303)
    return render_template("signin.html", choices=upstream_choices())


@blueprint.get("/login/<upstream_id>")
def begin(upstream_id: str):
    connector = _connector(upstream_id)
    return_to = request.args.get("next", "/")
    if not is_local_path(return_to):
        return_to = "/"
    with evidence.recording():  # only a refusal keeps what was recorded (the IdP's documents unreadable, say)
        try:
            with _transaction_checks().run(STARTED_AT_THE_IDP):
                destination, binding = state().transactions.begin(upstream_id, return_to, connector.begin)
        except LoginFailed as failure:
            _refuse(upstream_id, failure)
    response = redirect(destination.url, code=303)
    response.set_cookie(LOGIN_COOKIE, binding, **cookie_options(TRANSACTION_LIFETIME))
    return response


def _transaction(upstream_id: str, state_param: str | None) -> LoginTransaction:
    transaction = state().transactions.take(state_param)
    try:
        with _transaction_checks().run(STARTED_HERE):
            if transaction is None or transaction.upstream_id != upstream_id:
                raise LoginFailed("This sign-in answer is unknown, expired or was already used.")
    except LoginFailed as failure:
        _refuse(upstream_id, failure)
    assert transaction is not None
    return transaction


def _same_browser(
    binding: str, upstream_id: str, identity: Identity | None = None, earlier: explain.Explanation | None = None
) -> None:
    try:
        with _transaction_checks().run(SAME_BROWSER):
            if not binding_matches(binding, request.cookies.get(LOGIN_COOKIE)):
                raise LoginFailed("This sign-in was started in another browser.")
    except LoginFailed as failure:
        _refuse(upstream_id, failure, identity, earlier)


# The authorization response's own parameters (RFC 6749 4.1.2 and 4.1.2.1, RFC 9207, OIDC Session Management);
# others a client ignores, so only these are named in a refusal (never a name the browser's sender chose).
CALLBACK_PARAMETERS = ("code", "state", "iss", "error", "error_description", "error_uri", "session_state")


@blueprint.get("/login/<upstream_id>/callback")
def oidc_callback(upstream_id: str):
    """OIDC redirect: a top-level GET, so the browser's binding cookie comes along."""
    connector = _connector(upstream_id)
    with evidence.recording():  # what each check finds, for "How did I get here?" (broker/http/explain.py)
        transaction = _transaction(upstream_id, request.args.get("state"))
        _same_browser(transaction.binding, upstream_id)
        repeated = [name for name in CALLBACK_PARAMETERS if len(request.args.getlist(name)) > 1]
        if repeated:  # RFC 6749 3.1: never more than once; which one the IdP meant is anyone's guess
            _refuse(upstream_id, LoginFailed(f"The sign-in answer names {', '.join(repeated)} more than once."))
        try:
            login = connector.complete(request.args, transaction.kept)
        except LoginFailed as failure:
            _refuse(upstream_id, failure)
        return _start_session(login, upstream_id, transaction.return_to)


@blueprint.post("/login/<upstream_id>/acs")
def saml_acs(upstream_id: str):
    """SAML HTTP-POST binding: a cross-site POST without our SameSite cookies. The verified login is
    parked, and the browser finishes with a top-level GET that does carry the binding cookie."""
    connector = _connector(upstream_id)
    with evidence.recording():
        transaction = _transaction(upstream_id, request.form.get("RelayState"))
        try:
            login = connector.complete(request.form, transaction.kept)
        except LoginFailed as failure:
            _refuse(upstream_id, failure)
        story = explain.so_far(upstream_id, login.identity, FINISH_LIFETIME)
        ticket = state().transactions.park(
            ParkedLogin(login, upstream_id, transaction.binding, transaction.return_to, story)
        )
    return redirect(f"/login/finish?ticket={ticket}", code=303)


@blueprint.get("/login/finish")
def finish():
    with evidence.recording():
        ticket = request.args.get("ticket")
        parked = state().transactions.unpark(ticket)
        earlier = parked.story if parked is not None else None
        try:
            with _transaction_checks().run("a verified sign-in waits for this browser (finish ticket)"):
                if parked is None:
                    raise LoginFailed("This sign-in is unknown, expired or was already used.")
        except LoginFailed as failure:
            _refuse("unknown", failure)
        assert parked is not None
        _same_browser(parked.binding, parked.upstream_id, parked.login.identity, earlier)
        return _start_session(parked.login, parked.upstream_id, parked.return_to, earlier)


@blueprint.post("/logout")
def logout():
    """The portal's sign-out, and the sso API's Logout: botocore posts to the same address with its
    bearer header, which a browser cannot add to a cross-site form."""
    if sso_portal.BEARER_HEADER in request.headers:
        return sso_portal.logout()
    session = current_session()
    if session is None:  # a tab left open: nothing to end, and no form to check
        return session_ended()
    check_csrf()
    destination = None
    state().sessions.end(session.id)
    audit.sign_out(state().audit, request_origin(), session.identity)
    connector = state().connectors.get(session.upstream_id)
    if connector is not None and request.form.get("scope") != "local":
        try:
            destination = connector.logout(session.logout_hint, f"{state().settings.portal_url}/signed-out")
        except LoginFailed as failure:  # the IdP is down: the portal session is ended anyway
            log.info("upstream sign-out through %s skipped: %s", session.upstream_id, failure.reason)
    response = redirect(destination.url if destination else "/signed-out", code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@blueprint.post("/login/<upstream_id>/backchannel-logout")
def backchannel_logout(upstream_id: str):
    """OpenID Connect Back-Channel Logout 1.0: the upstream signs a session (`sid`) or a person (`sub`) out.
    Every portal session of it ends at its next use, with the command-line sign-ins approved from them. 200
    with an empty body when done; 400 with an OAuth error otherwise (section 2.8). No cookie is read."""
    verify = state().logout_tokens.get(upstream_id)
    if verify is None:
        return _backchannel_answer(400, "invalid_request", "This upstream does not do back-channel logout here.")
    try:
        logout_token = request.form.get("logout_token", "")
    except RequestEntityTooLarge:
        return _backchannel_answer(413, "invalid_request", "The request is too large.")
    try:
        sid, subject = verify(logout_token)
    except LoginFailed as refusal:
        log.info("back-channel logout from %s refused: %s", upstream_id, refusal.reason)
        return _backchannel_answer(400, "invalid_request", refusal.reason)
    guard = state().guard
    if guard is not None:
        guard.note_logout(upstream_id, sid, None if sid else subject, state().settings.session_lifetime)
    audit.backchannel_logout(state().audit, request_origin(), upstream_id, sid, subject)
    return _backchannel_answer(200)


def _backchannel_answer(status: int, error: str | None = None, description: str | None = None) -> Response:
    response = make_response(json.dumps({"error": error, "error_description": description}) if error else "", status)
    response.headers["Cache-Control"] = "no-store"
    if error:
        response.headers["Content-Type"] = "application/json"
    return response


@blueprint.route("/login/<upstream_id>/slo", methods=["GET", "POST"])
def saml_logout_return(upstream_id: str):
    """The IdP's answer to our LogoutRequest: the portal session is already gone."""
    _connector(upstream_id)
    return redirect("/signed-out", code=303)


@blueprint.get("/signed-out")
def signed_out():
    return make_response(render_template("signed_out.html"))


@blueprint.app_context_processor
def template_globals():
    return {"portal_session": current_session(), "csrf_token": csrf_token}


@blueprint.app_template_filter("isotime")
def isotime(epoch: float) -> str:
    """An epoch as an ISO 8601 UTC time, to the second (for <time datetime>)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@blueprint.app_template_filter("duration")
def duration(seconds: int) -> str:
    return human_duration(seconds)
