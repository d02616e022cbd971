"""Application factory of the mock corporate IdP (Example Corp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from idp_mock.authn import Authenticator
from idp_mock.consent import Consents
from idp_mock.directory import LiveDirectory
from idp_mock.directory_admin import blueprint as directory_admin_blueprint
from idp_mock.faults import Faults
from idp_mock.faults import blueprint as faults_blueprint
from idp_mock.metered import count_outcomes
from idp_mock.settings import IdPSettings, load_settings
from sso_common.keys import private_directory
from sso_common.lease import Lease, SingleWorker
from sso_common.logs import configure_logging
from sso_common.operations import install_operations
from sso_common.serve import WORKER_START
from sso_common.store import StateStore
from sso_common.store.registry import open_change_log, open_state_store
from sso_common.web import install_common, load_or_create_secret

# State that must outlive a restart of the state engine, kept in `stores.lasting` when one is named
# (docs/architecture.md, "Which engine keeps what"): registrations that applications hold on to (an OIDC
# client registered at run time, a SAML SP registered through the admin API) and consents given for 30 days.
LASTING_STATE_KINDS = frozenset({"oidc_client", "saml_sp", "consent"})


@dataclass
class IdPState:
    """What the blueprints share, kept in app.extensions['idp']."""

    settings: IdPSettings
    store: StateStore
    authenticator: Authenticator
    consents: Consents
    faults: Faults
    live_directory: LiveDirectory | None = None  # the directory file plus the run-time changes
    pusher: SingleWorker | None = None  # this process's SCIM pusher (idp_mock.scim_push), one lease for all

    @property
    def directory(self):
        return self.live_directory if self.live_directory is not None else self.settings.directory

    def wake_pusher(self) -> None:
        """A change was just written: push it now rather than at the next poll (when this process holds the lease)."""
        if self.pusher is not None:
            self.pusher.wake()


def scim_pusher(settings: IdPSettings, live: LiveDirectory, store: StateStore) -> SingleWorker | None:
    """The worker that pushes the directory to the SCIM targets, holding the `scim-pusher` lease (one for all the
    IdP's processes); None without targets."""
    targets = list(settings.provisioning.targets) if settings.provisioning and settings.provisioning.push else []
    if not targets:
        return None
    from idp_mock.scim_push import ScimPusher

    pusher = ScimPusher(live, live.log, store, targets)
    return SingleWorker("scim-pusher", Lease(store, "scim-pusher", ttl=10.0), pusher.step)


def create_app(settings: IdPSettings | None = None) -> Flask:
    settings = settings or load_settings()
    private_directory(settings.instance_dir)
    configure_logging()

    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.secret_key = load_or_create_secret(Path(app.instance_path) / "flask-secret.bin")
    app.config["SESSION_COOKIE_NAME"] = "idp_form"
    install_common(app, "Example Corp sign-in", secure_cookies=settings.secure_cookies)

    store = open_state_store(
        settings.stores["state"], lasting_url=settings.stores.get("lasting", ""), lasting_kinds=LASTING_STATE_KINDS
    )
    live = LiveDirectory(settings.directory, open_change_log(settings.stores["changes"]))
    authenticator = Authenticator(live, store, settings.throttle, settings.totp)
    count_outcomes(authenticator)  # sign-in outcomes in /metrics
    consents = Consents(store, settings.consent_lifetime)
    pusher = scim_pusher(settings, live, store)
    app.extensions["idp"] = IdPState(
        settings, store, authenticator, consents, Faults(settings.faults, store), live_directory=live, pusher=pusher
    )
    app.extensions[WORKER_START] = [pusher.start] if pusher is not None else []

    from idp_mock.login import blueprint as login_blueprint

    app.register_blueprint(login_blueprint)
    app.register_blueprint(faults_blueprint)
    app.register_blueprint(directory_admin_blueprint)
    from idp_mock.oidc_provider import register as register_oidc
    from idp_mock.saml_idp import register as register_saml

    register_oidc(app)
    register_saml(app)
    install_operations(app, "idp", {"state": store, "changes": live.log})
    return app
