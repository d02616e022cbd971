"""The broker's configuration (config/broker.yaml and the files it names), validated once at start-up.

Which file: `--config PATH` on the command line, else the BROKER_CONFIG environment variable, else
config/broker.yaml of the installation; the files it names (access.yaml, SAML metadata files) are read
relative to its folder. access.yaml's assignments are checked against the groups the upstreams' group
mappings can produce (broker.connectors.trust), and so is `admin_group`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from broker.connectors.trust import GroupCatalogue, UpstreamTrust, read_trusts
from broker.core.access import AccessConfig, load_access
from sso_common.config import URL_PATTERN, Node, load_yaml
from sso_common.store.registry import parse_store_urls

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "broker.yaml"


@dataclass(frozen=True)
class UpstreamLifecycle:
    """How the broker keeps an upstream's people current after they signed in (README, "Provisioning and
    revocation"): SCIM pushes (the directory is then the source of truth), or else re-validation with the
    upstream every `revalidate_seconds` (OIDC: refresh token or userinfo), and for an upstream that can do
    neither (SAML without SCIM) a cap on the portal session's age."""

    upstream: str
    protocol: str
    scim_token: str | None = field(default=None, repr=False)
    revalidate_seconds: int | None = None  # None: never (what an upstream not in the config gets)
    max_session_seconds: int | None = None  # None: the portal's session lifetime

    @property
    def scim(self) -> bool:
        return self.scim_token is not None

    @property
    def revalidates(self) -> bool:
        """Whether sessions are re-validated with the upstream (OIDC without SCIM)."""
        return not self.scim and self.protocol == "oidc" and self.revalidate_seconds is not None


@dataclass(frozen=True)
class RevocationSettings:
    """Credentials already issued: deny statements in AWS (broker.aws.revocation)."""

    aws: bool = True  # add Deny statements on the roles; off: revocation stops at the broker
    clock_margin: int = 5  # seconds added to a revocation's cutoff, for clock drift between the broker and AWS
    sweep_interval: int = 300  # seconds between removals of expired deny statements


@dataclass(frozen=True)
class BrokerSettings:
    portal_url: str  # public base URL of the portal, as browsers see it
    access: AccessConfig
    aws_endpoint_url: str | None  # None: real AWS
    aws_endpoint_url_for_clients: str | None  # the same AWS as people's tools reach it; None: real AWS
    aws_credentials_file: Path  # the broker's own AWS keys when this file exists (the emulator's, in the demo)
    session_lifetime: int
    clock_skew: int
    stores: dict[str, str]  # URL per store contract: state, directory, audit
    instance_dir: Path
    upstreams_node: Node  # `upstreams:`, built into connectors by the app
    admin_group: str
    upstream_trusts: tuple[UpstreamTrust, ...] = ()  # what each upstream may vouch for
    lifecycles: tuple[UpstreamLifecycle, ...] = ()  # how each upstream keeps its people current
    revocation: RevocationSettings = RevocationSettings()
    # The Employee Directory instance's metadata service, for the explanation's workload path (development
    # stand-ins only: devstack/instance_metadata.py answers /explain); None: only the declared roles are shown.
    workload_metadata_url: str | None = None

    def lifecycle(self, upstream_id: str) -> UpstreamLifecycle:
        for lifecycle in self.lifecycles:
            if lifecycle.upstream == upstream_id:
                return lifecycle
        return UpstreamLifecycle(upstream_id, "unknown")

    def trust(self, upstream_id: str) -> UpstreamTrust | None:
        return next((trust for trust in self.upstream_trusts if trust.upstream == upstream_id), None)

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.portal_url).scheme == "https"

    @property
    def idp_entity_id(self) -> str:
        """The broker's own entity ID as the AWS accounts' SAML identity provider."""
        return f"{self.portal_url}/saml/idp-metadata"


def default_instance_dir() -> Path:
    return Path(os.environ.get("BROKER_INSTANCE_DIR", Path.cwd() / "instance" / "broker"))


