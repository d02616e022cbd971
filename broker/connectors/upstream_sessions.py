"""What an OIDC sign-in leaves for following the upstream session later (broker.connectors.oidc_session): the ID
token's `sid` (for back-channel logout), the refresh and access tokens (for re-validation). Kept server-side."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from broker.core.identity import UpstreamLogin, UpstreamSession

MAX_SID = 256


def upstream_session(claims: Mapping[str, Any], token: Mapping[str, Any], now: float) -> UpstreamSession:
    """What a token answer (and its ID token's claims) gives for following the session later."""
    sid = claims.get("sid")
    refresh = token.get("refresh_token")
    access = token.get("access_token") if str(token.get("token_type", "")).lower() == "bearer" else None
    expires_in = token.get("expires_in")
    lifetime = expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0 else 0
    return UpstreamSession(
        sid=sid if isinstance(sid, str) and 0 < len(sid) <= MAX_SID else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        access_token=access if isinstance(access, str) and access else None,
        access_expires_at=now + lifetime if access and lifetime else None,
    )


def with_upstream_session(login: UpstreamLogin, claims: Mapping[str, Any], token: Mapping[str, Any]) -> UpstreamLogin:
    return replace(login, upstream_session=upstream_session(claims, token, time.time()))
