"""Roles for workloads: the `workloads:` section of config/access.yaml (README, "Roles for workloads").

People reach AWS through federation (the portal: a person signs in, the broker assumes a permission set's
role for them). Applications reach it through a role of their own that an AWS *service* assumes for them:
EC2 for the app on an instance (through the instance profile), ECS for a task. Each entry declares one
such role, created in its accounts by `broker provision` (broker/aws/provisioning.py):

- `role`: the role's name (also its instance profile's, for EC2), under the path `/workloads/`;
- `trusted_service`: the only principal of its trust policy, the lesson's "trusted entity":
  `ec2.amazonaws.com` (the role gets an instance profile of the same name) or `ecs-tasks.amazonaws.com`;
- `accounts`: account names or IDs of `accounts:` (default: every account);
- `max_session_duration`: ISO-8601, 1 to 12 hours (default PT1H);
- `inline_policy`: its only permissions (no managed policy), JSON with `{account_id}` and `{region}`.

Least privilege is checked, not hoped for: every Allow lists its actions by name (no `*`, no `s3:Get*`,
no NotAction), and an Allow on `Resource: "*"` must be fenced by a Deny with `NotResource` for each of
its actions (the DynamoDB pattern the top of access.yaml explains: moto evaluates DynamoDB against `*`).

Pure: no AWS calls. broker/core/access.py hands in its checks of policies and durations, so that both
sections follow the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sso_common.config import Node

WORKLOAD_ROLE_PATH = "/workloads/"
# The services whose credentials this project can hand to a workload: the instance metadata service and the
# container credentials endpoint (devstack/instance_metadata.py, devstack/container_credentials.py).
TRUSTED_SERVICES = {
    "ec2.amazonaws.com": "EC2, for an app on an instance (through its instance profile)",
    "ecs-tasks.amazonaws.com": "ECS, for a container task",
}
EC2_SERVICE = "ec2.amazonaws.com"
ROLE_NAME_PATTERN = r"[A-Za-z0-9+=,.@_-]{1,64}"
# Names this broker or AWS Organizations already use: a workload role must not take them over.
RESERVED_ROLE_NAMES = ("OrganizationAccountAccessRole",)
RESERVED_ROLE_PREFIXES = ("AWSReservedSSO_", "AWSServiceRoleFor")
DEFAULT_MAX_SESSION_SECONDS = 3600
DESCRIPTION_PATTERN = r"[\t\n\r\x20-\x7e\xa1-\xff]{1,1000}"  # IAM role descriptions' alphabet
ACTION_PATTERN = r"[a-z0-9-]+:[A-Za-z0-9]+"  # service:Action, no wildcard


@dataclass(frozen=True)
class WorkloadRole:
    name: str
    description: str
    trusted_service: str
    account_ids: tuple[str, ...]
    max_session_duration: int  # seconds
    inline_policy_template: str

    @property
    def instance_profile(self) -> str | None:
        """The instance profile that carries the role to EC2 instances (same name), for EC2 roles only."""
        return self.name if self.trusted_service == EC2_SERVICE else None

    def trust_policy(self) -> dict:
        """Only the service may assume the role: no person, no other account."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": self.trusted_service}, "Action": "sts:AssumeRole"}
            ],
        }

    def inline_policy(self, account_id: str, region: str) -> dict:
        """The permissions as deployed into `account_id`."""
        return json.loads(self.inline_policy_template.replace("{account_id}", account_id).replace("{region}", region))

    def arn(self, account_id: str) -> str:
        return f"arn:aws:iam::{account_id}:role{WORKLOAD_ROLE_PATH}{self.name}"


