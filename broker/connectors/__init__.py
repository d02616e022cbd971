"""Upstream identity providers: where a login enters and becomes an `Identity`.

Each connector speaks one protocol. The web layer drives every connector the same way:
  1. `begin(state)` -> where to send the browser, plus the connector's own `LoginState` to keep with
     the login transaction (nonce, PKCE verifier, AuthnRequest ID...). `state` is the transaction's
     random ID; the connector must round-trip it (OIDC `state`, SAML `RelayState`).
  2. The IdP answers at the connector's callback; the web layer finds the transaction by `state`,
     then calls `complete(params, kept)` -> `UpstreamLogin`, or it raises `LoginFailed`.
Nothing after `complete` knows which protocol was used. Connector types are registered by name in
`broker.connectors.registry`, and each parses its own section of `upstreams:` in broker.yaml.

Shared by every connector:
- `trust`: what each upstream may vouch for (email domains, group mapping, email_verified, MFA);
- `mapping`: claims or attributes -> Identity, with the hygiene rules and the trust boundary applied;
- `fetch`: every call to an upstream (deadline, no redirects, size cap, slots per upstream server) and
  the cache of its documents;
- `client_auth`: how the broker authenticates at an OpenID Provider's token endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from broker.connectors.client_auth import ClientKey, load_or_create_client_key
from broker.connectors.fetch import CONNECT_TIMEOUT, DEADLINE, MAX_IN_FLIGHT, FetchPolicy, ServerSlots
from broker.connectors.trust import TRUST_KEYS, UpstreamTrust
from broker.core.identity import LogoutHint, UpstreamLogin
from sso_common.config import Node
from sso_common.store import StateStore

# Keys of every `upstreams:` entry (the trust boundary, the fetch limits, and how the upstream keeps its people
# current: SCIM, re-validation, the session cap, read by broker.settings); each connector type adds its own.
FETCH_KEYS = ("timeout_seconds", "max_logins_in_flight")
LIFECYCLE_KEYS = ("scim", "revalidate_minutes", "max_session_minutes")
COMMON_KEYS = ("id", "display_name", "type", *TRUST_KEYS, *FETCH_KEYS, *LIFECYCLE_KEYS)


@dataclass(frozen=True)
class Redirect:
    """Send the browser to `url` (GET)."""

    url: str


class LoginState(Protocol):
    """What a connector keeps between `begin` and `complete`, stored with the login transaction."""

    def to_record(self) -> dict[str, Any]: ...


class Connector(Protocol):
    id: str  # URL-safe, e.g. "example-corp-oidc"; callbacks live under /login/<id>/
    display_name: str  # shown on the sign-in page, e.g. "Example Corp (OIDC)"
    protocol: str  # "oidc" or "saml", for audit and metadata only

    def begin(self, state: str) -> tuple[Redirect, LoginState]: ...

    def load_state(self, record: dict[str, Any]) -> LoginState:
        """The `LoginState` this connector wrote with `to_record`."""
        ...

    def complete(self, params: Mapping[str, str], kept: Any) -> UpstreamLogin: ...

    def logout(self, hint: LogoutHint, return_to: str) -> Redirect | None:
        """Where to send the browser to end the upstream session too, or None."""
        ...

    def describe(self) -> list[str]:
        """What `broker check-config` prints about this upstream: endpoints, the claim mapping, the trust
        boundary. Needs no network."""
        ...


@dataclass(frozen=True)
class ConnectorContext:
    """What every connector may need besides its own config entry."""

    portal_url: str
    instance_dir: Path  # where a connector keeps its keys (the SAML SP's signing key)
    store: StateStore  # replay caches
    clock_skew: int
    slots: ServerSlots = field(default_factory=ServerSlots)  # upstream calls in flight, per upstream server
    client_key: ClientKey | None = None  # the broker's private_key_jwt key; None: loaded from instance_dir

    def oidc_client_key(self) -> ClientKey:
        return self.client_key or load_or_create_client_key(self.instance_dir)


@dataclass(frozen=True)
class UpstreamEntry:
    """The keys every upstream entry has, already validated; `node` is the whole entry."""

    id: str
    display_name: str
    node: Node
    trust: UpstreamTrust
    fetch: FetchPolicy = FetchPolicy()

    @staticmethod
    def fetch_policy(node: Node) -> FetchPolicy:
        """`timeout_seconds` (the deadline of each call to the upstream, 1 to 60, default 10) and
        `max_logins_in_flight` (1 to 64, default 4 per worker process)."""
        deadline = float(node.child("timeout_seconds", int(DEADLINE)).integer(1, 60))
        return FetchPolicy(
            deadline=deadline,
            connect_timeout=min(CONNECT_TIMEOUT, deadline),
            max_in_flight=node.child("max_logins_in_flight", MAX_IN_FLIGHT).integer(1, 64),
        )
