"""Connector types by name, and the `upstreams:` list of config/broker.yaml built into connectors.

An upstream entry names its `type`; the type's `from_config` parses the rest of the entry (its own
keys, validated strictly), as Dex's connector configs do. Adding a protocol is one module with a
connector class and one line in `CONNECTOR_TYPES`.

Callback URLs are not configurable: they follow from the portal URL and the upstream's id, and the
IdP registers exactly those (OIDC redirect_uri `/login/<id>/callback`, SAML ACS `/login/<id>/acs`,
SLO `/login/<id>/slo`, SP entity ID `/saml/metadata`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from broker.connectors import Connector, ConnectorContext, UpstreamEntry
from broker.connectors.oidc import OIDCConnector
from broker.connectors.saml import SAMLConnector
from sso_common.config import Node
from sso_common.store import StateStore

ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"


ConnectorFactory = Callable[[UpstreamEntry, ConnectorContext], Connector]

CONNECTOR_TYPES: dict[str, ConnectorFactory] = {
    "oidc": OIDCConnector.from_config,
    "saml": SAMLConnector.from_config,
}


def build_connectors(
    node: Node,
    *,
    portal_url: str,
    instance_dir: Path,
    store: StateStore,
    clock_skew: int,
    known_groups: Iterable[str] | None = None,
) -> dict[str, Connector]:
    """Connectors by id, in configuration order (the sign-in page lists them so). ConfigError if invalid.

    With `known_groups`, an identity keeps only those of its upstream groups (the only ones access
    rules can name), so a user in hundreds of corporate groups does not carry them all around."""
    context = ConnectorContext(
        portal_url, instance_dir, store, clock_skew, frozenset(known_groups) if known_groups is not None else None
    )
    connectors: dict[str, Connector] = {}
    for element in node.elements():
        kind = element.child("type")
        factory = CONNECTOR_TYPES.get(kind.string())
        if factory is None:
            raise kind.error(f"must be {' or '.join(CONNECTOR_TYPES)}")
        upstream_id = element.child("id").string(ID_PATTERN, "a URL-safe id (lowercase letters, digits, dashes)")
        if upstream_id in connectors:
            raise element.child("id").error(f"{upstream_id!r} is used by another upstream")
        entry = UpstreamEntry(upstream_id, element.child("display_name").string(), element)
        connectors[upstream_id] = factory(entry, context)
    if not connectors:
        raise node.error("must list at least one upstream identity provider")
    return connectors
