"""broker-login's pure parts: config-file merging, output formats, caches, secrets, page reading,
terminal choices, argument rules, where the portal's address comes from and the allow-lists. The
runs against the real stack are in test_e2e.py, a hostile portal in test_hostile_portal.py, the
terminal in a real pseudo-terminal in test_terminal.py."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
from datetime import UTC, datetime, timedelta

import pytest
from botocore.configloader import load_config

from broker_login import commands, files, formats, validate
from broker_login.forms import read_page
from broker_login.headless import LoginSecrets, _login_step, _reason, _upstream_link
from broker_login.portal import Credentials, LoginError, PortalInfo, Registration, Token, portal_base_url
from broker_login.terminal import Console

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CREDENTIALS = Credentials("ASIAEXAMPLE", "secret/with+chars", "token'quote", NOW + timedelta(hours=1))
EMULATOR = PortalInfo("eu-west-1", "http://127.0.0.1:4566", ("sts", "s3", "logs", "secretsmanager"))
REAL_AWS = PortalInfo("eu-west-1", None, ())


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AWS_CONFIG_FILE", raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    return tmp_path


EXISTING = """# my settings
[default]
region = eu-west-1

[profile old-dev]
sso_session = broker
sso_role_name = Gone
# a comment inside
[profile mine]
output = json
"""


def test_merge_replaces_named_sections_and_keeps_everything_else():
    merged = files.merge_sections(
        EXISTING, {"profile old-dev": ["sso_role_name = New"], "sso-session broker": ["sso_start_url = http://portal"]}
    )
    assert merged.startswith("# my settings\n[default]\nregion = eu-west-1\n")
    assert "[profile old-dev]\nsso_role_name = New\n" in merged and "Gone" not in merged and "a comment" not in merged
    assert "[profile mine]\noutput = json\n" in merged
    assert merged.endswith("[sso-session broker]\nsso_start_url = http://portal\n")
    assert (
        files.merge_sections(
            merged,
            {"profile old-dev": ["sso_role_name = New"], "sso-session broker": ["sso_start_url = http://portal"]},
        )
        == merged
    )


def test_merge_drops_duplicates_of_a_replaced_section_and_starts_empty_files():
    assert files.merge_sections("[a]\nx = 1\n[a]\ny = 2\n", {"a": ["z = 3"]}) == "[a]\nz = 3\n"
    assert files.merge_sections("", {"a": ["z = 3"]}) == "[a]\nz = 3\n"


def test_configure_sections_are_what_botocore_reads(home):
    sections = formats.sso_config_sections(
        "broker",
        "http://localhost:8000",
        "us-east-1",
        [("111111111111", "example-sandbox", "EmployeeDirectoryDeveloper")],
    )
    files.update_ini(files.config_file(), sections)
    config = load_config(str(files.config_file()))
    assert config["sso_sessions"]["broker"] == {
        "sso_start_url": "http://localhost:8000",
        "sso_region": "us-east-1",
        "sso_registration_scopes": "sso:account:access",
    }
    profile = config["profiles"]["example-sandbox-EmployeeDirectoryDeveloper"]
    assert profile["sso_session"] == "broker" and profile["sso_account_id"] == "111111111111"
    assert profile["services"] == "broker-endpoints"
    assert config["services"]["broker-endpoints"] == {
        "sso": {"endpoint_url": "http://localhost:8000"},
        "sso_oidc": {"endpoint_url": "http://localhost:8000"},
    }
    assert stat.S_IMODE(files.config_file().stat().st_mode) == 0o600


def test_exports_are_shell_quoted():
    text = formats.exports(CREDENTIALS)
    assert "export AWS_ACCESS_KEY_ID=ASIAEXAMPLE\n" in text
    assert "export AWS_SESSION_TOKEN='token'\"'\"'quote'\n" in text
    assert "export AWS_CREDENTIAL_EXPIRATION=2026-11-29T13:00:00Z\n" in text


def test_plain_keys_carry_the_emulator_and_nothing_against_real_aws():
    assert formats.exports(CREDENTIALS, EMULATOR).endswith(
        "export AWS_ENDPOINT_URL=http://127.0.0.1:4566\nexport AWS_DEFAULT_REGION=eu-west-1\n"
    )
    assert "AWS_ENDPOINT_URL" not in formats.exports(CREDENTIALS, REAL_AWS)
    assert json.loads(formats.as_json(CREDENTIALS, "111111111111", "Dev", EMULATOR.aws_endpoint_url))[
        "EndpointUrl"
    ] == ("http://127.0.0.1:4566")
    assert "EndpointUrl" not in json.loads(formats.as_json(CREDENTIALS, "111111111111", "Dev", None))


def botocore_endpoints(profile: str) -> dict[str, str]:
    """Where unmodified botocore sends each service's calls for `profile` (from ~/.aws/config)."""
    import botocore.session

    session = botocore.session.Session(profile=profile)
    return {
        service: session.create_client(
            service, region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="test"
        ).meta.endpoint_url
        for service in ("sso", "sso-oidc", "sts", "s3", "logs", "secretsmanager", "athena")
    }


