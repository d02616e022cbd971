"""pytest plugin `sso_broker`: AWS sessions for your own test suites, signed in through the broker.

    def test_read_only_role_reads_photos(broker_login):
        session = broker_login("bob", account="example-production", role="EmployeeDirectoryReadOnly")
        session.client("s3").get_object(Bucket=..., Key=...)

Point it at the portal with `--broker-url` or BROKER_URL. Passwords come from `password=` or
BROKER_LOGIN_PASSWORD, TOTP secrets from `totp_secret=` or BROKER_LOGIN_TOTP_SECRET. The sign-in is
the device flow approved over HTTP (as `broker-login --non-interactive` does), so the audit trail
shows the test run like any other CLI sign-in. When the broker runs against an AWS emulator, the
sessions' clients call it (the portal's /.well-known/sso-portal says where it is).

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
    group.addoption("--idp-url", default=None, help="the mock IdP, for the idp_faults fixture (default: $IDP_URL)")


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
    session = _session_class(portal.describe().aws_endpoint_url)(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=region,
    )
    state["sessions"][key] = (session, credentials.expiration)
    return session


def _session_class(endpoint_url: str | None):
    """boto3.Session, or, when the broker runs against an AWS emulator, a Session whose clients and
    resources call the emulator unless told otherwise (they make no SSO calls, so one endpoint for
    every service is right). botocore has no session-wide setting a client would not override."""
    import boto3

    if not endpoint_url:
        return boto3.Session

    def aimed(args: tuple, kwargs: dict) -> dict:
        """The call's keyword arguments, with the emulator as endpoint_url unless one is given."""
        given = args[5] if len(args) > 5 else kwargs.get("endpoint_url")
        return kwargs if given is not None else {**kwargs, "endpoint_url": endpoint_url}

    class EmulatorSession(boto3.Session):
        def client(self, *args, **kwargs):
            return super().client(*args, **aimed(args, kwargs))

        def resource(self, *args, **kwargs):
            return super().resource(*args, **aimed(args, kwargs))

    return EmulatorSession


# --- idp_faults: faults on demand at the mock IdP (idp_mock/faults.py, README "Faults on demand") ------

IDP_FAULTS_TOKEN_ENV = "IDP_FAULTS_ADMIN_TOKEN"


class IdPFaults:
    """The mock IdP's faults admin API: `oidc(client_id, kind, count=None, **options)` and
    `saml(entity_id, kind, count=None, **options)` add a fault and return it (with its `id`); `remove(id)`,
    `listed()`. Faults added through this object are removed when the test ends."""

    def __init__(self, url: str, token: str):
        self.url, self._token = url.rstrip("/"), token
        self.added: list[str] = []

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        import json
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = json.loads(error.read() or b"{}").get("error_description", error.reason)
            pytest.fail(f"idp_faults: {method} {path} answered {error.code}: {detail}", pytrace=False)
        except OSError as error:
            pytest.fail(f"idp_faults: the IdP at {self.url} cannot be reached ({error})", pytrace=False)

    def _add(self, target: dict, kind: str, count: int | None, options: dict) -> dict:
        fault = self._call(
            "POST", "/admin/faults", {**target, "kind": kind, **options, **({"count": count} if count else {})}
        )
        self.added.append(fault["id"])
        return fault

    def oidc(self, client_id: str, kind: str, count: int | None = None, **options) -> dict:
        return self._add({"client_id": client_id}, kind, count, options)

    def saml(self, entity_id: str, kind: str, count: int | None = None, **options) -> dict:
        return self._add({"sp": entity_id}, kind, count, options)

    def remove(self, fault_id: str) -> None:
        self._call("DELETE", f"/admin/faults/{fault_id}")
        self.added.remove(fault_id)

    def listed(self) -> list[dict]:
        return self._call("GET", "/admin/faults")["faults"]


@pytest.fixture
def idp_faults(pytestconfig):
    """Faults on demand at the mock IdP, for this test only:
    `idp_faults.oidc("access-portal", "expired", count=1)`, `idp_faults.saml(ENTITY_ID, "error", status="Responder")`.
    The IdP comes from --idp-url or IDP_URL, its faults admin token from IDP_FAULTS_ADMIN_TOKEN."""
    url = pytestconfig.getoption("idp_url") or os.environ.get("IDP_URL")
    token = os.environ.get(IDP_FAULTS_TOKEN_ENV)
    if not url or not token:
        pytest.fail(
            f"idp_faults needs the IdP's address (--idp-url or IDP_URL) and its faults admin token "
            f"({IDP_FAULTS_TOKEN_ENV}, the IdP's faults.admin_token)",
            pytrace=False,
        )
    faults = IdPFaults(url, token)
    yield faults
    for fault_id in list(faults.added):
        try:
            faults.remove(fault_id)
        except pytest.fail.Exception:  # removed already (DELETE /admin/faults), or the IdP is gone
            pass
