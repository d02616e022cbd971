"""OpenID Connect upstream: authorization code flow with PKCE (S256), ID token verified with joserfc.

The ID token is checked here: signature against the IdP's JWKS with a fixed list of algorithms (never
the one the token header asks for, so `alg: none` and HS256-keyed-with-the-public-key tokens fail), then
iss, aud/azp, exp/iat/nbf with the configured clock skew, nonce and at_hash.

- Authorization request: PKCE, state, nonce; when the upstream is trusted for MFA through amr or acr
  and the OP supports the `claims` parameter, it asks for both in the ID token (OIDC Core 5.5).
- Callback: when the OP advertises `authorization_response_iss_parameter_supported` (RFC 9207), an
  answer without `iss` is refused; an `iss` naming another issuer always is.
- Token endpoint: the upstream's client authentication (broker.connectors.client_auth).
- UserInfo (OIDC Core 5.3): called when the upstream says `userinfo: always`, or (`auto`, the default)
  when the ID token lacks the email address, the groups or the configured username claim (or
  email_verified, when the upstream requires it): "thin" ID tokens, as panva's oidc-provider and many
  others issue by default. `never` skips it. Its `sub` must equal the ID token's, or the sign-in is refused. Merging:
  the ID token's claims win; the userinfo answer only adds claims the ID token lacks, and never the
  protocol claims (iss, aud, exp, nonce, amr, acr...). A signed userinfo answer (application/jwt) is
  verified with the OP's keys like the ID token.
- Documents: discovery and JWKS are fetched lazily (the broker starts while the IdP is down) and kept for
  their Cache-Control max-age within bounds (broker.connectors.fetch). An unknown `kid` or a failed
  signature refetches the JWKS once, at most once per `JWKS_REFRESH_INTERVAL`, so a rotated key or a
  reused kid works at once while made-up kids cannot make the broker hammer the IdP; a key withdrawn
  from the JWKS is dropped when the cached copy expires.
Every call goes through one `UpstreamClient`: an overall deadline, no redirects, a size cap, a cap on
calls in flight per upstream server.
Each check records the outcome it reached for "How did I get here?" (broker.core.evidence; joserfc's own
claim checks through broker.connectors.recording.RecordingClaimsRegistry), never validating twice.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from broker.connectors import COMMON_KEYS, ConnectorContext, Redirect, UpstreamEntry, recording
from broker.connectors.client_auth import (
    ASSERTION_TYPE,
    METHODS,
    SECRET_METHODS,
    ClientKey,
    basic_authorization,
    choose_method,
)
from broker.connectors.fetch import DEFAULT_POLICY, Answer, CachedDocument, FetchPolicy, ServerSlots, UpstreamClient
from broker.connectors.mapping import Authentication, IdentityMapping
from broker.connectors.upstream_sessions import with_upstream_session
from broker.core import evidence
from broker.core.identity import LogoutHint, UpstreamLogin
from broker.errors import LoginFailed, UpstreamUnavailable
from sso_common.config import URL_PATTERN, Node
from sso_common.records import Record

ALGORITHMS = ("RS256", "ES256", "PS256")
JWKS_REFRESH_INTERVAL = 30.0
DEFAULT_SCOPES = ["openid", "email", "profile", "groups"]
DEFAULT_CLAIMS = {
    "email": "email",
    "email_verified": "email_verified",
    "display_name": "name",
    "groups": "groups",
    "department": "department",
    "username": "preferred_username",
}
USERINFO_MODES = ("auto", "always", "never")
# Claims about the authentication itself: only ever taken from the verified ID token.
PROTOCOL_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "amr", "acr", "auth_time", "sid"}
)


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
        client_secret: str | None,
        redirect_uri: str,
        scopes: list[str],
        mapping: IdentityMapping,
        clock_skew: int,
        token_endpoint_auth_method: str | None = None,
        client_key: ClientKey | Callable[[], ClientKey] | None = None,
        userinfo: str = "auto",
        fetch: FetchPolicy = DEFAULT_POLICY,
        slots: ServerSlots | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.id, self.display_name = id, display_name
        self.issuer, self.client_id, self.client_secret = issuer, client_id, client_secret
        self.redirect_uri, self.scope = redirect_uri, " ".join(scopes)
        self.mapping, self.clock_skew, self.userinfo = mapping, clock_skew, userinfo
        self.token_endpoint_auth_method = token_endpoint_auth_method
        self._client_key = client_key
        self._monotonic = monotonic
        self.http = UpstreamClient(display_name, issuer, fetch, slots)
        self._discovery: CachedDocument[dict] = CachedDocument(self._load_discovery, monotonic)
        self._jwks: CachedDocument[KeySet] = CachedDocument(self._load_jwks, monotonic)

    @classmethod
    def from_config(cls, entry: UpstreamEntry, context: ConnectorContext) -> OIDCConnector:
        """An `type: oidc` entry of `upstreams:`; ConfigError naming the key when it is wrong."""
        node = entry.node
        node.only_keys(
            *COMMON_KEYS,
            "issuer",
            "client_id",
            "client_secret",
            "client_secret_file",
            "token_endpoint_auth_method",
            "scopes",
            "claims",
            "userinfo",
        )
        scopes_node = node.child("scopes", DEFAULT_SCOPES)
        scopes = scopes_node.strings()
        if "openid" not in scopes:
            raise scopes_node.error("must include openid")
        method_node = node.child("token_endpoint_auth_method", None)
        method = None
        if method_node.value is not None:
            method = method_node.string()
            if method not in METHODS:
                raise method_node.error(f"must be one of {', '.join(METHODS)}")
        secret_node, secret = _client_secret(node, context.portal_url)
        if secret is None and method in SECRET_METHODS:
            raise secret_node.error(f"is required with token_endpoint_auth_method {method}")
        userinfo = node.child("userinfo", "auto")
        if userinfo.string() not in USERINFO_MODES:
            raise userinfo.error(f"must be one of {', '.join(USERINFO_MODES)}")
        return cls(
            id=entry.id,
            display_name=entry.display_name,
            clock_skew=context.clock_skew,
            issuer=node.child("issuer").string(URL_PATTERN, "an http(s) URL").rstrip("/"),
            client_id=node.child("client_id").string(),
            client_secret=secret,
            token_endpoint_auth_method=method,
            client_key=context.oidc_client_key,
            redirect_uri=f"{context.portal_url}/login/{entry.id}/callback",
            scopes=scopes,
            mapping=IdentityMapping.from_config(node.child("claims", {}), DEFAULT_CLAIMS, entry.trust),
            userinfo=userinfo.string(),
            fetch=entry.fetch,
            slots=context.slots,
        )

    def describe(self) -> list[str]:
        method = self.token_endpoint_auth_method or "from discovery (token_endpoint_auth_methods_supported)"
        return [
            f"issuer: {self.issuer}",
            f"redirect URI: {self.redirect_uri}",
            f"client: {self.client_id}, authentication: {method}",
            f"scopes: {self.scope}; userinfo: {self.userinfo}",
            *self.mapping.describe(),
        ]

    def begin(self, state: str) -> tuple[Redirect, OIDCLoginState]:
        nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        provider = self._provider()
        params = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("scope", self.scope),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", create_s256_code_challenge(verifier)),
            ("code_challenge_method", "S256"),
        ]
        mfa = self.mapping.trust.mfa
        if (mfa.amr or mfa.acr) and provider.get("claims_parameter_supported") is True:
            # OIDC Core 5.5: ask for amr and acr in the ID token, which some OPs send only when asked.
            params.append(("claims", json.dumps({"id_token": {"amr": None, "acr": None}}, separators=(",", ":"))))
        return Redirect(add_params_to_uri(provider["authorization_endpoint"], params)), OIDCLoginState(nonce, verifier)

    def load_state(self, record: dict[str, Any]) -> OIDCLoginState:
        return OIDCLoginState.from_record(record)

    def complete(self, params: Mapping[str, str], kept: OIDCLoginState) -> UpstreamLogin:
        # Each check below reports its outcome to the explanation as it is made (broker.core.evidence).
        record = evidence.recorder()
        section = record.section("upstream", f"The answer from {self.display_name} (OpenID Connect)")
        recording.oidc_plan(
            section, issuer=self.issuer, client_id=self.client_id, skew=self.clock_skew, algorithms=ALGORITHMS
        )
        section.fact("callback parameters", ", ".join(sorted(params)) or "none", "the browser's redirect")
        record.note("value_kind", "claim")
        record.note("subject_source", "claim 'sub' of the ID token")
        provider = self._provider()
        with section.run(recording.ISS_PARAMETER, received=_printable(params.get("iss", "(absent)"), 200)):
            if "iss" in params and params["iss"] != self.issuer:  # RFC 9207: an answer meant for another IdP
                raise LoginFailed("The sign-in answer comes from another issuer.")
            if "iss" not in params and provider.get("authorization_response_iss_parameter_supported") is True:
                raise LoginFailed(
                    "The sign-in answer does not name its issuer (iss), which this identity provider always does "
                    "(RFC 9207): it may have been sent by another one."
                )
            if "iss" not in params:
                section.skipped(recording.ISS_PARAMETER, "absent; this identity provider does not announce RFC 9207")
        with section.run(recording.NO_ERROR, received=_printable(params.get("error", "none"), 64)):
            if "error" in params:
                description = _printable(params.get("error_description", ""), 200)
                raise LoginFailed(
                    f"The identity provider refused the sign-in ({_printable(params['error'], 64)}"
                    + (f": {description})." if description else ").")
                )
        code = params.get("code")
        with section.run(recording.CODE_PRESENT, received=evidence.fingerprint(code) if code else "(absent)"):
            if not code:
                raise LoginFailed("The sign-in answer has no authorization code.")
        with section.run(recording.CODE_REDEEMED):
            token = self._redeem(params["code"], kept.code_verifier, provider)
        with section.run(recording.ID_TOKEN_PRESENT):
            if not isinstance(token.get("id_token"), str):
                raise LoginFailed("The identity provider sent no ID token.")
        recording.describe_jwt(section, token["id_token"], "ID token")
        access_token = token.get("access_token") if isinstance(token.get("access_token"), str) else None
        claims = self._verify(token["id_token"], kept.nonce, access_token)
        values = dict(claims)
        if self._wants_userinfo(claims):
            with section.run(recording.USERINFO, received="called"):
                info = self._userinfo(provider, token, claims["sub"])
            added = []
            for name, value in info.items():
                if name not in PROTOCOL_CLAIMS and name not in values:
                    values[name] = value
                    added.append(name)
            record.note("userinfo_claims", added)
            section.fact("claims added from userinfo", ", ".join(sorted(added)) or "none", "the userinfo answer")
        else:
            section.skipped(recording.USERINFO, f"not called (userinfo: {self.userinfo})")
        amr = claims.get("amr")
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool) or not math.isfinite(auth_time):
            auth_time = claims["iat"]
        login = self.mapping.login(
            claims.get("sub"),
            values,
            authn=Authentication(
                time=int(auth_time),
                amr=frozenset(m for m in amr if isinstance(m, str)) if isinstance(amr, list) else frozenset(),
                acr=claims["acr"] if isinstance(claims.get("acr"), str) else None,
            ),
            issuer=self.issuer,
            id_token=token["id_token"],
        )
        return with_upstream_session(login, claims, token)  # sid and tokens, to follow the upstream session

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
        return self._discovery.get()

    def _load_discovery(self) -> tuple[dict, float]:
        """Discovery, checked; a failure is not cached, the next login retries."""
        what = "discovery document"
        answer = self.http.get(f"{self.issuer}/.well-known/openid-configuration", what, {"Accept": "application/json"})
        metadata = self._json_200(answer, what)
        if metadata.get("issuer") != self.issuer:
            raise UpstreamUnavailable(f"{self.display_name}: the discovery document names another issuer.")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(name), str):
                raise UpstreamUnavailable(f"{self.display_name}: the discovery document has no {name}.")
        return metadata, answer.max_age()

    def _load_jwks(self) -> tuple[KeySet, float]:
        what = "signing keys (JWKS)"
        answer = self.http.get(self._provider()["jwks_uri"], what, {"Accept": "application/json"})
        document = self._json_200(answer, what)
        try:
            return KeySet.import_key_set(document), answer.max_age()  # type: ignore[arg-type]  # checked by joserfc
        except (JoseError, ValueError, TypeError, KeyError):
            raise UpstreamUnavailable(f"{self.display_name}: the signing keys (JWKS) are not usable.") from None

    def _json_200(self, answer: Answer, what: str) -> dict:
        if answer.status != 200:
            raise UpstreamUnavailable(f"{self.display_name} answered HTTP {answer.status} ({what}).")
        return self.http.json_object(answer, what)

    def _decode(self, token: str) -> Any:
        """A JWT verified against the JWKS; on an unknown kid or a bad signature the JWKS is fetched again
        (rate-limited) and the token tried once more against the new keys."""
        keys = self._jwks.get()
        section = evidence.recorder().section("upstream")
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
            recording.signing_key(section, keys, decoded.header, refetched=False)
            return decoded
        except (InvalidKeyIdError, BadSignatureError):
            fresh = self._jwks.refresh(JWKS_REFRESH_INTERVAL)
            if fresh is None:
                raise
            decoded = jwt.decode(token, fresh, algorithms=list(ALGORITHMS))
            recording.signing_key(section, fresh, decoded.header, refetched=True)
            return decoded

    # -- the code, the ID token, userinfo -----------------------------------------------------------

    def _redeem(self, code: str, verifier: str, provider: dict) -> dict:
        endpoint = provider["token_endpoint"]
        form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri),
            ("code_verifier", verifier),
        ]
        headers = {"Accept": "application/json"}
        method = choose_method(
            self.token_endpoint_auth_method,
            self.client_secret is not None,
            provider.get("token_endpoint_auth_methods_supported"),
        )
        if method == "client_secret_basic" and self.client_secret is not None:
            headers["Authorization"] = basic_authorization(self.client_id, self.client_secret)
        elif method == "client_secret_post" and self.client_secret is not None:
            form += [("client_id", self.client_id), ("client_secret", self.client_secret)]
        elif method == "private_key_jwt":
            if callable(self._client_key):
                self._client_key = self._client_key()  # made or read once, on first use
            key = self._client_key
            if key is None:
                raise UpstreamUnavailable(f"{self.display_name}: the portal has no key for private_key_jwt.")
            form += [
                ("client_id", self.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", key.assertion(self.client_id, endpoint)),
            ]
        else:
            raise UpstreamUnavailable(
                f"{self.display_name} supports none of the client authentication methods the portal can use "
                "here (set token_endpoint_auth_method and what it needs)."
            )
        answer = self.http.post_form(endpoint, "token endpoint", urlencode(form).encode(), headers)
        if answer.status == 200:
            document = self.http.json_object(answer, "token endpoint")
            recording.token_answer(evidence.recorder().section("upstream"), document, method)
            return document
        if answer.status in (400, 401):
            error = _oauth_error(answer)
            if error == "invalid_client":
                raise LoginFailed(
                    "The identity provider refused the portal's client authentication (invalid_client): check "
                    "the client ID, its secret or key, and token_endpoint_auth_method."
                )
            raise LoginFailed(f"The identity provider refused the authorization code ({error}).")
        raise UpstreamUnavailable(f"{self.display_name}: the token endpoint failed (HTTP {answer.status}).")

    def _verify(self, id_token: str, nonce: str, access_token: str | None) -> dict:
        section = evidence.recorder().section("upstream")
        try:
            with section.run(recording.SIGNATURE):
                token = self._decode(id_token)
            recording.RecordingClaimsRegistry(  # joserfc's JWTClaimsRegistry, its checks observed
                section,
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
        with section.run(recording.AZP, received=_printable(claims.get("azp", "(absent)"), 200)):
            if ("azp" in claims or len(audiences) > 1) and claims.get("azp") != self.client_id:
                raise LoginFailed("The ID token was rejected: issued to another client (azp).")
            if "azp" not in claims and len(audiences) <= 1:
                section.skipped(recording.AZP, "absent, and aud names one client")
        with section.run(recording.AT_HASH, received=_printable(claims.get("at_hash", "(absent)"), 200)):
            if "at_hash" in claims:
                expected = create_half_hash(access_token or "", token.header["alg"])
                if not isinstance(claims["at_hash"], str) or not hmac.compare_digest(
                    expected, claims["at_hash"].encode()
                ):
                    raise LoginFailed("The ID token was rejected: at_hash does not match the access token.")
            else:
                section.skipped(recording.AT_HASH, "absent (optional in the code flow)")
        return claims

    def _wants_userinfo(self, claims: Mapping[str, Any]) -> bool:
        if self.userinfo == "never":
            return False
        if self.userinfo == "always":
            return True
        fields = ["email", "groups", "username"] + (
            ["email_verified"] if self.mapping.trust.email_verified == "required" else []
        )
        missing = any(
            names and not any(name in claims for name in names) for names in (getattr(self.mapping, f) for f in fields)
        )
        return missing and isinstance(self._provider().get("userinfo_endpoint"), str)

    def _userinfo(self, provider: dict, token: Mapping[str, Any], subject: Any) -> dict:
        """The userinfo answer (OIDC Core 5.3), only when it is about the ID token's subject."""
        endpoint = provider.get("userinfo_endpoint")
        access_token = token.get("access_token")
        if not isinstance(endpoint, str):
            raise UpstreamUnavailable(f"{self.display_name}: the discovery document has no userinfo_endpoint.")
        if not isinstance(access_token, str) or str(token.get("token_type", "")).lower() != "bearer":
            raise LoginFailed("The identity provider sent no bearer access token to read your profile (userinfo) with.")
        what = "userinfo"
        answer = self.http.get(
            endpoint, what, {"Authorization": f"Bearer {access_token}", "Accept": "application/json, application/jwt"}
        )
        if 400 <= answer.status < 500:
            raise LoginFailed(
                f"The identity provider refused to tell the portal who you are (userinfo: HTTP {answer.status})."
            )
        if answer.status != 200:
            raise UpstreamUnavailable(f"{self.display_name} answered HTTP {answer.status} ({what}).")
        if answer.content_type == "application/jwt":
            info = self._signed_userinfo(answer.body)
        else:
            info = self.http.json_object(answer, what)
        if info.get("sub") != subject:
            raise LoginFailed(
                "The identity provider's profile answer (userinfo) is about another subject than the ID token; "
                "it was not used."
            )
        return info

    def _signed_userinfo(self, body: bytes) -> dict:
        try:
            claims = self._decode(body.decode("ascii").strip()).claims
        except (JoseError, ValueError, UnicodeDecodeError):
            raise LoginFailed("The identity provider's signed profile answer (userinfo) was rejected.") from None
        audiences = claims.get("aud", self.client_id)
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if claims.get("iss", self.issuer) != self.issuer or self.client_id not in audiences:
            raise LoginFailed("The identity provider's signed profile answer (userinfo) is not meant for the portal.")
        return dict(claims)