@pytest.mark.parametrize("use_process", [False, True])
def test_profiles_send_aws_calls_to_the_emulator_and_sso_calls_to_the_portal(home, use_process):
    """Through the services section botocore reads, service by service: never a global endpoint_url."""
    if use_process:
        sections = {
            "services broker-endpoints": formats.services_section("http://portal:8000", EMULATOR),
            "profile dev": formats.credential_process_profile(["true"], "eu-west-1", "broker-endpoints"),
        }
    else:
        sections = formats.sso_config_sections(
            "broker", "http://portal:8000", "us-east-1", [("111111111111", "dev", "Dev")], info=EMULATOR
        )
    files.update_ini(files.config_file(), sections)
    profile = "dev" if use_process else "dev-Dev"
    assert "endpoint_url" not in load_config(str(files.config_file()))["profiles"][profile]
    assert botocore_endpoints(profile) == {
        "sso": "http://portal:8000",
        "sso-oidc": "http://portal:8000",
        "sts": "http://127.0.0.1:4566",
        "s3": "http://127.0.0.1:4566",
        "logs": "http://127.0.0.1:4566",
        "secretsmanager": "http://127.0.0.1:4566",
        "athena": "https://athena.eu-west-1.amazonaws.com",  # not emulated: AWS's own
    }


def test_against_real_aws_profiles_carry_only_the_portal(home):
    sections = formats.sso_config_sections(
        "broker", "http://portal:8000", "us-east-1", [("111111111111", "dev", "Dev")], info=REAL_AWS
    )
    files.update_ini(files.config_file(), sections)
    assert botocore_endpoints("dev-Dev")["s3"] == "https://s3.eu-west-1.amazonaws.com"
    assert botocore_endpoints("dev-Dev")["sso"] == "http://portal:8000"
    assert formats.credential_process_profile(["true"], "eu-west-1") == [
        "credential_process = true",
        "region = eu-west-1",
    ]
    assert formats.credentials_section(CREDENTIALS)[-1].startswith("aws_session_token")


def test_credential_process_output_is_botocores_version_1():
    assert json.loads(formats.credential_process(CREDENTIALS)) == {
        "Version": 1,
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "secret/with+chars",
        "SessionToken": "token'quote",
        "Expiration": "2026-11-29T13:00:00Z",
    }
    assert json.loads(formats.as_json(CREDENTIALS, "111111111111", "Dev"))["RoleName"] == "Dev"


def test_credential_process_profile_command_survives_botocores_split():
    import shlex

    line = formats.credential_process_profile(["/opt/my venv/bin/python", "-m", "broker_login"], "us-east-1")[0]
    assert shlex.split(line.removeprefix("credential_process = ")) == ["/opt/my venv/bin/python", "-m", "broker_login"]


def test_token_cache_is_botocores_file_and_round_trips(home):
    token = Token("bat-access", NOW + timedelta(hours=8), "brt-refresh")
    registration = Registration("client-1", "bsc-secret", NOW + timedelta(days=90))
    files.save_token("broker", "http://portal", "us-east-1", token, registration)
    path = home / ".aws" / "sso" / "cache" / (hashlib.sha1(b"broker").hexdigest() + ".json")
    assert files.token_cache_path("broker") == path
    stored = json.loads(path.read_text())
    assert stored["expiresAt"] == "2026-11-29T20:00:00Z" and stored["refreshToken"] == "brt-refresh"
    assert stat.S_IMODE(files.token_cache_path("broker").stat().st_mode) == 0o600
    assert files.load_token("broker", "http://portal/") == (token, registration)
    assert files.load_token("broker", "http://other-portal") is None
    files.forget_token("broker")
    assert files.load_token("broker", "http://portal") is None


