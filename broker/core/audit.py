"""The audit trail: every sign-in (and why it failed) and every credential issuance.

Records carry who, what, from where and until when; never a credential, token or assertion.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.core.identity import Identity
from sso_common.store import AuditLog

MAX_USER_AGENT = 256


@dataclass(frozen=True)
class RequestOrigin:
    """Where a request came from, as recorded in the trail."""

    address: str
    user_agent: str
    channel: str  # "portal" (browser) or "sso-api" (CLI/SDK)


def _who(identity: Identity | None) -> dict:
    if identity is None:
        return {}
    return {
        "user": identity.username,
        "email": identity.email,
        "subject": identity.subject,
        "groups": sorted(identity.groups),
        "mfa": identity.mfa,
        "upstream_issuer": identity.issuer,
    }


def _where(origin: RequestOrigin) -> dict:
    return {
        "client_address": origin.address,
        "user_agent": origin.user_agent[:MAX_USER_AGENT],
        "channel": origin.channel,
    }


def sign_in(
    audit: AuditLog, origin: RequestOrigin, upstream_id: str, identity: Identity | None, reason: str | None = None
) -> None:
    audit.append(
        {
            "type": "sign_in",
            "outcome": "success" if reason is None else "failure",
            "upstream": upstream_id,
            **({"reason": reason} if reason else {}),
            **_who(identity),
            **_where(origin),
        }
    )


def sign_out(audit: AuditLog, origin: RequestOrigin, identity: Identity) -> None:
    audit.append({"type": "sign_out", "outcome": "success", **_who(identity), **_where(origin)})


def issuance(
    audit: AuditLog,
    origin: RequestOrigin,
    identity: Identity,
    account_id: str,
    permission_set: str,
    *,
    role_arn: str | None = None,
    session_name: str | None = None,
    source_identity: str | None = None,
    expiration: str | None = None,
    reason: str | None = None,
) -> None:
    audit.append(
        {
            "type": "credentials",
            "outcome": "success" if reason is None else "failure",
            **({"reason": reason} if reason else {}),
            **_who(identity),
            "account_id": account_id,
            "permission_set": permission_set,
            "role_arn": role_arn,
            "session_name": session_name,
            "source_identity": source_identity,
            "expiration": expiration,
            **_where(origin),
        }
    )
