"""Portal sessions, kept in the state store; the browser holds a random ID only.

Records that must end with a portal session (the command-line sign-ins it approved) keep a
*reference* to it, never its ID: a one-way digest that can tell whether the session is still live
but cannot be used as the session cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.core.identity import Identity, LogoutHint
from sso_common.records import NOT_STORED, Record
from sso_common.store import StateStore

SESSION_KIND = "portal_session"
REFERENCE_KIND = "portal_session_reference"  # live while its session is; see Sessions.reference


@dataclass(frozen=True)
class PortalSession(Record):
    id: str = field(metadata=NOT_STORED)  # the store's key (hashed there), never inside the record
    identity: Identity
    upstream_id: str
    logout_hint: LogoutHint
    started: float
    expires: float


class Sessions:
    def __init__(self, store: StateStore, lifetime: int, clock: Callable[[], float] = time.time):
        self.store, self.lifetime, self._clock = store, lifetime, clock

    def create(self, identity: Identity, upstream_id: str, logout_hint: LogoutHint) -> PortalSession:
        now = self._clock()
        session = PortalSession(secrets.token_urlsafe(32), identity, upstream_id, logout_hint, now, now + self.lifetime)
        self.store.put(SESSION_KIND, session.id, session.to_record(), self.lifetime)
        return session

    def load(self, session_id: str | None) -> PortalSession | None:
        record = self.store.get(SESSION_KIND, session_id) if session_id else None
        if session_id is None or record is None:
            return None
        return PortalSession.from_record(record, id=session_id)

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
        remaining = session.expires - self._clock()
        if remaining <= 0:
            return None
        self.store.put(REFERENCE_KIND, reference, {}, remaining)
        if self.load(session.id) is None:
            self.store.delete(REFERENCE_KIND, reference)
            return None
        return reference

    def is_live(self, reference: str | None) -> bool:
        """Whether the session behind a `reference` is still live (False for None)."""
        return reference is not None and reference != "" and self.store.get(REFERENCE_KIND, reference) is not None


def session_reference(session_id: str) -> str:
    """A one-way name for a session: it identifies the session without being able to act as it."""
    return hashlib.sha256(b"portal session reference\x00" + session_id.encode()).hexdigest()