def test_credential_cache_round_trips_and_garbage_is_ignored(home):
    path = files.credentials_path("http://portal", "broker", "111111111111", "Dev")
    files.save_credentials(path, CREDENTIALS)
    assert files.load_credentials(path) == CREDENTIALS and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    assert files.load_credentials(path) is None


def test_freshness_leaves_a_margin():
    assert files.fresh(NOW + timedelta(minutes=16), NOW)
    assert not files.fresh(NOW + timedelta(minutes=14), NOW)
    assert not files.fresh(NOW - timedelta(minutes=1), NOW)


def test_secrets_from_the_environment_first_then_standard_input():
    secrets = LoginSecrets.from_environment(
        {"BROKER_LOGIN_USERNAME": "erin", "BROKER_LOGIN_TOTP": "123456"}, io.StringIO("Welcome-2026\n")
    )
    assert (secrets.username, secrets.password, secrets.one_time_code()) == ("erin", "Welcome-2026", "123456")
    from_stdin = LoginSecrets.from_environment({}, io.StringIO("bob\npw\n654321\n"))
    assert (from_stdin.username, from_stdin.password, from_stdin.one_time_code()) == ("bob", "pw", "654321")
    with pytest.raises(LoginError, match="password"):
        LoginSecrets.from_environment({"BROKER_LOGIN_USERNAME": "bob"}, io.StringIO(""))
    assert "pw" not in repr(from_stdin)


def test_one_time_code_from_a_totp_secret():
    import pyotp

    secrets = LoginSecrets("erin", "pw", totp_secret="JBSWY3DPEHPK3PXPJBSWY3DP")
    assert secrets.one_time_code() == pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DP").now()
    with pytest.raises(LoginError, match="BROKER_LOGIN_TOTP_SECRET"):
        LoginSecrets("bob", "pw").one_time_code()


PAGE = """<html><body><header><form method="post" action="/logout"><input type="hidden" name="csrf_token"
value="c&amp;1"><button type="submit" class="link">Sign out</button></form></header>
<section data-device-page="confirm"><h1>Approve this request?</h1><p></p><p>broker-login asks</p>
<form method="post" action="/device"><input type=hidden name=csrf_token value='c&amp;1'>
<input type="hidden" name="user_code" value="BCDFGHJK"><input type="checkbox" name="remember">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button></form>
<a href="/login/example-corp-oidc?next=/device">OIDC</a></section></body></html>"""


def test_pages_are_read_like_a_browser_would():
    page = read_page(PAGE)
    assert page.marker == "confirm" and page.summary == "Approve this request?: broker-login asks"
    logout, decision = page.forms
    assert logout.action == "/logout" and logout.inputs == {"csrf_token": "c&1"} and logout.only_hidden
    assert decision.inputs == {"csrf_token": "c&1", "user_code": "BCDFGHJK"}  # unchecked boxes are not sent
    assert decision.buttons == [("decision", "approve"), ("decision", "deny")]
    assert page.links == ["/login/example-corp-oidc?next=/device"]


def test_login_steps_are_recognised_by_their_fields():
    secrets = LoginSecrets("bob", "pw", totp_code="123456")
    login = read_page(
        '<form method="post" action="/login"><input type="hidden" name="csrf_token" value="x">'
        '<input name="username"><input type="password" name="password"></form>'
    ).forms
    assert _login_step(login, secrets)[0] == "password"
    assert _login_step(login, secrets)[2] == {"username": "bob", "password": "pw"}
    mfa = read_page('<form method="post"><input type="text" name="totp"></form>').forms
    assert _login_step(mfa, secrets)[2] == {"totp": "123456"}
    saml = read_page(
        '<form method="post" action="https://sp/acs"><input type="hidden" name="SAMLResponse" value="PD94"></form>'
    ).forms
    assert _login_step(saml, secrets)[0] == "post"
    assert _login_step(read_page("<p>nothing</p>").forms, secrets)[0] == "unknown"


class FakeTerminal:
    def __init__(self, typed: str):
        self.typed, self.shown = io.StringIO(typed), io.StringIO()

    def write(self, text):
        self.shown.write(text)

    def readline(self):
        return self.typed.readline()

    def flush(self):
        pass


