"""The one shape every upstream login (OIDC or SAML) ends in.

Connectors translate their protocol's claims or attributes into an `Identity`; everything downstream
(entitlements, the assertion toward AWS, audit) works on this and never learns which protocol was used.
"""

from __future__ import annotations

from dataclasses import dataclass

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
