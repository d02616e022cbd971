"""SAML 2.0 identity provider of the mock IdP: standard SPs (python3-saml, pysaml2, AWS) use it unchanged.

The signing key and certificate are generated on first start into the instance folder and persisted, so
SPs that trusted the published metadata keep trusting it across restarts.
"""

from __future__ import annotations

from idp_mock.login import register_continuation
from idp_mock.saml_idp.metadata import idp_metadata
from idp_mock.saml_idp.registry import ServiceProviders
from idp_mock.saml_idp.views import CONTINUE_PREFIX, SAMLIdP, admin, blueprint, resume_request
from sso_common.keys import load_or_create_signing_identity


def register(app):
    idp = app.extensions["idp"]
    settings = idp.settings.saml
    identity = load_or_create_signing_identity(
        idp.settings.instance_dir, "saml-signing", f"Example Corp SAML IdP {idp.settings.issuer}"
    )
    metadata = {want: idp_metadata(settings, identity, want_signed=want) for want in (True, False)}
    app.extensions["saml"] = SAMLIdP(
        settings, identity, ServiceProviders(settings.service_providers, idp.store), metadata
    )
    register_continuation(app, CONTINUE_PREFIX, resume_request)  # the sign-in's POST answers with the Response
    app.register_blueprint(blueprint)
    app.register_blueprint(admin)