def test_choices_are_asked_on_the_terminal_only_when_needed():
    tty = FakeTerminal("7\n2\n")
    console = Console(tty_opener=lambda: tty)
    assert console.choose("role", ["Only"]) == "Only"
    assert console.choose("role", ["Dev", "ReadOnly"]) == "ReadOnly"
    shown = tty.shown.getvalue()
    assert "1. Dev" in shown and shown.count("Which role [1-2]?") == 2 and "Type a number from 1 to 2" in shown
    with pytest.raises(LoginError, match=r"more than one role \(Dev, ReadOnly\) .* choose one with --role"):
        Console(tty_opener=lambda: None).choose("role", ["Dev", "ReadOnly"], option="--role")
    with pytest.raises(LoginError, match="no account"):
        Console(tty_opener=lambda: None).choose("account", [])
    with pytest.raises(LoginError, match="no role chosen"):
        Console(tty_opener=lambda: FakeTerminal("")).choose("role", ["Dev", "ReadOnly"])


def test_messages_never_go_to_standard_output(capsys):
    Console(tty_opener=lambda: None).say("hello")
    assert capsys.readouterr() == ("", "hello\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["--format", "yaml"],
        ["--format", "profile"],
        ["--format", "json", "x"],
        ["credential-process", "--role", "Dev"],
        ["--account-id", "1", "--account-name", "x"],
    ],
)
def test_bad_arguments_are_usage_errors(argv, monkeypatch):
    monkeypatch.setenv("BROKER_URL", "http://portal")
    with pytest.raises(SystemExit) as exit_:
        commands.main(argv)
    assert exit_.value.code == 2


def test_options_before_the_subcommand_are_kept():
    args = commands._parser().parse_args(["--portal-url", "http://p", "--session-name", "s", "logout"])
    assert (args.portal_url, args.session_name, args.run) == ("http://p", "s", commands._logout)


def test_concurrent_processes_refresh_a_token_once(home, monkeypatch):
    """Two credential_process runs at the same moment: one refreshes, the other finds its result. (The
    portal ends the whole sign-in when a refresh token is used twice.)"""
    import fcntl
    import threading
    from types import SimpleNamespace

    now = datetime.now(UTC)
    registration = Registration("client-1", "client-secret", now + timedelta(days=30))
    files.save_token(
        "broker",
        "http://portal",
        "us-east-1",
        Token("stale-access", now + timedelta(minutes=5), "refresh-1"),
        registration,
    )
    # The first run's refresh lasts until the other run has arrived: found waiting on the token lock
    # (or, were there no lock, refreshing too). An event, not a sleep.
    other_arrived = threading.Event()

    def flock(handle, operation):
        if operation == fcntl.LOCK_EX:
            try:
                return fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other_arrived.set()
        return fcntl.flock(handle, operation)

    monkeypatch.setattr(files, "fcntl", SimpleNamespace(LOCK_EX=fcntl.LOCK_EX, LOCK_UN=fcntl.LOCK_UN, flock=flock))

    class Portal:
        url, region = "http://portal", "us-east-1"
        refreshes: list[str] = []
        waits: list[bool] = []

        def refresh(self, registration, refresh_token):
            self.refreshes.append(refresh_token)
            if len(self.refreshes) == 1:
                self.waits.append(other_arrived.wait(timeout=10))
            else:
                other_arrived.set()
            return Token(f"access-{len(self.refreshes)}", datetime.now(UTC) + timedelta(hours=8), "refresh-2")

    portal = Portal()
    tokens = []

    def run():
        sign_in = commands.SignIn(portal, "broker", None, non_interactive=True, idp="x", open_browser=False)
        tokens.append(sign_in.token().access_token)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert portal.waits == [True], "the second run never came to the token lock"
    assert portal.refreshes == ["refresh-1"] and tokens == ["access-1", "access-1"]


