"""How credentials and configuration are written out: shell exports, JSON, credential_process
output, and the ~/.aws/config and ~/.aws/credentials sections. Pure: text in, text out."""

from __future__ import annotations

import json
import shlex
from datetime import UTC

from broker_login.portal import Credentials


def _iso(credentials: Credentials) -> str:
    return credentials.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exports(credentials: Credentials) -> str:
    values = {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_SESSION_TOKEN": credentials.session_token,
        "AWS_CREDENTIAL_EXPIRATION": _iso(credentials),
    }
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def credential_process(credentials: Credentials) -> str:
    """The JSON botocore expects from a credential_process (Version 1)."""
    return (
        json.dumps(
            {
                "Version": 1,
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "SessionToken": credentials.session_token,
                "Expiration": _iso(credentials),
            }
        )
        + "\n"
    )


def as_json(credentials: Credentials, account_id: str, role: str) -> str:
    return (
        json.dumps(
            {
                "AccountId": account_id,
                "RoleName": role,
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "SessionToken": credentials.session_token,
                "Expiration": _iso(credentials),
            },
            indent=2,
        )
        + "\n"
    )


def credentials_section(credentials: Credentials) -> list[str]:
    return [
        f"aws_access_key_id = {credentials.access_key_id}",
        f"aws_secret_access_key = {credentials.secret_access_key}",
        f"aws_session_token = {credentials.session_token}",
    ]


def profile_name(account_name: str, role: str, prefix: str = "") -> str:
    return f"{prefix}{account_name}-{role}".replace(" ", "-")


def sso_config_sections(
    session_name: str, portal_url: str, region: str, assignments: list[tuple[str, str, str]], prefix: str = ""
) -> dict[str, list[str]]:
    """What `aws configure sso` writes, for every (account ID, account name, role): one sso-session,
    one profile each, plus a services section that sends the sso and sso-oidc calls to the portal
    (unmodified SDKs would otherwise call AWS's own endpoints)."""
    services = f"{session_name}-endpoints"
    sections = {
        f"sso-session {session_name}": [
            f"sso_start_url = {portal_url}",
            f"sso_region = {region}",
            "sso_registration_scopes = sso:account:access",
        ],
        f"services {services}": [
            "sso =",
            f"  endpoint_url = {portal_url}",
            "sso_oidc =",
            f"  endpoint_url = {portal_url}",
        ],
    }
    for account_id, account_name, role in assignments:
        sections[f"profile {profile_name(account_name, role, prefix)}"] = [
            f"sso_session = {session_name}",
            f"sso_account_id = {account_id}",
            f"sso_role_name = {role}",
            f"region = {region}",
            f"services = {services}",
        ]
    return sections


def credential_process_profile(command: list[str], region: str) -> list[str]:
    """A profile whose credentials come from `broker-login credential-process ...`."""
    return [f"credential_process = {shlex.join(command)}", f"region = {region}"]
