"""Credential issuance, the one place where entitlement is enforced and every outcome is audited.

The portal and the Identity Center compatible API both call `Issuance.issue`, so the rules and the
audit trail are the same whichever way a person asks. How credentials are minted is behind the
`CredentialIssuer` interface (STS in `broker.aws.sts`; a stand-in in tests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from broker.core.access import AccessConfig
from broker.core.audit import RequestOrigin
from broker.core.audit import issuance as audit_issuance
from broker.core.entitlements import Entitlement, check_entitlement, entitlements_for
from broker.core.identity import Identity, aws_person_name
from broker.errors import BrokerError, CredentialIssueError, EntitlementError, IdentityRefused, NotEntitled
from sso_common.store import AuditLog
from sso_common.store.errors import StoreUnavailable

WITHHELD = "minted but not handed out: the check of the sign-in after AWS answered refused ({reason})"
NOT_AUDITED = (
    "No credentials were issued: the audit trail cannot be written right now, and the portal never hands out "
    "credentials it has not recorded. Try again in a minute."
)


@dataclass(frozen=True)
class RoleCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime
    assumed_role_arn: str


class CredentialIssuer(Protocol):
    def issue(self, identity: Identity, entitlement: Entitlement) -> RoleCredentials:
        """Credentials for an entitlement `check_entitlement` granted; raises CredentialIssueError."""
        ...


class Issuance:
    def __init__(self, access: AccessConfig, issuer: CredentialIssuer, audit: AuditLog):
        self.access, self.issuer, self.audit = access, issuer, audit

    def entitlements(self, identity: Identity) -> list[Entitlement]:
        return entitlements_for(identity, self.access)

    def issue(
        self,
        identity: Identity,
        account_id: str,
        permission_set: str,
        origin: RequestOrigin,
        *,
        still_admitted: Callable[[], object],
    ) -> tuple[Entitlement, RoleCredentials]:
        """Check, exchange, audit, check again. Raises EntitlementError or CredentialIssueError (both audited).

        `still_admitted` is the caller's check that the sign-in may still act (the guard's), asked again once the
        credentials are minted and audited: a revocation that landed while STS answered (after the caller's
        first check) may have its cutoff before the session STS issued, or have been applied in AWS before the
        audit record named this role. Whatever it raises is raised, the credentials withheld and that audited."""
        record = functools.partial(audit_issuance, self.audit, origin, identity, account_id, permission_set)
        try:
            entitlement = check_entitlement(identity, self.access, account_id, permission_set)
        except EntitlementError as refusal:
            record(reason=refusal.reason)
            raise
        try:
            credentials = self.issuer.issue(identity, entitlement)
        except IdentityRefused as refusal:  # about the person, not AWS: a refusal like any other
            record(role_arn=entitlement.role_arn, reason=str(refusal))
            raise NotEntitled(str(refusal)) from None
        except CredentialIssueError as failure:
            record(role_arn=entitlement.role_arn, reason=str(failure))
            raise
        session_name = credentials.assumed_role_arn.rsplit("/", 1)[-1]
        try:
            record(
                role_arn=entitlement.role_arn,
                session_name=session_name,
                source_identity=aws_person_name(identity),
                expiration=credentials.expiration.isoformat(),
            )
        except StoreUnavailable as down:  # the credentials are dropped here: never handed out unaudited
            raise StoreUnavailable(down.store, down.problem, public_message=NOT_AUDITED) from None
        try:
            still_admitted()
        except Exception as ended:  # a BrokerError's message is safe to audit; of anything else, its kind only
            why = str(ended) if isinstance(ended, BrokerError) else type(ended).__name__
            record(role_arn=entitlement.role_arn, session_name=session_name, reason=WITHHELD.format(reason=why))
            raise
        return entitlement, credentials
