"""The credentials panel's texts, per shell: environment variables, a credentials-file profile, the
values one by one; against the AWS emulator they carry its address (never a global endpoint_url)."""

from __future__ import annotations

import configparser
from datetime import UTC, datetime

import pytest

from broker.core.entitlements import check_entitlement
from broker.core.exports import EMULATED_SERVICES, SERVICES_SECTION, credential_options
from broker.core.issuance import RoleCredentials

EMULATOR = "http://127.0.0.1:8002"
CREDENTIALS = RoleCredentials(
    "ASIAEXAMPLE", "secret/with+chars", "token==", datetime(2026, 1, 1, tzinfo=UTC), "arn:aws:sts::1:assumed-role/r/s"
)


@pytest.fixture
def entitlement(access, person):
    return check_entitlement(person("bob"), access, "111111111111", "EmployeeDirectoryDeveloper")


def test_each_shell_sets_the_variables_its_own_way(entitlement):
    options = credential_options(entitlement, CREDENTIALS, EMULATOR, "eu-west-1")
    by_shell = {shell.shell.label: shell for shell in options.shells}
    assert list(by_shell) == ["macOS and Linux", "Windows (cmd)", "PowerShell"]
    assert by_shell["macOS and Linux"].environment.splitlines() == [
        'export AWS_ACCESS_KEY_ID="ASIAEXAMPLE"',
        'export AWS_SECRET_ACCESS_KEY="secret/with+chars"',
        'export AWS_SESSION_TOKEN="token=="',
        f'export AWS_ENDPOINT_URL="{EMULATOR}"',
        'export AWS_DEFAULT_REGION="eu-west-1"',  # a fresh shell has none: STS and DynamoDB would not start
    ]
    assert by_shell["Windows (cmd)"].environment.splitlines()[0] == "set AWS_ACCESS_KEY_ID=ASIAEXAMPLE"
    assert by_shell["PowerShell"].environment.splitlines()[3] == f'$Env:AWS_ENDPOINT_URL="{EMULATOR}"'
    assert by_shell["Windows (cmd)"].credentials_path == r"%USERPROFILE%\.aws\credentials"
    assert by_shell["macOS and Linux"].config_path == "~/.aws/config"
    assert [value.label for value in options.values][-1] == "AWS endpoint URL (the AWS emulator)"


def test_the_profile_goes_to_the_emulator_through_a_services_section(entitlement):
    options = credential_options(entitlement, CREDENTIALS, EMULATOR, "eu-west-1")
    assert options.profile == "111111111111_EmployeeDirectoryDeveloper"
    profile = configparser.ConfigParser()
    profile.read_string(options.credentials_profile)
    assert dict(profile[options.profile]) == {
        "aws_access_key_id": "ASIAEXAMPLE",
        "aws_secret_access_key": "secret/with+chars",
        "aws_session_token": "token==",
    }
    config = configparser.ConfigParser()
    config.read_string(options.endpoint_config)
    assert dict(config[f"profile {options.profile}"]) == {  # no global endpoint_url
        "region": "eu-west-1",
        "services": SERVICES_SECTION,
    }
    services = config[f"services {SERVICES_SECTION}"]
    assert set(services) == set(EMULATED_SERVICES.values()) and "sso" not in services and "sso_oidc" not in services
    assert all(services[key].split() == ["endpoint_url", "=", EMULATOR] for key in services)


def test_against_real_aws_nothing_points_elsewhere(entitlement):
    options = credential_options(entitlement, CREDENTIALS, None, "eu-west-1")
    assert options.endpoint_url is None and options.endpoint_config is None
    everything = "\n".join(shell.environment for shell in options.shells) + options.credentials_profile
    assert "ENDPOINT" not in everything.upper() and "REGION" not in everything.upper()
    assert [value.id for value in options.values] == ["aws-access-key-id", "aws-secret-access-key", "aws-session-token"]
