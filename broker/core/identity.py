"""The one shape every upstream login (OIDC or SAML) ends in.

Connectors translate their protocol's claims or attributes into an `Identity`; everything downstream
(entitlements, the assertion toward AWS, audit) works on this and never learns which protocol was used.
The `LogoutHint` travels beside it, untouched, until the person signs out.

A person is (upstream, subject) at the broker; toward AWS a person is named by their email address
(`aws_person_name`): addresses are unique across upstreams because each upstream may assert only its own
domains (broker.connectors.trust), and the broker refuses a second subject with an address one upstream
already gave to another (broker.core.people). Upstreams that reach one directory (Example Corp over OIDC and
over SAML) share domains on purpose: the same address through either is the same person in AWS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from sso_common.records import Record

# Authentication method references (RFC 8176 names) that count as a second factor.
SECOND_FACTORS = frozenset({"otp", "hwk", "swk", "sms", "fido", "mfa"})


@dataclass(frozen=True)
class Identity(Record):
    subject: str  # stable and never reassigned: the NameID toward AWS
    username: str
    email: str
    display_name: str
    groups: frozenset[str]
    department: str
    authn_methods: frozenset[str]  # e.g. {"pwd"} or {"pwd", "otp"}
    issuer: str  # which upstream identity provider vouched for this person
    auth_time: int  # epoch seconds of the upstream authentication

    @property
    def mfa(self) -> bool:
        return bool(self.authn_methods & SECOND_FACTORS)


@dataclass(frozen=True)
class LogoutHint(Record):
    """What the upstream needs to end its own session later: the ID token (OIDC `id_token_hint`) or
    the NameID and SessionIndex (SAML LogoutRequest). Empty when the upstream gave nothing."""

    id_token: str | None = field(default=None, repr=False)
    name_id: str | None = None
    name_id_format: str | None = None
    session_index: str | None = None


@dataclass(frozen=True)
class UpstreamSession(Record):
    """What lets the broker follow the upstream session after the sign-in (broker.core.guard): the session ID
    the upstream gave (OIDC `sid`, for back-channel logout), and the tokens to ask the upstream again whether
    the person may still act (an OIDC refresh token, or an access token for userinfo). Kept server-side only."""

    sid: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    access_expires_at: float | None = None


@dataclass(frozen=True)
class UpstreamLogin(Record):
    """A verified upstream sign-in: who, and how to end the upstream session. `dropped_groups` are the
    upstream's groups its mapping had no place for (audited at sign-in, never passed on)."""

    identity: Identity
    logout_hint: LogoutHint = LogoutHint()
    dropped_groups: frozenset[str] = frozenset()
    upstream_session: UpstreamSession = UpstreamSession()


# AWS's rules (STS AssumeRoleWithSAML, IAM session tags): RoleSessionName and SourceIdentity take
# [\w+=,.@-], 2 to 64 characters; a session tag value up to 256 letters, digits, spaces and _.:/=+-@.
AWS_NAME_MAX = 64
TAG_VALUE_MAX = 256
_AWS_NAME_DISALLOWED = re.compile(r"[^\w+=,.@-]", re.ASCII)
_TAG_VALUE_DISALLOWED = re.compile(r"[^\w .:/=+@-]")
_HASH_CHARS = 16  # hex digits of SHA-256 after the separator: 64 bits


def aws_person_name(identity: Identity) -> str:
    """The person's name toward AWS (SourceIdentity, RoleSessionName): their email address when AWS
    accepts it as it is, else a unique stand-in (see `fit_aws_value`). Unique per person across upstreams."""
    return fit_aws_value(identity.email, _AWS_NAME_DISALLOWED, AWS_NAME_MAX, ",")


def aws_person_tag(identity: Identity) -> str:
    """The `username` session tag: the same name within the tag alphabet."""
    return fit_aws_value(identity.email, _TAG_VALUE_DISALLOWED, TAG_VALUE_MAX, ":")


def fit_aws_value(value: str, disallowed: re.Pattern[str], limit: int, separator: str) -> str:
    """`value` when AWS takes it as it is. Otherwise its characters (the disallowed ones as `_`), cut to
    leave room for `separator` and a hash of the whole value: two values never share a stand-in, and
    since `separator` never occurs in an email address (`,` and `:` are not in its unquoted alphabet), no
    stand-in equals another person's plain address."""
    if 2 <= len(value) <= limit and not disallowed.search(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    keep = limit - len(separator) - _HASH_CHARS
    return disallowed.sub("_", value)[:keep] + separator + digest
