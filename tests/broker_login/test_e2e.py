"""broker-login against the real stack, as a subprocess with its own HOME: without a terminal (the
device flow approved in a scripted browser, the non-interactive mode, every output format, configure,
credential_process driven by unmodified boto3 and the AWS CLI, what each refusal says) and in a real
pseudo-terminal (choosing the account and role, credential_process signing in on the terminal). The
README's block is run as written."""

from __future__ import annotations

import configparser
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from botocore.configloader import load_config

from idp_mock.login import BAD_CREDENTIALS, DISABLED
from tests.broker_login.terminal_session import TerminalSession
from tests.support.identity_center import (
    BROKER_LOGIN,
    PRODUCTION,
    SANDBOX,
    approve_in_browser,
    broker_login,
    clean_env,
    run_python,
)
from tests.support.idp_client import ERIN_TOTP_SECRET, fresh_totp, submit_login

REPO = Path(__file__).resolve().parents[2]
AWS_CLI = [sys.executable, "-m", "awscli"]

BOB = {"BROKER_LOGIN_USERNAME": "bob", "BROKER_LOGIN_PASSWORD": "Welcome-2026"}
READ_ONLY = ["--account-id", PRODUCTION, "--role", "EmployeeDirectoryReadOnly"]
# Unmodified boto3 with a profile, told nothing about endpoints: the profile's services section sends
# STS and S3 to the emulator (and, for SSO profiles, the SSO calls to the portal).
CALLER_SCRIPT = """
import json, sys
import boto3
session = boto3.Session(profile_name=sys.argv[1])
arn = session.client("sts").get_caller_identity()["Arn"]
photo = session.client("s3").get_object(
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


def boto3_with_profile(home, profile: str) -> dict:
    run = run_python(home, CALLER_SCRIPT, profile)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def aws_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The AWS CLI (v1, from PyPI), unmodified, with only `home`'s configuration."""
    return subprocess.run(
        [*AWS_CLI, *args],
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,
    )


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
    used = boto3_with_profile(bob_home, "example-production-EmployeeDirectoryReadOnly")
    assert read_only_arn(used["arn"]) and used["photo"] == "<?xml"


def test_configured_profiles_reach_the_emulator_through_a_services_section(stack, portal, bob_home):
    """Service by service, never a global endpoint_url (it would send the SSO calls to the emulator)."""
    config = load_config(str(bob_home / ".aws" / "config"))
    emulator = stack.addresses["AWS_URL"]
    services = config["services"]["broker-endpoints"]
    assert services["sso"] == services["sso_oidc"] == {"endpoint_url": portal}
    assert services["s3"] == services["sts"] == services["cloudwatch_logs"] == {"endpoint_url": emulator}
    for profile in config["profiles"].values():
        assert "endpoint_url" not in profile
    listed = aws_cli(
        bob_home,
        "--profile",
        "example-production-EmployeeDirectoryReadOnly",
        "s3",
        "ls",
        "s3://employee-directory-photos-222222222222/photos/",
    )
    assert listed.returncode == 0, listed.stderr
    assert "bob.svg" in listed.stdout


