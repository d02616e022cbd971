"""The `upstreams:` list of config/broker.yaml, validated strictly and built into connectors at start-up.

Callback URLs are not configurable: they follow from the portal URL and the upstream's id, and the
IdP registers exactly those (OIDC redirect_uri `/login/<id>/callback`, SAML ACS `/login/<id>/acs`,
SLO `/login/<id>/slo`, SP entity ID `/saml/metadata`).
"""

from __future__ import annotations

from pathlib import Path

from sso_common.config import URL_PATTERN, Node
from sso_common.keys import load_or_create_signing_identity
from sso_common.store import StateStore

from . import Connector, UpstreamUnavailable
from .mapping import IdentityMapping
from .oidc import OIDCConnector
from .saml import MFA_CONTEXTS, SAMLConnector

ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
COMMON_KEYS = ("id", "display_name", "type")
OIDC_CLAIMS = {"email": "email", "display_name": "name", "groups": "groups", "department": "department",
               "username": "preferred_username"}
SAML_ATTRIBUTES = {"email": "email", "display_name": "displayName", "groups": "groups", "department": "department",
                   "username": None}


def build_connectors(node: Node, *, portal_url: str, instance_dir: Path, store: StateStore, clock_skew: int,
                     known_groups: set[str] | None = None) -> dict[str, Connector]:
    """Connectors by id, in configuration order (the sign-in page lists them so). ConfigError if invalid.

    With `known_groups`, an identity keeps only those of its upstream groups (the only ones access
    rules can name), so a user in hundreds of corporate groups does not carry them all around."""
    known = frozenset(known_groups) if known_groups is not None else None
    connectors: dict[str, Connector] = {}
    for element in node.elements():
        kind = element.child("type")
        if kind.string() not in ("oidc", "saml"):
            raise kind.error("must be oidc or saml")
        upstream_id = element.child("id").string(ID_PATTERN, "a URL-safe id (lowercase letters, digits, dashes)")
        if upstream_id in connectors:
            raise element.child("id").error(f"{upstream_id!r} is used by another upstream")
        common = {"id": upstream_id, "display_name": element.child("display_name").string(),
                  "clock_skew": clock_skew}
        if kind.value == "oidc":
            connectors[upstream_id] = _oidc(element, common, portal_url, known)
        else:
            connectors[upstream_id] = _saml(element, common, portal_url, instance_dir, store, known)
    if not connectors:
        raise node.error("must list at least one upstream identity provider")
    return connectors


def _oidc(node: Node, common: dict, portal_url: str, known: frozenset[str] | None) -> OIDCConnector:
    node.only_keys(*COMMON_KEYS, "issuer", "client_id", "client_secret", "scopes", "claims")
    scopes_node = node.child("scopes", ["openid", "email", "profile", "groups"])
    scopes = scopes_node.strings()
    if "openid" not in scopes:
        raise scopes_node.error("must include openid")
    return OIDCConnector(
        **common,
        issuer=node.child("issuer").string(URL_PATTERN, "an http(s) URL").rstrip("/"),
        client_id=node.child("client_id").string(),
        client_secret=node.child("client_secret").secret(portal_url, min_length=1),  # the IdP sets its length
        redirect_uri=f"{portal_url}/login/{common['id']}/callback",
        scopes=scopes,
        mapping=_mapping(node.child("claims", {}), OIDC_CLAIMS, known),
    )


def _saml(node: Node, common: dict, portal_url: str, instance_dir: Path, store: StateStore,
          known: frozenset[str] | None) -> SAMLConnector:
    node.only_keys(*COMMON_KEYS, "metadata_url", "metadata_file", "attributes", "want_assertions_signed",
                   "mfa_authn_contexts")
    signed = node.child("want_assertions_signed", True)
    if not signed.boolean():
        raise signed.error("must be true: unsigned assertions are never accepted")
    url, file = node.child("metadata_url", None), node.child("metadata_file", None)
    if (url.value is None) == (file.value is None):
        raise node.error("needs exactly one of metadata_url and metadata_file")
    metadata_xml = None
    if file.value is not None:
        path = Path(node.source).parent / file.string()
        try:
            metadata_xml = path.read_text(encoding="utf-8")
        except OSError as error:
            raise file.error(f"cannot read {path} ({error.strerror})") from None
    contexts = node.child("mfa_authn_contexts", list(MFA_CONTEXTS))
    try:
        return SAMLConnector(
            **common,
            portal_url=portal_url,
            metadata_url=url.string(URL_PATTERN, "an http(s) URL") if url.value is not None else None,
            metadata_xml=metadata_xml,
            mapping=_mapping(node.child("attributes", {}), SAML_ATTRIBUTES, known),
            mfa_contexts=tuple(contexts.strings()),
            sp_identity=load_or_create_signing_identity(instance_dir / "saml-sp", "sp", f"{portal_url}/saml/metadata"),
            store=store,
        )
    except UpstreamUnavailable as error:  # a metadata_file that python3-saml cannot use
        raise file.error(error.reason) from None


def _mapping(node: Node, defaults: dict[str, str | None], known: frozenset[str] | None) -> IdentityMapping:
    node.only_keys(*defaults)
    names = {field: node.child(field).string() if field in node.mapping() else default
             for field, default in defaults.items()}
    return IdentityMapping(**names, known_groups=known)
