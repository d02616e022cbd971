"""How credentials and configuration are written out: shell exports, JSON, credential_process
output, and the ~/.aws/config and ~/.aws/credentials sections. Pure: text in, text out.

When the broker runs against an AWS emulator, what is written sends AWS service calls there: plain
keys (exports, JSON) carry AWS_ENDPOINT_URL, since they make no SSO calls; profiles name a `services`
section with a per-service `endpoint_url`, never a global one, which would also send the SSO calls
(to the portal) to the emulator. Against real AWS nothing is added. Every value written here has been
checked by broker_login/validate.py when it came from the portal.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC

from broker_login.portal import Credentials, PortalInfo


def _iso(credentials: Credentials) -> str:
    return credentials.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exports(credentials: Credentials, info: PortalInfo | None = None) -> str:
    """Shell exports of the keys. With an emulator, also its address and the accounts' region: plain
    keys make no SSO calls, so the global AWS_ENDPOINT_URL is right here, and a fresh machine has no
    region configured."""
    values = {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_SESSION_TOKEN": credentials.session_token,
        "AWS_CREDENTIAL_EXPIRATION": _iso(credentials),
    }
    if info and info.aws_endpoint_url:
        values["AWS_ENDPOINT_URL"] = info.aws_endpoint_url
        values["AWS_DEFAULT_REGION"] = info.region
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


def as_json(credentials: Credentials, account_id: str, role: str, endpoint_url: str | None = None) -> str:
    """The credentials and where they work: EndpointUrl is the AWS emulator's address, when there is one."""
    document = {
        "AccountId": account_id,
        "RoleName": role,
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "SessionToken": credentials.session_token,
        "Expiration": _iso(credentials),
    }
    if endpoint_url:
        document["EndpointUrl"] = endpoint_url
    return json.dumps(document, indent=2) + "\n"


def credentials_section(credentials: Credentials, services: str | None = None, region: str | None = None) -> list[str]:
    """A ~/.aws/credentials profile. With an emulator, `services` names the services section of
    ~/.aws/config that sends its calls there, and `region` is the accounts' region, as in the exports
    (botocore merges the two files' profiles)."""
    lines = [
        f"aws_access_key_id = {credentials.access_key_id}",
        f"aws_secret_access_key = {credentials.secret_access_key}",
        f"aws_session_token = {credentials.session_token}",
    ]
    return lines + ([f"region = {region}"] if region else []) + ([f"services = {services}"] if services else [])


def services_section_name(session_name: str) -> str:
    return f"{session_name}-endpoints"


def config_key(service: str) -> str:
    """The key botocore looks for in a services section for a client name: its service ID, snake_case
    (logs -> cloudwatch_logs, secretsmanager -> secrets_manager), as botocore derives it."""
    from botocore import utils

    name = utils.SERVICE_NAME_ALIASES.get(service, service)
    return utils.CLIENT_NAME_TO_HYPHENIZED_SERVICE_ID_OVERRIDES.get(name, name).replace("-", "_")


def services_section(portal_url: str, info: PortalInfo | None) -> list[str]:
    """The body of the services section: sso and sso-oidc at the portal, and each service the emulator
    answers for at the emulator. One body for every writer (configure, --format profile), so whichever
    wrote the section last, every profile naming it still works."""
    endpoints = {"sso": portal_url, "sso-oidc": portal_url}
    if info and info.aws_endpoint_url:
        endpoints.update({service: info.aws_endpoint_url for service in info.services})
    return [
        line for service, url in endpoints.items() for line in (f"{config_key(service)} =", f"  endpoint_url = {url}")
    ]


def profile_name(account_name: str, role: str, prefix: str = "") -> str:
    return f"{prefix}{account_name}-{role}".replace(" ", "-")


def sso_config_sections(
    session_name: str,
    portal_url: str,
    region: str,
    assignments: list[tuple[str, str, str]],
    prefix: str = "",
    info: PortalInfo | None = None,
) -> dict[str, list[str]]:
    """What `aws configure sso` writes, for every (account ID, account name, role): one sso-session,
    one profile each, plus a services section that sends the sso and sso-oidc calls to the portal
    (unmodified SDKs would otherwise call AWS's own endpoints) and AWS's to the emulator, if any.
    `region` is the sso-session's; profiles get the accounts' region from `info`."""
    services = services_section_name(session_name)
    sections = {
        f"sso-session {session_name}": [
            f"sso_start_url = {portal_url}",
            f"sso_region = {region}",
            "sso_registration_scopes = sso:account:access",
        ],
        f"services {services}": services_section(portal_url, info),
    }
    for account_id, account_name, role in assignments:
        sections[f"profile {profile_name(account_name, role, prefix)}"] = [
            f"sso_session = {session_name}",
            f"sso_account_id = {account_id}",
            f"sso_role_name = {role}",
            f"region = {info.region if info else region}",
            f"services = {services}",
        ]
    return sections


def credential_process_profile(command: list[str], region: str, services: str | None = None) -> list[str]:
    """A profile whose credentials come from `broker-login credential-process ...`; `services` names
    the section that sends its AWS calls to the emulator."""
    lines = [f"credential_process = {shlex.join(command)}", f"region = {region}"]
    return lines + ([f"services = {services}"] if services else [])
