"""Application factory of the mock corporate IdP (Example Corp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from idp_mock.authn import Authenticator
from idp_mock.consent import Consents
from idp_mock.faults import Faults
from idp_mock.faults import blueprint as faults_blueprint
from idp_mock.settings import IdPSettings, load_settings
from sso_common.keys import private_directory
from sso_common.logs import configure_logging
from sso_common.store import StateStore
from sso_common.store.registry import open_state_store
from sso_common.web import install_common, load_or_create_secret


@dataclass
class IdPState:
    """What the blueprints share, kept in app.extensions['idp']."""

    settings: IdPSettings
    store: StateStore
    authenticator: Authenticator
    consents: Consents
    faults: Faults

    @property
    def directory(self):
        return self.settings.directory


def create_app(settings: IdPSettings | None = None) -> Flask:
    settings = settings or load_settings()
    private_directory(settings.instance_dir)
    configure_logging()

    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.secret_key = load_or_create_secret(Path(app.instance_path) / "flask-secret.bin")
    app.config["SESSION_COOKIE_NAME"] = "idp_form"
    install_common(app, "Example Corp sign-in", secure_cookies=settings.secure_cookies)

    store = open_state_store(settings.stores["state"])
    authenticator = Authenticator(settings.directory, store, settings.throttle, settings.totp)
    consents = Consents(store, settings.consent_lifetime)
    app.extensions["idp"] = IdPState(settings, store, authenticator, consents, Faults(settings.faults, store))

    from idp_mock.login import blueprint as login_blueprint

    app.register_blueprint(login_blueprint)
    app.register_blueprint(faults_blueprint)
    from idp_mock.oidc_provider import register as register_oidc
    from idp_mock.saml_idp import register as register_saml

    register_oidc(app)
    register_saml(app)
    return app