def test_a_sign_in_the_portal_ended_is_said_and_its_cached_credentials_dropped(home, monkeypatch, capsys):
    """Disabled or revoked, the person's sign-in ends with the credentials cached under it, which AWS now
    denies: `credential-process` served them, without a word, for up to the role's session length."""
    now = datetime.now(UTC)
    registration = Registration("client-1", "client-secret", now + timedelta(days=30))
    files.save_token("broker", "http://portal", "us-east-1", Token("old", now, "refresh-1"), registration)
    files.save_registration(files.registration_path("http://portal", "us-east-1"), registration)
    cached = files.credentials_path("http://portal", "broker", "111111111111", "Dev")
    files.save_credentials(cached, CREDENTIALS)

    class Portal:
        url, region = "http://portal", "us-east-1"

        def refresh(self, registration, refresh_token):
            raise LoginError("your access has been disabled")

    monkeypatch.setenv("BROKER_LOGIN_USERNAME", "bob")
    monkeypatch.setenv("BROKER_LOGIN_PASSWORD", "Welcome-2026")
    new = Token("new", now + timedelta(hours=8), "refresh-2")
    monkeypatch.setattr(commands, "headless_sign_in", lambda *_: new)
    sign_in = commands.SignIn(Portal(), "broker", Console(), non_interactive=True, idp="x", open_browser=False)
    assert sign_in.token() == new
    assert "The portal ended your last sign-in (your access has been disabled)." in capsys.readouterr().err
    assert files.load_credentials(cached) is None
    assert files.load_token("broker", "http://portal")[0].access_token == "new"


@pytest.mark.parametrize(
    "given, base",
    [
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://localhost:8000/", "http://localhost:8000"),
        ("http://localhost:8000/start", "http://localhost:8000"),
        ("http://localhost:8000/start/", "http://localhost:8000"),
        ("http://localhost:8000/start/#", "http://localhost:8000"),
        ("http://localhost:8000/start#/", "http://localhost:8000"),
        (" https://sso.example.com/portal/start/#/ ", "https://sso.example.com/portal"),
    ],
)
def test_start_urls_as_identity_center_users_write_them_name_the_portal(given, base):
    assert portal_base_url(given) == base


