"""Application factory of the access portal (the broker)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

import boto3
from flask import Flask

from sso_common.keys import SigningIdentity, load_or_create_signing_identity, private_directory
from sso_common.store import open_audit_log, open_state_store
from sso_common.web import install_common, load_or_create_secret

from .connectors import Connector
from .connectors.config import build_connectors
from .credentials import CredentialIssuer
from .issuance import Issuance
from .provisioning import AccountSessions
from .sessions import LoginTransactions, Sessions
from .settings import BrokerSettings, load_settings


@dataclass
class BrokerState:
    """What the blueprints share, kept in app.extensions['broker']."""

    settings: BrokerSettings
    connectors: dict[str, Connector]
    sessions: Sessions
    transactions: LoginTransactions
    issuance: Issuance
    audit: object
    store: object
    idp_signing: SigningIdentity  # the broker's key as the AWS accounts' SAML identity provider


def credential_issuer(settings: BrokerSettings, signing: SigningIdentity) -> CredentialIssuer:
    """STS calls are signed with the broker's AWS credentials when it has some (the emulator needs
    that; real STS accepts it) and go unsigned otherwise, as AssumeRoleWithSAML allows."""
    session = boto3.Session()
    caller = None
    if session.get_credentials() is not None:
        caller = AccountSessions(session, settings.access.region, settings.aws_endpoint_url).session
    return CredentialIssuer(settings.aws_endpoint_url, settings.access.region, signing, settings.idp_entity_id,
                            caller_sessions=caller)


def create_app(settings: BrokerSettings | None = None) -> Flask:
    settings = settings or load_settings()
    private_directory(settings.instance_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its DEBUG output would print assertions

    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.secret_key = load_or_create_secret(Path(app.instance_path) / "flask-secret.bin")
    app.config["SESSION_COOKIE_NAME"] = "portal_form"
    install_common(app, "AWS access portal", secure_cookies=settings.secure_cookies)
    app.jinja_env.filters["timestamp"] = lambda epoch: datetime.fromtimestamp(epoch, timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")

    store = open_state_store(settings.store_url)
    audit = open_audit_log(settings.audit_url)
    idp_signing = load_or_create_signing_identity(settings.instance_dir / "keys", "aws-idp-signing",
                                                  settings.idp_entity_id)
    connectors = build_connectors(settings.upstreams_node, portal_url=settings.portal_url,
                                  instance_dir=settings.instance_dir, store=store, clock_skew=settings.clock_skew)
    app.extensions["broker"] = BrokerState(
        settings=settings, connectors=connectors, sessions=Sessions(store, settings.session_lifetime),
        transactions=LoginTransactions(store),
        issuance=Issuance(settings.access, credential_issuer(settings, idp_signing), audit),
        audit=audit, store=store, idp_signing=idp_signing,
    )

    from . import sso_api
    from .web import admin, device, login, metadata, portal

    for blueprint in (login.blueprint, portal.blueprint, admin.blueprint, metadata.blueprint, device.blueprint):
        app.register_blueprint(blueprint)
    sso_api.install(app)
    return app
