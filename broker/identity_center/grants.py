"""The one store of the Identity Center compatible API: registered clients, device authorizations,
authorization codes, and the tokens they turn into. Everything lives in the broker's StateStore
(keys hashed at rest); secrets are kept only as digests, and no record holds another record's
bearer value.

A sign-in through the device or authorization-code flow becomes a *grant*: the identity, bounded
by the portal session that approved it. Access and refresh tokens point at their grant, so Logout
(or the end of the sign-in) ends every token of it at once.

The grant keeps a reference to that portal session (`Sessions.reference`: a one-way digest, not the
session ID), and every use of the grant asks `session_live` whether the session is still there: a
portal sign-out, or the session's expiry, ends the command-line sign-ins approved from it.
Grants without a reference are treated as ended (fail closed).

Refresh tokens rotate. A rotated token presented again ends the whole grant (RFC 9700 §4.14.2):
either the client or a thief has used it, and the server cannot tell which.

Every use (CreateToken from an approval or a refresh token, every call with an access token) also asks the
`guard` (broker.core.guard.SessionGuard) whether the portal session behind the grant may still act, and with
which identity: a person disabled, deleted or revoked, signed out at their IdP or past the session's cap ends
the grant, with the reason in the refusal; the identity it returns (current groups) is the one issued for.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from broker.core.identity import Identity
from broker.errors import (
    AccessDenied,
    AccessEnded,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    NotSignedIn,
    RevalidationUnavailable,
    ServiceUnavailable,
    SlowDown,
    UnauthorizedClient,
)
from broker.identity_center.codes import new_secret, new_user_code, pkce_matches, secret_digest, secret_matches
from sso_common.records import Record
from sso_common.store import StateStore
from sso_common.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

SessionLive = Callable[[str | None], bool]  # a portal session reference -> is that session still live?
Guard = Callable[[str | None], Identity]  # a portal session reference -> its identity now, or AccessEnded

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
CODE_GRANT = "authorization_code"
GRANT_TYPES = frozenset({DEVICE_GRANT, REFRESH_GRANT, CODE_GRANT})
DEFAULT_SCOPE = "sso:account:access"
SCOPES = frozenset({DEFAULT_SCOPE})

CLIENT_KIND = "sso_client"
DEVICE_KIND = "sso_device"  # by internal reference: what was asked, by which client
DEVICE_CODE_KIND = "sso_device_code"  # device code -> reference
USER_CODE_KIND = "sso_user_code"  # user code -> reference
DECISION_KIND = "sso_device_decision"  # written once (StateStore.add): the first decision wins
POLL_KIND = "sso_device_poll"  # last poll and current interval, apart from the decision
AUTH_CODE_KIND = "sso_auth_code"
GRANT_KIND = "sso_grant"
ENDED_GRANT_KIND = "sso_grant_ended"  # why a grant was ended by its guard, for the refusals of its other tokens
ACCESS_KIND = "sso_access_token"
REFRESH_KIND = "sso_refresh_token"
SPENT_REFRESH_KIND = "sso_refresh_token_spent"  # written once (StateStore.add) when a refresh token is rotated
REGISTER_RATE_KIND = "sso_register_rate"
DEVICE_RATE_KIND = "sso_device_start_rate"
MISS_PERSON_KIND = "sso_user_code_miss_person"
MISS_ADDRESS_KIND = "sso_user_code_miss_address"

SLOW_DOWN_STEP = 5  # RFC 8628 §3.5: after slow_down, poll 5 s less often
POLL_TOLERANCE = 0.2  # seconds of clock jitter forgiven between two polls


@dataclass(frozen=True)
class GrantSettings:
    token_lifetime: int  # access tokens; never beyond the grant
    client_lifetime: int = 90 * 86400
    device_lifetime: int = 600
    poll_interval: int = 1
    code_lifetime: int = 300
    expired_memory: int = 3600  # expired device codes are remembered this long to say "expired", not "unknown"
    registrations_per_minute: int = 60  # per address
    device_starts_per_minute: int = 30  # per client
    user_code_misses: int = 10  # per person per window; an address gets five times as many
    user_code_window: int = 900

    @classmethod
    def from_environment(cls, session_lifetime: int, environ: Mapping[str, str] = os.environ) -> GrantSettings:
        """Access tokens last as long as a portal session unless BROKER_SSO_TOKEN_LIFETIME_SECONDS
        says less (tests use it to make refresh happen)."""
        raw = environ.get("BROKER_SSO_TOKEN_LIFETIME_SECONDS", "")
        lifetime = int(raw) if _ASCII_NUMBER.fullmatch(raw) and int(raw) > 0 else session_lifetime
        return cls(token_lifetime=min(lifetime, session_lifetime))


_ASCII_NUMBER = re.compile(r"[0-9]{1,9}")  # str.isdigit() also takes '²', which int() refuses


@dataclass(frozen=True)
class RegisteredClient(Record):
    """A client of the sso-oidc API (RegisterClient); only a digest of its secret is kept."""

    name: str
    secret_digest: str = field(repr=False)
    scopes: list[str]
    grant_types: list[str]
    redirect_uris: list[str]


@dataclass(frozen=True)
class Registration:
    """RegisterClient's answer: the client's ID and, this once, its secret."""

    client_id: str
    client_secret: str = field(repr=False)
    issued_at: int
    secret_expires_at: int


@dataclass(frozen=True)
class DeviceAuthorization:
    """StartDeviceAuthorization's answer."""

    device_code: str = field(repr=False)
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class Grant(Record):
    """One command-line sign-in: the identity, bounded by the portal session that approved it."""

    identity: Identity
    client_id: str
    scopes: list[str]
    expires_at: float
    session: str | None = None  # reference to the approving portal session (Sessions.reference)


