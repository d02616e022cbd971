"""The identity lifecycle end to end, on the real stack (IdP, portal, AWS emulator with IAM enforcement, granian
with two workers each): a person added at the IdP at run time is pushed to the portal over SCIM, signs in, holds
a portal session, an sso API sign-in (device flow, as the AWS CLI), a `credential_process` profile and STS
credentials; disabled at the IdP, within 2 s every one of them fails with a clear message, and the credentials
issued before are denied at the emulator. Each test adds its own person, so the shared stack's others are
untouched. Polls run every 20 ms against a 2 s deadline (the target), never a fixed sleep."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from tests.support.identity_center import PRODUCTION, broker_login
from tests.support.portal import credentials_from_page, request_credentials, signed_in_session

ADMIN = {"Authorization": "Bearer demo-directory-admin-token"}
PASSWORD = "Lifecycle-Password-2026"
DEADLINE = 2.0  # seconds from the change at the IdP to its enforcement everywhere
READ_ONLY = ["--account-id", PRODUCTION, "--role", "EmployeeDirectoryReadOnly"]
BUCKET = f"employee-directory-photos-{PRODUCTION}"


def within(deadline: float, check, every: float = 0.02, why=None):
    """Poll `check` until it returns something true, or fail after `deadline` seconds; (value, seconds). The
    failure adds what `why()` says then (what the pusher and the portal were doing)."""
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > deadline:
            pytest.fail(f"not within {deadline} s: {check.__name__}" + (f"; {why()}" if why else ""))
        time.sleep(every)


def push_status(stack) -> str:
    """The IdP's SCIM push as its admin API reports it: each target's pending changes and last error."""
    answer = requests.get(f"{stack.addresses['IDP_URL']}/admin/directory/sync", headers=ADMIN, timeout=10)
    return f"the IdP's SCIM push: {answer.text[:1500]}"


def idp_change(stack, method: str, path: str, **body) -> None:
    answer = requests.request(
        method, f"{stack.addresses['IDP_URL']}/admin/directory{path}", json=body or None, headers=ADMIN, timeout=10
    )
    assert answer.status_code == 202, answer.text


def new_person(stack, groups=("engineering",)) -> str:
    """A person added at the IdP now, and pushed to the portal (both upstreams) before this returns."""
    name = f"life{secrets.token_hex(3)}"
    idp_change(
        stack,
        "POST",
        "/users",
        username=name,
        email=f"{name}@example.com",
        name=f"Life {name}",
        password=PASSWORD,
        groups=list(groups),
    )

    def pushed():
        status = requests.get(f"{stack.addresses['IDP_URL']}/admin/directory/sync", headers=ADMIN, timeout=10).json()
        return all(target["pending_changes"] == 0 for target in status["targets"])

    within(5.0, pushed)
    return name


def sign_in(stack, name: str) -> requests.Session:
    from tests.support.portal import portal_login

    http = requests.Session()
    page = portal_login(stack.addresses["PORTAL_URL"], name, password=PASSWORD, http=http)
    assert page.status_code == 200 and "AWS accounts" in page.text, page.text[:1000]
    return http


def s3_with(stack, credentials: dict):
    return boto3.client("s3", endpoint_url=stack.addresses["AWS_URL"], region_name="us-east-1", **credentials)


def denied(s3) -> bool:
    try:
        s3.list_objects_v2(Bucket=BUCKET, MaxKeys=1)
    except ClientError as error:
        return error.response["Error"]["Code"] == "AccessDenied"
    return False


def sso_cache(home: Path) -> dict:
    [cached] = [
        json.loads(path.read_text())
        for path in (home / ".aws" / "sso" / "cache").glob("*.json")
        if "accessToken" in path.read_text()
    ]
    return cached


def test_disabled_at_the_idp_everything_fails_within_two_seconds(stack, tmp_path):
    portal = stack.addresses["PORTAL_URL"]
    name = new_person(stack)
    browser = sign_in(stack, name)
    configured = broker_login(
        tmp_path,
        "--portal-url",
        portal,
        "--non-interactive",
        "configure",
        "--use-credential-process",
        BROKER_LOGIN_USERNAME=name,
        BROKER_LOGIN_PASSWORD=PASSWORD,
    )
    assert configured.returncode == 0, configured.stderr
    first = broker_login(tmp_path, "--portal-url", portal, "credential-process", *READ_ONLY)
    assert first.returncode == 0, first.stderr
    token = sso_cache(tmp_path)
    issued = credentials_from_page(request_credentials(browser, portal, PRODUCTION, "EmployeeDirectoryReadOnly").text)
    s3 = s3_with(stack, issued)
    assert not denied(s3)
    for cache in (tmp_path / ".aws" / "broker-login" / "cache" / "credentials").rglob("*.json"):
        cache.unlink()  # the next credential_process must ask the portal again: a refresh

    refreshes: list = []  # the credential_process refresh, started with the change: its Python start-up included
    started = time.monotonic()
    idp_change(stack, "POST", f"/users/{name}/disable")
    process = threading.Thread(
        target=lambda: refreshes.append(
            (
                broker_login(tmp_path, "--portal-url", portal, "credential-process", *READ_ONLY, timeout=30),
                time.monotonic() - started,
            )
        )
    )
    process.start()

    def portal_session_ended():
        page = browser.get(f"{portal}/", allow_redirects=False)
        return page.status_code == 401 and "your access has been disabled" in page.text

    def cli_token_refused():
        answer = requests.get(
            f"{portal}/federation/credentials",
            params={"account_id": PRODUCTION, "role_name": "EmployeeDirectoryReadOnly"},
            headers={"x-amz-sso_bearer_token": token["accessToken"]},
            timeout=5,
        )
        body = answer.json()
        return answer.status_code == 401 and body["__type"] == "UnauthorizedException" and "disabled" in body["message"]

    def refresh_refused():
        answer = requests.post(
            f"{portal}/token",
            json={
                "clientId": token["clientId"],
                "clientSecret": token["clientSecret"],
                "grantType": "refresh_token",
                "refreshToken": token["refreshToken"],
            },
            timeout=5,
        )
        return answer.status_code == 400 and "disabled" in answer.json()["message"]

    def old_credentials_denied():
        return denied(s3)

    enforced = {}
    for probe in (portal_session_ended, cli_token_refused, refresh_refused, old_credentials_denied):
        within(DEADLINE, probe, why=lambda: push_status(stack))
        enforced[probe.__name__] = time.monotonic() - started  # since the change, not since the probe began
    assert max(enforced.values()) <= DEADLINE, enforced
    process.join(30)
    [(refreshed, seconds)] = refreshes
    assert refreshed.returncode == 1 and refreshed.stdout == "", refreshed.stderr
    assert "disabled" in refreshed.stderr and "Sign in again" in refreshed.stderr
    assert seconds <= DEADLINE + 3  # refused by the portal; ~1 s of the process's own start-up on top


def test_a_group_removed_at_the_idp_takes_the_role_away_and_an_added_one_brings_its_roles(stack):
    portal = stack.addresses["PORTAL_URL"]
    name = new_person(stack)
    browser = sign_in(stack, name)
    assert request_credentials(browser, portal, PRODUCTION, "EmployeeDirectoryReadOnly").status_code == 200
    idp_change(stack, "DELETE", f"/groups/engineering/members/{name}")

    def role_gone():
        return request_credentials(browser, portal, PRODUCTION, "EmployeeDirectoryReadOnly").status_code == 403

    within(DEADLINE, role_gone, why=lambda: push_status(stack))
    idp_change(stack, "PUT", f"/groups/aws-admins/members/{name}")

    def role_added():
        return "AdministratorAccess" in browser.get(f"{portal}/").text

    within(DEADLINE, role_added, why=lambda: push_status(stack))
    assert request_credentials(browser, portal, PRODUCTION, "AdministratorAccess").status_code == 200


def test_signing_out_at_the_idp_ends_the_portal_session_back_channel(stack):
    """OpenID Connect Back-Channel Logout: the IdP posts a logout token to the portal, which ends the session."""
    from tests.support.idp_client import form_fields

    portal, idp = stack.addresses["PORTAL_URL"], stack.addresses["IDP_URL"]
    name = new_person(stack)
    browser = sign_in(stack, name)  # through OIDC: the IdP session has the portal as a participant
    signout = browser.get(f"{idp}/logout")
    browser.post(f"{idp}/logout", data=form_fields(signout.text), allow_redirects=False)

    def ended():
        page = browser.get(f"{portal}/", allow_redirects=False)
        return page.status_code == 401 and "signed out at your identity provider" in page.text

    within(DEADLINE, ended, why=lambda: push_status(stack))


def test_a_deleted_person_cannot_sign_in_again(stack):
    portal = stack.addresses["PORTAL_URL"]
    name = new_person(stack)
    browser = sign_in(stack, name)
    idp_change(stack, "DELETE", f"/users/{name}")

    last = []

    def removed():
        page = browser.get(f"{portal}/", allow_redirects=False)
        last[:] = [page.status_code, re.sub(r"\s+", " ", page.text)[:300]]
        return page.status_code == 401 and "removed you" in page.text

    within(DEADLINE, removed, why=lambda: f"{push_status(stack)}; the portal's last answer: {last}")
    with pytest.raises(AssertionError):
        signed_in_session(portal, name)
