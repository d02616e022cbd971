"""Portal sessions and login transactions, kept in the state store; the browser holds random IDs only.

Records that must end with a portal session (the command-line sign-ins it approved) keep a
*reference* to it, never its ID: a one-way digest that can tell whether the session is still live
but cannot be used as the session cookie.

A login transaction ties an upstream answer to the browser that started the login: its `state` goes
to the IdP and comes back, and its `binding` secret stays in a cookie here. Both must match, so a
login started by an attacker cannot be finished in a victim's browser (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from .identity import Identity

T = TypeVar("T")

SESSION_KIND = "portal_session"
REFERENCE_KIND = "portal_session_reference"  # live while its session is; see Sessions.reference
TRANSACTION_KIND = "login_transaction"
FINISH_KIND = "login_finish"
TRANSACTION_LIFETIME = 15 * 60  # a person may take a while on the IdP's pages
FINISH_LIFETIME = 120


def identity_to_dict(identity: Identity) -> dict:
    return {
        "subject": identity.subject, "username": identity.username, "email": identity.email,
        "display_name": identity.display_name, "groups": sorted(identity.groups),
        "department": identity.department, "authn_methods": sorted(identity.authn_methods),
        "issuer": identity.issuer, "auth_time": identity.auth_time,
    }


def identity_from_dict(data: dict) -> Identity:
    return Identity(
        subject=data["subject"], username=data["username"], email=data["email"],
        display_name=data["display_name"], groups=frozenset(data["groups"]), department=data["department"],
        authn_methods=frozenset(data["authn_methods"]), issuer=data["issuer"], auth_time=data["auth_time"],
    )


@dataclass(frozen=True)
class PortalSession:
    id: str
    identity: Identity
    upstream_id: str
    logout_data: dict
    started: float
    expires: float


class Sessions:
    def __init__(self, store, lifetime: int):
        self.store, self.lifetime = store, lifetime

    def create(self, identity: Identity, upstream_id: str, logout_data: dict) -> PortalSession:
        now = time.time()
        session = PortalSession(secrets.token_urlsafe(32), identity, upstream_id, logout_data, now,
                                now + self.lifetime)
        self.store.put(SESSION_KIND, session.id, {
            "identity": identity_to_dict(identity), "upstream_id": upstream_id, "logout_data": logout_data,
            "started": session.started, "expires": session.expires}, self.lifetime)
        return session

    def load(self, session_id: str | None) -> PortalSession | None:
        record = self.store.get(SESSION_KIND, session_id) if session_id else None
        if record is None:
            return None
        return PortalSession(session_id, identity_from_dict(record["identity"]), record["upstream_id"],
                             record["logout_data"], record["started"], record["expires"])

    def end(self, session_id: str | None) -> None:
        """End the session and, with it, everything that holds a reference to it."""
        if session_id:
            self.store.delete(SESSION_KIND, session_id)
            self.store.delete(REFERENCE_KIND, session_reference(session_id))

    def reference(self, session: PortalSession) -> str | None:
        """A reference for a record that must not outlive `session`, or None when the session has
        already ended. `is_live` answers for it until the session is ended or expires.

        The liveness marker is written first and the session checked after: a sign-out that races
        with this either finds the marker and deletes it, or is seen here."""
        reference = session_reference(session.id)
        remaining = session.expires - time.time()
        if remaining <= 0:
            return None
        self.store.put(REFERENCE_KIND, reference, {}, remaining)
        if self.load(session.id) is None:
            self.store.delete(REFERENCE_KIND, reference)
            return None
        return reference

    def is_live(self, reference: str | None) -> bool:
        """Whether the session behind a `reference` is still live (False for None)."""
        return bool(reference) and self.store.get(REFERENCE_KIND, reference) is not None


def session_reference(session_id: str) -> str:
    """A one-way name for a session: it identifies the session without being able to act as it."""
    return hashlib.sha256(b"portal session reference\x00" + session_id.encode()).hexdigest()


class LoginTransactions:
    def __init__(self, store):
        self.store = store

    def begin(self, upstream_id: str, return_to: str, start: Callable[[str], tuple[T, dict]]) -> tuple[T, str]:
        """A new transaction. `start(state)` gives where to send the browser and what to keep with the
        transaction (nonce, verifier, request ID); returns that destination and the binding secret
        for this browser's cookie. Nothing is stored when `start` raises."""
        state, binding = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        destination, kept = start(state)
        self.store.put(TRANSACTION_KIND, state, {"upstream_id": upstream_id, "binding": binding,
                                                 "return_to": return_to, "kept": kept}, TRANSACTION_LIFETIME)
        return destination, binding

    def take(self, state: str | None) -> dict | None:
        """The transaction, once: a replayed callback finds nothing."""
        return self.store.take(TRANSACTION_KIND, state) if state else None

    def park(self, identity: Identity, upstream_id: str, logout_data: dict, binding: str, return_to: str) -> str:
        """Hold a verified login until the browser that started it shows its binding cookie.

        SAML answers arrive as a cross-site POST, which carries no SameSite=Lax cookie. The ACS parks
        the login and redirects; the redirected GET is a top-level navigation and carries the cookie,
        however long the person spent on the IdP's pages.
        """
        ticket = secrets.token_urlsafe(32)
        self.store.put(FINISH_KIND, ticket, {"identity": identity_to_dict(identity), "upstream_id": upstream_id,
                                             "logout_data": logout_data, "binding": binding,
                                             "return_to": return_to}, FINISH_LIFETIME)
        return ticket

    def unpark(self, ticket: str | None) -> dict | None:
        return self.store.take(FINISH_KIND, ticket) if ticket else None


def binding_matches(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected, presented)
