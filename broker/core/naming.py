"""How this broker names what it creates in AWS accounts: the same names for the entitlements the portal
offers and the roles provisioning creates, so the two cannot drift. Pure: no AWS calls."""

from __future__ import annotations

import hashlib

SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
SSO_ROLE_PREFIX = "AWSReservedSSO_"


def role_name(provider_name: str, account_id: str, permission_set: str) -> str:
    """`AWSReservedSSO_<set>_<16 hex>`: stable across runs, distinct per broker, account and set."""
    digest = hashlib.sha256(f"{provider_name}\x00{account_id}\x00{permission_set}".encode()).hexdigest()
    return f"{SSO_ROLE_PREFIX}{permission_set}_{digest[:16]}"


def role_arn(account_id: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:role{SSO_ROLE_PATH}{name}"


def provider_arn(account_id: str, provider_name: str) -> str:
    return f"arn:aws:iam::{account_id}:saml-provider/{provider_name}"
