"""The instance metadata service (devstack/instance_metadata.py) as the SDKs and EC2's rules meet it, in
front of a real emulator (IAM enforcement on, config/access.yaml provisioned), on a clock the tests move:
boto3 and the AWS CLI find the role's credentials given only AWS_EC2_METADATA_SERVICE_ENDPOINT, new ones
after rotation without a restart; IMDSv2's refusals with its own status codes; EC2's trust, checked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError
from dateutil.tz import tzlocal

from devstack.instance_metadata import (
    EC2_SERVICE,
    MAX_TOKENS,
    InstanceMetadataService,
    SessionTokens,
    build_service,
)
from devstack.workload_credentials import CredentialsRefused, Role, RoleCredentialSource, trusted_services
from tests.support.identity_center import clean_env
from tests.support.workload_aws import PRODUCTION, FakeClock, provisioned_emulator, served

INSTANCE_ID = "i-0123456789abcdef0"
ROLE = "EmployeeWebAppRole"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SDK_FIELDS = ["Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with provisioned_emulator(tmp_path_factory.mktemp("imds-aws")) as running:
        yield running


@pytest.fixture
def clock():
    return FakeClock()


def instance(emulator, clock, profile: str = ROLE) -> InstanceMetadataService:
    return build_service(
        emulator.service(EC2_SERVICE),
        PRODUCTION,
        emulator.access.region,
        profile,
        instance_id=INSTANCE_ID,
        clock=clock,
    )


@pytest.fixture
def imds(emulator, clock):
    """The service's base URL; `imds.service` is the running service."""
    service = instance(emulator, clock)
    with served(service) as url:
        yield Imds(url, service)


class Imds(str):
    service: InstanceMetadataService

    def __new__(cls, url: str, service: InstanceMetadataService):
        made = super().__new__(cls, url)
        made.service = service
        return made


def token(url: str, ttl: str = "21600") -> str:
    answer = requests.put(f"{url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-aws-ec2-metadata-token-ttl-seconds"] == ttl
    return answer.text


def get(url: str, path: str, session_token: str | None) -> requests.Response:
    headers = {"X-aws-ec2-metadata-token": session_token} if session_token is not None else {}
    return requests.get(url + path, headers=headers, timeout=10)