def _client_secret(node: Node, portal_url: str) -> tuple[Node, str | None]:
    """`client_secret` (in the file, usually as ${VARIABLE}), or `client_secret_file`: a file holding only
    the secret (a mounted secret, say), read as it is but for a final line break. A file needs no YAML
    quoting, whatever characters the IdP put in the secret."""
    inline, file = node.child("client_secret", None), node.child("client_secret_file", None)
    if inline.value is not None and file.value is not None:
        raise node.error("give client_secret or client_secret_file, not both")
    if file.value is None:
        return inline, inline.secret(portal_url, min_length=1) if inline.value is not None else None
    path = Path(node.source).parent / file.string()
    try:
        secret = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as error:
        raise file.error(f"cannot read {path} ({getattr(error, 'strerror', None) or 'not UTF-8 text'})") from None
    if not secret:
        raise file.error(f"{path} is empty")
    return file, secret


def _oauth_error(answer: Answer) -> str:
    try:
        document = answer.json()
    except ValueError:
        return f"HTTP {answer.status}"
    error = document.get("error") if isinstance(document, dict) else None
    return _printable(error, 64) if isinstance(error, str) and error else f"HTTP {answer.status}"


def _printable(text: Any, limit: int) -> str:
    """IdP-supplied text, safe for a page and a log line: no control characters, bounded length."""
    return re.sub(r"[^\x20-\x7e]", "", str(text))[:limit]
