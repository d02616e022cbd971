"""What the portal's pages offer a person, decided here and only shown by the templates: the accounts
and roles of the accounts page (filtered, which are expanded, which roles cannot be used now and why),
and the order and explanation of the sign-in choices. Pure: no HTTP, no AWS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import groupby

from broker.core.access import AccessConfig
from broker.core.entitlements import Entitlement, check_entitlement, entitlements_for
from broker.core.identity import Identity
from broker.errors import MfaRequired

EXPANDED_UP_TO = 3  # accounts shown expanded when a person has (or a filter leaves) at most this many
MAX_FILTER_LENGTH = 100


@dataclass(frozen=True)
class RoleChoice:
    entitlement: Entitlement
    description: str
    unavailable: str | None  # why it cannot be used with this sign-in (a second factor missing), or None


@dataclass(frozen=True)
class AccountChoice:
    id: str
    name: str
    email: str | None
    roles: tuple[RoleChoice, ...]
    expanded: bool
    shown: bool = True  # whether the filter leaves it (the others are on the page, hidden)

    @property
    def search_text(self) -> str:
        """What the filter box matches, lower case: the account's name, ID and email, and its roles."""
        words = [self.name, self.id, self.email or "", *(role.entitlement.permission_set for role in self.roles)]
        return " ".join(words).lower()


@dataclass(frozen=True)
class Catalogue:
    accounts: tuple[AccountChoice, ...]  # every account the person has; `shown` says which the filter leaves
    filter: str

    @property
    def total(self) -> int:
        return len(self.accounts)

    @property
    def shown(self) -> int:
        return sum(1 for account in self.accounts if account.shown)


def normalised_filter(text: str | None) -> str:
    return " ".join((text or "").split())[:MAX_FILTER_LENGTH]


def catalogue(identity: Identity, access: AccessConfig, filter_text: str = "", open_account: str = "") -> Catalogue:
    """The person's accounts, each with its roles, in a stable order; shown: those matching `filter_text`
    (a substring of name, ID, email or role name, any case). Accounts are expanded when few are shown,
    and `open_account` (the one whose credentials are being shown) always is."""
    wanted = normalised_filter(filter_text).lower()
    by_account = groupby(entitlements_for(identity, access), key=lambda e: e.account_id)
    every = [_account(identity, access, account_id, list(roles)) for account_id, roles in by_account]
    few = sum(1 for account in every if wanted in account.search_text) <= EXPANDED_UP_TO
    return Catalogue(
        accounts=tuple(
            replace(account, shown=wanted in account.search_text, expanded=few or account.id == open_account)
            for account in every
        ),
        filter=normalised_filter(filter_text),
    )


def _account(identity: Identity, access: AccessConfig, account_id: str, roles: list[Entitlement]) -> AccountChoice:
    account = access.accounts[account_id]
    return AccountChoice(
        id=account.id,
        name=account.name,
        email=account.email,
        roles=tuple(
            RoleChoice(
                role, access.permission_sets[role.permission_set].description, _unavailable(identity, access, role)
            )
            for role in roles
        ),
        expanded=False,
    )


def _unavailable(identity: Identity, access: AccessConfig, role: Entitlement) -> str | None:
    """The refusal issuance would give, said before the person asks (the same words: one rule)."""
    try:
        check_entitlement(identity, access, role.account_id, role.permission_set)
    except MfaRequired as refusal:
        return refusal.reason
    return None


# --- the sign-in choice ---------------------------------------------------------------------------

# One line per kind of upstream, under its button.
UPSTREAM_EXPLANATIONS = {
    "oidc": "OpenID Connect: the usual choice. Your organization's sign-in page, then straight back here.",
    "saml": "SAML 2.0 single sign-on: the same account and password, for when OpenID Connect is unavailable.",
}


def upstream_explanation(protocol: str) -> str:
    return UPSTREAM_EXPLANATIONS.get(protocol, "Sign in with your organization's account.")


def remembered_first(upstream_ids: Sequence[str], remembered: str | None) -> list[str]:
    """The sign-in choices in configuration order, the one used last time (when still offered) first."""
    if remembered is None or remembered not in upstream_ids:
        return list(upstream_ids)
    return [remembered, *(upstream_id for upstream_id in upstream_ids if upstream_id != remembered)]


def human_duration(seconds: int) -> str:
    """A role's session length as people say it: "1 hour", "8 hours", "1 hour 30 minutes", "45 minutes"."""
    hours, minutes = divmod(max(0, int(seconds)) // 60, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if minutes or not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
