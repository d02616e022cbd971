"""Application factory of the access portal (the broker)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

from broker.aws.accounts import AccountSessions, broker_session
from broker.aws.sts import StsCredentialIssuer
from broker.connectors.client_auth import load_or_create_client_key
from broker.connectors.registry import build_connectors
from broker.connectors.transactions import LoginTransactions
from broker.core.issuance import Issuance
from broker.core.people import People
from broker.core.sessions import Sessions
from broker.http import register_blueprints
from broker.http.context import PortalState
from broker.identity_center.grants import GrantSettings, GrantStore
from broker.settings import BrokerSettings, load_settings
from sso_common.keys import SigningIdentity, load_or_create_signing_identity, private_directory
from sso_common.logs import configure_logging
from sso_common.store.registry import open_audit_log, open_directory_store, open_state_store
from sso_common.web import install_common, load_or_create_secret


def credential_issuer(settings: BrokerSettings, signing: SigningIdentity) -> StsCredentialIssuer:
    """STS calls are signed with the broker's AWS credentials when it has some (the emulator needs
    that; real STS accepts it) and go unsigned otherwise, as AssumeRoleWithSAML allows."""
    session = broker_session(settings.aws_credentials_file)
    caller = None
    if session.get_credentials() is not None:
        caller = AccountSessions(session, settings.access.region, settings.aws_endpoint_url).session
    return StsCredentialIssuer(
        settings.aws_endpoint_url, settings.access.region, signing, settings.idp_entity_id, caller_sessions=caller
    )


def create_app(settings: BrokerSettings | None = None) -> Flask:
    settings = settings or load_settings()
    private_directory(settings.instance_dir)
    configure_logging()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its DEBUG output would print assertions

    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.secret_key = load_or_create_secret(Path(app.instance_path) / "flask-secret.bin")
    app.config["SESSION_COOKIE_NAME"] = "portal_form"
    install_common(app, "AWS access portal", secure_cookies=settings.secure_cookies)
    app.jinja_env.filters["timestamp"] = lambda epoch: datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")

    store = open_state_store(settings.stores["state"])
    audit = open_audit_log(settings.stores["audit"])
    idp_signing = load_or_create_signing_identity(
        settings.instance_dir / "keys", "aws-idp-signing", settings.idp_entity_id
    )
    client_key = load_or_create_client_key(settings.instance_dir)  # private_key_jwt; published at /oidc/jwks.json
    connectors = build_connectors(
        settings.upstreams_node,
        portal_url=settings.portal_url,
        instance_dir=settings.instance_dir,
        store=store,
        clock_skew=settings.clock_skew,
        client_key=client_key,
    )
    sessions = Sessions(store, settings.session_lifetime)
    app.extensions["broker"] = PortalState(
        settings=settings,
        connectors=connectors,
        sessions=sessions,
        transactions=LoginTransactions(store, connectors),
        issuance=Issuance(settings.access, credential_issuer(settings, idp_signing), audit),
        grants=GrantStore(store, GrantSettings.from_environment(settings.session_lifetime), sessions.is_live),
        audit=audit,
        store=store,
        idp_signing=idp_signing,
        people=People(open_directory_store(settings.stores["directory"]), audit),
        oidc_client_key=client_key,
    )
    register_blueprints(app)
    return app
