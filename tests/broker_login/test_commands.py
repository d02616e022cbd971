"""broker-login's pure parts: config-file merging, output formats, caches, secrets, page reading,
terminal choices and argument rules. The end-to-end runs are in test_login_cli_e2e.py."""

from __future__ import annotations

import hashlib
import io
import json
import stat
from datetime import UTC, datetime, timedelta

import pytest
from botocore.configloader import load_config

from broker_login import commands, files, formats
from broker_login.forms import read_page
from broker_login.headless import LoginSecrets, _login_step
from broker_login.portal import Credentials, LoginError, Registration, Token
from broker_login.terminal import Console

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CREDENTIALS = Credentials("ASIAEXAMPLE", "secret/with+chars", "token'quote", NOW + timedelta(hours=1))


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
    assert "1. Dev" in tty.shown.getvalue() and tty.shown.getvalue().count("Which role [1-2]?") == 2
    with pytest.raises(LoginError, match="Dev, ReadOnly"):
        Console(tty_opener=lambda: None).choose("role", ["Dev", "ReadOnly"])
    with pytest.raises(LoginError, match="no account"):
        Console(tty_opener=lambda: None).choose("account", [])


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
