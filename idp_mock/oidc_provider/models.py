"""What authlib asks of clients, codes and tokens, and the records the state store keeps of them."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    TokenMixin,
    list_to_scope,
    scope_to_list,
)

from idp_mock.directory import Employee
from sso_common.records import Record

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
GRANT_TYPES = ("authorization_code", "refresh_token")


def hash_secret(secret: str) -> str:
    """Client secrets are long random strings, so a plain SHA-256 is enough to keep them unusable at rest."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class OIDCClient(Record, ClientMixin):
    """A client registered at the IdP, from the config file or by dynamic registration."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...] = GRANT_TYPES
    secret_hash: str | None = field(default=None, repr=False)
    backchannel_logout_uri: str | None = None  # OIDC Back-Channel Logout: where its logout tokens go

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def client_metadata(self) -> dict:
        """Read by authlib's end-session endpoint (post-logout URIs) and userinfo endpoint (no signing)."""
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        """None: OpenID Connect requires every authorization request to name its redirect_uri."""

    def get_allowed_scope(self, scope):
        """The requested scopes (already checked against the supported ones); None when `openid` is
        missing, which authlib answers with invalid_scope: this provider speaks OpenID Connect only."""
        scopes = scope_to_list(scope) or []
        return list_to_scope(list(dict.fromkeys(scopes))) if "openid" in scopes else None

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris  # exact string match, nothing else

    def check_client_secret(self, client_secret):
        return self.secret_hash is not None and hmac.compare_digest(hash_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


@dataclass(frozen=True)
class PendingOIDCRequest(Record):
    """An authorization request kept while the user signs in; `force` asks for a login newer than it."""

    params: dict[str, str]
    requested_at: int
    force: bool


@dataclass(frozen=True)
class OIDCGrant(Record):
    """What one authorization code starts: who signed in, how, for which client and scopes (see storage)."""

    client_id: str
    username: str
    scope: str
    auth_time: int
    amr: tuple[str, ...]
    acr: str
    expires_at: float
    person: dict[str, Any] | None = None  # signed in by a sign_in_as fault (idp_mock.faults), not the form
    withheld: tuple[str, ...] = ()  # claims a "missing" fault keeps out of this grant's ID token and userinfo
    sid: str | None = None  # the SSO session's `sid` (idp_mock.oidc_provider.backchannel), in the ID token
    code: IssuedCode | None = None  # the code that starts it (idp_mock.oidc_provider.storage)


@dataclass(frozen=True)
class IssuedCode(Record):
    """An authorization code not yet redeemed, and what its redemption must match."""

    grant_id: str
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float = 0.0  # the code's end (its grant lives longer)


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    """A redeemed code: its own record plus the grant (who signed in, how, for which scopes)."""

    code: IssuedCode
    grant: OIDCGrant

    @property
    def grant_id(self) -> str:
        return self.code.grant_id

    @property
    def code_challenge(self) -> str | None:
        return self.code.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.code.code_challenge_method

    def get_redirect_uri(self):
        return self.code.redirect_uri

    def get_scope(self):
        return self.grant.scope

    def get_nonce(self):
        return self.code.nonce

    def get_auth_time(self):
        return self.grant.auth_time

    def get_acr(self):
        return self.grant.acr

    def get_amr(self):
        return list(self.grant.amr)


@dataclass(frozen=True)
class RefreshToken(Record):
    """A refresh token as stored; authlib reads the client and scope of one just consumed by rotation."""

    grant_id: str
    client_id: str
    scope: str

    def check_client(self, client):
        return self.client_id == client.client_id

    def get_scope(self):
        return self.scope


@dataclass(frozen=True)
class IssuedAccessToken(Record):
    """An access token as stored: usable until expires_at, and only while its grant lives."""

    grant_id: str
    client_id: str
    username: str
    scope: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class AccessToken(TokenMixin):
    record: IssuedAccessToken
    client: OIDCClient
    employee: Employee
    revoked: bool
    withheld: tuple[str, ...] = ()  # see OIDCGrant

    @property
    def scope(self) -> str:
        return self.record.scope

    def check_client(self, client):
        return self.record.client_id == client.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return int(self.record.expires_at - self.record.issued_at)

    def is_expired(self):
        return time.time() >= self.record.expires_at

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return self.employee

    def get_client(self):
        return self.client