def parse_workloads(
    node: Node,
    *,
    accounts: Mapping[str, str],
    policy: Callable[[Node], str],
    duration: Callable[[Node], int],
) -> tuple[WorkloadRole, ...]:
    """The `workloads:` list. `accounts` maps every account ID and name to its ID (in file order);
    `policy` validates an inline policy node and returns its template; `duration` reads an ISO-8601
    session duration in seconds (both from broker/core/access.py)."""
    roles: dict[str, WorkloadRole] = {}
    for element in node.elements():
        element.only_keys("role", "description", "trusted_service", "accounts", "max_session_duration", "inline_policy")
        name_node = element.child("role")
        name = name_node.string(ROLE_NAME_PATTERN, "an IAM role name ([A-Za-z0-9+=,.@_-], 1 to 64)")
        if name in RESERVED_ROLE_NAMES or name.startswith(RESERVED_ROLE_PREFIXES):
            raise name_node.error(f"{name!r} is reserved (for AWS Organizations, IAM Identity Center or AWS)")
        if name in roles:
            raise name_node.error(f"workload role {name!r} is declared twice")
        service_node = element.child("trusted_service")
        service = service_node.string()
        if service not in TRUSTED_SERVICES:
            known = "; ".join(f"{key} ({what})" for key, what in TRUSTED_SERVICES.items())
            raise service_node.error(f"{service!r} is not a service this project can run workloads on: {known}")
        template = policy(element.child("inline_policy"))
        _least_privilege(element.child("inline_policy"), template)
        duration_node = element.child("max_session_duration", None)
        roles[name] = WorkloadRole(
            name=name,
            description=element.child("description").string(
                DESCRIPTION_PATTERN, "a description IAM accepts (Latin-1 text, at most 1000 characters)"
            ),
            trusted_service=service,
            account_ids=_accounts(element.child("accounts", None), accounts),
            max_session_duration=DEFAULT_MAX_SESSION_SECONDS
            if duration_node.value is None
            else duration(duration_node),
            inline_policy_template=template,
        )
    return tuple(roles.values())


def _accounts(node: Node, accounts: Mapping[str, str]) -> tuple[str, ...]:
    if node.value is None:
        return tuple(dict.fromkeys(accounts.values()))
    ids: list[str] = []
    for element in node.elements():
        value = str(element.value) if isinstance(element.value, int) else element.string()
        if value not in accounts:
            names = [key for key, account_id in accounts.items() if key != account_id]
            raise element.error(f"unknown account {value!r} (known: {', '.join(names)})")
        if accounts[value] in ids:
            raise element.error(f"account {value!r} is listed twice")
        ids.append(accounts[value])
    if not ids:
        raise node.error("must list at least one account (or be left out: every account)")
    return tuple(ids)


def _least_privilege(node: Node, template: str) -> None:
    """No wildcard or NotAction in an Allow; an Allow on every resource only behind a Deny fence."""
    document = json.loads(template.replace("{account_id}", "123456789012").replace("{region}", "us-east-1"))
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    fenced: set[str] = set()
    for statement in statements:
        if statement["Effect"] == "Deny" and "NotResource" in statement and "Action" in statement:
            fenced.update(_listed(statement["Action"]))
    for index, statement in enumerate(statements):
        if statement["Effect"] != "Allow":
            continue
        if "NotAction" in statement:
            raise node.error(f"Statement[{index}]: an Allow with NotAction grants every other action; list actions")
        if "NotResource" in statement:
            raise node.error(f"Statement[{index}]: an Allow with NotResource grants every other resource")
        actions = _listed(statement["Action"])
        for action in actions:
            if not isinstance(action, str) or not re.fullmatch(ACTION_PATTERN, action):
                raise node.error(
                    f"Statement[{index}]: {action!r} is not one action: a workload role lists exactly the actions "
                    "it needs, without wildcards (e.g. s3:GetObject)"
                )
        if "*" in _listed(statement["Resource"]):
            unfenced = [action for action in actions if action not in fenced]
            if unfenced:
                raise node.error(
                    f'Statement[{index}]: allows {unfenced[0]} on every resource ("*"): name the resources, or '
                    'fence it with a Deny of the same actions on "NotResource" (as for DynamoDB)'
                )


def _listed(value: object) -> list:
    return list(value) if isinstance(value, list) else [value]