def load_settings(config_path: str | Path | None = None, instance_dir: str | Path | None = None) -> BrokerSettings:
    config_path = Path(config_path or os.environ.get("BROKER_CONFIG") or DEFAULT_CONFIG)
    root = load_yaml(config_path)
    if "known_groups_file" in root.mapping():
        raise root.child("known_groups_file").error(
            "is no longer read: access.yaml is checked against the groups the upstreams' `groups:` mappings "
            "produce (README, 'Plug in your own identity provider')"
        )
    root.only_keys(
        "portal_url",
        "access",
        "aws_endpoint_url",
        "aws_endpoint_url_for_clients",
        "aws_credentials_file",
        "session_lifetime_seconds",
        "clock_skew_seconds",
        "stores",
        "upstreams",
        "admin_group",
        "revocation",
        "workload_metadata_url",
    )
    portal_url = root.child("portal_url").string(URL_PATTERN, "an http(s) URL").rstrip("/")
    upstreams = root.child("upstreams")
    if not upstreams.elements():
        raise upstreams.error("must list at least one upstream identity provider")
    trusts = read_trusts(upstreams)
    groups = GroupCatalogue(trusts)
    access = load_access(config_path.parent / root.child("access").string(), groups)
    admin_node = root.child("admin_group", "aws-admins")
    if admin_node.string() not in groups:
        raise admin_node.error(f"no upstream can make anyone a member of {admin_node.value!r} ({groups})")
    endpoint_node = root.child("aws_endpoint_url", "")
    endpoint = endpoint_node.string(URL_PATTERN, "an http(s) URL").rstrip("/") if endpoint_node.value else None
    for_clients = root.child("aws_endpoint_url_for_clients", endpoint or "")
    instance = Path(instance_dir) if instance_dir else default_instance_dir()
    return BrokerSettings(
        portal_url=portal_url,
        access=access,
        aws_endpoint_url=endpoint,
        aws_endpoint_url_for_clients=(
            for_clients.string(URL_PATTERN, "an http(s) URL").rstrip("/") if endpoint and for_clients.value else None
        ),
        aws_credentials_file=instance / root.child("aws_credentials_file", "aws-credentials").string(),
        session_lifetime=root.child("session_lifetime_seconds", 8 * 3600).integer(300, 7 * 24 * 3600),
        clock_skew=root.child("clock_skew_seconds", 60).integer(0, 600),
        stores=parse_store_urls(
            root.child("stores", {}),
            {
                "state": f"sqlite:///{instance / 'broker-state.db'}",
                "directory": f"sqlite:///{instance / 'directory.db'}",
                "audit": f"sqlite:///{instance / 'audit.db'}",
                "changes": f"sqlite:///{instance / 'changes.db'}",
                "lasting": "",  # state that must outlive a restart of the state engine (broker/app.py)
            },
        ),
        instance_dir=instance,
        upstreams_node=upstreams,
        admin_group=admin_node.string(),
        upstream_trusts=tuple(trusts),
        lifecycles=tuple(_lifecycle(element, portal_url) for element in upstreams.elements()),
        revocation=_revocation(root.child("revocation", {})),
        workload_metadata_url=_optional_url(root.child("workload_metadata_url", "")),
    )


SCIM_TOKEN_MIN_LENGTH = 24


def _optional_url(node: Node) -> str | None:
    return node.string(URL_PATTERN, "an http(s) URL").rstrip("/") if node.value else None


def _lifecycle(node: Node, portal_url: str) -> UpstreamLifecycle:
    """The lifecycle keys of one `upstreams:` entry: `scim: {token | token_file}`, `revalidate_minutes` (1 to
    60, default 5) and `max_session_minutes` (5 to 10080; default 60 for an upstream that can neither push
    nor be asked again: SAML without SCIM)."""
    protocol = node.child("type").string()
    scim_node = node.child("scim", None)
    token = None
    if scim_node.value is not None:
        scim_node.only_keys("token", "token_file")
        inline, file = scim_node.child("token", None), scim_node.child("token_file", None)
        if (inline.value is None) == (file.value is None):
            raise scim_node.error("give token or token_file (a SCIM bearer token of this upstream), one of them")
        if inline.value is not None:
            token = inline.secret(portal_url, SCIM_TOKEN_MIN_LENGTH)
        else:
            path = Path(node.source).parent / file.string()
            try:
                token = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as error:
                raise file.error(f"cannot read {path} ({getattr(error, 'strerror', None) or 'not UTF-8'})") from None
            if len(token) < SCIM_TOKEN_MIN_LENGTH:
                raise file.error(f"{path} must hold a token of at least {SCIM_TOKEN_MIN_LENGTH} characters")
    cap_default = 60 if protocol != "oidc" and token is None else None
    cap = node.child("max_session_minutes", cap_default)
    return UpstreamLifecycle(
        upstream=node.child("id").string(),
        protocol=protocol,
        scim_token=token,
        revalidate_seconds=60 * node.child("revalidate_minutes", 5).integer(1, 60),
        max_session_seconds=None if cap.value is None else 60 * cap.integer(5, 7 * 24 * 60),
    )


def _revocation(node: Node) -> RevocationSettings:
    node.only_keys("aws", "clock_margin_seconds", "sweep_minutes")
    return RevocationSettings(
        aws=node.child("aws", True).boolean(),
        clock_margin=node.child("clock_margin_seconds", 5).integer(0, 600),
        sweep_interval=60 * node.child("sweep_minutes", 5).integer(1, 24 * 60),
    )
