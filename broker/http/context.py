"""What every blueprint of the portal shares: the app's state, the signed-in session, request origins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, current_app, g, redirect, render_template, request

from broker.connectors import Connector
from broker.connectors.client_auth import ClientKey
from broker.connectors.transactions import LoginTransactions
from broker.core.audit import API_CHANNEL as API_CHANNEL  # re-exported: the blueprints take channels from here
from broker.core.audit import PORTAL_CHANNEL, RequestOrigin
from broker.core.catalogue import remembered_first, upstream_explanation
from broker.core.issuance import Issuance
from broker.core.people import People
from broker.core.sessions import PortalSession, Sessions
from broker.identity_center.grants import GrantStore
from broker.settings import BrokerSettings
from sso_common.keys import SigningIdentity
from sso_common.store import AuditLog, StateStore

SESSION_COOKIE = "portal_session"
LOGIN_COOKIE = "portal_login"
# The sign-in choice used last in this browser: a UI preference (an upstream's ID, no secret), read by
# the page only on the server, so HttpOnly does no harm; SameSite=Lax like the others.
LAST_UPSTREAM_COOKIE = "portal_last_upstream"
LAST_UPSTREAM_MAX_AGE = 400 * 86400  # the longest a browser keeps a cookie

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class PortalState:
    """Built once by the app factory, kept in app.extensions['broker']."""

    settings: BrokerSettings
    connectors: dict[str, Connector]
    sessions: Sessions
    transactions: LoginTransactions
    issuance: Issuance
    grants: GrantStore
    audit: AuditLog
    store: StateStore
    idp_signing: SigningIdentity  # the broker's key as the AWS accounts' SAML identity provider
    people: People  # the directory of people seen at sign-in: (upstream, subject) -> email, groups
    oidc_client_key: ClientKey  # the broker's private_key_jwt key, published at /oidc/jwks.json


def state() -> PortalState:
    return cast(PortalState, current_app.extensions["broker"])


def current_session() -> PortalSession | None:
    if "portal_session" not in g:
        g.portal_session = state().sessions.load(request.cookies.get(SESSION_COOKIE))
    return cast(PortalSession | None, g.portal_session)


def signed_in_session() -> PortalSession:
    """The session of a view behind `signed_in`."""
    session = current_session()
    assert session is not None, "the view is not behind @signed_in"
    return session


def signed_in(view: F) -> F:
    """Pages for signed-in people: others go to the sign-in choice first. A form sent without a session
    (a tab left open after signing out, or after the session expired) is told so, not redirected."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_session() is None:
            return session_ended() if request.method == "POST" else redirect("/login", code=303)
        return view(*args, **kwargs)

    return cast(F, wrapper)


def session_ended() -> Response:
    """The answer to a form sent from a page whose portal session has ended."""
    page = render_template(
        "error.html",
        title="Session ended",
        message="Your session has ended. Sign in again.",
        home="/login",
        home_label="Sign in again",
    )
    return Response(page, status=401, mimetype="text/html")


def request_origin(channel: str = PORTAL_CHANNEL) -> RequestOrigin:
    return RequestOrigin(request.remote_addr or "", request.headers.get("User-Agent", ""), channel)


def cookie_options(max_age: int | None) -> dict[str, Any]:
    return {
        "max_age": max_age,
        "httponly": True,
        "samesite": "Lax",
        "path": "/",
        "secure": current_app.config["SESSION_COOKIE_SECURE"],
    }


@dataclass(frozen=True)
class UpstreamChoice:
    """One button of the sign-in choice."""

    connector: Connector
    explanation: str
    last_used: bool


def upstream_choices() -> list[UpstreamChoice]:
    """The sign-in choices, the one this browser used last first."""
    connectors = state().connectors
    remembered = request.cookies.get(LAST_UPSTREAM_COOKIE)
    ordered = remembered_first(list(connectors), remembered)
    return [
        UpstreamChoice(
            connectors[upstream_id], upstream_explanation(connectors[upstream_id].protocol), upstream_id == remembered
        )
        for upstream_id in ordered
    ]
