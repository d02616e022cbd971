"""Roles for workloads (`workloads:` of config/access.yaml, broker/core/workloads.py): declared, validated
(least privilege is a rule of the file, not a hope), provisioned idempotently with their instance profile,
and, under the emulator's IAM enforcement, allowing the Employee Directory exactly what it needs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from broker.aws.accounts import AccountSessions
from broker.aws.assertion import idp_metadata_xml
from broker.aws.provisioning import MANAGED_BY_TAG, WORKLOAD_POLICY_NAME, provision
from broker.core.access import load_access
from broker.core.workloads import WORKLOAD_ROLE_PATH
from devstack.aws_emulator import MotoServer, service_principal_session
from sso_common.config import ConfigError
from tests.broker.conftest import ACCESS_FILE, BROKER_ENTITY_ID

SANDBOX, PRODUCTION = "111111111111", "222222222222"
BUCKET = f"employee-directory-photos-{PRODUCTION}"


# --- the declaration --------------------------------------------------------------------------------------------


def test_the_shipped_workloads(access):
    web_app, task = access.workloads
    assert (web_app.name, web_app.trusted_service, web_app.instance_profile) == (
        "EmployeeWebAppRole",
        "ec2.amazonaws.com",
        "EmployeeWebAppRole",
    )
    assert (task.name, task.trusted_service, task.instance_profile) == (
        "EmployeeWebAppTaskRole",
        "ecs-tasks.amazonaws.com",
        None,
    )
    assert web_app.account_ids == task.account_ids == (SANDBOX, PRODUCTION)  # every account by default
    assert web_app.trust_policy() == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    policy = web_app.inline_policy(PRODUCTION, "us-east-1")
    actions = {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _listed(s["Action"])}
    assert actions == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    }
    put = next(s for s in policy["Statement"] if s["Action"] == "s3:PutObject")
    assert put["Resource"] == f"arn:aws:s3:::{BUCKET}/uploads/*"


def _listed(value):
    return value if isinstance(value, list) else [value]


def shipped() -> dict:
    return yaml.safe_load(ACCESS_FILE.read_text())


def load_changed(tmp_path: Path, change) -> None:
    data = copy.deepcopy(shipped())
    change(data)
    path = tmp_path / "access.yaml"
    path.write_text(yaml.safe_dump(data))
    load_access(path)


def policy_with(statement: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def set_policy(statement: dict):
    return lambda data: data["workloads"][0].__setitem__("inline_policy", policy_with(statement))


BUCKET_OBJECTS = "arn:aws:s3:::b/*"


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (
            set_policy({"Effect": "Allow", "Action": "s3:*", "Resource": BUCKET_OBJECTS}),
            "workloads[0].inline_policy",
            "'s3:*' is not one action",
        ),
        (
            set_policy({"Effect": "Allow", "Action": ["s3:GetObject", "s3:Get*"], "Resource": BUCKET_OBJECTS}),
            "workloads[0].inline_policy",
            "'s3:Get*' is not one action",
        ),
        (
            set_policy({"Effect": "Allow", "Action": "*", "Resource": "*"}),
            "workloads[0].inline_policy",
            "'*' is not one action",
        ),
        (
            set_policy({"Effect": "Allow", "NotAction": "iam:CreateUser", "Resource": "*"}),
            "workloads[0].inline_policy",
            "NotAction grants every other action",
        ),
        (
            set_policy({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::x/*"}),
            "workloads[0].inline_policy",
            "NotResource grants every other resource",
        ),
        (
            set_policy({"Effect": "Allow", "Action": "dynamodb:Scan", "Resource": "*"}),
            "workloads[0].inline_policy",
            'allows dynamodb:Scan on every resource ("*")',
        ),
        (
            set_policy({"Effect": "Allow", "Action": "s3:GetObject"}),
            "workloads[0].inline_policy",
            'exactly one of "Resource" or "NotResource"',
        ),
        (
            lambda d: d["workloads"][0].__setitem__("trusted_service", "lambda.amazonaws.com"),
            "workloads[0].trusted_service",
            "not a service this project can run workloads on",
        ),
        (lambda d: d["workloads"][0].__setitem__("role", "AWSReservedSSO_Mine"), "workloads[0].role", "is reserved"),
        (
            lambda d: d["workloads"][0].__setitem__("role", "OrganizationAccountAccessRole"),
            "workloads[0].role",
            "is reserved",
        ),
        (lambda d: d["workloads"][1].__setitem__("role", "EmployeeWebAppRole"), "workloads[1].role", "declared twice"),
        (lambda d: d["workloads"][0].__setitem__("role", "has space"), "workloads[0].role", "not an IAM role name"),
        (
            lambda d: d["workloads"][0].__setitem__("accounts", ["example-staging"]),
            "workloads[0].accounts[0]",
            "unknown account 'example-staging' (known: example-sandbox, example-production)",
        ),
        (lambda d: d["workloads"][0].__setitem__("accounts", []), "workloads[0].accounts", "at least one account"),
        (
            lambda d: d["workloads"][0].__setitem__("max_session_duration", "PT13H"),
            "workloads[0].max_session_duration",
            "out of range",
        ),
        (lambda d: d["workloads"][0].pop("description"), "workloads[0].description", "is required"),
        (
            lambda d: d["workloads"][0].__setitem__(
                "managed_policies", ["arn:aws:iam::aws:policy/AdministratorAccess"]
            ),
            "workloads[0].managed_policies",
            "unknown key",
        ),
    ],
)
def test_a_workload_mistake_names_the_file_the_key_and_the_problem(tmp_path, change, key, problem):
    with pytest.raises(ConfigError) as error:
        load_changed(tmp_path, change)
    assert error.value.key == key and problem in error.value.problem, str(error.value)


def test_an_allow_on_every_resource_behind_a_deny_fence_is_accepted(tmp_path):
    fenced = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:Scan"], "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": ["dynamodb:Scan"],
                "NotResource": ["arn:aws:dynamodb:{region}:{account_id}:table/T"],
            },
        ],
    }
    load_changed(tmp_path, lambda d: d["workloads"][0].__setitem__("inline_policy", json.dumps(fenced)))
    load_changed(tmp_path, lambda d: d["workloads"][0].__setitem__("accounts", ["222222222222"]))
    load_changed(tmp_path, lambda d: d.pop("workloads"))


# --- provisioning, against the emulator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, access, signing_identity):
    metadata = idp_metadata_xml(BROKER_ENTITY_ID, signing_identity, "https://broker.example.test/saml/sso")
    with MotoServer(tmp_path_factory.mktemp("workloads-moto")) as moto:
        management = moto.create_organization(list(access.accounts))
        moto.set_enforcement(True)
        sessions = AccountSessions(management, access.region, endpoint_url=moto.endpoint_url)
        first = provision(access, metadata, sessions.client)
        yield moto, management, sessions, metadata, first


def test_provisioning_creates_each_workload_role_with_its_trust_policy_and_instance_profile(emulator, access):
    _, _, sessions, metadata, first = emulator
    created = {str(change) for change in first}
    for account in (SANDBOX, PRODUCTION):
        assert f"{account}: created workload role EmployeeWebAppRole (trusts ec2.amazonaws.com)" in created
        assert f"{account}: created workload role EmployeeWebAppTaskRole (trusts ecs-tasks.amazonaws.com)" in created
        assert f"{account}: created instance profile EmployeeWebAppRole" in created
        iam = sessions.client(account, "iam")
        role = iam.get_role(RoleName="EmployeeWebAppRole")["Role"]
        assert role["Path"] == WORKLOAD_ROLE_PATH and role["MaxSessionDuration"] == 3600
        assert role["AssumeRolePolicyDocument"] == access.workloads[0].trust_policy()
        assert {"Key": MANAGED_BY_TAG, "Value": access.identity_provider_name} in iam.list_role_tags(
            RoleName="EmployeeWebAppRole"
        )["Tags"]
        assert iam.list_role_policies(RoleName="EmployeeWebAppRole")["PolicyNames"] == [WORKLOAD_POLICY_NAME]
        assert iam.get_role_policy(RoleName="EmployeeWebAppRole", PolicyName=WORKLOAD_POLICY_NAME)[
            "PolicyDocument"
        ] == access.workloads[0].inline_policy(account, access.region)
        assert iam.list_attached_role_policies(RoleName="EmployeeWebAppRole")["AttachedPolicies"] == []
        profile = iam.get_instance_profile(InstanceProfileName="EmployeeWebAppRole")["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == ["EmployeeWebAppRole"]
        assert iam.list_instance_profiles_for_role(RoleName="EmployeeWebAppTaskRole")["InstanceProfiles"] == []
    assert provision(access, metadata, sessions.client) == []


def test_drift_is_put_back(emulator, access):
    _, _, sessions, metadata, _ = emulator
    iam = sessions.client(SANDBOX, "iam")
    iam.attach_role_policy(RoleName="EmployeeWebAppRole", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.put_role_policy(
        RoleName="EmployeeWebAppRole",
        PolicyName="Extra",
        PolicyDocument=policy_with({"Effect": "Allow", "Action": "s3:DeleteBucket", "Resource": "*"}),
    )
    iam.update_assume_role_policy(
        RoleName="EmployeeWebAppRole",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{SANDBOX}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    iam.remove_role_from_instance_profile(InstanceProfileName="EmployeeWebAppRole", RoleName="EmployeeWebAppRole")
    changes = {str(change) for change in provision(access, metadata, sessions.client)}
    assert changes == {
        f"{SANDBOX}: updated workload role EmployeeWebAppRole trust policy",
        f"{SANDBOX}: detached arn:aws:iam::aws:policy/AdministratorAccess from workload role EmployeeWebAppRole",
        f"{SANDBOX}: deleted inline policy Extra of workload role EmployeeWebAppRole",
        f"{SANDBOX}: added role EmployeeWebAppRole to instance profile EmployeeWebAppRole",
    }
    assert provision(access, metadata, sessions.client) == []


def test_an_undeclared_workload_goes_with_its_instance_profile_and_a_foreign_role_is_never_taken(emulator, access):
    import dataclasses

    _, _, sessions, metadata, _ = emulator
    only_tasks = dataclasses.replace(access, workloads=access.workloads[1:])
    changes = {str(change) for change in provision(only_tasks, metadata, sessions.client)}
    assert changes == {
        f"{account}: deleted {what}"
        for account in (SANDBOX, PRODUCTION)
        for what in ("instance profile EmployeeWebAppRole", "workload role EmployeeWebAppRole")
    }
    iam = sessions.client(SANDBOX, "iam")
    # Someone else's role of the same name, outside the workloads path: provisioning stops and says so.
    iam.create_role(
        RoleName="EmployeeWebAppRole", AssumeRolePolicyDocument=json.dumps(access.workloads[0].trust_policy())
    )
    with pytest.raises(ClientError) as conflict:
        provision(access, metadata, sessions.client)
    assert conflict.value.response["Error"]["Code"] == "EntityAlreadyExists"
    assert "a role named EmployeeWebAppRole exists that this broker did not create" in str(conflict.value)
    iam.delete_role(RoleName="EmployeeWebAppRole")
    assert provision(access, metadata, sessions.client)  # recreated
    assert provision(access, metadata, sessions.client) == []


# --- what the role allows, under enforcement -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def as_the_web_app(emulator, access):
    """Clients acting as EmployeeWebAppRole, assumed by the EC2 stand-in as an instance does."""
    moto, management, sessions, _, _ = emulator
    ec2 = AccountSessions(
        management, access.region, moto.endpoint_url, session_name=service_principal_session("ec2.amazonaws.com")
    )
    issued = ec2.client(PRODUCTION, "sts").assume_role(
        RoleArn=access.workloads[0].arn(PRODUCTION), RoleSessionName="i-0123456789abcdef0", DurationSeconds=900
    )["Credentials"]
    session = boto3.Session(
        aws_access_key_id=issued["AccessKeyId"],
        aws_secret_access_key=issued["SecretAccessKey"],
        aws_session_token=issued["SessionToken"],
        region_name=access.region,
    )
    return lambda service: session.client(service, endpoint_url=moto.endpoint_url)


def denied(call) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


def test_other_tables_are_fenced_off_by_the_policy_document(access):
    """Only AWS can show this one: moto evaluates DynamoDB against "*" and lets a Deny with NotResource
    through, so another table is readable there. The document is what AWS evaluates: every DynamoDB action
    it allows on "*" is denied everywhere but the Employees table and its indexes."""
    policy = access.workloads[0].inline_policy(PRODUCTION, "us-east-1")
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow" and s["Resource"] == "*" for a in s["Action"]}
    (fence,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert allowed == set(fence["Action"]) == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"}
    assert fence["NotResource"] == [
        f"arn:aws:dynamodb:us-east-1:{PRODUCTION}:table/Employees",
        f"arn:aws:dynamodb:us-east-1:{PRODUCTION}:table/Employees/index/*",
    ]


def test_the_web_app_role_reads_the_directory_and_writes_only_under_uploads(as_the_web_app):
    s3, dynamodb = as_the_web_app("s3"), as_the_web_app("dynamodb")
    assert as_the_web_app("sts").get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{PRODUCTION}:assumed-role/EmployeeWebAppRole/i-0123456789abcdef0"
    )
    assert {i["username"]["S"] for i in dynamodb.scan(TableName="Employees")["Items"]} >= {"alice", "heidi"}
    assert dynamodb.get_item(TableName="Employees", Key={"username": {"S": "heidi"}})["Item"]
    assert s3.get_object(Bucket=BUCKET, Key="photos/alice.svg")["Body"].read().startswith(b"<?xml")
    s3.put_object(Bucket=BUCKET, Key="uploads/alice", Body=b"\x89PNG\r\n\x1a\n")
    for call in (
        lambda: s3.put_object(Bucket=BUCKET, Key="photos/alice.svg", Body=b"overwritten"),
        lambda: s3.delete_object(Bucket=BUCKET, Key="photos/alice.svg"),
        lambda: s3.delete_bucket(Bucket=BUCKET),
        lambda: s3.create_bucket(Bucket="another-bucket"),
        lambda: dynamodb.put_item(TableName="Employees", Item={"username": {"S": "mallory"}}),
        lambda: dynamodb.delete_table(TableName="Employees"),
        lambda: as_the_web_app("iam").list_roles(),
    ):
        assert denied(call), __import__("inspect").getsource(call)