@pytest.fixture
def only_the_metadata_endpoint(monkeypatch, tmp_path, imds):
    """This process's AWS setup: AWS_EC2_METADATA_SERVICE_ENDPOINT and nothing else (no keys, no ~/.aws)."""
    for name in [name for name in __import__("os").environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
    return imds


# --- what the SDKs get --------------------------------------------------------------------------------------


def test_boto3_gets_the_roles_credentials_and_new_ones_after_rotation_without_a_restart(
    only_the_metadata_endpoint, emulator, clock
):
    session = boto3.Session()  # the default chain: nothing but the endpoint variable to go on
    credentials = session.get_credentials()
    assert credentials is not None and credentials.method == "iam-role"
    # botocore decides when to refresh on its own clock: it moves with the service's here.
    credentials._time_fetcher = lambda: datetime.fromtimestamp(clock(), tzlocal())
    sts = session.client("sts", endpoint_url=emulator.moto.endpoint_url, region_name="us-east-1")
    caller = sts.get_caller_identity()
    assert caller["Arn"] == f"arn:aws:sts::{PRODUCTION}:assumed-role/{ROLE}/{INSTANCE_ID}"
    first = credentials.get_frozen_credentials().access_key

    clock.advance(599)  # 301 s left: more than five minutes, the same credentials
    assert sts.get_caller_identity()["Arn"].endswith(f"/{ROLE}/{INSTANCE_ID}")
    assert credentials.get_frozen_credentials().access_key == first

    clock.advance(2)  # 299 s left: the service rotates, and the same client picks the new ones up
    assert sts.get_caller_identity()["Arn"] == caller["Arn"]
    second = credentials.get_frozen_credentials().access_key
    assert second != first and second.startswith("ASIA")
    # They work for what the role allows (the Employees table), under enforcement.
    dynamodb = session.client("dynamodb", endpoint_url=emulator.moto.endpoint_url, region_name="us-east-1")
    assert dynamodb.get_item(TableName="Employees", Key={"username": {"S": "alice"}})["Item"]
    assert credentials.get_frozen_credentials().access_key == second  # and stay until the next rotation


def test_the_aws_cli_finds_them_too(imds, emulator, tmp_path):
    """The AWS CLI (v1, in .venv/bin), in a fresh process whose only AWS setup is the endpoint variable."""
    aws = [sys.executable, "-m", "awscli"]
    done = subprocess.run(
        [*aws, "sts", "get-caller-identity", "--endpoint-url", emulator.moto.endpoint_url, "--region", "us-east-1"],
        env=clean_env(tmp_path, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["Arn"] == f"arn:aws:sts::{PRODUCTION}:assumed-role/{ROLE}/{INSTANCE_ID}"


def test_the_credentials_json_is_exactly_what_the_sdks_parse(imds, clock):
    body = get(imds, f"/latest/meta-data/iam/security-credentials/{ROLE}", token(imds))
    assert body.status_code == 200 and body.headers["Content-Type"].startswith("text/plain")
    document = json.loads(body.text)
    assert list(document) == SDK_FIELDS
    assert document["Code"] == "Success" and document["Type"] == "AWS-HMAC"
    assert document["AccessKeyId"].startswith("ASIA") and document["SecretAccessKey"] and document["Token"]
    assert ISO.fullmatch(document["LastUpdated"]) and ISO.fullmatch(document["Expiration"])
    updated = datetime.strptime(document["LastUpdated"], "%Y-%m-%dT%H:%M:%SZ")
    expires = datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert expires - updated == timedelta(seconds=900)  # the configured session length
    assert updated == datetime.fromtimestamp(int(clock()), UTC).replace(tzinfo=None)
    # The role's name is the one entry under security-credentials/; another name is not there.
    assert get(imds, "/latest/meta-data/iam/security-credentials/", token(imds)).text == ROLE
    assert get(imds, "/latest/meta-data/iam/security-credentials/OtherRole", token(imds)).status_code == 404


def test_the_same_credentials_until_five_minutes_remain_then_new_ones(imds, clock):
    session_token = token(imds)

    def current() -> dict:
        return json.loads(get(imds, f"/latest/meta-data/iam/security-credentials/{ROLE}", session_token).text)

    first = current()
    clock.advance(600)  # exactly 300 s left: still the same
    assert current() == first
    clock.advance(1)
    second = current()
    assert second["AccessKeyId"] != first["AccessKeyId"] and second["LastUpdated"] != first["LastUpdated"]
    assert datetime.strptime(second["Expiration"], "%Y-%m-%dT%H:%M:%SZ") > datetime.strptime(
        first["Expiration"], "%Y-%m-%dT%H:%M:%SZ"
    )
    assert current() == second


def test_instance_id_iam_info_and_identity_document(imds, emulator):
    session_token = token(imds)
    assert get(imds, "/latest/meta-data/instance-id", session_token).text == INSTANCE_ID
    assert "iam/" in get(imds, "/latest/meta-data/", session_token).text.splitlines()
    assert get(imds, "/latest/meta-data/placement/region", session_token).text == "us-east-1"
    info = json.loads(get(imds, "/latest/meta-data/iam/info", session_token).text)
    assert list(info) == ["Code", "LastUpdated", "InstanceProfileArn", "InstanceProfileId"]
    assert info["Code"] == "Success" and ISO.fullmatch(info["LastUpdated"])
    profile = emulator.admin.client(PRODUCTION, "iam").get_instance_profile(InstanceProfileName=ROLE)["InstanceProfile"]
    assert (
        info["InstanceProfileArn"] == profile["Arn"] == f"arn:aws:iam::{PRODUCTION}:instance-profile/workloads/{ROLE}"
    )
    assert info["InstanceProfileId"] == profile["InstanceProfileId"]
    document = json.loads(get(imds, "/latest/dynamic/instance-identity/document", session_token).text)
    assert document["instanceId"] == INSTANCE_ID and document["accountId"] == PRODUCTION
    assert document["region"] == "us-east-1" and document["availabilityZone"] == "us-east-1a"
    assert re.fullmatch(r"ami-[0-9a-f]{17}", document["imageId"]) and ISO.fullmatch(document["pendingTime"])


# --- IMDSv2's refusals ----------------------------------------------------------------------------------------


def test_imdsv1_is_refused_every_get_needs_a_token(imds):
    for path in ("/latest/meta-data/instance-id", f"/latest/meta-data/iam/security-credentials/{ROLE}", "/latest/"):
        answer = get(imds, path, None)
        assert answer.status_code == 401 and "Access" not in answer.text, path
    for wrong in ("", "not-a-token", "x" * 5000):
        assert get(imds, "/latest/meta-data/instance-id", wrong).status_code == 401


def test_boto3_without_the_token_step_gets_nothing(only_the_metadata_endpoint, monkeypatch):
    """An SDK that cannot get a token (here: the PUT is blocked as by a hop limit) falls back to IMDSv1,
    which is refused: no credentials, instead of credentials for anyone who can send a GET."""
    from botocore.utils import IMDSFetcher

    monkeypatch.setattr(IMDSFetcher, "_fetch_metadata_token", lambda self: None)
    assert boto3.Session().get_credentials() is None


@pytest.mark.parametrize("ttl", [None, "", "0", "21601", "-1", "60.5", "abc", "1e3", "+60", "0x10", "999999"])
def test_a_missing_or_out_of_range_ttl_is_400(imds, ttl):
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    assert requests.put(f"{imds}/latest/api/token", headers=headers, timeout=5).status_code == 400


@pytest.mark.parametrize("ttl", ["1", "21600"])
def test_the_ttl_bounds_are_accepted(imds, ttl):
    assert get(imds, "/latest/meta-data/instance-id", token(imds, ttl)).status_code == 200


def test_a_token_request_through_a_proxy_is_403(imds):
    answer = requests.put(
        f"{imds}/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "203.0.113.7"},
        timeout=5,
    )
    assert answer.status_code == 403 and not answer.text.startswith(("AQ", "ey"))


def test_an_expired_token_is_401(imds, clock):
    short = token(imds, "2")
    assert get(imds, "/latest/meta-data/instance-id", short).status_code == 200
    clock.advance(1.9)
    assert get(imds, "/latest/meta-data/instance-id", short).status_code == 200
    clock.advance(0.1)
    assert get(imds, "/latest/meta-data/instance-id", short).status_code == 401


def test_wrong_methods_and_paths(imds):
    session_token = token(imds)
    headers = {"X-aws-ec2-metadata-token": session_token}
    assert requests.get(f"{imds}/latest/api/token", headers=headers, timeout=5).status_code == 405
    assert requests.post(f"{imds}/latest/meta-data/instance-id", headers=headers, timeout=5).status_code == 405
    assert requests.delete(f"{imds}/latest/api/token", timeout=5).status_code == 405
    assert get(imds, "/latest/meta-data/no-such-thing", session_token).status_code == 404
    assert get(imds, "/latest/meta-data/iam/security-credentials/a/b", session_token).status_code == 404


def test_tokens_are_kept_as_hashes_and_bounded(clock):
    tokens = SessionTokens(clock)
    first = tokens.issue(60)
    assert first not in repr(tokens.__dict__) and tokens.valid(first)
    for _ in range(MAX_TOKENS):
        tokens.issue(60)
    assert not tokens.valid(first)  # the oldest went first
    assert len(tokens._expiry) == MAX_TOKENS


# --- EC2's trust ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profile_of_a_task_role(emulator):
    """An instance profile holding EmployeeWebAppTaskRole, which trusts ECS tasks, not EC2."""
    iam = emulator.admin.client(PRODUCTION, "iam")
    iam.create_instance_profile(InstanceProfileName="MisconfiguredProfile")
    iam.add_role_to_instance_profile(InstanceProfileName="MisconfiguredProfile", RoleName="EmployeeWebAppTaskRole")
    return "MisconfiguredProfile"


def test_a_role_that_does_not_trust_ec2_is_refused_with_the_reason(
    emulator, clock, profile_of_a_task_role, monkeypatch, tmp_path
):
    service = instance(emulator, clock, profile=profile_of_a_task_role)
    with served(service) as url:
        session_token = token(url)
        answer = get(url, "/latest/meta-data/iam/security-credentials/EmployeeWebAppTaskRole", session_token)
        assert answer.status_code == 200  # as IMDS answers: a JSON Code and Message, no credentials
        refusal = json.loads(answer.text)
        assert refusal["Code"] == "AssumeRoleUnauthorizedAccess" and "AccessKeyId" not in refusal
        assert "EC2 cannot assume the role EmployeeWebAppTaskRole" in refusal["Message"]
        assert '"Service": "ec2.amazonaws.com"' in refusal["Message"]
        assert "it trusts Service ecs-tasks.amazonaws.com" in refusal["Message"]
        info = json.loads(get(url, "/latest/meta-data/iam/info", session_token).text)
        assert info["Code"] == "AssumeRoleUnauthorizedAccess" and info["InstanceProfileArn"].endswith(
            "/MisconfiguredProfile"
        )
        for name in [name for name in __import__("os").environ if name.startswith("AWS_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
        assert boto3.Session().get_credentials() is None


def test_the_emulator_itself_lets_only_the_trusted_service_assume_a_workload_role(emulator):
    """Not only the metadata service's own check: STS (the patched emulator) evaluates the service principal."""
    ec2 = emulator.service(EC2_SERVICE).client(PRODUCTION, "sts")
    ecs = emulator.service("ecs-tasks.amazonaws.com").client(PRODUCTION, "sts")
    web_app = f"arn:aws:iam::{PRODUCTION}:role/workloads/{ROLE}"
    task = f"arn:aws:iam::{PRODUCTION}:role/workloads/EmployeeWebAppTaskRole"
    assert ec2.assume_role(RoleArn=web_app, RoleSessionName=INSTANCE_ID)["Credentials"]
    assert ecs.assume_role(RoleArn=task, RoleSessionName="task-1")["Credentials"]
    for sts, arn in ((ecs, web_app), (ec2, task), (emulator.admin.client(PRODUCTION, "sts"), web_app)):
        with pytest.raises(ClientError) as refused:
            sts.assume_role(RoleArn=arn, RoleSessionName="someone")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_missing_instance_profile_is_said_plainly(emulator, clock):
    with served(instance(emulator, clock, profile="NoSuchProfile")) as url:
        session_token = token(url)
        info = json.loads(get(url, "/latest/meta-data/iam/info", session_token).text)
        assert info["Code"] == "InstanceProfileNotFound" and "broker provision" in info["Message"]
        assert get(url, "/latest/meta-data/iam/security-credentials/", session_token).status_code == 404
        assert get(url, "/latest/meta-data/instance-id", session_token).text == INSTANCE_ID  # the rest still works


# --- rotation and STS failures, without an emulator ------------------------------------------------------------


class StubService:
    """An AWS service whose STS answers as told."""

    service = EC2_SERVICE
    account_id = PRODUCTION

    def __init__(self):
        self.failing = False
        self.issued = 0

    def sts(self):
        return self

    def assume_role(self, RoleArn, RoleSessionName, DurationSeconds):  # noqa: N803 - boto3's names
        if self.failing:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        self.issued += 1
        return {
            "Credentials": {
                "AccessKeyId": f"ASIASTUB{self.issued:012d}",
                "SecretAccessKey": "stub-secret",
                "SessionToken": "stub-token",
                "Expiration": datetime.now(UTC) + timedelta(seconds=DurationSeconds),
            }
        }


EC2_TRUST = {"Statement": [{"Effect": "Allow", "Principal": {"Service": EC2_SERVICE}, "Action": "sts:AssumeRole"}]}


def stub_source(clock, trust=EC2_TRUST):
    stub = StubService()
    role = Role("AppRole", "arn:aws:iam::222222222222:role/AppRole", trust)
    return stub, RoleCredentialSource(stub, lambda: role, INSTANCE_ID, clock=clock, service_label="EC2")


def test_while_sts_is_down_the_current_credentials_are_served_until_they_expire(clock):
    stub, source = stub_source(clock)
    first = source.credentials()
    stub.failing = True
    clock.advance(700)  # due for rotation, STS down: the current ones, still valid for 200 s
    assert source.credentials() == first
    clock.advance(200)  # expired: nothing to serve, and it says why (and that it may pass)
    with pytest.raises(CredentialsRefused) as refused:
        source.credentials()
    assert refused.value.transient and refused.value.code == "ServiceUnavailable"
    stub.failing = False
    assert source.credentials().access_key_id != first.access_key_id


def test_the_service_answers_503_with_json_when_it_has_nothing_to_serve(clock):
    from werkzeug.test import Client

    from devstack.instance_metadata import InstanceIdentity, InstanceProfile

    stub, source = stub_source(clock)
    stub.failing = True

    class Lookup:
        def profile(self):
            return InstanceProfile("AppRole", "arn:aws:iam::222222222222:instance-profile/AppRole", "AIPA1", None)

    service = InstanceMetadataService(InstanceIdentity(INSTANCE_ID, PRODUCTION, "us-east-1"), Lookup(), source, clock)
    service._role_name = lambda: "AppRole"  # type: ignore[method-assign]
    client = Client(service)
    session_token = client.put("/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
    answer = client.get(
        "/latest/meta-data/iam/security-credentials/AppRole", headers={"X-aws-ec2-metadata-token": session_token}
    )
    assert answer.status_code == 503 and json.loads(answer.text)["Code"] == "ServiceUnavailable"


@pytest.mark.parametrize(
    ("trust", "services"),
    [
        (EC2_TRUST, [EC2_SERVICE]),
        (
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"Service": [EC2_SERVICE, "x.amazonaws.com"]},
                    "Action": ["sts:AssumeRole"],
                }
            },
            [EC2_SERVICE, "x.amazonaws.com"],
        ),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": EC2_SERVICE}, "Action": "sts:AssumeRoleWithSAML"}
                ]
            },
            [],
        ),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sts:AssumeRole"}
                ]
            },
            [],
        ),
        (
            {
                "Statement": [
                    EC2_TRUST["Statement"][0],
                    {"Effect": "Deny", "Principal": {"Service": EC2_SERVICE}, "Action": "sts:*"},
                ]
            },
            [],
        ),
        ({}, []),
    ],
)
def test_which_services_a_trust_policy_names(trust, services):
    assert trusted_services(trust) == services


