"""IAM Identity Center compatible APIs on the portal, so unmodified AWS SDKs and CLIs sign in here.

sso-oidc (RegisterClient, StartDeviceAuthorization, CreateToken) and the sso portal API
(GetRoleCredentials, ListAccounts, ListAccountRoles, Logout) answer at the portal's root with AWS's
paths and wire format: point AWS_ENDPOINT_URL_SSO_OIDC and AWS_ENDPOINT_URL_SSO (or a profile's
`services` section) at the portal URL.
"""

from __future__ import annotations

from flask import Flask, current_app

from .store import SsoSettings, SsoStore


def sso_store() -> SsoStore:
    return current_app.extensions["sso_api"]


def portal_session_live(reference: str | None) -> bool:
    """Whether the portal session a grant refers to is still live: CLI sign-ins end with it."""
    return current_app.extensions["broker"].sessions.is_live(reference)


def install(app: Flask) -> None:
    """Build the store on the broker's StateStore and register both API blueprints."""
    from . import oidc, portal_api

    state = app.extensions["broker"]
    app.extensions["sso_api"] = SsoStore(state.store, SsoSettings.from_environment(state.settings.session_lifetime))
    app.register_blueprint(oidc.blueprint)
    app.register_blueprint(portal_api.blueprint)
