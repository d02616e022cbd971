"""The sso_broker pytest plugin as its users meet it: inert until asked, clear when unconfigured, and a
working boto3 session from the real stack when configured."""

from __future__ import annotations

import subprocess
import sys

pytest_plugins = ["pytester"]
# The inner runs share this process: playwright's plugin cannot nest, and this package is imported already.
INNER = ("-p", "no:cacheprovider", "-p", "no:playwright", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def test_loading_the_plugin_costs_nothing():
    """Every pytest run in this environment loads it (pytest11 entry point): no boto3, no HTTP."""
    script = (
        "import sys, broker_login.pytest_plugin; "
        "print(sorted(m for m in ('boto3', 'botocore', 'requests') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True)
    assert run.stdout.strip() == "[]", run.stderr


def test_suites_that_do_not_ask_for_it_are_unaffected(pytester, monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=1)
    assert pytester.parseconfig("--broker-url", "http://portal", *INNER).getoption("broker_url") == "http://portal"


def test_without_a_broker_url_the_fixture_says_what_to_set(pytester, monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    pytester.makepyfile(
        "def test_needs_aws(broker_login):\n"
        "    broker_login('bob', account='example-production', role='EmployeeDirectoryReadOnly')\n"
    )
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*broker_login needs the broker's address: pass --broker-url or set BROKER_URL*"])


def test_broker_login_gives_boto3_sessions_with_the_roles_credentials(pytester, monkeypatch, stack):
    monkeypatch.setenv("BROKER_LOGIN_PASSWORD", "Welcome-2026")
    pytester.makepyfile(f"""
        AWS = {stack.addresses["AWS_URL"]!r}

        def test_read_only_role(broker_login):
            session = broker_login("bob", account="example-production", role="EmployeeDirectoryReadOnly")
            arn = session.client("sts", endpoint_url=AWS).get_caller_identity()["Arn"]
            assert "AWSReservedSSO_EmployeeDirectoryReadOnly_" in arn and arn.endswith("/bob@example.com")
            assert broker_login("bob", account="222222222222", role="EmployeeDirectoryReadOnly") is session
            # Where the credentials were issued, without being told: the broker runs against the emulator.
            assert session.client("sts").get_caller_identity()["Arn"] == arn

        def test_developer_role_in_the_same_run(broker_login):
            session = broker_login("bob", account="example-sandbox", role="EmployeeDirectoryDeveloper")
            assert session.client("sts", endpoint_url=AWS).get_caller_identity()["Account"] == "111111111111"

        def test_a_role_bob_does_not_have(broker_login):
            broker_login("bob", account="example-production", role="AdministratorAccess")
    """)
    result = pytester.runpytest("--broker-url", stack.addresses["PORTAL_URL"], *INNER)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            (
                "*broker_login('bob', account='example-production', role='AdministratorAccess'): "
                "ForbiddenException: No access*"
            )
        ]
    )
