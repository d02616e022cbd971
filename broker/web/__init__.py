"""The portal's web layer: blueprints that only glue connectors, sessions and issuance together."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, redirect, request

from ..audit import Client
from ..sessions import PortalSession

SESSION_COOKIE = "portal_session"
LOGIN_COOKIE = "portal_login"


def broker():
    return current_app.extensions["broker"]


def current_session() -> PortalSession | None:
    if "portal_session" not in g:
        g.portal_session = broker().sessions.load(request.cookies.get(SESSION_COOKIE))
    return g.portal_session


def signed_in(view):
    """Pages for signed-in people: others go to the sign-in choice first."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if current_session() is None:
            return redirect("/login", code=303)
        return view(*args, **kwargs)

    return wrapper


def browser_client() -> Client:
    return Client(request.remote_addr or "", request.headers.get("User-Agent", ""), "portal")


def cookie_options(max_age: int | None) -> dict:
    return {"max_age": max_age, "httponly": True, "samesite": "Lax", "path": "/",
            "secure": current_app.config["SESSION_COOKIE_SECURE"]}
