"""OIDC state in the shared StateStore, so every server worker sees the same codes, tokens and clients.

A *grant* is what one authorization code starts: who signed in, how, for which client and scopes.
Every token issued from that code or from its refresh tokens names the grant, and is valid only while
the grant exists. So revoking a whole family (code replay, refresh-token reuse) is one delete.

A code is kept in its grant (`OIDCGrant.code`: what its redemption must match, until when), under an ID
derived from the code (a digest: knowing the ID gives nothing back), so issuing one writes the grant only.
Codes and refresh tokens are single-use through the store's atomic `add` of a *used* marker, kept as long
as the grant can live: of concurrent redemptions exactly one adds it, and a replayed code or rotated refresh
token finds its grant (from the code's digest, from the refresh token's own record, which stays until it
expires) and revokes it. One write per code and per refresh token issued, one per redemption.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from idp_mock.faults import FaultPerson
from idp_mock.oidc_provider.models import (
    IssuedAccessToken,
    IssuedCode,
    OIDCClient,
    OIDCGrant,
    PendingOIDCRequest,
    RefreshToken,
)
from idp_mock.session import SignIn, sid_of
from sso_common.store import StateStore
from sso_common.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

# The single-use markers (kind, key) the current token request has set: released if the request then fails for a
# store outage, so that the client's retry (the 503 says "try again") is not taken for a replay.
_spent: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar("oidc_spent", default=None)

PENDING_TTL = 600  # an authorization request waiting for the login
REGISTERED_CLIENT_TTL = 30 * 24 * 3600  # dynamically registered clients


def _person_record(person: FaultPerson) -> dict:
    fields = ("username", "subject", "email", "name", "department", "groups", "claims")
    return {name: getattr(person, name) for name in fields}


def grant_of_code(code: str) -> str:
    """The ID of the grant an authorization code starts: a replayed code names it without a marker."""
    return hashlib.sha256(b"oidc grant\x00" + code.encode()).hexdigest()[:32]


def grant_person(grant: OIDCGrant) -> FaultPerson | None:
    """The person a sign_in_as fault signed in for this grant, or None (a directory sign-in)."""
    if grant.person is None:
        return None
    return FaultPerson(**{**grant.person, "groups": tuple(grant.person["groups"])}, password_hash="")


class NonceUsed(Exception):
    """The client used this nonce before: no code is issued (a replayed authorization request)."""


class OIDCStore:
    def __init__(self, store: StateStore, settings):
        self._store = store
        self._oidc = settings.oidc
        self._nonce_ttl = settings.session_lifetime

    # --- authorization requests waiting for a login ----------------------------------------------

    def stash_request(self, pending: PendingOIDCRequest) -> str:
        handle = secrets.token_urlsafe(32)
        self._store.put("oidc_pending", handle, pending.to_record(), PENDING_TTL)
        return handle

    def pending_request(self, handle: str) -> PendingOIDCRequest | None:
        record = self._store.get("oidc_pending", handle)
        return PendingOIDCRequest.from_record(record) if record else None

    def drop_pending_request(self, handle: str) -> None:
        self._store.delete("oidc_pending", handle)

    # --- grants and codes ------------------------------------------------------------------------

    def save_code(
        self,
        code: str,
        *,
        client_id: str,
        sign_in: SignIn,
        scope: str,
        redirect_uri: str,
        nonce: str | None,
        code_challenge: str | None,
        code_challenge_method: str | None,
        withheld: tuple[str, ...] = (),
    ) -> None:
        if nonce and not self._store.add("oidc_nonce", f"{client_id}\x00{nonce}", {}, self._nonce_ttl):
            raise NonceUsed()  # before anything is stored: of two requests with one nonce, one gets a code
        grant_id = grant_of_code(code)
        lifetime = self._oidc.refresh_token_lifetime
        employee = sign_in.employee
        now = time.time()
        issued = IssuedCode(
            grant_id,
            client_id,
            redirect_uri,
            nonce,
            code_challenge,
            code_challenge_method,
            expires_at=now + self._oidc.code_lifetime,
        )
        grant = OIDCGrant(
            client_id=client_id,
            username=employee.username,
            scope=scope,
            auth_time=sign_in.auth_time,
            amr=sign_in.amr,
            acr=sign_in.acr,
            expires_at=now + lifetime,
            person=_person_record(employee) if isinstance(employee, FaultPerson) else None,
            withheld=withheld,
            sid=sid_of(sign_in.session_id) if sign_in.session_id else None,
            code=issued,
        )
        self._store.put("oidc_grant", grant_id, grant.to_record(), lifetime)

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        return self._store.get("oidc_nonce", f"{client_id}\x00{nonce}") is not None

    def take_code(self, code: str) -> tuple[IssuedCode, OIDCGrant] | None:
        """The code and its grant, once, while the code is valid. A replayed code revokes what it was
        exchanged for."""
        grant_id = grant_of_code(code)
        if not self._spend("oidc_code_used", grant_id):
            if self.revoke_grant(grant_id):
                log.warning("authorization code used twice: its tokens are revoked")
            return None
        grant = self.grant(grant_id)
        if grant is None or grant.code is None or grant.code.expires_at <= time.time():
            return None
        return grant.code, grant

    def _spend(self, kind: str, key: str) -> bool:
        """Set a single-use marker atomically; False if it was set before (a replay)."""
        if not self._store.add(kind, key, {}, self._oidc.refresh_token_lifetime):
            return False
        spent = _spent.get()
        if spent is not None:
            spent.append((kind, key))
        return True

    @contextmanager
    def token_request(self) -> Iterator[None]:
        """One token request: when a store outage ends it (no tokens answered), the codes and refresh tokens it
        spent are given back (best effort: the store may still be down), so the client's retry works."""
        spent: list[tuple[str, str]] = []
        reset = _spent.set(spent)
        try:
            yield
        except StoreUnavailable:
            for kind, key in spent:
                try:
                    self._store.delete(kind, key)
                except StoreUnavailable:
                    log.warning("a %s marker could not be given back after a store outage", kind)
            raise
        finally:
            _spent.reset(reset)

    def grant(self, grant_id: str) -> OIDCGrant | None:
        record = self._store.get("oidc_grant", grant_id)
        return OIDCGrant.from_record(record) if record else None

    def revoke_grant(self, grant_id: str) -> bool:
        """End a grant and so every token issued under it; True if it was live."""
        return self._store.take("oidc_grant", grant_id) is not None

    # --- tokens ----------------------------------------------------------------------------------

    def save_tokens(self, token: dict, grant_id: str, client_id: str) -> bool:
        """Store issued tokens under their grant; False if the grant was revoked meanwhile (a replay)."""
        grant = self.grant(grant_id)
        if grant is None:
            return False
        now = time.time()
        remaining = max(grant.expires_at - now, 1)
        ttl = min(self._oidc.access_token_lifetime, remaining)
        access = IssuedAccessToken(grant_id, client_id, grant.username, token["scope"], now, now + ttl)
        self._store.put("oidc_access", token["access_token"], access.to_record(), ttl)
        if "refresh_token" in token:  # kept after its use too, for as long as the grant: see take_refresh_token
            refresh = RefreshToken(grant_id, client_id, token["scope"])
            self._store.put("oidc_refresh", token["refresh_token"], refresh.to_record(), remaining)
        return True

    def access_token(self, token: str) -> IssuedAccessToken | None:
        record = self._store.get("oidc_access", token)
        return IssuedAccessToken.from_record(record) if record else None

    def take_refresh_token(self, token: str) -> RefreshToken | None:
        """Rotation: a refresh token works once. Presenting a rotated one revokes the whole grant."""
        record = self._store.get("oidc_refresh", token)
        if record is None:
            return None
        refresh = RefreshToken.from_record(record)
        if not self._spend("oidc_refresh_used", token):
            if self.revoke_grant(refresh.grant_id):
                log.warning("rotated refresh token used again: its grant is revoked")
            return None
        return refresh if self.grant(refresh.grant_id) else None

    # --- dynamically registered clients ----------------------------------------------------------

    def save_client(self, client: OIDCClient) -> None:
        self._store.put("oidc_client", client.client_id, client.to_record(), REGISTERED_CLIENT_TTL)

    def client(self, client_id: str) -> OIDCClient | None:
        record = self._store.get("oidc_client", client_id)
        return OIDCClient.from_record(record) if record else None
