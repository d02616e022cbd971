"""The container credentials endpoint (devstack/container_credentials.py): boto3 finds the task role's
credentials given only AWS_CONTAINER_CREDENTIALS_FULL_URI and the token (in the variable or in a file);
without the token, from another address, for a role that does not trust ECS tasks: refused, with why."""

from __future__ import annotations

import json
import os

import boto3
import pytest
import requests
from botocore.exceptions import CredentialRetrievalError
from werkzeug.test import Client

from devstack.container_credentials import (
    CREDENTIALS_PATH,
    ECS_TASKS_SERVICE,
    ContainerCredentialsEndpoint,
    build_endpoint,
    token_from_file,
)
from tests.support.workload_aws import PRODUCTION, FakeClock, provisioned_emulator, served

TOKEN = "test-container-token-0123456789"
TASK_ROLE = "EmployeeWebAppTaskRole"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with provisioned_emulator(tmp_path_factory.mktemp("ecs-aws")) as running:
        yield running


def endpoint(emulator, role: str = TASK_ROLE, clock=None) -> ContainerCredentialsEndpoint:
    return build_endpoint(
        emulator.service(ECS_TASKS_SERVICE),
        PRODUCTION,
        role,
        TOKEN,
        task_id="task-0123456789abcdef",
        clock=clock or FakeClock(),
    )


@pytest.fixture
def url(emulator):
    with served(endpoint(emulator)) as base:
        yield base + CREDENTIALS_PATH


@pytest.fixture
def no_aws_setup(monkeypatch, tmp_path):
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def caller(emulator) -> str:
    sts = boto3.Session().client("sts", endpoint_url=emulator.moto.endpoint_url, region_name="us-east-1")
    return sts.get_caller_identity()["Arn"]


def test_boto3_gets_the_task_roles_credentials_with_the_full_uri_and_the_token(url, emulator, no_aws_setup):
    no_aws_setup.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    no_aws_setup.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN)
    assert boto3.Session().get_credentials().method == "container-role"
    assert caller(emulator) == f"arn:aws:sts::{PRODUCTION}:assumed-role/{TASK_ROLE}/task-0123456789abcdef"


def test_or_with_the_token_in_a_file_as_compose_gives_it(url, emulator, no_aws_setup, tmp_path):
    token_file = tmp_path / "token"
    made = token_from_file(token_file)  # the endpoint makes it when missing: random, owner-only
    assert len(made) >= 32 and token_file.stat().st_mode & 0o777 == 0o600
    assert token_from_file(token_file) == made  # and reads the same one next time
    token_file.write_text(TOKEN)
    no_aws_setup.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    no_aws_setup.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
    assert caller(emulator).endswith(f":assumed-role/{TASK_ROLE}/task-0123456789abcdef")


def test_the_json_is_what_the_sdks_parse(url):
    answer = requests.get(url, headers={"Authorization": TOKEN}, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert list(body) == ["AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn", "AccountId"]
    assert body["RoleArn"] == f"arn:aws:iam::{PRODUCTION}:role/workloads/{TASK_ROLE}"
    assert body["AccountId"] == PRODUCTION and body["Expiration"].endswith("Z")


@pytest.mark.parametrize("given", [None, "", "Bearer " + TOKEN, TOKEN + "x", TOKEN[:-1], "x" * 10_000])
def test_without_the_right_token_it_is_401(url, given):
    headers = {} if given is None else {"Authorization": given}
    answer = requests.get(url, headers=headers, timeout=10)
    assert answer.status_code == 401 and "AccessKeyId" not in answer.text
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in answer.json()["message"]


def test_boto3_without_the_token_gets_an_error_not_credentials(url, no_aws_setup, monkeypatch):
    from botocore.utils import ContainerMetadataFetcher

    monkeypatch.setattr(ContainerMetadataFetcher, "SLEEP_TIME", 0)
    no_aws_setup.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    with pytest.raises(CredentialRetrievalError, match="401"):
        boto3.Session().get_credentials()


def test_only_loopback_callers_other_paths_and_methods(emulator):
    app = endpoint(emulator)
    remote = Client(app).get(
        CREDENTIALS_PATH, headers={"Authorization": TOKEN}, environ_base={"REMOTE_ADDR": "172.18.0.5"}
    )
    assert remote.status_code == 403 and "AccessKeyId" not in remote.text
    local = Client(app)
    for address in ("127.0.0.1", "::1"):
        answer = local.get(CREDENTIALS_PATH, headers={"Authorization": TOKEN}, environ_base={"REMOTE_ADDR": address})
        assert answer.status_code == 200, address
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    assert local.get("/v2/credentials/x", headers={"Authorization": TOKEN}, environ_base=loopback).status_code == 404
    assert local.post(CREDENTIALS_PATH, headers={"Authorization": TOKEN}, environ_base=loopback).status_code == 405
    assert local.get(CREDENTIALS_PATH, headers={"Authorization": TOKEN}).status_code == 403  # no address at all


def test_a_role_that_does_not_trust_ecs_tasks_is_refused_with_the_reason(emulator, no_aws_setup, monkeypatch):
    from botocore.utils import ContainerMetadataFetcher

    with served(endpoint(emulator, role="EmployeeWebAppRole")) as base:
        answer = requests.get(base + CREDENTIALS_PATH, headers={"Authorization": TOKEN}, timeout=10)
        assert answer.status_code == 403
        refusal = answer.json()
        assert refusal["code"] == "AssumeRoleUnauthorizedAccess"
        assert "ECS cannot assume the role EmployeeWebAppRole" in refusal["message"]
        assert "it trusts Service ec2.amazonaws.com" in refusal["message"]
        # What the app's boto3 then says carries the reason.
        monkeypatch.setattr(ContainerMetadataFetcher, "SLEEP_TIME", 0)
        no_aws_setup.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", base + CREDENTIALS_PATH)
        no_aws_setup.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN)
        with pytest.raises(CredentialRetrievalError, match="does not name ecs-tasks.amazonaws.com"):
            boto3.Session().get_credentials()


def test_a_short_or_unprintable_token_is_refused_at_start(emulator):
    for bad in ("short", "x" * 20 + "\n"):
        with pytest.raises(ValueError, match="at least 16 printable"):
            ContainerCredentialsEndpoint(bad, endpoint(emulator).source, PRODUCTION)


def test_the_endpoint_never_logs_the_token_or_a_secret(url, caplog):
    caplog.set_level("INFO")
    answer = requests.get(url, headers={"Authorization": TOKEN}, timeout=10).json()
    requests.get(url, headers={"Authorization": "wrong-token-value-123"}, timeout=10)
    logged = caplog.text
    assert TOKEN not in logged and "wrong-token-value-123" not in logged
    assert answer["SecretAccessKey"] not in logged and answer["Token"] not in logged
    assert json.dumps(answer["AccessKeyId"]).strip('"') not in logged  # only a masked form of the key ID
