"""Portal sessions, kept in the state store; the browser holds a random ID only.

Records that must end with a portal session (the command-line sign-ins it approved) keep a
*reference* to it, never its ID: a one-way digest that can tell whether the session is still live
but cannot be used as the session cookie.

Under the same reference, each session also has its `Standing`: who, through which upstream, since when,
the upstream's session (its `sid`, its tokens) and when the upstream last confirmed the person. Portal
pages and command-line grants alike go through `broker.core.guard.SessionGuard` with it before acting.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.core.identity import Identity, LogoutHint, UpstreamSession
from sso_common.records import NOT_STORED, Record
from sso_common.store import StateStore

SESSION_KIND = "portal_session"
REFERENCE_KIND = "portal_session_reference"  # live while its session is; see Sessions.reference
STANDING_KIND = "portal_session_standing"  # by reference: the session's Standing (broker.core.guard)


@dataclass(frozen=True)
class PortalSession(Record):
    id: str = field(metadata=NOT_STORED)  # the store's key (hashed there), never inside the record
    identity: Identity
    upstream_id: str
    logout_hint: LogoutHint
    started: float
    expires: float


@dataclass(frozen=True)
class Standing(Record):
    """What the guard checks a session against, kept under the session's reference (never its ID)."""

    upstream_id: str
    identity: Identity  # as last confirmed (sign-in, or the upstream's last re-validation)
    started: float
    expires: float
    validated_at: float  # when the upstream last vouched for the person (sign-in or re-validation)
    upstream_session: UpstreamSession = UpstreamSession()


class Sessions:
    def __init__(self, store: StateStore, lifetime: int, clock: Callable[[], float] = time.time):
        self.store, self.lifetime, self._clock = store, lifetime, clock

    def create(
        self,
        identity: Identity,
        upstream_id: str,
        logout_hint: LogoutHint,
        upstream_session: UpstreamSession | None = None,
    ) -> PortalSession:
        now = self._clock()
        session = PortalSession(secrets.token_urlsafe(32), identity, upstream_id, logout_hint, now, now + self.lifetime)
        standing = Standing(upstream_id, identity, now, session.expires, now, upstream_session or UpstreamSession())
        self.store.put(STANDING_KIND, session_reference(session.id), standing.to_record(), self.lifetime)
        self.store.put(SESSION_KIND, session.id, session.to_record(), self.lifetime)
        return session

    def load(self, session_id: str | None) -> PortalSession | None:
        record = self.store.get(SESSION_KIND, session_id) if session_id else None
        if session_id is None or record is None:
            return None
        return PortalSession.from_record(record, id=session_id)

    def end(self, session_id: str | None) -> None:
        """End the session and, with it, everything that holds a reference to it. The standing goes first: from
        then on the guard refuses the session and its grants alike, so a failure before the rest is done leaves
        nothing that still acts (the session record then goes at its next request, when the guard refuses it).
        The reference goes after the session, as `reference` requires."""
        if session_id:
            reference = session_reference(session_id)
            self.store.delete(STANDING_KIND, reference)
            self.store.delete(SESSION_KIND, session_id)
            self.store.delete(REFERENCE_KIND, reference)

    def standing(self, reference: str | None) -> Standing | None:
        record = self.store.get(STANDING_KIND, reference) if reference else None
        return Standing.from_record(record) if record else None

    def update_standing(self, reference: str, standing: Standing) -> None:
        """Keep a re-validated standing, for as long as its session lives (not if it ended meanwhile)."""
        remaining = standing.expires - self._clock()
        if remaining > 0 and self.store.get(STANDING_KIND, reference) is not None:
            self.store.put(STANDING_KIND, reference, standing.to_record(), remaining)

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