@dataclass(frozen=True)
class Tokens:
    """CreateToken's answer."""

    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Approval:
    """What a person approved in the browser, as the token endpoint redeems it."""

    identity: Identity
    session_expires: float
    session: str | None  # reference to the approving portal session (Sessions.reference)
    scopes: list[str]
    # The code as it was taken (kind, key, record, seconds it had left): given back when no tokens could be stored,
    # so the client's retry of the 503 finds it.
    taken: tuple[str, str, dict, float] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DeviceRequest:
    """A device authorization as the verification page sees it."""

    user_code: str
    client_name: str  # self-declared at RegisterClient: not verified
    expired: bool
    decided: bool
    requested_at: float | None = None  # when StartDeviceAuthorization was called
    requested_from: str = ""  # the address it was called from ("" when not recorded)


def remaining_seconds(expires_at: float, now: float) -> int:
    return max(0, int(expires_at - now))


def access_token_lifetime(configured: int, grant_expires_at: float, now: float) -> int:
    """Tokens never outlive the sign-in they come from."""
    return min(configured, remaining_seconds(grant_expires_at, now))


class GrantStore:
    """Clients, device authorizations, codes, grants and tokens of the sso-oidc / sso API, in the StateStore.

    Refusals are `broker.errors.IdentityCenterError`s; `broker.http` answers them in AWS's wire format.
    `session_live` tells whether the portal session a grant refers to is still live."""

    def __init__(
        self,
        store: StateStore,
        settings: GrantSettings,
        session_live: SessionLive,
        clock: Callable[[], float] = time.time,
        guard: Guard | None = None,
    ):
        self.store, self.settings, self._session_live, self._clock = store, settings, session_live, clock
        self._guard = guard

    def _current(self, grant_id: str | None, reference: str | None, identity: Identity, refusal: type) -> Identity:
        """The identity a grant (or an approval about to become one) acts as now; its refusal (NotSignedIn or
        InvalidGrant, with why) when the portal session behind it may no longer act, and the grant ends."""
        if self._guard is None:
            return identity
        try:
            return self._guard(reference)
        except RevalidationUnavailable as unavailable:
            raise ServiceUnavailable(f"{unavailable.reason[0].upper()}{unavailable.reason[1:]}.") from None
        except AccessEnded as ended:
            message = f"Your sign-in has ended: {ended.reason}. Sign in again."
            if grant_id is not None:
                self.store.put(ENDED_GRANT_KIND, grant_id, {"message": message}, self.settings.token_lifetime)
                self.store.delete(GRANT_KIND, grant_id)
            raise refusal(message) from None

    def _ended(self, grant_id: str | None, default: str) -> str:
        """Why a grant is gone when its guard ended it, else `default`."""
        record = self.store.get(ENDED_GRANT_KIND, grant_id) if grant_id else None
        return str(record["message"]) if record else default

    # --- clients --------------------------------------------------------------------------------

    def register_client(
        self, name: str, scopes: list[str], grant_types: list[str], redirect_uris: list[str], address: str
    ) -> Registration:
        if self.store.incr(REGISTER_RATE_KIND, address, 60) > self.settings.registrations_per_minute:
            raise SlowDown("Too many client registrations. Try again in a minute.")
        now = int(self._clock())
        client_id, secret = secrets.token_urlsafe(16), new_secret("bsc-")
        client = RegisteredClient(name, secret_digest(secret), scopes, grant_types, redirect_uris)
        self.store.put(CLIENT_KIND, client_id, client.to_record(), self.settings.client_lifetime)
        return Registration(client_id, secret, now, now + self.settings.client_lifetime)

    def public_client(self, client_id: str | None) -> RegisteredClient | None:
        """A live client by its identifier alone: for the browser side of the code flow, which has no secret."""
        record = self.store.get(CLIENT_KIND, client_id) if client_id else None
        return RegisteredClient.from_record(record) if record else None

    def client(self, client_id: str | None, client_secret: str | None) -> RegisteredClient:
        client = self.public_client(client_id)
        if client is None or not secret_matches(client.secret_digest, client_secret):
            raise InvalidClient("The client is unknown or expired, or its secret is wrong.")
        return client

    # --- device authorization (RFC 8628) --------------------------------------------------------

    def start_device_authorization(
        self, client_id: str, client: RegisteredClient, address: str = ""
    ) -> DeviceAuthorization:
        if self.store.incr(DEVICE_RATE_KIND, client_id, 60) > self.settings.device_starts_per_minute:
            raise SlowDown("Too many device authorizations for this client.")
        if DEVICE_GRANT not in client.grant_types:
            raise UnauthorizedClient("This client is not registered for the device flow.")
        lifetime, memory = self.settings.device_lifetime, self.settings.device_lifetime + self.settings.expired_memory
        reference, device_code = secrets.token_urlsafe(16), new_secret("bdc-")
        user_code = new_user_code()
        while not self.store.add(USER_CODE_KIND, user_code, {"ref": reference}, memory):
            user_code = new_user_code()
        self.store.put(
            DEVICE_KIND,
            reference,
            {
                "client_id": client_id,
                "client_name": client.name,
                "scopes": client.scopes,
                "expires_at": self._clock() + lifetime,
                "requested_at": self._clock(),
                "requested_from": address,
            },
            memory,
        )
        self.store.put(DEVICE_CODE_KIND, device_code, {"ref": reference}, memory)
        self.store.put(POLL_KIND, reference, {"last": 0, "interval": self.settings.poll_interval}, memory)
        return DeviceAuthorization(device_code, user_code, lifetime, self.settings.poll_interval)

    def _device_by_user_code(self, user_code: str) -> tuple[str, dict] | None:
        pointer = self.store.get(USER_CODE_KIND, user_code)
        record = self.store.get(DEVICE_KIND, pointer["ref"]) if pointer else None
        return (pointer["ref"], record) if pointer and record else None

    def user_code_guessing_blocked(self, subject: str, address: str) -> bool:
        person = self.store.get(MISS_PERSON_KIND, subject) or {"count": 0}
        origin = self.store.get(MISS_ADDRESS_KIND, address) or {"count": 0}
        limit = self.settings.user_code_misses
        return person["count"] >= limit or origin["count"] >= 5 * limit

    def device_request(self, user_code: str, subject: str, address: str) -> DeviceRequest | None:
        """The request behind a (normalised) user code, or None; misses count toward the guessing limit."""
        found = self._device_by_user_code(user_code)
        if found is None:
            self.store.incr(MISS_PERSON_KIND, subject, self.settings.user_code_window)
            self.store.incr(MISS_ADDRESS_KIND, address, self.settings.user_code_window)
            return None
        reference, record = found
        return DeviceRequest(
            user_code,
            record["client_name"],
            self._clock() >= record["expires_at"],
            self.store.get(DECISION_KIND, reference) is not None,
            record.get("requested_at"),
            record.get("requested_from", ""),
        )

    def decide(self, user_code: str, identity: Identity | None, session_expires: float, session: str | None) -> bool:
        """Approve for `identity` (None: deny), within the portal session referred to by `session`.
        False when the request is gone, expired or already decided."""
        found = self._device_by_user_code(user_code)
        if found is None or self._clock() >= found[1]["expires_at"]:
            return False
        reference, record = found
        decision = {
            "approved": identity is not None,
            "session_expires": session_expires,
            "identity": identity.to_record() if identity else None,
            "session": session if identity else None,
        }
        return self.store.add(
            DECISION_KIND,
            reference,
            decision,
            remaining_seconds(record["expires_at"], self._clock()) + self.settings.expired_memory,
        )

    def redeem_device_code(self, client_id: str, device_code: str | None) -> Approval:
        """The approved sign-in behind a device code, once; otherwise the RFC 8628 answer for its state."""
        pointer = self.store.get(DEVICE_CODE_KIND, device_code) if device_code else None
        record = self.store.get(DEVICE_KIND, pointer["ref"]) if pointer else None
        if pointer is None or record is None or record["client_id"] != client_id:
            raise InvalidGrant("The device code is unknown or was already used.")
        reference, now = pointer["ref"], self._clock()
        if now >= record["expires_at"]:
            raise ExpiredToken("The device code has expired. Start again.")
        decision = self.store.get(DECISION_KIND, reference)
        if decision is None:
            self._note_poll(reference, record, now)
            raise AuthorizationPending("The request has not been approved yet.")
        if not decision["approved"]:
            raise AccessDenied("The request was denied.")
        if device_code is None or self.store.take(DEVICE_CODE_KIND, device_code) is None:  # a concurrent poll won
            raise InvalidGrant("The device code is unknown or was already used.")
        left = remaining_seconds(record["expires_at"], now) + self.settings.expired_memory
        return Approval(
            Identity.from_record(decision["identity"]),
            decision["session_expires"],
            decision.get("session"),
            record["scopes"],
            (DEVICE_CODE_KIND, device_code, pointer, left),
        )

    def _note_poll(self, reference: str, record: dict, now: float) -> None:
        poll = self.store.get(POLL_KIND, reference) or {"last": 0, "interval": self.settings.poll_interval}
        ttl = remaining_seconds(record["expires_at"], now) + self.settings.expired_memory
        if now - poll["last"] < poll["interval"] - POLL_TOLERANCE:
            self.store.put(POLL_KIND, reference, {"last": now, "interval": poll["interval"] + SLOW_DOWN_STEP}, ttl)
            raise SlowDown("Polling too often. Wait longer between requests.")
        self.store.put(POLL_KIND, reference, {"last": now, "interval": poll["interval"]}, ttl)

    # --- authorization code with PKCE ----------------------------------------------------------

    def new_authorization_code(
        self,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
        scopes: list[str],
        identity: Identity,
        session_expires: float,
        session: str,
    ) -> str:
        code = new_secret("bac-")
        self.store.put(
            AUTH_CODE_KIND,
            code,
            {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "challenge": code_challenge,
                "scopes": scopes,
                "identity": identity.to_record(),
                "session_expires": session_expires,
                "session": session,
                "expires_at": self._clock() + self.settings.code_lifetime,
            },
            self.settings.code_lifetime,
        )
        return code

    def redeem_authorization_code(
        self, client_id: str, code: str | None, redirect_uri: str | None, verifier: str | None
    ) -> Approval:
        """The sign-in behind a code, once (a second use finds nothing), for the client, redirect URI and
        PKCE verifier it was issued to."""
        record = self.store.take(AUTH_CODE_KIND, code) if code else None
        if (
            record is None
            or record["client_id"] != client_id
            or record["redirect_uri"] != redirect_uri
            or not pkce_matches(record["challenge"], verifier)
        ):
            raise InvalidGrant(
                "The authorization code is unknown, used or expired, or does not match the "
                "redirect URI or code verifier."
            )
        left = remaining_seconds(record["expires_at"], self._clock()) if "expires_at" in record else 0
        return Approval(
            Identity.from_record(record["identity"]),
            record["session_expires"],
            record.get("session"),
            record["scopes"],
            (AUTH_CODE_KIND, code, record, left) if code and left > 0 else None,
        )

    # --- tokens ---------------------------------------------------------------------------------

    def issue_tokens(self, client_id: str, client: RegisteredClient, approval: Approval) -> Tokens:
        """A new grant for a fresh sign-in, and its first tokens (CreateToken's answer)."""
        now = self._clock()
        try:
            if approval.session_expires <= now + 60 or not self._session_live(approval.session):
                raise InvalidGrant("The portal sign-in behind this request has ended.")
            self._current(None, approval.session, approval.identity, InvalidGrant)
            grant_id = secrets.token_urlsafe(16)
            grant = Grant(approval.identity, client_id, approval.scopes, approval.session_expires, approval.session)
            self.store.put(GRANT_KIND, grant_id, grant.to_record(), remaining_seconds(approval.session_expires, now))
            return self._tokens(grant_id, approval.session_expires, REFRESH_GRANT in client.grant_types)
        except (StoreUnavailable, ServiceUnavailable):  # no tokens were answered: the code is given back for the
            # retry the 503 asks for
            if approval.taken is not None:
                self._give_back(approval.taken)
            raise

    def refresh(self, client_id: str, refresh_token: str | None) -> Tokens:
        """Rotation: the refresh token is spent, a new pair comes back in the same grant.

        - Presented by another client than the grant's: refused, and neither spent nor revoked. The
          other client cannot use it (CreateToken authenticates the client), so refusing is all the
          protection there is to have; spending it or ending the grant would let anyone who saw the
          token (in a log, say) sign its owner out.
        - Presented again by its client after it was rotated: the whole grant ends (RFC 9700 §4.14.2).
          The spend is an atomic `add`, so of two concurrent presentations one wins and the other
          counts as reuse.
        - The portal session behind the grant has ended: the grant ends.
        """
        refused = InvalidGrant("The refresh token is unknown, used, expired or revoked.")
        record = self.store.get(REFRESH_KIND, refresh_token) if refresh_token else None
        grant = self._grant(record["grant"]) if record else None
        if record is not None and grant is None:
            raise InvalidGrant(self._ended(record["grant"], refused.message))
        if record is None or grant is None or refresh_token is None:
            raise refused
        grant_id = record["grant"]
        if grant.client_id != client_id:
            log.warning("a refresh token was presented by another client than its own; refused")
            raise refused
        if not self._session_live(grant.session):
            self.store.delete(GRANT_KIND, grant_id)
            raise InvalidGrant("The portal sign-in behind this token has ended.")
        self._current(grant_id, grant.session, grant.identity, InvalidGrant)
        if not self.store.add(
            SPENT_REFRESH_KIND, refresh_token, {}, max(1, remaining_seconds(grant.expires_at, self._clock()))
        ):
            self.store.delete(GRANT_KIND, grant_id)
            log.warning("a rotated refresh token was presented again; its grant is revoked")
            raise refused
        try:
            return self._tokens(grant_id, grant.expires_at, True)
        except StoreUnavailable:  # no new pair was answered: the token is given back, so the retry the 503 asks for
            try:  # is not taken for reuse (which would end the grant)
                self.store.delete(SPENT_REFRESH_KIND, refresh_token)
            except StoreUnavailable:
                log.warning("a spent refresh token could not be given back after a store outage")
            raise

    def _give_back(self, taken: tuple[str, str, dict, float]) -> None:
        kind, key, record, left = taken
        try:
            self.store.put(kind, key, record, max(left, 1))
        except StoreUnavailable:
            log.warning("a redeemed code could not be given back after a store outage")

    def _grant(self, grant_id: str) -> Grant | None:
        record = self.store.get(GRANT_KIND, grant_id)
        return Grant.from_record(record) if record else None

    def _tokens(self, grant_id: str, grant_expires: float, with_refresh: bool) -> Tokens:
        now = self._clock()
        lifetime = access_token_lifetime(self.settings.token_lifetime, grant_expires, now)
        access = new_secret("bat-")
        self.store.put(ACCESS_KIND, access, {"grant": grant_id}, lifetime)
        refresh = None
        if with_refresh:
            refresh = new_secret("brt-")
            self.store.put(REFRESH_KIND, refresh, {"grant": grant_id}, remaining_seconds(grant_expires, now))
        return Tokens(access, lifetime, refresh)

    def bearer(self, access_token: str | None) -> tuple[Identity, str]:
        """The identity behind a live access token, and its grant; NotSignedIn otherwise (also when the
        portal session that approved the grant has ended: the grant ends with it)."""
        record = self.store.get(ACCESS_KIND, access_token) if access_token else None
        grant = self._grant(record["grant"]) if record else None
        if record is not None and grant is not None and not self._session_live(grant.session):
            self.store.delete(GRANT_KIND, record["grant"])
            grant = None
        if record is None or grant is None:
            default = "Session token not found or invalid."
            raise NotSignedIn(self._ended(record["grant"], default) if record else default)
        return self._current(record["grant"], grant.session, grant.identity, NotSignedIn), record["grant"]

    def still_current(self, grant_id: str) -> None:
        """The grant `bearer` let through asked again later in the request (an issuance, once AWS has answered):
        NotSignedIn, as `bearer` would say it, when it has ended or its portal session may no longer act. The
        access token is not looked up again."""
        grant = self._grant(grant_id)
        if grant is None:
            raise NotSignedIn(self._ended(grant_id, "Session token not found or invalid."))
        self._current(grant_id, grant.session, grant.identity, NotSignedIn)

    def logout(self, access_token: str | None) -> None:
        """End the whole grant: this token, its siblings and every refresh token of the sign-in."""
        record = self.store.get(ACCESS_KIND, access_token) if access_token else None
        grant = self._grant(record["grant"]) if record else None
        if record is not None and grant is not None and not self._session_live(grant.session):
            self.store.delete(GRANT_KIND, record["grant"])
            grant = None
        if record is None or grant is None:  # (a revoked person may still sign out: no guard here)
            raise NotSignedIn("Session token not found or invalid.")
        grant_id = record["grant"]
        self.store.delete(GRANT_KIND, grant_id)
        if access_token:
            self.store.delete(ACCESS_KIND, access_token)
