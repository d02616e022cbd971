"""Sign-in through an upstream IdP, sign-out, and the pages around them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import NoReturn

from flask import Blueprint, abort, make_response, redirect, render_template, request
from werkzeug.wrappers import Response

from broker.connectors import Connector
from broker.connectors.transactions import TRANSACTION_LIFETIME, LoginTransaction, ParkedLogin, binding_matches
from broker.core import audit
from broker.core.catalogue import human_duration
from broker.core.identity import Identity, UpstreamLogin
from broker.errors import LoginFailed
from broker.http import sso_portal
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


def _connector(upstream_id: str) -> Connector:
    connector = state().connectors.get(upstream_id)
    if connector is None:
        abort(404)
    return connector


def _refuse(upstream_id: str, failure: LoginFailed, identity: Identity | None = None) -> NoReturn:
    audit.sign_in(state().audit, request_origin(), upstream_id, identity, failure.reason)
    log.info("sign-in through %s refused: %s", upstream_id, failure.reason)
    title = "Identity provider unavailable" if failure.status >= 500 else "Sign-in failed"
    raise UserFacingError(f"{failure.reason} Start again from the sign-in page.", failure.status, title)


def _start_session(login: UpstreamLogin, upstream_id: str, return_to: str) -> Response:
    try:  # the person's (upstream, subject, email) in the directory; refused if another subject holds the address
        state().people.admit(upstream_id, login, request_origin())
    except LoginFailed as failure:
        _refuse(upstream_id, failure, login.identity)
    session = state().sessions.create(login.identity, upstream_id, login.logout_hint)
    audit.sign_in(state().audit, request_origin(), upstream_id, login.identity)
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
    try:
        destination, binding = state().transactions.begin(upstream_id, return_to, connector.begin)
    except LoginFailed as failure:
        _refuse(upstream_id, failure)
    response = redirect(destination.url, code=303)
    response.set_cookie(LOGIN_COOKIE, binding, **cookie_options(TRANSACTION_LIFETIME))
    return response


def _transaction(upstream_id: str, state_param: str | None) -> LoginTransaction:
    transaction = state().transactions.take(state_param)
    if transaction is None or transaction.upstream_id != upstream_id:
        _refuse(upstream_id, LoginFailed("This sign-in answer is unknown, expired or was already used."))
    return transaction


@blueprint.get("/login/<upstream_id>/callback")
def oidc_callback(upstream_id: str):
    """OIDC redirect: a top-level GET, so the browser's binding cookie comes along."""
    connector = _connector(upstream_id)
    transaction = _transaction(upstream_id, request.args.get("state"))
    if not binding_matches(transaction.binding, request.cookies.get(LOGIN_COOKIE)):
        _refuse(upstream_id, LoginFailed("This sign-in was started in another browser."))
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
    transaction = _transaction(upstream_id, request.form.get("RelayState"))
    try:
        login = connector.complete(request.form, transaction.kept)
    except LoginFailed as failure:
        _refuse(upstream_id, failure)
    ticket = state().transactions.park(ParkedLogin(login, upstream_id, transaction.binding, transaction.return_to))
    return redirect(f"/login/finish?ticket={ticket}", code=303)


@blueprint.get("/login/finish")
def finish():
    parked = state().transactions.unpark(request.args.get("ticket"))
    if parked is None:
        _refuse("unknown", LoginFailed("This sign-in is unknown, expired or was already used."))
    if not binding_matches(parked.binding, request.cookies.get(LOGIN_COOKIE)):
        _refuse(parked.upstream_id, LoginFailed("This sign-in was started in another browser."), parked.login.identity)
    return _start_session(parked.login, parked.upstream_id, parked.return_to)


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
