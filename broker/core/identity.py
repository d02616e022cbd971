"""The one shape every upstream login (OIDC or SAML) ends in.

Connectors translate their protocol's claims or attributes into an `Identity`; everything downstream
(entitlements, the assertion toward AWS, audit) works on this and never learns which protocol was used.
The `LogoutHint` travels beside it, untouched, until the person signs out.
"""

from __future__ import annotations

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
class UpstreamLogin(Record):
    """A verified upstream sign-in: who, and how to end the upstream session."""

    identity: Identity
    logout_hint: LogoutHint = LogoutHint()
