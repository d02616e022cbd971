"""Helpers for the Identity Center compatible API and broker-login tests.

In process: the real portal app on an in-memory store, with a stand-in for STS (entitlement checks and
audit records are the real ones). Against the stack: boto3 and broker-login in subprocesses with
their own HOME, because botocore fixes its ~/.aws/sso/cache path when it is imported.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from broker.app import create_app
from broker.core.identity import LogoutHint
from broker.core.issuance import RoleCredentials
from broker.identity_center.grants import DEVICE_GRANT, GrantSettings, GrantStore
from broker.settings import load_settings
from broker_login.forms import read_page
from sso_common.store.memory import MemoryStateStore
from tests.support.portal import signed_in_session

PORTAL = "http://localhost"
SANDBOX, PRODUCTION = "111111111111", "222222222222"
REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeIssuer:
    """Stands in for STS: returns made-up credentials for the entitlement issuance already checked."""

    def issue(self, identity, entitlement) -> RoleCredentials:
        return RoleCredentials(
            access_key_id="ASIAFAKE" + entitlement.account_id[-4:],
            secret_access_key="fake-secret",
            session_token="fake-session-token",
            expiration=datetime.now(UTC) + timedelta(hours=1),
            assumed_role_arn=f"arn:aws:sts::{entitlement.account_id}:assumed-role/{entitlement.role_name}/"
            f"{identity.email}",
        )


def portal_app(instance_dir: Path, **changes):
    """The portal app on in-memory state, with STS stood in for. Its upstreams provision nothing over SCIM and
    are not re-validated (`lifecycles=()`): the sso-api tests sign people in directly; `changes` replace other
    settings (tests of provisioning and revocation give the lifecycles back)."""
    memory = {"state": "memory://", "directory": "memory://", "audit": "memory://", "changes": "memory://"}
    settings = dataclasses.replace(
        load_settings(instance_dir=instance_dir),
        **{"stores": memory, "portal_url": PORTAL, "lifecycles": (), **changes},
    )
    app = create_app(settings)
    app.extensions["broker"].issuance.issuer = FakeIssuer()
    return app


def fresh_sso_state(app, clock: FakeClock) -> None:
    """Give the sso-api a new, empty store that runs (expiry included) on `clock`."""
    state = app.extensions["broker"]
    state.grants = GrantStore(
        MemoryStateStore(clock),
        GrantSettings.from_environment(state.settings.session_lifetime),
        state.sessions.is_live,
        clock,
        guard=lambda reference: state.guard.check(reference).identity,
    )


def sign_in(app, client, identity):
    """A portal session for `identity`, as if it had signed in through the OIDC upstream."""
    session = app.extensions["broker"].sessions.create(identity, "example-corp-oidc", LogoutHint())
    client.set_cookie("portal_session", session.id)
    return session


def register(client, **body):
    fields = {"clientName": "test-cli", "clientType": "public", "grantTypes": [DEVICE_GRANT, "refresh_token"]}
    return client.post("/client/register", json={**fields, **body})


def start(client, registration: dict):
    return client.post(
        "/device_authorization",
        json={"clientId": registration["clientId"], "clientSecret": registration["clientSecret"], "startUrl": PORTAL},
    )


def create_token(client, registration: dict, grant_type: str, **fields):
    """CreateToken (POST /token) as the registered client, with the grant's own fields."""
    body = {"clientId": registration["clientId"], "clientSecret": registration["clientSecret"], "grantType": grant_type}
    return client.post("/token", json={**body, **fields})


def poll(client, registration: dict, device_code: str):
    return create_token(client, registration, DEVICE_GRANT, deviceCode=device_code)


def refresh(client, registration: dict, refresh_token: str):
    return create_token(client, registration, "refresh_token", refreshToken=refresh_token)


def decide(client, user_code: str, decision: str = "approve"):
    """Open the verification page and press Approve or Deny (with the page's CSRF token)."""
    page = client.get(f"/device?user_code={user_code}")
    form = next(f for f in read_page(page.get_data(as_text=True)).forms if ("decision", decision) in f.buttons)
    return client.post("/device", data={**form.inputs, "decision": decision})


def device_tokens(app, client, identity) -> tuple[dict, dict]:
    """(registration, CreateToken answer) for `identity`, through the device flow."""
    sign_in(app, client, identity)
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    assert decide(client, authorization["userCode"]).status_code == 200
    answer = poll(client, registration, authorization["deviceCode"])
    assert answer.status_code == 200, answer.get_json()
    return registration, answer.get_json()


def bearer(tokens: dict) -> dict:
    return {"x-amz-sso_bearer_token": tokens["accessToken"]}


# --- against the real stack ---------------------------------------------------------------------


def clean_env(home: Path, **extra: str) -> dict:
    """The environment of a subprocess that must find its AWS setup in `home` only."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "BROKER_LOGIN_")) and name != "BROKER_URL"
    }
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def run_python(home: Path, script: str, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


BROKER_LOGIN = [sys.executable, "-m", "broker_login"]


def broker_login(
    home: Path, *args: str, input: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, but without a controlling terminal (a new session), so it can
    never stop and wait on /dev/tty."""
    return subprocess.run(
        [*BROKER_LOGIN, *args],
        check=False,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        input=input if input is not None else "",
        timeout=timeout,
        start_new_session=True,
    )


def sso_profile_config(portal_url: str, account_id: str, role: str, session: str = "broker") -> str:
    """An ~/.aws/config as `aws configure sso` writes it; the endpoints come from the environment."""
    return (
        f"[sso-session {session}]\nsso_start_url = {portal_url}\nsso_region = us-east-1\n"
        f"sso_registration_scopes = sso:account:access\n\n"
        f"[profile dev]\nsso_session = {session}\nsso_account_id = {account_id}\n"
        f"sso_role_name = {role}\nregion = us-east-1\n"
    )


def approve_in_browser(
    portal_url: str, username: str, verification_url: str, decision: str = "approve"
) -> requests.Response:
    """What a person does with the URL the CLI printed: sign in to the portal, open it, press a button."""
    http = signed_in_session(portal_url, username)
    page = http.get(verification_url)
    form = next(f for f in read_page(page.text).forms if ("decision", decision) in f.buttons)
    return http.post(urljoin(page.url, form.action), data={**form.inputs, "decision": decision})


# Fixtures of the in-process portal (a plugin of tests/conftest.py); module_app is one per test module.


@pytest.fixture(scope="module")
def module_app(tmp_path_factory):
    return portal_app(tmp_path_factory.mktemp("portal"))


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def app(module_app, clock):
    """The module's portal with a fresh sso-api state, for each test."""
    fresh_sso_state(module_app, clock)
    return module_app


@pytest.fixture
def client(app):
    return app.test_client()
