"""Trust boundaries for connector tests, as broker.yaml entries would configure them."""

from __future__ import annotations

from types import MappingProxyType

from broker.connectors.trust import EmailDomains, GroupMapping, MfaPolicy, UpstreamTrust

CORP_GROUPS = ("engineering", "aws-admins", "finance", "contractors", "security")
MFA_CONTEXTS = ("http://schemas.openid.net/pape/policies/2007/06/multi-factor", "https://refeds.org/profile/mfa")


def trust(
    upstream: str = "test",
    domains: tuple[str, ...] = ("example.com",),
    keep: tuple[str, ...] = CORP_GROUPS,
    mapped: dict[str, str] | None = None,
    prefix: str | None = None,
    email_verified: str = "if_present",
    mfa: MfaPolicy | None = None,
    directory: str | None = None,
) -> UpstreamTrust:
    return UpstreamTrust(
        upstream=upstream,
        directory=directory or upstream,
        email_domains=EmailDomains(domains),
        groups=GroupMapping(MappingProxyType({**{g: g for g in keep}, **(mapped or {})}), prefix),
        email_verified=email_verified,
        mfa=mfa or MfaPolicy(amr=frozenset({"otp"}), authn_contexts=frozenset(MFA_CONTEXTS)),
    )
