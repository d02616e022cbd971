"""broker-login against a hostile portal: a small HTTP server on 127.0.0.1 that answers the sso API,
the sso-oidc API and /.well-known/sso-portal with values meant to inject a section into ~/.aws/config
or ~/.aws/credentials (a `credential_process` the next AWS command would run), or escape sequences
into the terminal. Every such answer is refused with one clear line, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest

from broker_login import commands, files
from broker_login.portal import Registration, Token
from tests.support.loopback import LoopbackServer

INJECTION = "\n[profile x]\ncredential_process = touch /tmp/pwned"
GOOD = {
    "/.well-known/sso-portal": {
        "start_url": "(filled in)",
        "region": "us-east-1",
        "aws_endpoint_url": "http://127.0.0.1:4566",
        "services": ["s3", "sts"],
    },
    "/assignment/accounts": {"accountList": [{"accountId": "111111111111", "accountName": "example-sandbox"}]},
    "/assignment/roles": {"roleList": [{"roleName": "Developer", "accountId": "111111111111"}]},
    "/federation/credentials": {
        "roleCredentials": {
            "accessKeyId": "ASIAEXAMPLEEXAMPLE",
            "secretAccessKey": "c2VjcmV0/+=",
            "sessionToken": "dG9rZW4=",
            "expiration": 4102444800000,
        }
    },
    "/client/register": {"clientId": "client-1", "clientSecret": "secret-1", "clientSecretExpiresAt": 4102444800},
    "/device_authorization": {
        "deviceCode": "device-1",
        "userCode": "ABCD-EFGH",
        "verificationUri": "(filled in)",
        "verificationUriComplete": "(filled in)",
        "expiresIn": 600,
        "interval": 1,
    },
}


class HostilePortal:
    """Answers GOOD, except for the values a test replaces: {path: {field: value}}, at any depth."""

    def __init__(self):
        self.server = LoopbackServer(self._handler())
        self.url = self.server.url
        self.changes: dict[str, dict] = {}

    def answer(self, path: str) -> dict | None:
        body = json.loads(json.dumps(GOOD.get(path)))
        if body is None:
            return None
        if path == "/device_authorization":
            body.update(verificationUri=f"{self.url}/device", verificationUriComplete=f"{self.url}/device?c=1")
        for field, value in self.changes.get(path, {}).items():
            target = body
            *parents, name = field.split(".")
            for parent in parents:
                target = target[parent][0] if isinstance(target[parent], list) else target[parent]
            target[name] = value
        return body

    def _handler(self):
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self):
                body = portal.answer(urlsplit(self.path).path)
                data = json.dumps(body).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send()

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[HostilePortal]:
    portal = HostilePortal()
    with portal.server:
        yield portal


@pytest.fixture
def hostile(hostile_server) -> HostilePortal:
    """The module's fake portal, answering well until the test changes something."""
    hostile_server.changes = {}
    return hostile_server


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = eu-west-1\n")
    (tmp_path / ".aws" / "credentials").write_text("[mine]\naws_access_key_id = AKIAKEEP\n")
    return tmp_path


def signed_in(portal: HostilePortal) -> None:
    """A cached sign-in for the fake portal, so the commands go straight to the sso API."""
    later = datetime.now(UTC) + timedelta(hours=8)
    files.save_token("broker", portal.url, "us-east-1", Token("access-1", later), Registration("c", "s", later))


def aws_files(home) -> tuple[str, str]:
    return (home / ".aws" / "config").read_text(), (home / ".aws" / "credentials").read_text()


CONFIGURE = ["configure"]
CONFIGURE_PROCESS = ["configure", "--use-credential-process"]
PROFILE = ["--account-id", "111111111111", "--role", "Developer", "--format", "profile", "dev"]
EXPORTS = ["--account-id", "111111111111", "--role", "Developer"]


