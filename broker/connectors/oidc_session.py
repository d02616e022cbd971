"""An OIDC upstream after the sign-in: keeping what follows its session, asking it again, hearing it sign out.

- `upstream_session`: what the sign-in leaves for later (the ID token's `sid`; the refresh and access tokens),
  kept server-side with the portal session's standing (broker.core.sessions).
- `OIDCRevalidator`: for an upstream without SCIM, the broker asks again every few minutes whether the person
  may still act (broker.core.guard): a refresh-token grant when it has a refresh token (a disabled person's
  grant is refused: invalid_grant), then userinfo with the fresh access token (OIDC Core 5.3) for their current
  claims; with an unexpired access token only, userinfo alone. The claims go through the upstream's mapping
  and trust boundary like a sign-in's; how the person authenticated (MFA) carries over from the sign-in.
- `verify_logout_token`: OpenID Connect Back-Channel Logout 1.0, section 2.6: a logout token is a JWT signed
  by the upstream (its JWKS, the algorithms the ID token may use), with iss, aud (the broker's client ID), iat
  within the clock skew, a jti seen once, the back-channel logout event, `sid` or `sub`, and no nonce.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from joserfc.errors import JoseError

from broker.connectors.client_auth import ASSERTION_TYPE, basic_authorization, choose_method
from broker.connectors.mapping import Authentication
from broker.connectors.oidc import PROTOCOL_CLAIMS, OIDCConnector
from broker.connectors.upstream_sessions import upstream_session
from broker.core.identity import Identity, UpstreamLogin, UpstreamSession
from broker.errors import LoginFailed, UpstreamUnavailable

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPES = ("logout+jwt", "JWT", None)  # explicit typing is RECOMMENDED (section 2.4), not required
LOGOUT_TOKEN_MAX_AGE = 300  # seconds a logout token is accepted after its iat (plus the clock skew)
MAX_SID = 256


class OIDCRevalidator:
    """Asks one OIDC upstream again (broker.core.guard.Revalidator)."""

    def __init__(self, connector: OIDCConnector, clock: Callable[[], float] = time.time):
        self.connector, self._clock = connector, clock

    def revalidate(self, session: UpstreamSession, identity: Identity) -> UpstreamLogin:
        now = self._clock()
        if session.refresh_token:
            token = self._refresh(session.refresh_token)
            fresh = upstream_session({"sid": session.sid}, token, now)
            if fresh.refresh_token is None:  # an OP that does not rotate keeps the same refresh token
                fresh = replace(fresh, refresh_token=session.refresh_token)
        elif session.access_token and (session.access_expires_at or 0) > now + 5:
            fresh = session
        else:
            raise LoginFailed("The portal has no token to ask the identity provider again; sign in again.")
        if not fresh.access_token:
            raise LoginFailed("The identity provider gave no access token to read your profile with.")
        claims = self._userinfo(fresh.access_token, identity.subject)
        mfa = self.connector.mapping.trust.mfa
        authn = Authentication(
            time=identity.auth_time, amr=frozenset(mfa.amr) if identity.mfa and mfa.amr else frozenset()
        )
        if identity.mfa and not mfa.amr:
            authn = replace(authn, acr=next(iter(mfa.acr), None))
        login = self.connector.mapping.login(identity.subject, claims, authn=authn, issuer=self.connector.issuer)
        renewed = replace(login.identity, authn_methods=identity.authn_methods, auth_time=identity.auth_time)
        return replace(login, identity=renewed, upstream_session=fresh)

    def _refresh(self, refresh_token: str) -> dict:
        """The refresh-token grant, with the upstream's client authentication (as at the sign-in)."""
        connector = self.connector
        provider = connector._provider()
        endpoint = provider["token_endpoint"]
        form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
        headers = {"Accept": "application/json"}
        method = choose_method(
            connector.token_endpoint_auth_method,
            connector.client_secret is not None,
            provider.get("token_endpoint_auth_methods_supported"),
        )
        if method == "client_secret_basic" and connector.client_secret is not None:
            headers["Authorization"] = basic_authorization(connector.client_id, connector.client_secret)
        elif method == "client_secret_post" and connector.client_secret is not None:
            form += [("client_id", connector.client_id), ("client_secret", connector.client_secret)]
        elif method == "private_key_jwt":
            key = connector._client_key() if callable(connector._client_key) else connector._client_key
            if key is None:
                raise UpstreamUnavailable(f"{connector.display_name}: the portal has no key for private_key_jwt.")
            connector._client_key = key
            form += [
                ("client_id", connector.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", key.assertion(connector.client_id, endpoint)),
            ]
        else:
            raise UpstreamUnavailable(f"{connector.display_name}: no client authentication the portal can use.")
        answer = connector.http.post_form(endpoint, "token endpoint (refresh)", urlencode(form).encode(), headers)
        if answer.status == 200:
            return connector.http.json_object(answer, "token endpoint (refresh)")
        if answer.status in (400, 401):
            raise LoginFailed("The identity provider refused to renew the sign-in (the refresh token).")
        raise UpstreamUnavailable(f"{connector.display_name}: the token endpoint failed (HTTP {answer.status}).")

    def _userinfo(self, access_token: str, subject: str) -> dict:
        connector = self.connector
        endpoint = connector._provider().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            raise UpstreamUnavailable(f"{connector.display_name}: the discovery document has no userinfo_endpoint.")
        answer = connector.http.get(
            endpoint, "userinfo", {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        )
        if answer.status in (401, 403):
            raise LoginFailed("The identity provider no longer answers for you (userinfo).")
        if answer.status != 200:
            raise UpstreamUnavailable(f"{connector.display_name} answered HTTP {answer.status} (userinfo).")
        claims = connector.http.json_object(answer, "userinfo")
        if claims.get("sub") != subject:
            raise LoginFailed("The identity provider's profile answer is about another subject.")
        return {name: value for name, value in claims.items() if name not in PROTOCOL_CLAIMS}


def verify_logout_token(
    connector: OIDCConnector, token: str, first_use: Callable[[str, float], bool], now: float | None = None
) -> tuple[str | None, str | None]:
    """(sid, sub) of a valid logout token; LoginFailed naming what is wrong otherwise. `first_use(jti, ttl)`
    answers whether the token's jti is new (a replay cache)."""
    now = time.time() if now is None else now
    if not isinstance(token, str) or not token or len(token) > 16 * 1024:
        raise LoginFailed("The logout token is missing or too large.")
    try:
        decoded = connector._decode(token)
    except (JoseError, ValueError) as error:
        raise LoginFailed(f"The logout token was rejected ({type(error).__name__}).") from None
    if decoded.header.get("typ") not in LOGOUT_TOKEN_TYPES:
        raise LoginFailed("The logout token is not typed as one (typ).")
    claims = decoded.claims
    audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
    iat, exp = claims.get("iat"), claims.get("exp")
    skew = connector.clock_skew
    events = claims.get("events")
    sid, sub, jti = claims.get("sid"), claims.get("sub"), claims.get("jti")
    problems = [
        (claims.get("iss") != connector.issuer, "it comes from another issuer"),
        (connector.client_id not in audiences, "it is meant for another client"),
        (not _number(iat) or iat > now + skew or iat < now - LOGOUT_TOKEN_MAX_AGE - skew, "its iat is not recent"),
        (exp is not None and (not _number(exp) or exp < now - skew), "it has expired"),
        (not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict), "it has no logout event"),
        ("nonce" in claims, "it carries a nonce"),
        (not isinstance(jti, str) or not jti or len(jti) > 256, "it has no jti"),
        (not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub), "it names no sid or sub"),
        (sid is not None and (not isinstance(sid, str) or len(sid) > MAX_SID), "its sid is malformed"),
        (sub is not None and (not isinstance(sub, str) or len(sub) > 256), "its sub is malformed"),
    ]
    for failed, why in problems:
        if failed:
            raise LoginFailed(f"The logout token was rejected: {why}.")
    if not first_use(f"{connector.id}\x00{jti}", LOGOUT_TOKEN_MAX_AGE + 2 * skew):
        raise LoginFailed("The logout token was rejected: it was used before.")
    return (sid if isinstance(sid, str) and sid else None), (sub if isinstance(sub, str) and sub else None)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
