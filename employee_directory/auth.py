"""Sign-in through Example Corp's IdP (OpenID Connect, authorization code with PKCE, authlib's Flask
client), and the app's own rule of who may do what: every employee reads, members of the configured
editors group (hr) change photos.

The app keeps in its signed session cookie only who the person is (username, name, email, groups), never a
token. Sign-out ends the app's session (the IdP's may go on).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for

from employee_directory import web
from employee_directory.settings import Settings
from employee_directory.web import PageError

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)
USERNAME_PATTERN = r"[a-z][a-z0-9._-]{0,63}"


@dataclass(frozen=True)
class User:
    username: str
    name: str
    email: str
    groups: tuple[str, ...]

    def may_edit(self, settings: Settings) -> bool:
        """The Employee Directory's own rule (its AWS role would allow any upload)."""
        return settings.editors_group in self.groups


def init_app(app: Flask, settings: Settings) -> None:
    oauth = OAuth(app)
    oauth.register(
        name="idp",
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        server_metadata_url=f"{settings.issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile groups", "code_challenge_method": "S256", "timeout": 10},
    )
    app.extensions["directory_oauth"] = oauth


def _idp():
    return current_app.extensions["directory_oauth"].idp


def current_user() -> User | None:
    person = session.get("user")
    if not isinstance(person, dict):
        return None
    return User(person["username"], person["name"], person["email"], tuple(person["groups"]))


def login_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any):
        if current_user() is None:
            return redirect(url_for("auth.login", next=_local_path(request.full_path)))
        return view(*args, **kwargs)

    return wrapped


def _local_path(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target.rstrip("?") or "/"


@blueprint.get("/login")
def login():
    if current_user() is not None:
        return redirect(_local_path(request.args.get("next")))
    session["next"] = _local_path(request.args.get("next"))
    try:
        return _idp().authorize_redirect(web.settings().redirect_uri)
    except requests.RequestException:
        log.warning("the IdP does not answer (discovery)")
        raise PageError(
            "Example Corp's sign-in service does not answer: try again in a moment.", 502, "Sign-in is unavailable"
        ) from None


@blueprint.get("/auth/callback")
def callback():
    settings = web.settings()
    try:
        token = _idp().authorize_access_token()
    except OAuthError as error:
        log.info("sign-in refused: %s", error.error)
        if error.error == "access_denied":
            raise PageError("The sign-in was cancelled or refused at Example Corp.", 403, "Not signed in") from None
        raise PageError(
            "The sign-in could not be completed (it may have expired): start again.", 400, "Not signed in"
        ) from None
    except requests.RequestException:
        log.warning("the IdP does not answer (token)")
        raise PageError(
            "Example Corp's sign-in service does not answer: try again in a moment.", 502, "Sign-in is unavailable"
        ) from None
    except Exception as error:  # a bad ID token (signature, audience, nonce, expiry): joserfc's or authlib's
        log.warning("sign-in answer refused: %s", type(error).__name__)
        raise PageError("The sign-in answer could not be verified: start again.", 400, "Not signed in") from None
    claims = token.get("userinfo") or {}
    if claims.get("iss") != settings.issuer:
        raise PageError("The sign-in answer came from another identity provider.", 400, "Not signed in")
    username = claims.get("preferred_username")
    groups = claims.get("groups", [])
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise PageError("Example Corp did not say who you are (no username).", 400, "Not signed in")
    if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
        groups = []
    next_path = _local_path(session.pop("next", "/"))
    session.clear()  # a new session for the signed-in person (no fixation)
    session.permanent = True
    session["user"] = {
        "username": username,
        "name": str(claims.get("name") or username),
        "email": str(claims.get("email") or ""),
        "groups": sorted(groups),
    }
    log.info("signed in: %s", username)
    return redirect(next_path)


@blueprint.post("/logout")
def logout():
    user = current_user()
    session.clear()
    if user:
        log.info("signed out: %s", user.username)
    return redirect(url_for("auth.signed_out"))


@blueprint.get("/signed-out")
def signed_out():
    return render_template("signed_out.html")
