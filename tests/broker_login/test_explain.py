"""`broker-login --explain`: the portal's "How did I get here?" as text on stderr, for a sign-in, with and
without credentials, and for the refusals (no assignment, MFA required); nothing of it on stdout, where
the credentials go, and no secret in it."""

from __future__ import annotations

import re
import shlex

import pytest

from broker_login.explain import clean, render
from tests.support.identity_center import PRODUCTION, SANDBOX, broker_login

PASSWORD = "Welcome-2026"


def credentials_of(stdout: str) -> dict[str, str]:
    return {name: shlex.split(value)[0] for name, value in re.findall(r"export (AWS_[A-Z_]+)=(\S+)", stdout)}


def signed_in(username: str) -> dict[str, str]:
    return {"BROKER_LOGIN_USERNAME": username, "BROKER_LOGIN_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def portal(stack):
    return stack.addresses["PORTAL_URL"]


def test_explain_with_credentials_prints_the_story_on_stderr_only(portal, tmp_path):
    run = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        "--explain",
        "--account-id",
        PRODUCTION,
        "--role",
        "EmployeeDirectoryReadOnly",
        **signed_in("bob"),
    )
    assert run.returncode == 0, run.stderr
    issued = credentials_of(run.stdout)
    assert issued["AWS_SECRET_ACCESS_KEY"] and "How did I get here?" not in run.stdout
    said = run.stderr
    for step in ("1. The upstream answer", "2. The Identity", "3. The entitlement decision", "4. The way to AWS"):
        assert step in said
    assert "5. The workload path" in said
    assert re.search(r"\[\s*passed\] nonce", said) and "joserfc JWTClaimsRegistry" in said
    assert "Request 1: EmployeeDirectoryReadOnly in example-production, issued" in said
    assert "RoleSessionName: bob@example.com" in said and "STS accepted the assertion" in said
    for secret in (PASSWORD, issued["AWS_SECRET_ACCESS_KEY"], issued["AWS_SESSION_TOKEN"]):
        assert secret not in said


def test_explain_alone_signs_in_and_explains_without_credentials(portal, tmp_path):
    run = broker_login(tmp_path, "--portal-url", portal, "--non-interactive", "--explain", **signed_in("dave"))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    decisions = [line for line in run.stderr.splitlines() if line.startswith("  [not yours]")]
    assert decisions and all("you are not in the group" in line for line in decisions)
    assert "no credentials asked for yet" in run.stderr


def test_a_refused_request_is_explained_before_the_error(portal, tmp_path):
    run = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        "--explain",
        "--account-id",
        SANDBOX,
        "--role",
        "SecurityAudit",
        **signed_in("grace"),
    )
    assert run.returncode == 1 and run.stdout == ""
    said = run.stderr
    assert "Request 1: SecurityAudit in example-sandbox, refused" in said
    assert re.search(r"\[\s*FAILED\] multi-factor authentication", said)
    assert said.rstrip().splitlines()[-1].startswith("broker-login: ")  # the error itself comes last


def test_the_text_keeps_no_control_character():
    document = {
        "outcome": "refused",
        "reason": "bad\x1b[31m answer\x07",
        "upstream_name": "Evil\u202eIdP",
        "owner": None,
        "sections": [
            {
                "key": "upstream",
                "title": "The answer",
                "summary": "",
                "facts": [{"label": "x", "value": "y\x1b]0;title\x07", "source": ""}],
                "documents": [],
                "checks": [
                    {"name": "iss", "outcome": "failed", "by": "lib", "expected": "", "received": "", "detail": ""}
                ],
            }
        ],
        "groups": [],
        "decisions": [],
        "issuances": [],
        "workload": None,
        "created": 0,
    }
    text = render(document)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "[     FAILED] iss" in text and "2. The Identity\n  not reached" in text
    assert clean("a\tb\nc") == "a\tb\nc"