@pytest.mark.parametrize(
    "path, field, value, argv, refused",
    [
        ("/assignment/accounts", "accountList.accountName", "sandbox" + INJECTION, CONFIGURE, "account name"),
        ("/assignment/accounts", "accountList.accountName", "sandbox" + INJECTION, CONFIGURE_PROCESS, "account name"),
        ("/assignment/accounts", "accountList.accountName", "[sandbox]", CONFIGURE, "account name"),
        ("/assignment/accounts", "accountList.accountName", "a=b;c#d", CONFIGURE, "account name"),
        ("/assignment/accounts", "accountList.accountId", "11111111111\n", CONFIGURE, "account ID"),
        ("/assignment/accounts", "accountList.accountId", "１１１１１１１１１１１１", CONFIGURE, "account ID"),
        ("/assignment/accounts", "accountList.accountId", 111111111111, CONFIGURE, "account ID"),
        ("/assignment/roles", "roleList.roleName", "Developer" + INJECTION, CONFIGURE, "role name"),
        ("/assignment/roles", "roleList.roleName", "Developer" + INJECTION, CONFIGURE_PROCESS, "role name"),
        ("/assignment/roles", "roleList.roleName", "x" * 65, CONFIGURE, "role name"),
        ("/.well-known/sso-portal", "region", "us-east-1" + INJECTION, CONFIGURE, "region"),
        (
            "/.well-known/sso-portal",
            "aws_endpoint_url",
            "http://127.0.0.1:4566" + INJECTION,
            CONFIGURE,
            "AWS endpoint URL",
        ),
        ("/.well-known/sso-portal", "aws_endpoint_url", "file:///etc/passwd", CONFIGURE_PROCESS, "AWS endpoint URL"),
        ("/.well-known/sso-portal", "services", ["s3" + INJECTION], CONFIGURE, "service name"),
        ("/.well-known/sso-portal", "aws_endpoint_url", "http://x" + INJECTION, PROFILE, "AWS endpoint URL"),
        ("/federation/credentials", "roleCredentials.sessionToken", "dG9r" + INJECTION, PROFILE, "session token"),
        ("/federation/credentials", "roleCredentials.accessKeyId", "ASIA\n[x]", PROFILE, "access key ID"),
        ("/federation/credentials", "roleCredentials.secretAccessKey", "s p a c e", EXPORTS, "secret access key"),
    ],
)
def test_hostile_answers_are_refused_and_nothing_is_written(hostile, home, capsys, path, field, value, argv, refused):
    signed_in(hostile)
    hostile.changes = {path: {field: value}}
    before = aws_files(home)
    code = commands.main(["--portal-url", hostile.url, *argv])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith(f"broker-login: the portal at {hostile.url} sent {refused}")
    assert err.endswith("which is not allowed; nothing was written\n") and err.count("\n") == 1, err
    assert aws_files(home) == before


def test_the_same_portal_answering_well_is_written(hostile, home, capsys):
    """The control: the fake portal's good answers pass, so the refusals above are the checks' doing."""
    signed_in(hostile)
    assert commands.main(["--portal-url", hostile.url, *CONFIGURE]) == 0
    assert commands.main(["--portal-url", hostile.url, *PROFILE]) == 0
    config, credentials = aws_files(home)
    assert (
        "[profile example-sandbox-Developer]\n" in config and "s3 =\n  endpoint_url = http://127.0.0.1:4566" in config
    )
    assert "[dev]\naws_access_key_id = ASIAEXAMPLEEXAMPLE\n" in credentials


@pytest.mark.parametrize(
    "field, value, refused",
    [
        ("verificationUriComplete", "javascript:alert(1)", "verification address"),
        ("verificationUri", "http://portal/device\x1b]0;pwned\x07", "verification address"),
        ("userCode", "ABCD\x1b[2J", "user code"),
    ],
)
def test_a_device_authorization_that_would_drive_the_terminal_or_browser_is_refused(
    hostile, home, capsys, field, value, refused
):
    hostile.changes = {"/device_authorization": {field: value}}
    code = commands.main(["--portal-url", hostile.url, "--no-browser", *EXPORTS])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "\x1b" not in err and "\x07" not in err
    assert f"sent {refused}" in err and "To sign in" not in err


def test_a_malformed_answer_is_one_line_not_a_traceback(hostile, home, capsys):
    """An answer of the wrong shape (a string where AWS's API has a list) is refused like a bad value."""
    signed_in(hostile)
    hostile.changes = {"/assignment/accounts": {"accountList": "not a list"}}
    code = commands.main(["--portal-url", hostile.url, *CONFIGURE])
    assert code == 1
    assert capsys.readouterr().err == (
        f"broker-login: the portal at {hostile.url} sent an answer this client does not understand\n"
    )
