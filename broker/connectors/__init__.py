"""Upstream identity providers: where a login enters and becomes an `Identity`.

Each connector speaks one protocol. The web layer drives every connector the same way:
  1. `begin(state)` -> where to send the browser, plus the connector's own `LoginState` to keep with
     the login transaction (nonce, PKCE verifier, AuthnRequest ID...). `state` is the transaction's
     random ID; the connector must round-trip it (OIDC `state`, SAML `RelayState`).
  2. The IdP answers at the connector's callback; the web layer finds the transaction by `state`,
     then calls `complete(params, kept)` -> `UpstreamLogin`, or it raises `LoginFailed`.
Nothing after `complete` knows which protocol was used. Connector types are registered by name in
`broker.connectors.registry`, and each parses its own section of `upstreams:` in broker.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from broker.core.identity import LogoutHint, UpstreamLogin
from sso_common.config import Node
from sso_common.store import StateStore

# Keys of every `upstreams:` entry; each connector type adds its own.
COMMON_KEYS = ("id", "display_name", "type")


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


@dataclass(frozen=True)
class ConnectorContext:
    """What every connector may need besides its own config entry."""

    portal_url: str
    instance_dir: Path  # where a connector keeps its keys (the SAML SP's signing key)
    store: StateStore  # replay caches
    clock_skew: int
    known_groups: frozenset[str] | None = None  # given: other upstream groups are dropped


@dataclass(frozen=True)
class UpstreamEntry:
    """The keys every upstream entry has, already validated; `node` is the whole entry."""

    id: str
    display_name: str
    node: Node
