"""broker-login against the real stack, as a subprocess with its own HOME and no terminal: the device
flow approved in a (scripted) browser, the non-interactive mode, every output format, configure, and
credential_process driven by unmodified boto3."""

from __future__ import annotations

import configparser
import json
import stat
import subprocess

import boto3
import pytest

from tests.support.identity_center import (
    BROKER_LOGIN,
    PRODUCTION,
    SANDBOX,
    approve_in_browser,
    broker_login,
    clean_env,
    run_python,
)
from tests.support.idp_client import ERIN_TOTP_SECRET, fresh_totp

BOB = {"BROKER_LOGIN_USERNAME": "bob", "BROKER_LOGIN_PASSWORD": "Welcome-2026"}
READ_ONLY = ["--account-id", PRODUCTION, "--role", "EmployeeDirectoryReadOnly"]
CALLER_SCRIPT = """
import json, os, sys
import boto3
session = boto3.Session(profile_name=sys.argv[1])
aws = os.environ["TEST_AWS_URL"]
arn = session.client("sts", endpoint_url=aws).get_caller_identity()["Arn"]
photo = session.client("s3", endpoint_url=aws).get_object(
    Bucket="employee-directory-photos-222222222222", Key="photos/bob.svg")["Body"].read(5).decode()
print(json.dumps({"arn": arn, "photo": photo}))
"""


@pytest.fixture(scope="module")
def portal(stack):
    return stack.addresses["PORTAL_URL"]


@pytest.fixture(scope="module")
def bob_home(stack, portal, tmp_path_factory):
    """A HOME where bob ran `broker-login --non-interactive configure` over an existing config."""
    home = tmp_path_factory.mktemp("bob")
    (home / ".aws").mkdir()
    (home / ".aws" / "config").write_text("# keep me\n[default]\nregion = eu-west-1\n")
    run = broker_login(home, "--portal-url", portal, "--non-interactive", "configure", **BOB)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and "example-production-EmployeeDirectoryReadOnly" in run.stderr
    return home


def caller(stack, credentials: dict) -> str:
    sts = boto3.client("sts", endpoint_url=stack.addresses["AWS_URL"], region_name="us-east-1", **credentials)
    return sts.get_caller_identity()["Arn"]


def boto3_with_profile(stack, home, profile: str) -> dict:
    run = run_python(home, CALLER_SCRIPT, profile, TEST_AWS_URL=stack.addresses["AWS_URL"])
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def read_only_arn(arn: str) -> bool:
    return arn.startswith(
        f"arn:aws:sts::{PRODUCTION}:assumed-role/AWSReservedSSO_EmployeeDirectoryReadOnly_"
    ) and arn.endswith("/bob@example.com")


def device_flow_in_background(tmp_path, *args: str) -> subprocess.Popen:
    """broker-login waiting for a device code to be approved; its prompts on stderr, the answer on stdout."""
    return subprocess.Popen(
        [*BROKER_LOGIN, *args],
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_device_flow_approved_in_the_browser(stack, portal, tmp_path):
    process = device_flow_in_background(
        tmp_path, "--portal-url", portal, "--no-browser", *READ_ONLY, "--format", "credential-process"
    )
    try:
        shown = [process.stderr.readline() for _ in range(3)]
        assert shown[0].startswith(f"To sign in, open {portal}/device") and "enter the code" in shown[1]
        url = shown[2].strip().removeprefix("(or open ").removesuffix(")")
        assert "Request approved" in approve_in_browser(portal, "bob", url).text
        process.wait(timeout=30)  # small outputs: the pipes cannot fill up
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Waiting for approval" in err and "signed in." in err
    credentials = json.loads(out)
    assert credentials["Version"] == 1 and credentials["AccessKeyId"] not in err
    assert read_only_arn(
        caller(
            stack,
            {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            },
        )
    )
    assert stat.S_IMODE((tmp_path / ".aws" / "sso" / "cache").stat().st_mode) == 0o700


def test_a_request_denied_in_the_browser_fails_cleanly(portal, tmp_path):
    process = device_flow_in_background(tmp_path, "--portal-url", portal, "--no-browser", *READ_ONLY)
    try:
        url = [process.stderr.readline() for _ in range(3)][2].strip().removeprefix("(or open ").removesuffix(")")
        assert "Request denied" in approve_in_browser(portal, "bob", url, decision="deny").text
        process.wait(timeout=30)
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        process.kill()
    assert process.returncode == 1 and out == ""
    assert "broker-login: the sign-in request was denied in the browser" in err


def test_configure_writes_profiles_that_unmodified_boto3_uses(stack, portal, bob_home):
    config = (bob_home / ".aws" / "config").read_text()
    assert config.startswith("# keep me\n[default]\nregion = eu-west-1\n")
    parsed = configparser.ConfigParser()
    parsed.read_string(config)
    assert parsed["sso-session broker"]["sso_start_url"] == portal
    assert dict(parsed["profile example-sandbox-EmployeeDirectoryDeveloper"]) == {
        "sso_session": "broker",
        "sso_account_id": SANDBOX,
        "sso_role_name": "EmployeeDirectoryDeveloper",
        "region": "us-east-1",
        "services": "broker-endpoints",
    }
    used = boto3_with_profile(stack, bob_home, "example-production-EmployeeDirectoryReadOnly")
    assert read_only_arn(used["arn"]) and used["photo"] == "<?xml"


def test_every_output_format_from_the_cached_sign_in(stack, bob_home):
    exports = broker_login(bob_home, *READ_ONLY)
    assert exports.returncode == 0, exports.stderr
    values = dict(line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines())
    assert set(values) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
    }
    assert "Signing in" not in exports.stderr  # the token cached by configure was used

    as_json = json.loads(broker_login(bob_home, "--account-name", "example-production", "--format", "json").stdout)
    assert as_json["AccountId"] == PRODUCTION and as_json["RoleName"] == "EmployeeDirectoryReadOnly"
    assert read_only_arn(
        caller(
            stack,
            {
                "aws_access_key_id": as_json["AccessKeyId"],
                "aws_secret_access_key": as_json["SecretAccessKey"],
                "aws_session_token": as_json["SessionToken"],
            },
        )
    )

    process = json.loads(broker_login(bob_home, *READ_ONLY, "--format", "credential-process").stdout)
    assert process["Version"] == 1 and process["Expiration"].endswith("Z")

    (bob_home / ".aws" / "credentials").write_text("[other]\naws_access_key_id = AKIAKEEP\n")
    profile = broker_login(bob_home, *READ_ONLY, "--format", "profile", "ro")
    assert profile.returncode == 0 and profile.stdout == "" and "profile ro" in profile.stderr
    stored = configparser.ConfigParser()
    stored.read(bob_home / ".aws" / "credentials")
    assert stored["other"]["aws_access_key_id"] == "AKIAKEEP"
    assert read_only_arn(caller(stack, dict(stored["ro"])))
    assert stat.S_IMODE((bob_home / ".aws" / "credentials").stat().st_mode) == 0o600


