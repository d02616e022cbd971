"""Connector types by name, and the `upstreams:` list of config/broker.yaml built into connectors.

An upstream entry names its `type`; the type's `from_config` parses the rest of the entry (its own
keys, validated strictly), as Dex's connector configs do. Adding a protocol is one module with a
connector class and one line in `CONNECTOR_TYPES`. The keys every entry has (the trust boundary of
broker.connectors.trust, the fetch limits of broker.connectors.fetch) are read here, and the upstreams
are checked against each other (`check_boundaries`: no address or broker group two directories share).

Callback URLs are not configurable: they follow from the portal URL and the upstream's id, and the
IdP registers exactly those (OIDC redirect_uri `/login/<id>/callback`, SAML ACS `/login/<id>/acs`,
SLO `/login/<id>/slo`, SP entity ID `/saml/metadata`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from broker.connectors import Connector, ConnectorContext, UpstreamEntry
from broker.connectors.client_auth import ClientKey
from broker.connectors.fetch import ServerSlots
from broker.connectors.oidc import OIDCConnector
from broker.connectors.saml import SAMLConnector
from broker.connectors.trust import read_trusts
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
    client_key: ClientKey | None = None,
) -> dict[str, Connector]:
    """Connectors by id, in configuration order (the sign-in page lists them so). ConfigError if invalid."""
    context = ConnectorContext(portal_url, instance_dir, store, clock_skew, ServerSlots(), client_key)
    connectors: dict[str, Connector] = {}
    elements = node.elements()
    for element in elements:
        kind = element.child("type")
        if kind.string() not in CONNECTOR_TYPES:
            raise kind.error(f"must be {' or '.join(CONNECTOR_TYPES)}")
        upstream_id = element.child("id").string(ID_PATTERN, "a URL-safe id (lowercase letters, digits, dashes)")
        if upstream_id in connectors:
            raise element.child("id").error(f"{upstream_id!r} is used by another upstream")
        connectors[upstream_id] = None  # type: ignore[assignment]  # the id is taken; built below
    if not connectors:
        raise node.error("must list at least one upstream identity provider")
    for element, trust in zip(elements, read_trusts(node), strict=True):
        entry = UpstreamEntry(
            trust.upstream, element.child("display_name").string(), element, trust, UpstreamEntry.fetch_policy(element)
        )
        connectors[trust.upstream] = CONNECTOR_TYPES[element.child("type").string()](entry, context)
    return connectors
