"""Application factory of the access portal (the broker)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

from broker.aws.accounts import AccountSessions, broker_session
from broker.aws.revocation import AwsRevoker
from broker.aws.sts import StsCredentialIssuer
from broker.connectors.client_auth import load_or_create_client_key
from broker.connectors.oidc import OIDCConnector
from broker.connectors.oidc_session import OIDCRevalidator, verify_logout_token
from broker.connectors.registry import build_connectors
from broker.connectors.transactions import LoginTransactions
from broker.core.guard import SessionGuard
from broker.core.issuance import Issuance
from broker.core.people import People
from broker.core.revocation import Revocations
from broker.core.sessions import Sessions
from broker.http import register_blueprints
from broker.http.context import PortalState
from broker.identity_center.grants import CLIENT_KIND, GrantSettings, GrantStore
from broker.settings import BrokerSettings, load_settings
from sso_common.keys import SigningIdentity, load_or_create_signing_identity, private_directory
from sso_common.lease import Lease, SingleWorker
from sso_common.logs import configure_logging
from sso_common.metrics import CountingAuditLog
from sso_common.operations import install_operations
from sso_common.serve import WORKER_START
from sso_common.store import AuditLog, DirectoryStore, StateStore
from sso_common.store.registry import open_audit_log, open_change_log, open_directory_store, open_state_store
from sso_common.web import csrf_token, install_common, load_or_create_secret

# State that must outlive a restart of the state engine, kept in `stores.lasting` when one is named
# (docs/architecture.md, "Which engine keeps what"): a command-line client's registration lasts 90 days,
# and a lost one breaks the AWS CLI's `sso login` until its cache is cleared by hand.
LASTING_STATE_KINDS = frozenset({CLIENT_KIND})


def broker_accounts(settings: BrokerSettings) -> AccountSessions:
    """The broker's own AWS access into the member accounts. Its credentials are looked up when first needed, not
    at start: the portal needs them only for its first call to AWS, and may start before they exist."""
    return AccountSessions(
        lambda: broker_session(settings.aws_credentials_file), settings.access.region, settings.aws_endpoint_url
    )


def credential_issuer(settings: BrokerSettings, signing: SigningIdentity) -> StsCredentialIssuer:
    """STS calls are signed with the broker's AWS credentials when it has some (the emulator needs
    that; real STS accepts it) and go unsigned otherwise, as AssumeRoleWithSAML allows."""
    return StsCredentialIssuer(
        settings.aws_endpoint_url,
        settings.access.region,
        signing,
        settings.idp_entity_id,
        caller_sessions=broker_accounts(settings).signed_session,
    )


def scim_endpoint(settings: BrokerSettings, directory: DirectoryStore, revocations: Revocations, audit: AuditLog):
    """The SCIM service provider at <portal>/scim/v2 for the upstreams with a SCIM token, or None."""
    clients = [
        (trust, lifecycle.scim_token)
        for lifecycle in settings.lifecycles
        if lifecycle.scim_token and (trust := settings.trust(lifecycle.upstream)) is not None
    ]
    if not clients:
        return None
    from scim2_server.service import ScimService

    from broker.scim.endpoint import RetryingHandler, ScimClient, ScimEndpoint
    from broker.scim.provider import scim_provider
    from broker.scim.storage import DirectoryScimStorage

    provider = scim_provider()
    service = ScimService(provider)
    return ScimEndpoint(
        f"{settings.portal_url}/scim/v2",
        service,
        [
            ScimClient(
                trust.upstream,
                token,
                RetryingHandler(service, DirectoryScimStorage(trust, directory, provider, revocations, audit)),
            )
            for trust, token in clients
        ],
    )


def aws_revoker(settings: BrokerSettings, store: StateStore, changes, audit: AuditLog) -> SingleWorker | None:
    """The worker that carries revocations out in AWS and sweeps expired deny statements: one per process,
    of which the holder of the lease works (sso_common.lease); None when revocation stops at the broker."""
    if not settings.revocation.aws:
        return None
    accounts = broker_accounts(settings)
    revoker = AwsRevoker(
        settings.access,
        accounts.client,
        changes,
        audit,
        store,
        clock_margin=settings.revocation.clock_margin,
        sweep_interval=settings.revocation.sweep_interval,
    )
    return SingleWorker("aws-revoker", Lease(store, "aws-revoker", ttl=10.0), revoker.step)


def logout_token_check(connector: OIDCConnector, store: StateStore) -> Callable[[str], tuple[str | None, str | None]]:
    """Verifies this upstream's back-channel logout tokens, each jti once (a replay cache in the state store)."""
    return lambda token: verify_logout_token(connector, token, lambda jti, ttl: store.add("logout_jti", jti, {}, ttl))


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
    # A global, so that the macros (templates/_macros.html) are imported without the page's context: Jinja then
    # builds the macro module once, where an import `with context` builds it again at every render.
    app.jinja_env.globals["csrf_token"] = csrf_token

    store = open_state_store(
        settings.stores["state"], lasting_url=settings.stores.get("lasting", ""), lasting_kinds=LASTING_STATE_KINDS
    )
    audit = CountingAuditLog(open_audit_log(settings.stores["audit"]))  # counts sign-ins and issuances as audited
    directory = open_directory_store(settings.stores["directory"])
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
    changes = open_change_log(settings.stores["changes"])  # the revocation outbox
    people = People(directory, audit, scim_upstreams=frozenset(lc.upstream for lc in settings.lifecycles if lc.scim))
    revocations = Revocations(directory, audit, changes)
    oidc = {upstream_id: c for upstream_id, c in connectors.items() if isinstance(c, OIDCConnector)}
    guard = SessionGuard(
        sessions,
        people,
        store,
        settings.lifecycle,
        {upstream_id: OIDCRevalidator(connector) for upstream_id, connector in oidc.items()},
    )
    revoker = aws_revoker(settings, store, changes, audit)
    app.extensions[WORKER_START] = [revoker.start] if revoker else []
    app.extensions["broker"] = PortalState(
        settings=settings,
        connectors=connectors,
        sessions=sessions,
        transactions=LoginTransactions(store, connectors),
        issuance=Issuance(settings.access, credential_issuer(settings, idp_signing), audit),
        grants=GrantStore(
            store,
            GrantSettings.from_environment(settings.session_lifetime),
            sessions.is_live,
            guard=lambda reference: guard.check(reference).identity,
        ),
        audit=audit,
        store=store,
        idp_signing=idp_signing,
        people=people,
        oidc_client_key=client_key,
        guard=guard,
        revocations=revocations,
        scim=scim_endpoint(settings, directory, revocations, audit),
        background=[revoker] if revoker else [],
        logout_tokens={upstream_id: logout_token_check(connector, store) for upstream_id, connector in oidc.items()},
    )
    register_blueprints(app)
    install_operations(app, "portal", {"state": store, "directory": directory, "audit": audit})
    return app