@pytest.mark.parametrize(
    "given, message",
    [
        (
            "localhost:8000",
            "'localhost:8000' is not an http(s) URL: write it with http:// or https://, e.g. http://localhost:8000",
        ),
        ("ftp://portal", "'ftp://portal' is not an http(s) URL"),
        ("http://", "'http://' is not an http(s) URL"),
        ("http://portal/?next=x", "has a query"),
        ("http://por tal", "'http://por tal' is not a portal address this client accepts"),
    ],
)
def test_urls_that_are_not_a_portal_address_are_refused_in_one_line(given, message, home, capsys):
    with pytest.raises(LoginError, match=re.escape(message)):
        portal_base_url(given)
    assert commands.main(["--portal-url", given, "logout"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("broker-login: the portal URL from --portal-url: ") and err.count("\n") == 1


def test_the_portal_comes_from_the_documented_places_in_order(home):
    files.update_ini(files.config_file(), {"sso-session work": ["sso_start_url = http://from-config/start"]})
    environ = {
        "BROKER_URL": "http://broker-url",
        "AWS_ENDPOINT_URL_SSO_OIDC": "http://sso-oidc",
        "AWS_ENDPOINT_URL_SSO": "http://sso",
    }
    assert commands.portal_url("http://option", environ, "work") == ("http://option", "--portal-url")
    assert commands.portal_url(None, environ, "work") == ("http://broker-url", "$BROKER_URL")
    del environ["BROKER_URL"]
    assert commands.portal_url(None, environ, "work") == ("http://sso-oidc", "$AWS_ENDPOINT_URL_SSO_OIDC")
    del environ["AWS_ENDPOINT_URL_SSO_OIDC"]
    assert commands.portal_url(None, environ, "work") == ("http://sso", "$AWS_ENDPOINT_URL_SSO")
    found = commands.portal_url(None, {}, "work")
    assert found is not None and found[0] == "http://from-config/start" and "[sso-session work]" in found[1]
    assert commands.portal_url(None, {}, "other") is None


def test_without_a_portal_the_message_names_every_way_to_give_one(home, monkeypatch, capsys):
    for name in commands.PORTAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert commands.main(["configure"]) == 2
    err = capsys.readouterr().err
    assert "--portal-url" in err and "BROKER_URL" in err and "AWS_ENDPOINT_URL_SSO_OIDC" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "command, own, foreign",
    [
        (["logout"], ["--portal-url", "--session-name"], ["--idp", "--non-interactive", "--account-id", "--format"]),
        (["configure"], ["--idp", "--profile-prefix"], ["--account-id", "--role", "--format"]),
        (["credential-process"], ["--account-id", "--role", "--idp"], ["--format", "--profile-prefix"]),
        ([], ["--account-name", "--format", "--idp"], ["--profile-prefix", "--use-credential-process"]),
    ],
)
def test_each_commands_help_lists_its_own_options(command, own, foreign, capsys):
    with pytest.raises(SystemExit):
        commands.main([*command, "--help"])
    shown = capsys.readouterr().out.partition("options:")[2]
    assert all(option in shown for option in own), shown
    assert not any(option in shown for option in foreign), shown


def test_idp_help_names_the_choices(capsys):
    with pytest.raises(SystemExit):
        commands.main(["--help"])
    assert "example-corp-saml" in re.sub(r"\s+", "", capsys.readouterr().out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--account-id", "12345", "--role", "Dev"], "--account-id '12345' is not a 12-digit AWS account ID"),
        (["--role", "Dev\n[x]"], "--role 'Dev\\n[x]' is not a role name"),
        (["--format", "profile", "a]b"], "profile name 'a]b' may have only"),
        (["--session-name", "a b", "logout"], "--session-name 'a b' may have only"),
        (["--region", "mars\n", "logout"], "--region 'mars\\n' is not an AWS region's name"),
    ],
)
def test_bad_values_are_one_line_usage_errors(argv, message, monkeypatch, capsys):
    monkeypatch.setenv("BROKER_URL", "http://portal")
    with pytest.raises(SystemExit) as exit_:
        commands.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "check, good, bad",
    [
        (
            validate.account_id,
            ["111111111111"],
            ["11111111111", "1111111111111", "１１１１１１１１１１１１", 111111111111],
        ),
        (
            validate.account_name,
            ["example-production", "Team A (dev) & ops", "a", "x" * 50],
            ["", " lead", "trail ", "x" * 51, "a\nb", "[a]", "a=b", "a;b", "a#b", "é", "a/b", 7],
        ),
        (validate.role_name, ["EmployeeDirectoryReadOnly", "a+=,.@_-b", "x" * 64], ["", "x" * 65, "a b", "a\nb", "é"]),
        (validate.region, ["us-east-1", "us-gov-west-1", "ap-southeast-2"], ["us-east-1\n", "US-EAST-1", "east"]),
        (
            validate.endpoint_url,
            ["http://127.0.0.1:8002", "https://aws.example.com/prefix", "http://[::1]:4566"],
            ["file:///etc", "http://a b", "http://x/?q=1", "http://x#f", "http://x\n[y]", "javascript:x"],
        ),
        (validate.service_name, ["s3", "sso-oidc", "secretsmanager"], ["S3", "s3 ", "-s3", "s3\n", "s_3"]),
    ],
)
def test_allow_lists(check, good, bad):
    for value in good:
        assert check(value) == value
    for value in bad:
        with pytest.raises(validate.Untrusted):
            check(value)


def test_text_from_servers_is_shown_as_one_harmless_line():
    assert validate.one_line("Wrong\npassword\x1b[2J\x07 now") == "Wrong password [2J now"
    assert len(validate.one_line("x" * 1000)) == validate.SHOWN_MAX
    assert validate.shown("a\nb") == "'a\\nb'"


IDP_REFUSAL = """<h1>Sign in</h1><p class="lead">Use your Example Corp account.</p>
<p class="error" role="alert" id="form-error">Too many failed sign-in attempts. <b>Wait</b> a few minutes.</p>
<form method="post" action="/login"><input name="username"><input type="password" name="password"></form>"""


def test_a_refused_sign_in_says_why_as_the_idp_does():
    """The IdP's error next to the form, not its heading (which all refusals share)."""
    assert _reason(read_page(IDP_REFUSAL)) == "Too many failed sign-in attempts. Wait a few minutes."
    assert _reason(read_page("<h1>Oops</h1><p>Try later</p>")) == "Oops: Try later"


def test_an_unknown_idp_names_the_ones_the_portal_offers():
    page = read_page(
        '<section data-device-page="signin"><a href="/login/corp-oidc?next=/device">A</a>'
        '<a href="http://portal/login/corp-saml?next=/device">B</a><a href="/help">?</a></section>'
    )
    assert _upstream_link(page, "corp-saml") == "http://portal/login/corp-saml?next=/device"
    with pytest.raises(LoginError, match=r"no identity provider 'okta' \(--idp\): it offers corp-oidc, corp-saml$"):
        _upstream_link(page, "okta")
