"""Upstream identity providers. Each connector speaks one protocol and ends in an `Identity`.

The web layer drives every connector the same way:
  1. `begin(state)` -> where to send the browser, plus data to keep with the login transaction
     (nonce, PKCE verifier, AuthnRequest ID...). `state` is the transaction's random ID; the
     connector must round-trip it (OIDC `state`, SAML `RelayState`).
  2. The IdP answers at the connector's callback; the web layer finds the transaction by `state`,
     then calls `complete(params, kept)` -> `UpstreamLogin` or raises `LoginFailed`.
Nothing after `complete` knows which protocol was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from ..identity import Identity


class LoginFailed(Exception):
    """The upstream answer is not acceptable. `reason` is safe to show, log and audit (no secrets)."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason, self.status = reason, status


class UpstreamUnavailable(LoginFailed):
    """The IdP is down, slow or answers garbage: a 502/504 page, not a 500."""

    def __init__(self, reason: str):
        super().__init__(reason, 502)


@dataclass(frozen=True)
class Redirect:
    """Send the browser to `url` (GET)."""

    url: str


@dataclass(frozen=True)
class UpstreamLogin:
    identity: Identity
    logout_data: dict = field(default_factory=dict)  # e.g. id_token hint, SAML NameID + SessionIndex


class Connector(Protocol):
    id: str            # URL-safe, e.g. "example-corp-oidc"; callbacks live under /login/<id>/
    display_name: str  # shown on the sign-in page, e.g. "Example Corp (OIDC)"
    protocol: str      # "oidc" or "saml", for audit and metadata only

    def begin(self, state: str) -> tuple[Redirect, dict]:
        ...

    def complete(self, params: Mapping[str, str], kept: dict) -> UpstreamLogin:
        ...

    def logout(self, logout_data: dict, return_to: str) -> Redirect | None:
        """Where to send the browser to end the upstream session too, or None."""
