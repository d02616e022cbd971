"""Whether a portal session, or a command-line sign-in approved from it, may still act: asked before every
page and every issuance (portal, GetRoleCredentials, CreateToken with a device code or a refresh token).

`SessionGuard.check(reference)` looks at the session's `Standing` (broker.core.sessions) and answers with the
identity as it is now, or raises `AccessEnded` (the session is ended: the reason says why) or
`RevalidationUnavailable` (refused for now). In order:
1. the session's standing exists (not signed out, not expired);
2. the upstream did not sign the person out meanwhile: an OIDC back-channel logout for the session's `sid`, or
   for the person's subject (`note_logout`);
3. the session is within its upstream's cap (`max_session_seconds`: upstreams that can neither push changes
   nor be asked again, such as SAML without SCIM);
4. the directory still has the person, active, not revoked since the session started; for an upstream that
   provisions over SCIM, with the directory's groups (`People.current`);
5. for an upstream re-validated instead (OIDC without SCIM), when its interval is over, the upstream vouches
   for the person again (its `Revalidator`: a refresh-token grant, or userinfo), which also brings their
   current groups; one request per session does it at a time (a lock in the state store), the others go on
   with the standing as it is. A refusal ends the session; no answer refuses this request only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from broker.core.identity import Identity, UpstreamLogin, UpstreamSession
from broker.core.people import People
from broker.core.sessions import Sessions, Standing
from broker.errors import AccessEnded, LoginFailed, RevalidationUnavailable, UpstreamUnavailable
from sso_common.store import StateStore

log = logging.getLogger(__name__)

SID_LOGOUT_KIND = "upstream_sid_logout"  # (upstream, sid) -> {} : that upstream session was signed out
SUBJECT_LOGOUT_KIND = "upstream_subject_logout"  # (upstream, subject) -> {"at"}: sessions before `at` ended
REVALIDATING_KIND = "session_revalidating"  # by reference: one re-validation at a time
REVALIDATION_LOCK = 15  # seconds a re-validation may hold its session's lock


class Revalidator(Protocol):
    def revalidate(self, upstream_session: UpstreamSession, identity: Identity) -> UpstreamLogin:
        """Ask the upstream again about `identity`: the person as it vouches for them now (their UpstreamLogin,
        with the tokens to use next time), LoginFailed when it no longer does, UpstreamUnavailable when it does
        not answer."""
        ...


class Lifecycle(Protocol):
    """How an upstream keeps its people current (broker.settings.UpstreamLifecycle)."""

    @property
    def revalidate_seconds(self) -> int | None: ...

    @property
    def max_session_seconds(self) -> int | None: ...

    @property
    def revalidates(self) -> bool: ...


def _key(upstream_id: str, value: str) -> str:
    return f"{upstream_id}\x00{value}"


class SessionGuard:
    def __init__(
        self,
        sessions: Sessions,
        people: People,
        store: StateStore,
        lifecycle: Callable[[str], Lifecycle],
        revalidators: Mapping[str, Revalidator],
        clock: Callable[[], float] = time.time,
    ):
        self.sessions, self.people, self.store = sessions, people, store
        self.lifecycle, self.revalidators, self._clock = lifecycle, revalidators, clock

    def check(self, reference: str | None) -> Standing:
        """The session's standing with the identity as it is now; AccessEnded or RevalidationUnavailable."""
        standing = self.sessions.standing(reference)
        if reference is None or standing is None:
            raise AccessEnded("your portal session has ended")
        now = self._clock()
        upstream = standing.upstream_id
        sid = standing.upstream_session.sid
        if sid and self.store.get(SID_LOGOUT_KIND, _key(upstream, sid)) is not None:
            raise AccessEnded("you signed out at your identity provider")
        logout = self.store.get(SUBJECT_LOGOUT_KIND, _key(upstream, standing.identity.subject))
        if logout is not None and logout["at"] >= standing.started:
            raise AccessEnded("you signed out at your identity provider")
        lifecycle = self.lifecycle(upstream)
        if lifecycle.max_session_seconds is not None and now - standing.started > lifecycle.max_session_seconds:
            minutes = lifecycle.max_session_seconds // 60
            raise AccessEnded(f"sessions through this identity provider last at most {minutes} minutes")
        identity = self.people.current(upstream, standing.identity, standing.started)
        standing = replace(standing, identity=identity)
        interval = lifecycle.revalidate_seconds
        if lifecycle.revalidates and interval is not None and now - standing.validated_at >= interval:
            standing = self._revalidate(reference, standing, now)
        return standing

    def _revalidate(self, reference: str, standing: Standing, now: float) -> Standing:
        revalidator = self.revalidators.get(standing.upstream_id)
        if revalidator is None:
            raise AccessEnded("your identity provider can no longer be asked about your access: sign in again")
        if not self.store.add(REVALIDATING_KIND, reference, {}, REVALIDATION_LOCK):
            return standing  # another request of this session is asking the upstream right now
        try:
            login = revalidator.revalidate(standing.upstream_session, standing.identity)
        except UpstreamUnavailable as failure:
            log.info("re-validation with %s failed: %s", standing.upstream_id, failure.reason)
            raise RevalidationUnavailable(
                "your identity provider could not confirm your access just now; try again in a minute"
            ) from None
        except LoginFailed as refusal:
            log.info("re-validation with %s refused: %s", standing.upstream_id, refusal.reason)
            raise AccessEnded("your identity provider no longer confirms your access") from None
        finally:
            self.store.delete(REVALIDATING_KIND, reference)
        if login.identity.subject != standing.identity.subject:
            raise AccessEnded("your identity provider answered for another person")
        identity = self.people.current(standing.upstream_id, login.identity, standing.started)
        renewed = replace(standing, identity=identity, validated_at=now, upstream_session=login.upstream_session)
        self.sessions.update_standing(reference, renewed)
        return renewed

    def note_logout(self, upstream_id: str, sid: str | None, subject: str | None, ttl: float) -> None:
        """An upstream signed a session (`sid`) or a person (every session of `subject` until now) out."""
        if sid:
            self.store.put(SID_LOGOUT_KIND, _key(upstream_id, sid), {}, ttl)
        if subject:
            self.store.put(SUBJECT_LOGOUT_KIND, _key(upstream_id, subject), {"at": self._clock()}, ttl)