def test_the_refusal_names_what_the_role_trusts_instead(clock):
    saml_trust = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::1:saml-provider/X"},
                "Action": "sts:AssumeRoleWithSAML",
            }
        ]
    }
    _, source = stub_source(clock, saml_trust)
    with pytest.raises(CredentialsRefused) as refused:
        source.credentials()
    assert refused.value.code == "AssumeRoleUnauthorizedAccess" and not refused.value.transient
    assert "it trusts Federated arn:aws:iam::1:saml-provider/X" in refused.value.message


def test_the_app_without_its_metadata_service_says_so_then_recovers_when_it_is_back(
    emulator, clock, monkeypatch, tmp_path
):
    """The Employee Directory on this instance: a clear 503 page while the service is down, its pages again
    once the service answers, without a restart of the app."""
    from devstack.processes import free_port
    from employee_directory.app import create_app
    from employee_directory.settings import load_settings
    from tests.employee_directory.conftest import sign_in

    port = free_port()
    for name in [name for name in __import__("os").environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IDP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_URL", emulator.moto.endpoint_url)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}")
    client = create_app(load_settings(instance_dir=tmp_path / "app")).test_client()
    sign_in(client)
    down = client.get("/")
    assert down.status_code == 503 and f"the instance metadata service at http://127.0.0.1:{port}" in down.text
    with served(instance(emulator, clock), port):
        assert "Alice Anderson" in client.get("/").text
        status = client.get("/status").text
        assert f"assumed-role/EmployeeWebAppRole/{INSTANCE_ID}" in status and INSTANCE_ID in status