def test_every_output_format_from_the_cached_sign_in(stack, bob_home):
    exports = broker_login(bob_home, *READ_ONLY)
    assert exports.returncode == 0, exports.stderr
    values = dict(line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines())
    assert set(values) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
    }
    assert values["AWS_ENDPOINT_URL"] == stack.addresses["AWS_URL"] and values["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "Signing in" not in exports.stderr  # the token cached by configure was used

    as_json = json.loads(broker_login(bob_home, "--account-name", "example-production", "--format", "json").stdout)
    assert as_json["AccountId"] == PRODUCTION and as_json["RoleName"] == "EmployeeDirectoryReadOnly"
    assert as_json["EndpointUrl"] == stack.addresses["AWS_URL"]
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
    assert (stored["ro"]["services"], stored["ro"]["region"]) == ("broker-endpoints", "us-east-1")
    assert read_only_arn(caller(stack, {k: v for k, v in stored["ro"].items() if k.startswith("aws_")}))
    assert stat.S_IMODE((bob_home / ".aws" / "credentials").stat().st_mode) == 0o600
    # the profile's calls reach the emulator, where the credentials were issued, without being told
    assert read_only_arn(boto3_with_profile(bob_home, "ro")["arn"])


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
    used = boto3_with_profile(bob_home, profile)
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


def non_interactive(portal: str, home: Path, username: str, password: str = "Welcome-2026", *args: str):
    return broker_login(
        home,
        "--portal-url",
        portal,
        "--non-interactive",
        *args,
        BROKER_LOGIN_USERNAME=username,
        BROKER_LOGIN_PASSWORD=password,
    )


def one_line_failure(run: subprocess.CompletedProcess) -> str:
    """The message of a failed run: exit 1, nothing on standard output, one line on standard error."""
    assert run.returncode == 1 and run.stdout == "", run.stderr
    message = run.stderr.splitlines()[-1]
    assert message.startswith("broker-login: ") and "Traceback" not in run.stderr, run.stderr
    return message


@pytest.mark.parametrize(
    "username, password, reason",
    [("bob", "not-his-password", BAD_CREDENTIALS), ("frank", "Welcome-2026", DISABLED)],
)
def test_a_refused_sign_in_says_why_as_the_idp_does(stack, portal, tmp_path, username, password, reason):
    message = one_line_failure(non_interactive(portal, tmp_path, username, password))
    idp_host = stack.addresses["IDP_URL"].removeprefix("http://")
    assert message == f"broker-login: the sign-in was refused at {idp_host}: {reason}"


def test_a_throttled_sign_in_says_so(stack, portal, tmp_path):
    """After five failures from this address the IdP pauses the person's sign-ins: the CLI says so,
    not the login page's heading."""
    idp, username = stack.addresses["IDP_URL"], "throttled-cli-user"
    http = requests.Session()
    for _ in range(5):
        page = http.get(f"{idp}/login")
        assert submit_login(http, idp, page, username, "wrong").status_code == 401
    message = one_line_failure(non_interactive(portal, tmp_path, username))
    assert "Too many failed sign-in attempts" in message and "Use your Example Corp account" not in message


@pytest.mark.parametrize("username, groups", [("carol", "finance"), ("dave", "contractors")])
def test_no_aws_access_is_explained_as_the_portal_does(portal, tmp_path, username, groups):
    for command in ([], ["configure"]):
        message = one_line_failure(non_interactive(portal, tmp_path, username, "Welcome-2026", *command))
        assert message == (
            f"broker-login: {username}@example.com has no AWS access through {portal}: your groups ({groups}) "
            "are not assigned to any AWS account. Access is granted to groups, not to people: ask your "
            "manager to request membership in a group that has the access you need"
        )
    assert not (tmp_path / ".aws" / "config").exists()


def test_an_unknown_idp_names_the_ones_offered(portal, tmp_path):
    message = one_line_failure(non_interactive(portal, tmp_path, "bob", "Welcome-2026", "--idp", "okta"))
    assert message == (
        "broker-login: the portal offers no identity provider 'okta' (--idp): it offers "
        "example-corp-oidc, example-corp-saml"
    )


def test_the_idps_address_or_one_without_a_scheme_is_one_clear_line(stack, portal, tmp_path):
    idp = stack.addresses["IDP_URL"]
    message = one_line_failure(non_interactive(idp, tmp_path, "bob"))
    assert message == (
        f"broker-login: {idp} does not answer as an AWS access portal (HTTP 404); is it the identity "
        "provider's address instead of the portal's?"
    )
    bare = portal.removeprefix("http://")
    run = broker_login(tmp_path, "configure", BROKER_URL=bare)
    assert (
        run.returncode == 2
        and run.stdout == ""
        and run.stderr
        == (
            f"broker-login: the portal URL from $BROKER_URL: {bare!r} is not an http(s) URL: write it with http:// "
            f"or https://, e.g. http://{bare}\n"
        )
    )


def test_a_start_url_as_identity_center_writes_it_signs_in(portal, tmp_path):
    run = non_interactive(f"{portal}/start/#", tmp_path, "bob", "Welcome-2026", *READ_ONLY, "--format", "json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["AccountId"] == PRODUCTION


def test_logout_revokes_the_token_and_forgets_it(portal, tmp_path):
    assert broker_login(tmp_path, "--portal-url", portal, "--non-interactive", *READ_ONLY, **BOB).returncode == 0
    token = json.loads(next((tmp_path / ".aws" / "sso" / "cache").glob("*.json")).read_text())["accessToken"]
    run = broker_login(tmp_path, "--portal-url", portal, "logout")
    assert run.returncode == 0 and "Signed out." in run.stderr
    assert not list((tmp_path / ".aws" / "sso" / "cache").glob("*.json"))
    sso = boto3.client("sso", endpoint_url=portal, region_name="us-east-1")
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=token)


# --- the README, as written -------------------------------------------------------------------------


def readme_blocks() -> list[str]:
    """The shell blocks of the README's section on the CLI, in order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## From scripts, the AWS CLI and SDKs", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_readmes_block_works_as_written(stack, portal, tmp_path):
    """The README's commands, run by bash from the repository's folder with the demo's address swapped
    for this stack's; the device code is approved in a (scripted) browser. broker-login and aws come
    from the PATH the README sets."""
    setup, commands = readme_blocks()[:2]
    assert "http://localhost:8000" in setup and "broker-login configure" in commands
    script = "set -e\n" + setup.replace("http://localhost:8000", portal) + commands
    env = {
        **clean_env(tmp_path, PATH="/usr/bin:/bin"),
        "PYTHONPATH": "",
    }
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        env.pop(name, None)
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        shown = [process.stderr.readline() for _ in range(3)]
        assert shown[0].startswith(f"To sign in, open {portal}/device"), shown
        url = shown[2].strip().removeprefix("(or open ").removesuffix(")")
        assert "Request approved" in approve_in_browser(portal, "bob", url).text
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "PRE photos/" in out  # aws s3 ls, on the emulator
    identity = json.loads(out[out.index("{") :])  # aws sts get-caller-identity with the exported keys
    assert read_only_arn(identity["Arn"])


# --- in a real terminal -----------------------------------------------------------------------------


def in_a_terminal(home: Path, *args: str, **env: str) -> TerminalSession:
    return TerminalSession([*BROKER_LOGIN, *args], clean_env(home, **env))


def prompt(terminal: TerminalSession, what: str) -> str:
    """Wait for the question about `what`; what the terminal showed before it."""
    shown = terminal.expect(f"Which {what} [")
    terminal.expect("]? ")
    return shown


def choose(terminal: TerminalSession, what: str, name: str) -> None:
    """At the question about `what`, type the number the list showed for `name`, and Enter."""
    prompt(terminal, what)
    numbers = re.findall(rf"(\d+)\. {re.escape(name)}\b", terminal.screen)
    assert numbers, terminal.screen
    terminal.type(numbers[-1] + "\r")


def test_a_person_at_the_terminal_chooses_the_account_and_the_role(stack, portal, tmp_path):
    """alice, signed in without a browser, names no account or role: both are asked on the terminal;
    a wrong answer asks again; the exports go to standard output, as `eval "$(broker-login)"` reads them."""
    terminal = in_a_terminal(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        BROKER_LOGIN_USERNAME="alice",
        BROKER_LOGIN_PASSWORD="Welcome-2026",
    )
    terminal.expect("Which account [1-2]? ")
    terminal.type("3\r")
    terminal.expect("Type a number from 1 to 2")
    choose(terminal, "account", "example-production")
    roles = prompt(terminal, "role")
    assert "AdministratorAccess" in roles and "EmployeeDirectoryReadOnly" in roles
    terminal.type("\r")  # nothing typed: asked again, nothing chosen for her
    terminal.expect("Type a number from 1 to")
    choose(terminal, "role", "EmployeeDirectoryReadOnly")
    code, out = terminal.finish()
    assert code == 0, terminal.screen
    values = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    arn = caller(
        stack,
        {
            "aws_access_key_id": values["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": values["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": values["AWS_SESSION_TOKEN"].strip("'"),
        },
    )
    assert "AWSReservedSSO_EmployeeDirectoryReadOnly_" in arn and arn.endswith("/alice@example.com")
    assert values["AWS_SECRET_ACCESS_KEY"] not in terminal.screen


def test_ctrl_d_at_the_choice_stops_cleanly(portal, tmp_path):
    terminal = in_a_terminal(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        BROKER_LOGIN_USERNAME="bob",
        BROKER_LOGIN_PASSWORD="Welcome-2026",
    )
    terminal.expect("Which account [1-2]? ")
    terminal.type("\x04")
    code, out = terminal.finish()
    assert code == 1 and out == ""
    assert "broker-login: no account chosen" in terminal.screen and "Traceback" not in terminal.screen


def test_credential_process_after_a_logout_signs_in_on_the_terminal(stack, portal, tmp_path):
    """The SDK that runs a credential_process captures its standard error: the sign-in is shown on the
    terminal, and the credentials still go to standard output."""
    assert non_interactive(portal, tmp_path, "bob", "Welcome-2026", *READ_ONLY).returncode == 0
    assert broker_login(tmp_path, "--portal-url", portal, "logout").returncode == 0
    terminal = in_a_terminal(tmp_path, "--portal-url", portal, "--no-browser", "credential-process", *READ_ONLY)
    terminal.expect("To sign in, open ")
    url = terminal.expect(")").split("(or open ", 1)[1].removesuffix(")")
    assert "Request approved" in approve_in_browser(portal, "bob", url).text
    code, out = terminal.finish()
    assert code == 0, terminal.screen
    credentials = json.loads(out)
    assert credentials["Version"] == 1 and credentials["AccessKeyId"] not in terminal.screen
    assert "signed in." in terminal.screen
