"""Credential issuance, the one place where entitlement is enforced and every outcome is audited.

The portal and the Identity Center compatible API both call `Issuance.issue`, so the rules and the
audit trail are the same whichever way a person asks.
"""

from __future__ import annotations

from .access import AccessConfig
from .audit import Client
from .audit import issuance as audit_issuance
from .credentials import CredentialIssueError, CredentialIssuer, IdentityRefused, RoleCredentials
from .entitlements import Entitlement, EntitlementError, NotEntitled, check_entitlement, entitlements_for
from .identity import Identity


class Issuance:
    def __init__(self, access: AccessConfig, issuer: CredentialIssuer, audit):
        self.access, self.issuer, self.audit = access, issuer, audit

    def entitlements(self, identity: Identity) -> list[Entitlement]:
        return entitlements_for(identity, self.access)

    def issue(self, identity: Identity, account_id: str, permission_set: str,
              client: Client) -> tuple[Entitlement, RoleCredentials]:
        """Check, exchange, audit. Raises EntitlementError or CredentialIssueError (both audited)."""
        try:
            entitlement = check_entitlement(identity, self.access, account_id, permission_set)
        except EntitlementError as refusal:
            audit_issuance(self.audit, client, identity, account_id, permission_set, reason=refusal.reason)
            raise
        try:
            credentials = self.issuer.issue(identity, entitlement)
        except IdentityRefused as refusal:  # about the person, not AWS: a refusal like any other
            audit_issuance(self.audit, client, identity, account_id, permission_set,
                           role_arn=entitlement.role_arn, reason=str(refusal))
            raise NotEntitled(str(refusal)) from None
        except CredentialIssueError as failure:
            audit_issuance(self.audit, client, identity, account_id, permission_set,
                           role_arn=entitlement.role_arn, reason=str(failure))
            raise
        audit_issuance(self.audit, client, identity, account_id, permission_set, role_arn=entitlement.role_arn,
                       session_name=credentials.assumed_role_arn.rsplit("/", 1)[-1],
                       source_identity=identity.username, expiration=credentials.expiration.isoformat())
        return entitlement, credentials