# --- /explain: the workload path, for the portal's "How did I get here?" ---------------------------------


def test_explain_tells_the_workload_path_with_fingerprints_only(imds, clock):
    credentials_path = f"/latest/meta-data/iam/security-credentials/{ROLE}"
    app_token = token(imds)  # as an SDK does: a session token, then the role's credentials with it
    first = get(imds, credentials_path, app_token).json()
    clock.advance(601)  # 299 s left: the next request gets new credentials
    second = get(imds, credentials_path, app_token).json()
    assert first["AccessKeyId"] != second["AccessKeyId"]
    told = get(imds, "/explain", token(imds, "60")).json()
    assert told["instance_id"] == INSTANCE_ID and told["role"]["name"] == ROLE
    assert EC2_SERVICE in trusted_services(told["role"]["trust_policy"])
    assert [check["outcome"] for check in told["trust_checks"]] == ["passed", "passed"]  # one per AssumeRole
    assert [issued["kind"] for issued in told["credentials"]] == ["first", "rotated"]
    assert [issued["access_key"] for issued in told["credentials"]] == [
        f"…{first['AccessKeyId'][-4:]}",
        f"…{second['AccessKeyId'][-4:]}",
    ]
    [used] = [entry for entry in told["tokens"] if entry["credential_fetches"]]
    assert used["credential_fetches"] == 2 and used["ttl_seconds"] == 21600
    assert used["fingerprint"].endswith(f"(…{app_token[-4:]}, {len(app_token)} characters)")
    text = json.dumps(told)
    for secret in (app_token, first["AccessKeyId"], first["SecretAccessKey"], first["Token"], second["Token"]):
        assert secret not in text
    assert get(imds, "/explain", None).status_code == 401  # like every other GET: IMDSv2's token first


def test_explain_records_the_trust_check_ec2_failed(emulator, clock, profile_of_a_task_role):
    service = instance(emulator, clock, profile=profile_of_a_task_role)
    with served(service) as url:
        session_token = token(url)
        get(url, "/latest/meta-data/iam/security-credentials/EmployeeWebAppTaskRole", session_token)
        told = get(url, "/explain", session_token).json()
    [check] = told["trust_checks"]
    assert check["outcome"] == "failed" and check["trusted_services"] == ["ecs-tasks.amazonaws.com"]
    assert check["service"] == EC2_SERVICE and told["credentials"] == []
