"""Unmodified boto3 against the real stack: an sso-session profile pointing at the portal (through
AWS_ENDPOINT_URL_SSO and AWS_ENDPOINT_URL_SSO_OIDC) gets role credentials from the broker and uses
them on the AWS emulator; an expired cached token is refreshed; after Logout the token is dead.

boto3 runs in a subprocess whose HOME is a temporary folder: botocore fixes the ~/.aws/sso/cache path
when it is imported."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config

from broker_login.forms import read_page
from tests.support.identity_center import PRODUCTION, approve_in_browser, run_python, sso_profile_config
from tests.support.portal import follow, signed_in_session

BOTO3_SCRIPT = """
import hashlib, json, os, sys
import boto3
from botocore.exceptions import ClientError, UnauthorizedSSOTokenError

aws = os.environ["TEST_AWS_URL"]
cache = os.path.expanduser("~/.aws/sso/cache/" + hashlib.sha1(b"broker").hexdigest() + ".json")
out = {}

def caller():
    return boto3.Session(profile_name="dev").client("sts", endpoint_url=aws).get_caller_identity()["Arn"]

out["arn"] = caller()
s3 = boto3.Session(profile_name="dev").client("s3", endpoint_url=aws)
bucket = "employee-directory-photos-222222222222"
out["photo"] = s3.get_object(Bucket=bucket, Key="photos/bob.svg")["Body"].read(5).decode()
try:
    s3.put_object(Bucket=bucket, Key="photos/mallory.svg", Body=b"x")
    out["write"] = "allowed"
except ClientError as error:
    out["write"] = error.response["Error"]["Code"]

token = json.load(open(cache))
token["expiresAt"] = "2020-01-01T00:00:00Z"
json.dump(token, open(cache, "w"))
out["arn_after_refresh"] = caller()
refreshed = json.load(open(cache))
out["refreshed"] = (refreshed["accessToken"] != token["accessToken"]
                    and refreshed["refreshToken"] != token["refreshToken"] and refreshed["expiresAt"] > "2026")

boto3.Session(profile_name="dev").client("sso").logout(accessToken=refreshed["accessToken"])
try:
    caller()
    out["after_logout"] = "still works"
except UnauthorizedSSOTokenError as error:
    out["after_logout"] = type(error).__name__
