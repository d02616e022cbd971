"""pytest plugin `sso_broker`: AWS sessions for your own test suites, signed in through the broker.

    def test_read_only_role_reads_photos(broker_login):
        session = broker_login("bob", account="example-production", role="EmployeeDirectoryReadOnly")
        session.client("s3").get_object(Bucket=..., Key=...)

Point it at the portal with `--broker-url` or BROKER_URL. Passwords come from `password=` or
BROKER_LOGIN_PASSWORD, TOTP secrets from `totp_secret=` or BROKER_LOGIN_TOTP_SECRET. The sign-in is
the device flow approved over HTTP (as `broker-login --non-interactive` does), so the audit trail
shows the test run like any other CLI sign-in.

The pytest11 entry point loads this in every pytest run where the broker is installed, so it stays
inert until a test asks for `broker_login`: no boto3 import, no network, no files.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest

DEFAULT_IDP = "example-corp-oidc"
ACCOUNT_ID = re.compile(r"\d{12}")
REUSE_MARGIN = timedelta(minutes=15)


def pytest_addoption(parser):
    group = parser.getgroup("sso-broker", "AWS sessions through the SSO login broker (fixture broker_login)")
    group.addoption("--broker-url", default=None, help="the broker's portal URL (default: $BROKER_URL)")
    group.addoption("--broker-idp", default=None, help=f"identity provider to sign in through (default {DEFAULT_IDP})")


@pytest.fixture(scope="session")
def broker_login(pytestconfig):
    """Factory: broker_login(username, account=ID or name, role=permission set, password=None,
    totp_secret=None, region="us-east-1") -> boto3.Session with that role's short-lived credentials.

    Sessions are reused within the test run while more than 15 minutes remain; the run's sign-ins
    are ended at the portal when the run ends."""
    url = pytestconfig.getoption("broker_url") or os.environ.get("BROKER_URL")
    idp = pytestconfig.getoption("broker_idp") or DEFAULT_IDP
    state: dict = {"portals": {}, "tokens": {}, "sessions": {}}

    def login(
        username: str,
        *,
        account: str,
        role: str,
        password: str | None = None,
        totp_secret: str | None = None,
        region: str = "us-east-1",
    ):
        if not url:
            pytest.fail("broker_login needs the broker's address: pass --broker-url or set BROKER_URL", pytrace=False)
        from broker_login.portal import LoginError

        try:
            return _session(state, url, idp, username, account, role, region, password, totp_secret)
        except LoginError as error:
            failure = f"broker_login({username!r}, account={account!r}, role={role!r}): {error}"
        pytest.fail(failure, pytrace=False)

    yield login
    if state["tokens"]:
        from broker_login.portal import LoginError

        for (portal, _), token in state["tokens"].items():
            try:
                portal.logout(token)
            except LoginError:  # the portal is gone or already ended the sign-in
                pass


def _session(
    state: dict,
    url: str,
    idp: str,
    username: str,
    account: str,
    role: str,
    region: str,
    password: str | None,
    totp_secret: str | None,
):
    """A boto3 Session for the role: reused while fresh, else from the person's (cached) sign-in."""
    import boto3

    from broker_login.headless import PASSWORD_ENV, TOTP_SECRET_ENV, LoginSecrets, headless_sign_in
    from broker_login.portal import LoginError, Portal

    if region not in state["portals"]:
        portal = Portal(url, region)
        state["portals"][region] = (portal, portal.register())
    portal, registration = state["portals"][region]
    token = state["tokens"].get((portal, username))
    if token is None:
        password = password or os.environ.get(PASSWORD_ENV)
        if not password:
            raise LoginError(f"no password: pass password= or set {PASSWORD_ENV}")
        secrets = LoginSecrets(username, password, totp_secret or os.environ.get(TOTP_SECRET_ENV))
        token = state["tokens"][(portal, username)] = headless_sign_in(portal, registration, idp, secrets)
    account_id = (
        account
        if ACCOUNT_ID.fullmatch(account)
        else next((account_id for account_id, name in portal.accounts(token) if name == account), None)
    )
    if account_id is None:
        raise LoginError(f"{username} has no role in an account named {account}")
    key = (username, account_id, role, region)
    cached = state["sessions"].get(key)
    if cached and cached[1] - datetime.now(UTC) > REUSE_MARGIN:
        return cached[0]
    credentials = portal.credentials(token, account_id, role)
    session = boto3.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=region,
    )
    state["sessions"][key] = (session, credentials.expiration)
    return session
