"""OpenID Connect upstream: authorization code flow with PKCE (S256), ID token verified with joserfc.

authlib builds the authorization URL and redeems the code. The ID token is checked here: signature
against the IdP's JWKS with a fixed list of algorithms (never the one the token header asks for, so
`alg: none` and HS256-keyed-with-the-public-key tokens fail), then iss, aud/azp, exp/iat/nbf with the
configured clock skew, nonce and at_hash.

Discovery and JWKS are fetched lazily and cached, so the broker starts while the IdP is down. An
unknown `kid` refetches the JWKS (key rotation), at most once per `JWKS_REFRESH_INTERVAL`, so tokens
with made-up kids cannot make the broker hammer the IdP.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.urls import add_params_to_uri
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from broker.connectors import COMMON_KEYS, ConnectorContext, Redirect, UpstreamEntry
from broker.connectors.mapping import IdentityMapping
from broker.core.identity import LogoutHint, UpstreamLogin
from broker.errors import LoginFailed, UpstreamUnavailable
from sso_common.config import URL_PATTERN
from sso_common.records import Record

ALGORITHMS = ("RS256", "ES256")
TIMEOUT = (3.0, 10.0)  # seconds: connect, read
JWKS_REFRESH_INTERVAL = 30.0
DEFAULT_SCOPES = ["openid", "email", "profile", "groups"]
DEFAULT_CLAIMS = {
    "email": "email",
    "display_name": "name",
    "groups": "groups",
    "department": "department",
    "username": "preferred_username",
}


@dataclass(frozen=True)
class OIDCLoginState(Record):
    """Kept with the login transaction: the nonce the ID token must carry and the PKCE verifier."""

    nonce: str
    code_verifier: str


class OIDCConnector:
    protocol = "oidc"

    def __init__(
        self,
        *,
        id: str,
        display_name: str,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: list[str],
        mapping: IdentityMapping,
        clock_skew: int,
        timeout: tuple[float, float] = TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.id, self.display_name = id, display_name
        self.issuer, self.client_id, self.client_secret = issuer, client_id, client_secret
        self.redirect_uri, self.scope = redirect_uri, " ".join(scopes)
        self.mapping, self.clock_skew, self.timeout = mapping, clock_skew, timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._metadata: dict | None = None
        self._jwks: KeySet | None = None
        self._jwks_fetched_at = 0.0

    @classmethod
    def from_config(cls, entry: UpstreamEntry, context: ConnectorContext) -> OIDCConnector:
        """An `type: oidc` entry of `upstreams:`; ConfigError naming the key when it is wrong."""
        node = entry.node
        node.only_keys(*COMMON_KEYS, "issuer", "client_id", "client_secret", "scopes", "claims")
        scopes_node = node.child("scopes", DEFAULT_SCOPES)
        scopes = scopes_node.strings()
        if "openid" not in scopes:
            raise scopes_node.error("must include openid")
        return cls(
            id=entry.id,
            display_name=entry.display_name,
            clock_skew=context.clock_skew,
            issuer=node.child("issuer").string(URL_PATTERN, "an http(s) URL").rstrip("/"),
            client_id=node.child("client_id").string(),
            client_secret=node.child("client_secret").secret(context.portal_url, min_length=1),  # the IdP sets it
            redirect_uri=f"{context.portal_url}/login/{entry.id}/callback",
            scopes=scopes,
            mapping=IdentityMapping.from_config(node.child("claims", {}), DEFAULT_CLAIMS, context.known_groups),
        )

    def begin(self, state: str) -> tuple[Redirect, OIDCLoginState]:
        nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        with self._client() as client:
            url, _ = client.create_authorization_url(
                self._provider()["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        return Redirect(url), OIDCLoginState(nonce, verifier)

    def load_state(self, record: dict[str, Any]) -> OIDCLoginState:
        return OIDCLoginState.from_record(record)

    def complete(self, params: Mapping[str, str], kept: OIDCLoginState) -> UpstreamLogin:
        if "error" in params:
            description = _printable(params.get("error_description", ""), 200)
            raise LoginFailed(
                f"The identity provider refused the sign-in ({_printable(params['error'], 64)}"
                + (f": {description})." if description else ").")
            )
        if params.get("iss", self.issuer) != self.issuer:  # RFC 9207: an answer meant for another IdP
            raise LoginFailed("The sign-in answer comes from another issuer.")
        if not params.get("code"):
            raise LoginFailed("The sign-in answer has no authorization code.")
        token = self._redeem(params["code"], kept.code_verifier)
        if not isinstance(token.get("id_token"), str):
            raise LoginFailed("The identity provider sent no ID token.")
        claims = self._verify(token["id_token"], kept.nonce, token.get("access_token"))
        amr = claims.get("amr")
        methods = frozenset(m for m in amr if isinstance(m, str)) if isinstance(amr, list) else frozenset()
        auth_time = claims.get("auth_time")
        auth_time = auth_time if isinstance(auth_time, (int, float)) else claims["iat"]
        identity = self.mapping.identity(
            claims.get("sub"),
            claims,
            authn_methods=methods or frozenset({"pwd"}),
            auth_time=int(auth_time),
            issuer=self.issuer,
        )
        return UpstreamLogin(identity, LogoutHint(id_token=token["id_token"]))

    def logout(self, hint: LogoutHint, return_to: str) -> Redirect | None:
        """RP-initiated logout. The local sign-out must not depend on the IdP: None if it is unreachable."""
        try:
            endpoint = self._provider().get("end_session_endpoint")
        except UpstreamUnavailable:
            return None
        if not isinstance(endpoint, str):
            return None
        params = [("post_logout_redirect_uri", return_to), ("client_id", self.client_id)]
        if hint.id_token:
            params.insert(0, ("id_token_hint", hint.id_token))
        return Redirect(add_params_to_uri(endpoint, params))

    # -- the IdP's documents ------------------------------------------------------------------------

    def _provider(self) -> dict:
        """Discovery, fetched on first use and kept; a failure is not cached, the next login retries."""
        with self._lock:
            if self._metadata is None:
                metadata = self._get_json(f"{self.issuer}/.well-known/openid-configuration", "discovery document")
                if metadata.get("issuer") != self.issuer:
                    raise UpstreamUnavailable(f"{self.display_name}: the discovery document names another issuer.")
                for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(metadata.get(name), str):
                        raise UpstreamUnavailable(f"{self.display_name}: the discovery document has no {name}.")
                self._metadata = metadata
            return self._metadata

    def _signing_key(self, token: Any):
        """joserfc key callback: the JWKS key named by the token's kid, refetching the JWKS for a new kid."""
        kid = token.headers().get("kid")
        jwks_uri = self._provider()["jwks_uri"]
        with self._lock:
            stale = self._monotonic() - self._jwks_fetched_at >= JWKS_REFRESH_INTERVAL
            if self._jwks is None or (stale and kid not in {key.kid for key in self._jwks.keys}):
                document = self._get_json(jwks_uri, "signing keys (JWKS)")
                try:
                    self._jwks = KeySet.import_key_set(document)  # type: ignore[arg-type]  # checked by joserfc
                except (JoseError, ValueError, TypeError, KeyError):
                    raise UpstreamUnavailable(f"{self.display_name}: the signing keys (JWKS) are not usable.") from None
                self._jwks_fetched_at = self._monotonic()
            return self._jwks.get_by_kid(kid)

    def _get_json(self, url: str, what: str) -> dict:
        try:
            answer = requests.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            answer.raise_for_status()
            document = answer.json()
        except requests.Timeout:
            raise UpstreamUnavailable(f"{self.display_name} did not answer in time ({what}).") from None
        except ValueError:
            raise UpstreamUnavailable(f"{self.display_name} answered garbage ({what} is not JSON).") from None
        except requests.RequestException as error:
            raise UpstreamUnavailable(f"{self.display_name} is unreachable ({what}: {type(error).__name__}).") from None
        if not isinstance(document, dict):
            raise UpstreamUnavailable(f"{self.display_name} answered garbage ({what} is not a JSON object).")
        return document

    # -- the code and the ID token ------------------------------------------------------------------

    def _client(self) -> OAuth2Session:
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=self.scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            default_timeout=self.timeout,
        )

    def _redeem(self, code: str, verifier: str) -> dict:
        token_endpoint = self._provider()["token_endpoint"]
        with self._client() as client:
            try:
                return client.fetch_token(
                    token_endpoint, grant_type="authorization_code", code=code, code_verifier=verifier
                )
            except OAuthError as error:
                raise LoginFailed(
                    f"The identity provider refused the authorization code ({_printable(error.error, 64)})."
                ) from None
            except requests.Timeout:
                raise UpstreamUnavailable(f"{self.display_name} did not answer in time (token endpoint).") from None
            except (requests.RequestException, ValueError) as error:
                raise UpstreamUnavailable(
                    f"{self.display_name}: the token endpoint failed ({type(error).__name__})."
                ) from None

    def _verify(self, id_token: str, nonce: str, access_token: str | None) -> dict:
        try:
            token = jwt.decode(id_token, self._signing_key, algorithms=list(ALGORITHMS))
            JWTClaimsRegistry(
                leeway=self.clock_skew,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except JoseError as error:
            raise LoginFailed(
                f"The ID token was rejected: {_printable(error.description or error.error, 120)}."
            ) from None
        except ValueError:
            raise LoginFailed("The ID token was rejected: malformed.") from None
        claims = token.claims
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if ("azp" in claims or len(audiences) > 1) and claims.get("azp") != self.client_id:
            raise LoginFailed("The ID token was rejected: issued to another client (azp).")
        if "at_hash" in claims:
            expected = create_half_hash(access_token or "", token.header["alg"])
            if not isinstance(claims["at_hash"], str) or not hmac.compare_digest(expected, claims["at_hash"].encode()):
                raise LoginFailed("The ID token was rejected: at_hash does not match the access token.")
        return claims


def _printable(text: Any, limit: int) -> str:
    """IdP-supplied text, safe for a page and a log line: no control characters, bounded length."""
    return re.sub(r"[^\x20-\x7e]", "", str(text))[:limit]