print(json.dumps(out))
"""


def wait_out_the_interval(authorization: dict, since: float) -> None:
    """What a device-flow client owes the server (RFC 8628 §3.5): `interval` seconds between its
    requests; only what the approval in between has not already taken."""
    time.sleep(max(0.0, since + authorization["interval"] - time.monotonic()))


def device_sign_in(portal_url: str, username: str) -> dict:
    """What `aws sso login` does, with the person's browser played by a scripted HTTP client."""
    oidc = boto3.client(
        "sso-oidc", endpoint_url=portal_url, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
    )
    registration = oidc.register_client(
        clientName="botocore-client-test",
        clientType="public",
        scopes=["sso:account:access"],
        grantTypes=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
    )
    authorization = oidc.start_device_authorization(
        clientId=registration["clientId"], clientSecret=registration["clientSecret"], startUrl=portal_url
    )
    with pytest.raises(oidc.exceptions.AuthorizationPendingException):
        oidc.create_token(
            clientId=registration["clientId"],
            clientSecret=registration["clientSecret"],
            grantType="urn:ietf:params:oauth:grant-type:device_code",
            deviceCode=authorization["deviceCode"],
        )
    polled = time.monotonic()
    approved = approve_in_browser(portal_url, username, authorization["verificationUriComplete"])
    assert "Request approved" in approved.text
    wait_out_the_interval(authorization, polled)
    token = oidc.create_token(
        clientId=registration["clientId"],
        clientSecret=registration["clientSecret"],
        grantType="urn:ietf:params:oauth:grant-type:device_code",
        deviceCode=authorization["deviceCode"],
    )
    now = datetime.now(UTC)
    return {
        "startUrl": portal_url,
        "region": "us-east-1",
        "accessToken": token["accessToken"],
        "expiresAt": (now + timedelta(seconds=token["expiresIn"])).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "refreshToken": token["refreshToken"],
        "clientId": registration["clientId"],
        "clientSecret": registration["clientSecret"],
        "registrationExpiresAt": datetime.fromtimestamp(registration["clientSecretExpiresAt"], UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
    }


def test_unmodified_boto3_uses_the_broker_refreshes_and_is_logged_out(stack, tmp_path):
    portal = stack.addresses["PORTAL_URL"]
    aws_dir = tmp_path / ".aws"
    (aws_dir / "sso" / "cache").mkdir(parents=True)
    (aws_dir / "config").write_text(sso_profile_config(portal, PRODUCTION, "EmployeeDirectoryReadOnly"))
    cache = aws_dir / "sso" / "cache" / (hashlib.sha1(b"broker").hexdigest() + ".json")
    cache.write_text(json.dumps(device_sign_in(portal, "bob")))

    run = run_python(
        tmp_path,
        BOTO3_SCRIPT,
        TEST_AWS_URL=stack.addresses["AWS_URL"],
        AWS_ENDPOINT_URL_SSO=portal,
        AWS_ENDPOINT_URL_SSO_OIDC=portal,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert f"arn:aws:sts::{PRODUCTION}:assumed-role/AWSReservedSSO_EmployeeDirectoryReadOnly_" in out["arn"]
    assert out["arn"].endswith("/bob@example.com") and out["arn_after_refresh"] == out["arn"]
    assert out["photo"] == "<?xml" and out["write"] == "AccessDenied"
    assert out["refreshed"] is True
    assert out["after_logout"] == "UnauthorizedSSOTokenError"


def test_portal_sign_out_ends_the_cli_sign_in_approved_from_that_browser(stack):
    """The review's repro: approve a device code in bob's browser, sign out of the portal there; the
    CLI's access token and refresh token stop working."""
    portal = stack.addresses["PORTAL_URL"]
    unsigned = Config(signature_version=UNSIGNED)
    oidc = boto3.client("sso-oidc", endpoint_url=portal, region_name="us-east-1", config=unsigned)
    sso = boto3.client("sso", endpoint_url=portal, region_name="us-east-1", config=unsigned)
    registration = oidc.register_client(
        clientName="botocore-client-test",
        clientType="public",
        grantTypes=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
    )
    client = {"clientId": registration["clientId"], "clientSecret": registration["clientSecret"]}
    authorization = oidc.start_device_authorization(**client, startUrl=portal)
    started = time.monotonic()
    browser = signed_in_session(portal, "bob")
    page = browser.get(authorization["verificationUriComplete"])
    form = next(f for f in read_page(page.text).forms if ("decision", "approve") in f.buttons)
    assert (
        "Request approved"
        in browser.post(urljoin(page.url, form.action), data={**form.inputs, "decision": "approve"}).text
    )
    wait_out_the_interval(authorization, started)
    token = oidc.create_token(
        **client, grantType="urn:ietf:params:oauth:grant-type:device_code", deviceCode=authorization["deviceCode"]
    )
    role = {"accountId": PRODUCTION, "roleName": "EmployeeDirectoryReadOnly"}
    assert sso.get_role_credentials(accessToken=token["accessToken"], **role)["roleCredentials"]["accessKeyId"]

    home = browser.get(portal + "/")
    sign_out = next(f for f in read_page(home.text).forms if f.action == "/logout")
    signed_out = follow(browser, browser.post(portal + "/logout", data=sign_out.inputs, allow_redirects=False))
    assert signed_out.url == portal + "/signed-out" and "command-line sign-ins" in signed_out.text.lower()

    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.get_role_credentials(accessToken=token["accessToken"], **role)
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(**client, grantType="refresh_token", refreshToken=token["refreshToken"])


@pytest.mark.parametrize("path", ["/token", "/client/register"])
def test_oversized_and_malformed_bodies_through_the_real_server(stack, path):
    portal = stack.addresses["PORTAL_URL"]
    for body in (b"{" * 10, b'{"clientName": "' + b"x" * 400_000 + b'"}'):
        answer = requests.post(portal + path, data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, answer.text[:300]
        assert answer.headers["x-amzn-ErrorType"] == "InvalidRequestException"
        assert answer.json()["__type"] == "InvalidRequestException"
