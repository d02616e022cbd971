"""Login transactions: what ties an upstream's answer to the browser that started the login.

The transaction's `state` goes to the IdP and comes back; its `binding` secret stays in a cookie of
this browser. Both must match, so a login started by an attacker cannot be finished in a victim's
browser (login CSRF). Each connector keeps its own `LoginState` (nonce, PKCE verifier, AuthnRequest ID)
with the transaction, and reads it back itself.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from broker.connectors import Connector, LoginState, Redirect
from broker.core.explain import Explanation
from broker.core.identity import UpstreamLogin
from sso_common.records import Record
from sso_common.store import StateStore

TRANSACTION_KIND = "login_transaction"
FINISH_KIND = "login_finish"
TRANSACTION_LIFETIME = 15 * 60  # a person may take a while on the IdP's pages
FINISH_LIFETIME = 120


@dataclass(frozen=True)
class LoginTransaction(Record):
    upstream_id: str
    binding: str  # the secret in this browser's login cookie
    return_to: str  # a local path to land on after sign-in
    kept: LoginState  # the connector's own state


@dataclass(frozen=True)
class ParkedLogin(Record):
    """A verified upstream login waiting for its browser to come back with the binding cookie, with the story of
    its verification so far ("How did I get here?"), which the finish completes."""

    login: UpstreamLogin
    upstream_id: str
    binding: str
    return_to: str
    story: Explanation | None = None


class LoginTransactions:
    def __init__(self, store: StateStore, connectors: Mapping[str, Connector]):
        self.store, self.connectors = store, connectors

    def begin(
        self, upstream_id: str, return_to: str, start: Callable[[str], tuple[Redirect, LoginState]]
    ) -> tuple[Redirect, str]:
        """A new transaction. `start(state)` gives where to send the browser and what to keep with the
        transaction; returns that destination and the binding secret for this browser's cookie.
        Nothing is stored when `start` raises."""
        state, binding = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        destination, kept = start(state)
        transaction = LoginTransaction(upstream_id, binding, return_to, kept)
        self.store.put(TRANSACTION_KIND, state, transaction.to_record(), TRANSACTION_LIFETIME)
        return destination, binding

    def take(self, state: str | None) -> LoginTransaction | None:
        """The transaction, once: a replayed callback finds nothing."""
        record = self.store.take(TRANSACTION_KIND, state) if state else None
        connector = self.connectors.get(record["upstream_id"]) if record else None
        if record is None or connector is None:
            return None
        return LoginTransaction(
            record["upstream_id"], record["binding"], record["return_to"], connector.load_state(record["kept"])
        )

    def park(self, parked: ParkedLogin) -> str:
        """Hold a verified login until the browser that started it shows its binding cookie; the ticket.

        SAML answers arrive as a cross-site POST, which carries no SameSite=Lax cookie. The ACS parks
        the login and redirects; the redirected GET is a top-level navigation and carries the cookie,
        however long the person spent on the IdP's pages.
        """
        ticket = secrets.token_urlsafe(32)
        self.store.put(FINISH_KIND, ticket, parked.to_record(), FINISH_LIFETIME)
        return ticket

    def unpark(self, ticket: str | None) -> ParkedLogin | None:
        record = self.store.take(FINISH_KIND, ticket) if ticket else None
        return ParkedLogin.from_record(record) if record else None


def binding_matches(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected, presented or "")
