"""The `oidc:` section of config/idp.yaml: lifetimes, the registration token and the first-party clients.

Validated at start-up like the rest of the IdP config: a bad redirect URI or a duplicate client id stops
the IdP with a ConfigError naming file and key, instead of failing a login later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from idp_mock.oidc_provider.models import AUTH_METHODS, OIDCClient, hash_secret
from sso_common.config import Node

MAX_URI_LENGTH = 2048
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class OIDCSettings:
    code_lifetime: int
    access_token_lifetime: int
    refresh_token_lifetime: int  # of a grant: its refresh tokens rotate but never outlive it
    registration_token: str = field(repr=False)
    clients: dict[str, OIDCClient]


def uri_problem(value) -> str | None:
    """Why `value` cannot be a redirect URI (absolute http(s), ASCII, no fragment, no user info), or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_URI_LENGTH:
        return f"is longer than {MAX_URI_LENGTH} characters"
    if not value.isascii() or any(c.isspace() or not c.isprintable() or c in '"\\<>' for c in value):
        return "contains spaces, quotes or characters that must be percent-encoded"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if "#" in value:
        return "must not contain a fragment (#)"
    if "@" in parts.netloc:
        return "must not contain user information (user@host)"
    return None


def _uris(node: Node, required: bool) -> tuple[str, ...]:
    elements = node.elements()
    if required and not elements:
        raise node.error("must list at least one URI")
    uris = []
    for element in elements:
        problem = uri_problem(element.value)
        if problem:
            raise element.error(f"{element.value!r} {problem}")
        uris.append(element.value)
    return tuple(uris)


def _client(node: Node, issuer: str) -> OIDCClient:
    node.only_keys(
        "client_id",
        "name",
        "token_endpoint_auth_method",
        "client_secret",
        "redirect_uris",
        "post_logout_redirect_uris",
        "backchannel_logout_uri",
    )
    client_id = node.child("client_id").string(
        r"[A-Za-z0-9._~-]{1,128}", "a client id (letters, digits, . _ ~ -, at most 128)"
    )
    method_node = node.child("token_endpoint_auth_method", "client_secret_basic")
    method = method_node.string()
    if method not in AUTH_METHODS:
        raise method_node.error(f"{method!r} is not one of {', '.join(AUTH_METHODS)}")
    secret_hash = None
    if method == "none":
        if "client_secret" in node.mapping():
            raise node.child("client_secret").error("a public client (token_endpoint_auth_method: none) has no secret")
    else:
        secret = node.child("client_secret").secret(issuer, MIN_SECRET_LENGTH)
        secret_hash = hash_secret(secret)
    return OIDCClient(
        client_id=client_id,
        name=node.child("name", client_id).string(),
        redirect_uris=_uris(node.child("redirect_uris"), required=True),
        post_logout_redirect_uris=_uris(node.child("post_logout_redirect_uris", []), required=False),
        token_endpoint_auth_method=method,
        secret_hash=secret_hash,
        backchannel_logout_uri=_backchannel_uri(node.child("backchannel_logout_uri", None)),
    )


def _backchannel_uri(node: Node) -> str | None:
    """OIDC Back-Channel Logout 1.0, section 2.2: an absolute http(s) URL without a fragment."""
    if node.value is None:
        return None
    problem = uri_problem(node.value)
    if problem:
        raise node.error(f"{node.value!r} {problem}")
    return str(node.value)


def parse_oidc_settings(node: Node, issuer: str) -> OIDCSettings:
    node.only_keys(
        "code_lifetime_seconds",
        "access_token_lifetime_seconds",
        "refresh_token_lifetime_seconds",
        "registration_token",
        "clients",
    )
    clients: dict[str, OIDCClient] = {}
    for element in node.child("clients", []).elements():
        client = _client(element, issuer)
        if client.client_id in clients:
            raise element.child("client_id").error(f"duplicate client id {client.client_id!r}")
        clients[client.client_id] = client
    token = node.child("registration_token").secret(issuer, MIN_SECRET_LENGTH)
    return OIDCSettings(
        code_lifetime=node.child("code_lifetime_seconds", 60).integer(1, 600),
        access_token_lifetime=node.child("access_token_lifetime_seconds", 900).integer(1, 86400),
        refresh_token_lifetime=node.child("refresh_token_lifetime_seconds", 28800).integer(300, 30 * 86400),
        registration_token=token,
        clients=clients,
    )
