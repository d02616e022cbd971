"""What every blueprint of the portal shares: the app's state, the signed-in session, request origins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, current_app, g, redirect, render_template, request

from broker.connectors import Connector
from broker.connectors.client_auth import ClientKey
from broker.connectors.transactions import LoginTransactions
from broker.core import audit as audit_records
from broker.core.audit import API_CHANNEL as API_CHANNEL  # re-exported: the blueprints take channels from here
from broker.core.audit import PORTAL_CHANNEL, RequestOrigin
from broker.core.catalogue import remembered_first, upstream_explanation
from broker.core.guard import SessionGuard
from broker.core.issuance import Issuance
from broker.core.people import People
from broker.core.revocation import Revocations
from broker.core.sessions import PortalSession, Sessions, session_reference
from broker.errors import AccessEnded, RevalidationUnavailable
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
    guard: SessionGuard | None = None  # may a session (or a grant from it) still act? (broker.core.guard)
    revocations: Revocations | None = None  # revoking one person (broker.core.revocation)
    scim: Any = None  # the SCIM service provider (broker.scim.endpoint.ScimEndpoint), None without SCIM upstreams
    background: list[Any] = field(default_factory=list)  # this process's lease-holding workers (the revoker)
    logout_tokens: dict[str, Callable[[str], tuple[str | None, str | None]]] = field(default_factory=dict)
    # upstream -> verifies a back-channel logout token: (sid, sub), or LoginFailed (OIDC upstreams)


def state() -> PortalState:
    return cast(PortalState, current_app.extensions["broker"])


def current_session() -> PortalSession | None:
    """The browser's portal session as the guard sees it now (its identity current: groups from the directory
    or the upstream's last re-validation), or None. A session that may no longer act is ended here, and why is
    kept for the page (`g.session_ended`); one whose upstream could not be asked is refused for this request
    only (`g.session_unavailable`)."""
    if "portal_session" not in g:
        g.session_ended = g.session_unavailable = None
        session = state().sessions.load(request.cookies.get(SESSION_COOKIE))
        guard = state().guard
        if session is not None and guard is not None:
            try:
                session = replace(session, identity=guard.check(session_reference(session.id)).identity)
            except RevalidationUnavailable as unavailable:
                g.session_unavailable, session = unavailable.reason, None
            except AccessEnded as ended:
                _end(session, ended.reason)
                g.session_ended, session = ended.reason, None
        g.portal_session = session
    return cast(PortalSession | None, g.portal_session)


def still_signed_in(session: PortalSession) -> None:
    """The guard asked again, later in a request whose session passed it at the start (an issuance, once AWS
    has answered): AccessEnded ends the session as `current_session` does, and is raised."""
    guard = state().guard
    if guard is None:
        return
    try:
        guard.check(session_reference(session.id))
    except RevalidationUnavailable:
        raise
    except AccessEnded as ended:
        _end(session, ended.reason)
        raise


def _end(session: PortalSession, reason: str) -> None:
    state().sessions.end(session.id)
    audit_records.session_ended(
        state().audit, request_origin(), session.upstream_id, session.identity, reason, "portal session"
    )


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
            if g.get("session_unavailable"):
                return session_unavailable(g.session_unavailable)
            if g.get("session_ended"):
                return session_ended(g.session_ended)
            return session_ended() if request.method == "POST" else redirect("/login", code=303)
        return view(*args, **kwargs)

    return cast(F, wrapper)


def session_ended(reason: str | None = None) -> Response:
    """The answer to a form sent from a page whose portal session has ended; with `reason`, to any request of a
    session the guard ended (disabled, revoked, signed out at the identity provider...)."""
    message = (
        f"Your session has ended: {reason}. Sign in again." if reason else "Your session has ended. Sign in again."
    )
    page = render_template(
        "error.html", title="Session ended", message=message, home="/login", home_label="Sign in again"
    )
    response = Response(page, status=401, mimetype="text/html")
    if reason:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def session_unavailable(reason: str) -> Response:
    """The answer when the session's identity provider could not confirm the person just now."""
    page = render_template(
        "error.html",
        title="Identity provider unavailable",
        message=f"The portal could not check your access: {reason}.",
        home="/",
        home_label="Try again",
    )
    return Response(page, status=503, mimetype="text/html", headers={"Retry-After": "60"})


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
