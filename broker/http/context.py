"""What every blueprint of the portal shares: the app's state, the signed-in session, request origins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, redirect, request

from broker.connectors import Connector
from broker.connectors.transactions import LoginTransactions
from broker.core.audit import RequestOrigin
from broker.core.issuance import Issuance
from broker.core.sessions import PortalSession, Sessions
from broker.identity_center.grants import GrantStore
from broker.settings import BrokerSettings
from sso_common.keys import SigningIdentity
from sso_common.store import AuditLog, StateStore

SESSION_COOKIE = "portal_session"
LOGIN_COOKIE = "portal_login"
PORTAL_CHANNEL = "portal"  # a browser on the portal's pages
API_CHANNEL = "sso-api"  # a CLI or SDK, and the browser approvals of its sign-ins

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
    """Pages for signed-in people: others go to the sign-in choice first."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_session() is None:
            return redirect("/login", code=303)
        return view(*args, **kwargs)

    return cast(F, wrapper)


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