def test_an_ambiguous_choice_without_a_terminal_names_the_options(bob_home):
    run = broker_login(bob_home, "--format", "json")
    assert run.returncode == 1 and run.stdout == ""
    assert "more than one account" in run.stderr and "example-sandbox" in run.stderr


def test_a_role_not_held_is_refused(bob_home):
    run = broker_login(bob_home, "--account-id", PRODUCTION, "--role", "AdministratorAccess")
    assert run.returncode == 1 and run.stdout == "" and "ForbiddenException: No access" in run.stderr


def test_credential_process_profiles_used_by_boto3_and_cached(stack, bob_home):
    run = broker_login(bob_home, "configure", "--use-credential-process", "--profile-prefix", "cp-")
    assert run.returncode == 0, run.stderr
    profile = "cp-example-production-EmployeeDirectoryReadOnly"
    used = boto3_with_profile(stack, bob_home, profile)
    assert read_only_arn(used["arn"])
    cached = list((bob_home / ".aws" / "broker-login" / "cache" / "credentials").rglob("*.json"))
    assert len(cached) == 1 and stat.S_IMODE(cached[0].stat().st_mode) == 0o600
    again = broker_login(bob_home, "credential-process", *READ_ONLY)
    assert (
        again.returncode == 0
        and json.loads(again.stdout)["AccessKeyId"] == json.loads(cached[0].read_text())["AccessKeyId"]
    )


def test_credential_process_without_a_sign_in_or_terminal_fails_on_stderr(portal, tmp_path):
    run = broker_login(tmp_path, "--portal-url", portal, "credential-process", *READ_ONLY)
    assert run.returncode == 1 and run.stdout == ""
    assert "not signed in" in run.stderr and "no terminal" in run.stderr


def test_erin_signs_in_with_a_verification_code_for_the_mfa_role(stack, portal, tmp_path):
    run = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        "--account-id",
        SANDBOX,
        "--role",
        "SecurityAudit",
        "--format",
        "json",
        BROKER_LOGIN_USERNAME="erin",
        BROKER_LOGIN_PASSWORD="Welcome-2026",
        BROKER_LOGIN_TOTP=fresh_totp(stack.addresses["IDP_URL"], ERIN_TOTP_SECRET),
    )
    assert run.returncode == 0, run.stderr
    assert "AWSReservedSSO_SecurityAudit_" in caller(
        stack,
        {
            "aws_access_key_id": json.loads(run.stdout)["AccessKeyId"],
            "aws_secret_access_key": json.loads(run.stdout)["SecretAccessKey"],
            "aws_session_token": json.loads(run.stdout)["SessionToken"],
        },
    )


def test_secrets_can_come_on_standard_input(portal, tmp_path):
    run = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        *READ_ONLY,
        "--format",
        "json",
        input="bob\nWelcome-2026\n",
    )
    assert run.returncode == 0, run.stderr
    assert "Welcome-2026" not in run.stderr + run.stdout


def test_non_interactive_through_the_saml_upstream(portal, tmp_path):
    """The IdP answers SAML with an auto-posting form: submitted as a browser would, without JavaScript."""
    run = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        "--idp",
        "example-corp-saml",
        *READ_ONLY,
        "--format",
        "json",
        **BOB,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["AccountId"] == PRODUCTION


@pytest.mark.parametrize(
    "username, password, message",
    [
        ("dave", "Welcome-2026", "you have no account to choose from"),
        ("carol", "not-her-password", "refused the sign-in"),
    ],
)
def test_no_access_and_wrong_passwords_fail_with_a_message(portal, tmp_path, username, password, message):
    run = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        BROKER_LOGIN_USERNAME=username,
        BROKER_LOGIN_PASSWORD=password,
    )
    assert run.returncode == 1 and run.stdout == "" and message in run.stderr, run.stderr


def test_logout_revokes_the_token_and_forgets_it(portal, tmp_path):
    assert broker_login(tmp_path, "--portal-url", portal, "--non-interactive", *READ_ONLY, **BOB).returncode == 0
    token = json.loads(next((tmp_path / ".aws" / "sso" / "cache").glob("*.json")).read_text())["accessToken"]
    run = broker_login(tmp_path, "--portal-url", portal, "logout")
    assert run.returncode == 0 and "Signed out." in run.stderr
    assert not list((tmp_path / ".aws" / "sso" / "cache").glob("*.json"))
    sso = boto3.client("sso", endpoint_url=portal, region_name="us-east-1")
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=token)
