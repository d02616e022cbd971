"""The audit trail: every sign-in (and why it failed) and every credential issuance.

Records carry who, what, from where and until when; never a credential, token or assertion.

Event types:
- `sign_in`: a person signed in to the portal through an upstream identity provider (channel
  `portal`), or was refused; refusals before the person is known carry no identity.
- `cli_sign_in`: a person approved (or denied) a command-line tool's sign-in (device code or
  authorization code flow; channel `sso-api`). One record per command-line sign-in: the browser
  sign-in that may come before it is the portal's own `sign_in`, not a second record of it.
- `sign_out`, and `credentials`: every issuance, on the channel that asked for it.
- `revocation`: a person's sessions, grants and credentials revoked (by whom, why); `scim`: a change an
  upstream provisioned over SCIM (a person created, changed, disabled or deleted; a group and its members);
  `session_ended`: a portal session or command-line sign-in refused at use (disabled, revoked, deleted,
  signed out at the identity provider, or not re-validated in time).

`audit_query` turns the audit page's filters (person, event, outcome, channel, time range) into an
`AuditQuery`, or a `BadFilter` naming the field and the problem.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.core.identity import Identity
from sso_common.store import AuditLog, AuditQuery

MAX_USER_AGENT = 256

PORTAL_CHANNEL = "portal"  # a browser on the portal's pages
API_CHANNEL = "sso-api"  # a CLI or SDK, and the browser approvals of its sign-ins

EVENT_TYPES = {
    "sign_in": "Sign-in",
    "cli_sign_in": "Command-line sign-in",
    "sign_out": "Sign-out",
    "credentials": "Credentials",
    "groups_dropped": "Groups dropped at sign-in",
    "revocation": "Revocation",
    "scim": "SCIM provisioning",
    "session_ended": "Session ended",
    "backchannel_logout": "Signed out at the identity provider",
}
OUTCOMES = {"success": "Success", "failure": "Failure", "dropped": "Dropped"}
SCIM_CHANNEL = "scim"  # an identity provider provisioning people and groups
CHANNELS = {
    PORTAL_CHANNEL: "Portal (browser)",
    API_CHANNEL: "Command line and SDKs (sso-api)",
    SCIM_CHANNEL: "SCIM provisioning",
}
FILTER_FIELDS = ("person", "event", "outcome", "channel", "since", "until")
MAX_PERSON_LENGTH = 256
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?")


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
    audit: AuditLog,
    origin: RequestOrigin,
    upstream_id: str,
    identity: Identity | None,
    reason: str | None = None,
    explanation: str | None = None,
) -> None:
    """`explanation`: the ID of the sign-in's "How did I get here?" story (the audit page links it)."""
    audit.append(
        {
            "type": "sign_in",
            "outcome": "success" if reason is None else "failure",
            "upstream": upstream_id,
            **({"reason": reason} if reason else {}),
            **({"explanation": explanation} if explanation else {}),
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


def cli_sign_in(
    audit: AuditLog,
    origin: RequestOrigin,
    upstream_id: str,
    identity: Identity,
    client_name: str,
    flow: str,
    reason: str | None = None,
) -> None:
    """A command-line sign-in approved (reason None) or denied in the browser by `identity`."""
    audit.append(
        {
            "type": "cli_sign_in",
            "outcome": "success" if reason is None else "failure",
            "upstream": upstream_id,
            "client_name": client_name,
            "flow": flow,
            **({"reason": reason} if reason else {}),
            **_who(identity),
            **_where(origin),
        }
    )


class BadFilter(ValueError):
    """A filter of the audit page that cannot be applied; the message names the field and is safe to show."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def audit_query(params: Mapping[str, str]) -> AuditQuery:
    """The query behind the audit page's filters. Empty fields filter nothing; times are UTC, `since`
    inclusive and `until` exclusive."""
    values = {name: (params.get(name) or "").strip() for name in FILTER_FIELDS}
    person = values["person"]
    if len(person) > MAX_PERSON_LENGTH or not person.isprintable():
        raise BadFilter(
            "person", f"Person: give a username, email address or subject of at most {MAX_PERSON_LENGTH} characters."
        )
    for field, allowed in (("event", EVENT_TYPES), ("outcome", OUTCOMES), ("channel", CHANNELS)):
        if values[field] and values[field] not in allowed:
            raise BadFilter(field, f"{field.title()}: {values[field][:40]!r} is not one of {', '.join(allowed)}.")
    since, until = _time(values["since"], "since", "From"), _time(values["until"], "until", "Before")
    if since is not None and until is not None and since >= until:
        raise BadFilter("until", "Before: the end of the time range must come after its start.")
    return AuditQuery(
        event_type=values["event"] or None,
        person=person or None,
        outcome=values["outcome"] or None,
        channel=values["channel"] or None,
        since=since,
        until=until,
    )


def form_time(epoch: float | None) -> str:
    """A time of the query as the filter form's datetime-local field takes it (UTC), or ""."""
    return "" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _time(text: str, field: str, label: str) -> float | None:
    if not text:
        return None
    try:
        if not _TIME.fullmatch(text):
            raise ValueError
        return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise BadFilter(
            field, f"{label}: {text[:40]!r} is not a date and time (UTC) such as 2026-01-31 or 2026-01-31T09:30."
        ) from None


def groups_dropped(
    audit: AuditLog, origin: RequestOrigin, upstream_id: str, identity: Identity, dropped: list[str], count: int
) -> None:
    """Groups an upstream asserted outside its mapping: dropped, never passed on, and said so here."""
    more = f" and {count - len(dropped)} more" if count > len(dropped) else ""
    audit.append(
        {
            "type": "groups_dropped",
            "outcome": "dropped",
            "upstream": upstream_id,
            "reason": f"groups outside the upstream's mapping were dropped: {', '.join(dropped)}{more}",
            "dropped_groups": dropped,
            "dropped_count": count,
            **_who(identity),
            **_where(origin),
        }
    )


def revocation(audit: AuditLog, upstream_id: str, subject: str, email: str, reason: str, actor: str, at: float) -> None:
    """Everything issued to the person before `at` is void (broker.core.revocation)."""
    audit.append(
        {
            "type": "revocation",
            "outcome": "success",
            "time": at,
            "upstream": upstream_id,
            "subject": subject,
            "email": email,
            "reason": reason,
            "actor": actor,
        }
    )


def scim_change(
    audit: AuditLog,
    upstream_id: str,
    action: str,
    *,
    subject: str | None = None,
    email: str | None = None,
    group: str | None = None,
    detail: str | None = None,
    outcome: str = "success",
) -> None:
    """A write an upstream made over SCIM: `action` is e.g. "user created", "user disabled", "group members"."""
    audit.append(
        {
            "type": "scim",
            "outcome": outcome,
            "channel": SCIM_CHANNEL,
            "upstream": upstream_id,
            "action": action,
            **({"subject": subject} if subject else {}),
            **({"email": email} if email else {}),
            **({"group": group} if group else {}),
            **({"reason": detail} if detail else {}),
        }
    )


def session_ended(
    audit: AuditLog, origin: RequestOrigin, upstream_id: str, identity: Identity, reason: str, what: str
) -> None:
    """A portal session (`what` "portal session") or command-line sign-in refused at use, with why."""
    audit.append(
        {
            "type": "session_ended",
            "outcome": "failure",
            "upstream": upstream_id,
            "reason": reason,
            "ended": what,
            **_who(identity),
            **_where(origin),
        }
    )


def backchannel_logout(
    audit: AuditLog, origin: RequestOrigin, upstream_id: str, sid: str | None, subject: str | None
) -> None:
    """An upstream signed a session (`sid`: a one-way digest of it is recorded) or a person out."""
    audit.append(
        {
            "type": "backchannel_logout",
            "outcome": "success",
            "upstream": upstream_id,
            **({"subject": subject} if subject else {}),
            **({"upstream_session": hashlib.sha256(sid.encode()).hexdigest()[:16]} if sid else {}),
            **_where(origin),
        }
    )
