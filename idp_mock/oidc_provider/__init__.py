"""OpenID Connect provider of the mock IdP, built on authlib (protocol) and joserfc (JWT/JWK).

Endpoints: discovery at /.well-known/openid-configuration, then /oidc/authorize, /oidc/token,
/oidc/userinfo, /oidc/jwks, /oidc/logout (RP-initiated logout) and /oidc/register (RFC 7591).
Logins go through the IdP's shared SSO session (idp_mock.session), so one login serves OIDC and SAML.
"""

from __future__ import annotations

import logging
import os

from authlib.common.security import is_secure_transport
from flask import Flask


def register(app: Flask) -> None:
    from idp_mock.login import register_continuation
    from idp_mock.oidc_provider.server import build_server
    from idp_mock.oidc_provider.views import CONTINUE_PATH, api, authorize_continue, pages

    idp = app.extensions["idp"]
    if not is_secure_transport(idp.settings.issuer):
        # authlib refuses plain http except on loopback; an http issuer (the demo stack's container
        # names) is the operator's explicit choice, with TLS terminated in front in production.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    logging.getLogger("authlib").setLevel(logging.INFO)  # authlib logs issued tokens at DEBUG
    app.extensions["oidc"] = build_server(idp.settings, idp.store)
    app.extensions["oidc"].directory = idp.directory  # the live one: run-time changes included
    from idp_mock.oidc_provider.backchannel import BackChannelLogout
    from idp_mock.session import LOGOUT_LISTENERS

    app.extensions.setdefault(LOGOUT_LISTENERS, []).append(BackChannelLogout(app.extensions["oidc"]))
    register_continuation(app, CONTINUE_PATH, authorize_continue)  # the sign-in's POST answers with the code
    app.register_blueprint(pages)
    app.register_blueprint(api)
