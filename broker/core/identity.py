"""The one shape every upstream login (OIDC or SAML) ends in.

Connectors translate their protocol's claims or attributes into an `Identity`; everything downstream
(entitlements, the assertion toward AWS, audit) works on this and never learns which protocol was used.
The `LogoutHint` travels beside it, untouched, until the person signs out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Authentication method references (RFC 8176 names) that count as a second factor.
SECOND_FACTORS = frozenset({"otp", "hwk", "swk", "sms", "fido", "mfa"})


@dataclass(frozen=True)
class Identity:
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

    def to_record(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "username": self.username,
            "email": self.email,
            "display_name": self.display_name,
            "groups": sorted(self.groups),
            "department": self.department,
            "authn_methods": sorted(self.authn_methods),
            "issuer": self.issuer,
            "auth_time": self.auth_time,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Identity:
        return cls(
            subject=record["subject"],
            username=record["username"],
            email=record["email"],
            display_name=record["display_name"],
            groups=frozenset(record["groups"]),
            department=record["department"],
            authn_methods=frozenset(record["authn_methods"]),
            issuer=record["issuer"],
            auth_time=record["auth_time"],
        )


@dataclass(frozen=True)
class LogoutHint:
    """What the upstream needs to end its own session later: the ID token (OIDC `id_token_hint`) or
    the NameID and SessionIndex (SAML LogoutRequest). Empty when the upstream gave nothing."""

    id_token: str | None = field(default=None, repr=False)
    name_id: str | None = None
    name_id_format: str | None = None
    session_index: str | None = None

    def to_record(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if value is not None}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LogoutHint:
        return cls(**{name: record.get(name) for name in ("id_token", "name_id", "name_id_format", "session_index")})


@dataclass(frozen=True)
class UpstreamLogin:
    """A verified upstream sign-in: who, and how to end the upstream session."""

    identity: Identity
    logout_hint: LogoutHint = LogoutHint()
