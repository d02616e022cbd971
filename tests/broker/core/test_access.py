"""config/access.yaml: the seed file's content, and every kind of mistake refused with file, key and problem."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from broker.core.access import load_access
from sso_common.config import ConfigError
from tests.broker.conftest import ACCESS_FILE

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos-{account_id}/*"}],
}
VALID = {
    "identity_provider_name": "TestBroker",
    "region": "eu-west-1",
    "accounts": [{"id": "111111111111", "name": "sandbox"}, {"id": "222222222222", "name": "production"}],
    "permission_sets": [
        {
            "name": "Admin",
            "description": "Everything",
            "session_duration": "PT1H",
            "managed_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"],
        },
        {
            "name": "Reader",
            "description": "Read photos",
            "session_duration": "PT2H30M",
            "inline_policy": json.dumps(POLICY),
        },
    ],
    "assignments": [
        {"group": "admins", "account": "sandbox", "permission_set": "Admin"},
        {"group": "staff", "account": "222222222222", "permission_set": "Reader"},
    ],
}


def write(tmp_path, data) -> Path:
    path = tmp_path / "access.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_change(change) -> dict:
    data = copy.deepcopy(VALID)
    change(data)
    return data


def test_seed_file_has_the_accounts_sets_and_assignments_the_organization_expects(access):
    assert {a.id: (a.name, a.email) for a in access.accounts.values()} == {
        "111111111111": ("example-sandbox", "aws-sandbox@example.com"),
        "222222222222": ("example-production", "aws-production@example.com"),
    }
    assert list(access.permission_sets) == [
        "AdministratorAccess",
        "EmployeeDirectoryDeveloper",
        "EmployeeDirectoryReadOnly",
        "SecurityAudit",
    ]
    assert access.permission_sets["SecurityAudit"].requires_mfa
    assert access.permission_sets["SecurityAudit"].managed_policy_arns == ("arn:aws:iam::aws:policy/SecurityAudit",)
    assert not access.permission_sets["EmployeeDirectoryDeveloper"].requires_mfa
    groups = {a.group for a in access.assignments}
    assert groups == {"engineering", "aws-admins", "security"}  # finance and contractors get nothing
    engineering = {(a.account_id, a.permission_set) for a in access.assignments if a.group == "engineering"}
    assert engineering == {
        ("111111111111", "EmployeeDirectoryDeveloper"),
        ("222222222222", "EmployeeDirectoryReadOnly"),
    }


def test_inline_policies_name_each_accounts_own_resources(access):
    document = access.permission_sets["EmployeeDirectoryReadOnly"].inline_policy("222222222222", "us-east-1")
    text = json.dumps(document)
    assert "employee-directory-photos-222222222222" in text
    assert "arn:aws:dynamodb:us-east-1:222222222222:table/Employees" in text
    assert "{account_id}" not in text and "{region}" not in text and "111111111111" not in text


@pytest.mark.parametrize("name", ["EmployeeDirectoryDeveloper", "EmployeeDirectoryReadOnly", "SecurityAudit"])
def test_every_broad_dynamodb_allow_is_fenced_to_the_employees_table(access, name):
    """The emulator needs Allow on "*" for DynamoDB; on AWS the matching Deny keeps it to one table."""
    statements = access.permission_sets[name].inline_policy("111111111111", "us-east-1")["Statement"]
    table = "arn:aws:dynamodb:us-east-1:111111111111:table/Employees"
    for allow in (s for s in statements if s["Effect"] == "Allow" and s["Resource"] == "*"):
        assert all(action.startswith("dynamodb:") for action in allow["Action"])
        fences = [s for s in statements if s["Effect"] == "Deny" and set(s["Action"]) == set(allow["Action"])]
        assert fences and set(fences[0]["NotResource"]) == {table, table + "/index/*"}


def test_minimal_valid_file_loads_with_durations_in_seconds(tmp_path):
    access = load_access(write(tmp_path, VALID), known_groups={"admins", "staff", "finance"})
    assert [a.email for a in access.accounts.values()] == [None, None]  # optional
    assert access.permission_sets["Reader"].session_duration == 2 * 3600 + 30 * 60
    assert [(a.group, a.account_id) for a in access.assignments] == [
        ("admins", "111111111111"),
        ("staff", "222222222222"),
    ]
    assert access.employee_directory is None


def set_in(path: list, value):
    def change(data):
        target = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


BAD_INPUTS = {
    "unknown permission set": (
        set_in(["assignments", 0, "permission_set"], "Admn"),
        "assignments[0].permission_set",
        "unknown permission set 'Admn'",
    ),
    "unknown account": (
        set_in(["assignments", 1, "account"], "staging"),
        "assignments[1].account",
        "unknown account 'staging'",
    ),
    "short account id": (set_in(["accounts", 0, "id"], "12345"), "accounts[0].id", "12-digit"),
    "unquoted account id": (set_in(["accounts", 0, "id"], 111111111111), "accounts[0].id", "must be quoted"),
    "duplicate account": (set_in(["accounts", 1, "id"], "111111111111"), "accounts[1].id", "listed twice"),
    "account email without a domain": (
        set_in(["accounts", 0, "email"], "aws-sandbox"),
        "accounts[0].email",
        "'aws-sandbox' is not an email address",
    ),
    "account email too long for AWS": (
        set_in(["accounts", 0, "email"], "a" * 60 + "@example.com"),
        "accounts[0].email",
        "6 to 64 characters",
    ),
    "account email as a list": (set_in(["accounts", 0, "email"], ["a@example.com"]), "accounts[0].email", "string"),
    "account email used twice": (
        lambda data: [account.update(email="Cloud@Example.com") for account in data["accounts"]],
        "accounts[1].email",
        "used twice",
    ),
    "duration over 12 hours": (
        set_in(["permission_sets", 0, "session_duration"], "PT13H"),
        "permission_sets[0].session_duration",
        "out of range",
    ),
    "duration under 1 hour": (
        set_in(["permission_sets", 0, "session_duration"], "PT30M"),
        "permission_sets[0].session_duration",
        "out of range",
    ),
    "duration not ISO-8601": (
        set_in(["permission_sets", 0, "session_duration"], "8h"),
        "permission_sets[0].session_duration",
        "not an ISO-8601 duration",
    ),
    "malformed policy JSON": (
        set_in(["permission_sets", 1, "inline_policy"], '{"Version": "2012-10-17",'),
        "permission_sets[1].inline_policy",
        "not valid JSON",
    ),
    "policy without Version": (
        set_in(["permission_sets", 1, "inline_policy"], '{"Statement": []}'),
        "permission_sets[1].inline_policy",
        '"Version": "2012-10-17"',
    ),
    "statement without Effect": (
        set_in(
            ["permission_sets", 1, "inline_policy"],
            '{"Version": "2012-10-17", "Statement": [{"Action": "s3:*", "Resource": "*"}]}',
        ),
        "permission_sets[1].inline_policy",
        'Statement[0]: needs "Effect"',
    ),
    "unknown placeholder": (
        set_in(["permission_sets", 1, "inline_policy"], json.dumps(POLICY).replace("{account_id}", "{acount}")),
        "permission_sets[1].inline_policy",
        "unknown placeholder {acount}",
    ),
    "customer managed policy": (
        set_in(["permission_sets", 0, "managed_policies"], ["arn:aws:iam::111111111111:policy/Mine"]),
        "permission_sets[0].managed_policies[0]",
        "AWS managed policy ARN",
    ),
    "permission set name too long": (
        set_in(["permission_sets", 0, "name"], "A" * 33),
        "permission_sets[0].name",
        "permission set name",
    ),
    "permission set granting nothing": (
        set_in(["permission_sets", 0, "managed_policies"], []),
        "permission_sets[0]",
        "grants nothing",
    ),
    "description IAM refuses": (
        set_in(["permission_sets", 0, "description"], "x" * 701),
        "permission_sets[0].description",
        "description IAM accepts",
    ),
    "misspelt key": (
        set_in(["permission_sets", 0, "sesion_duration"], "PT1H"),
        "permission_sets[0].sesion_duration",
        "unknown key",
    ),
    "unknown top-level key": (set_in(["acounts"], []), "acounts", "unknown key"),
    "duplicate assignment": (
        set_in(["assignments", 1], VALID["assignments"][0]),
        "assignments[1]",
        "duplicate assignment",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_mistakes_are_refused_naming_file_key_and_problem(tmp_path, case):
    change, key, problem = BAD_INPUTS[case]
    path = write(tmp_path, with_change(change))
    with pytest.raises(ConfigError) as refused:
        load_access(path)
    assert refused.value.source == str(path)
    assert refused.value.key == key
    assert problem in refused.value.problem
    assert str(refused.value).startswith(f"{path}: {key}: ")


def test_assignment_to_a_group_the_directory_does_not_have_is_refused(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_access(write(tmp_path, VALID), known_groups={"admins", "finance"})
    assert refused.value.key == "assignments[1].group"
    assert "unknown group 'staff'" in refused.value.problem


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_access(tmp_path / "absent.yaml")


def test_seed_file_assigns_only_groups_the_corporate_directory_has():
    directory_groups = yaml.safe_load((ACCESS_FILE.parent / "directory.yaml").read_text())["groups"]
    load_access(ACCESS_FILE, known_groups=set(directory_groups))
