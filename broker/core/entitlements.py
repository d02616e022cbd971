"""What a signed-in person may assume: a pure mapping from identity and access config to roles.

Nothing here talks to AWS. The role and provider ARNs come from `broker.core.naming`, which provisioning
uses too, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.core import evidence
from broker.core.access import AccessConfig
from broker.core.identity import Identity
from broker.core.naming import provider_arn, role_arn, role_name
from broker.errors import MfaRequired, NotEntitled


@dataclass(frozen=True)
class Entitlement:
    account_id: str
    account_name: str
    permission_set: str
    role_name: str
    role_arn: str
    provider_arn: str
    session_duration: int  # seconds
    requires_mfa: bool


def entitlements_for(identity: Identity, access: AccessConfig) -> list[Entitlement]:
    """Every (account, permission set) the person's groups are assigned, each once, in a stable order.

    Sets that require MFA are listed even without MFA (`requires_mfa` says so), so the portal can
    explain why; `check_entitlement` refuses them at issuance.
    """
    record = evidence.recorder()  # the explanation's entitlement decision, as made here: the person's own
    pairs = set()  # assignments (any other is "not yours": broker.core.explain.all_decisions)
    for a in access.assignments:
        if a.group in identity.groups:
            record.assignment(a.group, a.account_id, a.permission_set, True)
            pairs.add((a.account_id, a.permission_set))
    entitlements = [_entitlement(access, account_id, name) for account_id, name in pairs]
    return sorted(entitlements, key=lambda e: (e.account_name, e.account_id, e.permission_set))


def check_entitlement(identity: Identity, access: AccessConfig, account_id: str, permission_set: str) -> Entitlement:
    """The entitlement for a requested role, or `NotEntitled` / `MfaRequired` with a reason to show."""
    record = evidence.recorder()
    for entitlement in entitlements_for(identity, access):
        if entitlement.account_id == account_id and entitlement.permission_set == permission_set:
            if entitlement.requires_mfa and not identity.mfa:
                refusal = MfaRequired(
                    f"{permission_set} requires multi-factor authentication. Sign out, then sign in again with your "
                    "verification code; if you have no authenticator app enrolled, ask the IT service desk."
                )
                record.entitlement_check(account_id, permission_set, "MfaRequired", refusal.reason)
                raise refusal
            record.entitlement_check(account_id, permission_set, "granted")
            return entitlement
    refused = NotEntitled(f"You have no access to {permission_set} in account {account_id}.")
    record.entitlement_check(account_id, permission_set, "NotEntitled", refused.reason)
    raise refused


def _entitlement(access: AccessConfig, account_id: str, permission_set: str) -> Entitlement:
    name = role_name(access.identity_provider_name, account_id, permission_set)
    return Entitlement(
        account_id=account_id,
        account_name=access.accounts[account_id].name,
        permission_set=permission_set,
        role_name=name,
        role_arn=role_arn(account_id, name),
        provider_arn=provider_arn(account_id, access.identity_provider_name),
        session_duration=access.permission_sets[permission_set].session_duration,
        requires_mfa=access.permission_sets[permission_set].requires_mfa,
    )
