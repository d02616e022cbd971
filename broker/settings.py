"""The broker's configuration (config/broker.yaml and the files it names), validated once at start-up.

Which file: `--config PATH` on the command line, else the BROKER_CONFIG environment variable, else
config/broker.yaml of the installation; the files it names (access.yaml, SAML metadata files) are read
relative to its folder. access.yaml's assignments are checked against the groups the upstreams' group
mappings can produce (broker.connectors.trust), and so is `admin_group`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from broker.connectors.trust import GroupCatalogue, UpstreamTrust, read_trusts
from broker.core.access import AccessConfig, load_access
from sso_common.config import URL_PATTERN, Node, load_yaml
from sso_common.store.registry import parse_store_urls

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "broker.yaml"


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
            },
        ),
        instance_dir=instance,
        upstreams_node=upstreams,
        admin_group=admin_node.string(),
        upstream_trusts=tuple(trusts),
    )
