"""What the credentials panel shows for one role's credentials: per shell, the environment variables to
set and the credentials-file profile to add, and the values one by one. Pure: text in, text out.

Against the AWS emulator (`endpoint_url` given), the credentials must work where they were issued:
the environment variables carry `AWS_ENDPOINT_URL` and the region (a fresh shell has none, and STS or
DynamoDB then refuse to start), and the profile option says how to send that profile's service calls to
the emulator through a `services` section of ~/.aws/config (per-service `endpoint_url`), never a global
`endpoint_url` that would also capture the SSO calls of the same configuration. Against real AWS
(`endpoint_url` None) they carry nothing of the kind, as the AWS access portal's options do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.core.entitlements import Entitlement
from broker.core.issuance import RoleCredentials

# The services an AWS emulator stands in for: botocore's client name -> its key in a `services` section
# of ~/.aws/config (the service ID in snake_case, as botocore derives it). A service not listed keeps
# AWS's own endpoint, where the emulator's keys do not work.
EMULATED_SERVICES = {
    "sts": "sts",
    "s3": "s3",
    "dynamodb": "dynamodb",
    "iam": "iam",
    "ec2": "ec2",
    "sqs": "sqs",
    "sns": "sns",
    "lambda": "lambda",
    "logs": "cloudwatch_logs",
    "cloudformation": "cloudformation",
    "kms": "kms",
    "secretsmanager": "secrets_manager",
    "ssm": "ssm",
}
SERVICES_SECTION = "aws-emulator"


@dataclass(frozen=True)
class Shell:
    id: str  # URL- and id-safe
    label: str
    assignment: str  # how the shell sets an environment variable: {name}, {value}
    config_dir: str  # where the AWS CLI and SDKs look for `credentials` and `config` on that system
    separator: str

    def path(self, file: str) -> str:
        return f"{self.config_dir}{self.separator}{file}"


SHELLS = (
    Shell("posix", "macOS and Linux", 'export {name}="{value}"', "~/.aws", "/"),
    Shell("cmd", "Windows (cmd)", "set {name}={value}", r"%USERPROFILE%\.aws", "\\"),
    Shell("powershell", "PowerShell", '$Env:{name}="{value}"', r"$HOME\.aws", "\\"),
)


@dataclass(frozen=True)
class Value:
    """One value of Option 3, copied on its own."""

    id: str
    label: str
    text: str


@dataclass(frozen=True)
class ShellOptions:
    """Options 1 and 2 for one shell."""

    shell: Shell
    environment: str  # Option 1: commands that set the environment variables
    credentials_path: str  # Option 2: the file the profile goes in ...
    config_path: str  # ... and, against the emulator, the file its `services` section goes in


@dataclass(frozen=True)
class CredentialOptions:
    profile: str
    shells: tuple[ShellOptions, ...]
    credentials_profile: str  # the same on every system
    endpoint_url: str | None  # the AWS emulator's address for people's tools; None: real AWS
    endpoint_config: str | None  # ~/.aws/config lines sending the profile's calls to the emulator; None: real AWS
    values: tuple[Value, ...]


def profile_name(entitlement: Entitlement) -> str:
    """As the AWS access portal names it: `<account ID>_<permission set>`."""
    return f"{entitlement.account_id}_{entitlement.permission_set}"


def environment_variables(credentials: RoleCredentials, endpoint_url: str | None, region: str) -> list[tuple[str, str]]:
    variables = [
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key),
        ("AWS_SESSION_TOKEN", credentials.session_token),
    ]
    return variables + ([("AWS_ENDPOINT_URL", endpoint_url), ("AWS_DEFAULT_REGION", region)] if endpoint_url else [])


def endpoint_config(profile: str, endpoint_url: str, region: str) -> str:
    """The ~/.aws/config sections that send this profile's service calls to `endpoint_url`, in `region`."""
    services = "".join(f"{key} =\n  endpoint_url = {endpoint_url}\n" for key in EMULATED_SERVICES.values())
    return (
        f"[profile {profile}]\nregion = {region}\nservices = {SERVICES_SECTION}\n\n"
        f"[services {SERVICES_SECTION}]\n{services}"
    ).rstrip()


def credential_options(
    entitlement: Entitlement, credentials: RoleCredentials, endpoint_url: str | None, region: str
) -> CredentialOptions:
    """The panel's options; against the emulator (`endpoint_url`) they name it and `region` too."""
    profile = profile_name(entitlement)
    variables = environment_variables(credentials, endpoint_url, region)
    # Option 3 has no region of its own: the panel shows the portal's region beside the CLI's settings.
    values = [
        Value(name.lower().replace("_", "-"), _VALUE_LABELS[name], value)
        for name, value in variables
        if name in _VALUE_LABELS
    ]
    return CredentialOptions(
        profile=profile,
        shells=tuple(
            ShellOptions(
                shell,
                "\n".join(shell.assignment.format(name=name, value=value) for name, value in variables),
                shell.path("credentials"),
                shell.path("config"),
            )
            for shell in SHELLS
        ),
        credentials_profile=(
            f"[{profile}]\naws_access_key_id = {credentials.access_key_id}\n"
            f"aws_secret_access_key = {credentials.secret_access_key}\n"
            f"aws_session_token = {credentials.session_token}"
        ),
        endpoint_url=endpoint_url,
        endpoint_config=endpoint_config(profile, endpoint_url, region) if endpoint_url else None,
        values=tuple(values),
    )


_VALUE_LABELS = {
    "AWS_ACCESS_KEY_ID": "AWS access key ID",
    "AWS_SECRET_ACCESS_KEY": "AWS secret access key",
    "AWS_SESSION_TOKEN": "AWS session token",
    "AWS_ENDPOINT_URL": "AWS endpoint URL (the AWS emulator)",
}
