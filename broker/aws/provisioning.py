"""Make every account match config/access.yaml: the broker's SAML provider, one role per assigned
permission set, the roles for workloads (and their instance profiles), and the Employee Directory demo data.

Idempotent: it reads what exists, changes only what differs, and reports each change, so a second run
reports nothing. It deletes only roles it created itself (under the SSO path, or the workloads path, and
tagged with this broker's name), never roles of a real IAM Identity Center sharing the account.

Per-account AWS clients come from a factory (account ID, service name) -> client;
`broker.aws.accounts.AccountSessions.client` is the standard one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from lxml import etree

from broker.aws.assertion import AWS_SAML_ENDPOINT
from broker.core.access import AccessConfig, EmployeeDirectory, PermissionSet
from broker.core.naming import SSO_ROLE_PATH, provider_arn, role_name
from broker.core.workloads import WORKLOAD_ROLE_PATH, WorkloadRole

ClientFactory = Callable[[str, str], Any]  # (account ID, service name) -> boto3 client

INLINE_POLICY_NAME = "AwsSSOInlinePolicy"  # the name IAM Identity Center gives it
WORKLOAD_POLICY_NAME = "WorkloadPermissions"  # a workload role's one inline policy
# The deny statements of revoked sessions (broker.aws.revocation), on a permission set's role beside its inline
# policy. Not provisioning's to remove: they go when the sessions they deny have expired (the revoker's sweep).
REVOCATION_POLICY_NAME = "BrokerRevocations"
MANAGED_BY_TAG = "sso-broker:managed-by"


@dataclass(frozen=True)
class Change:
    account_id: str
    action: str  # created, updated, attached, detached, deleted
    resource: str

    def __str__(self) -> str:
        return f"{self.account_id}: {self.action} {self.resource}"


def trust_policy(saml_provider_arn: str) -> dict:
    """Only this broker's SAML provider, only for sign-in assertions addressed to AWS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": saml_provider_arn},
                "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession", "sts:SetSourceIdentity"],
                "Condition": {"StringEquals": {"SAML:aud": AWS_SAML_ENDPOINT}},
            }
        ],
    }


def provision(access: AccessConfig, broker_idp_metadata_xml: str, clients: ClientFactory) -> list[Change]:
    """Bring every configured account in line with `access`; the changes made (account by account, in the
    order of access.yaml), empty when none.

    The accounts are independent, so each is provisioned in a thread of its own (`clients` is called from
    those threads); the first failure is raised once every account has finished."""
    accounts = list(access.accounts)
    if len(accounts) <= 1:
        return [
            change
            for account_id in accounts
            for change in _provision_account(access, broker_idp_metadata_xml, clients, account_id)
        ]
    with ThreadPoolExecutor(max_workers=min(len(accounts), 8), thread_name_prefix="provision") as pool:
        futures = [
            pool.submit(_provision_account, access, broker_idp_metadata_xml, clients, account_id)
            for account_id in accounts
        ]
        wait(futures)
    return [change for future in futures for change in future.result()]


def _provision_account(
    access: AccessConfig, broker_idp_metadata_xml: str, clients: ClientFactory, account_id: str
) -> list[Change]:
    iam = clients(account_id, "iam")
    changes = _ensure_saml_provider(iam, account_id, access.identity_provider_name, broker_idp_metadata_xml)
    changes += _ensure_roles(iam, account_id, access)
    changes += _ensure_workload_roles(iam, account_id, access)
    if access.employee_directory:
        changes += _seed_employee_directory(
            clients(account_id, "s3"),
            clients(account_id, "dynamodb"),
            account_id,
            access.employee_directory,
            access.region,
        )
    return changes


def _ensure_saml_provider(iam, account_id: str, name: str, metadata: str) -> list[Change]:
    arn = provider_arn(account_id, name)
    try:
        current = iam.get_saml_provider(SAMLProviderArn=arn)["SAMLMetadataDocument"]
    except iam.exceptions.NoSuchEntityException:
        iam.create_saml_provider(
            Name=name, SAMLMetadataDocument=metadata, Tags=[{"Key": MANAGED_BY_TAG, "Value": name}]
        )
        return [Change(account_id, "created", f"SAML provider {name}")]
    if current == metadata:
        return []
    iam.update_saml_provider(SAMLProviderArn=arn, SAMLMetadataDocument=metadata)
    return [Change(account_id, "updated", f"SAML provider {name} metadata")]


def _ensure_roles(iam, account_id: str, access: AccessConfig) -> list[Change]:
    provider_name = access.identity_provider_name
    wanted = {role_name(provider_name, account_id, ps.name): ps for ps in access.assigned_permission_sets(account_id)}
    trust = trust_policy(provider_arn(account_id, provider_name))
    changes: list[Change] = []
    for name, permission_set in wanted.items():
        changes += _ensure_role(iam, account_id, name, permission_set, trust, access)
    for name in _roles_managed_by(iam, provider_name) - wanted.keys():
        _delete_role(iam, name)
        changes.append(Change(account_id, "deleted", f"role {name}"))
    return changes


def _ensure_role(
    iam, account_id: str, name: str, permission_set: PermissionSet, trust: dict, access: AccessConfig
) -> list[Change]:
    changes: list[Change] = []
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        iam.create_role(
            Path=SSO_ROLE_PATH,
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=permission_set.description,
            MaxSessionDuration=permission_set.session_duration,
            Tags=[{"Key": MANAGED_BY_TAG, "Value": access.identity_provider_name}],
        )
        changes.append(Change(account_id, "created", f"role {name}"))
    else:
        if role["AssumeRolePolicyDocument"] != trust:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
            changes.append(Change(account_id, "updated", f"role {name} trust policy"))
        if (role.get("Description", ""), role["MaxSessionDuration"]) != (
            permission_set.description,
            permission_set.session_duration,
        ):
            iam.update_role(
                RoleName=name,
                Description=permission_set.description,
                MaxSessionDuration=permission_set.session_duration,
            )
            changes.append(Change(account_id, "updated", f"role {name} description and session duration"))

    attached = set(_paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name, key="PolicyArn"))
    for arn in sorted(set(permission_set.managed_policy_arns) - attached):
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        changes.append(Change(account_id, "attached", f"{arn} to role {name}"))
    for arn in sorted(attached - set(permission_set.managed_policy_arns)):
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        changes.append(Change(account_id, "detached", f"{arn} from role {name}"))

    inline_names = set(_paginate(iam, "list_role_policies", "PolicyNames", RoleName=name))
    document = permission_set.inline_policy(account_id, access.region)
    if document is not None and (
        INLINE_POLICY_NAME not in inline_names
        or iam.get_role_policy(RoleName=name, PolicyName=INLINE_POLICY_NAME)["PolicyDocument"] != document
    ):
        iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY_NAME, PolicyDocument=json.dumps(document))
        action = "updated" if INLINE_POLICY_NAME in inline_names else "created"
        changes.append(Change(account_id, action, f"inline policy of role {name}"))
    kept = {REVOCATION_POLICY_NAME} | ({INLINE_POLICY_NAME} if document is not None else set())
    for stale in sorted(inline_names - kept):
        iam.delete_role_policy(RoleName=name, PolicyName=stale)
        changes.append(Change(account_id, "deleted", f"inline policy {stale} of role {name}"))
    return changes


def workload_trust_policy(workload: WorkloadRole) -> dict:
    """Only the workload's service may assume its role: the lesson's "trusted entity"."""
    return workload.trust_policy()


def _ensure_workload_roles(iam, account_id: str, access: AccessConfig) -> list[Change]:
    """Each workload role of this account, with exactly its inline policy (nothing attached) and, for EC2,
    its instance profile; workload roles and profiles this broker made that are no longer declared go."""
    provider_name = access.identity_provider_name
    wanted = {workload.name: workload for workload in access.workloads if account_id in workload.account_ids}
    changes: list[Change] = []
    for workload in wanted.values():
        changes += _ensure_workload_role(iam, account_id, workload, access)
        if workload.instance_profile is not None:
            changes += _ensure_instance_profile(
                iam, account_id, workload.instance_profile, workload.name, provider_name
            )
    wanted_profiles = {w.instance_profile for w in wanted.values() if w.instance_profile is not None}
    for profile in _paginate(iam, "list_instance_profiles", "InstanceProfiles", PathPrefix=WORKLOAD_ROLE_PATH):
        name = profile["InstanceProfileName"]
        tags = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get("Tags", [])
        if name not in wanted_profiles and {"Key": MANAGED_BY_TAG, "Value": provider_name} in tags:
            for role in profile.get("Roles", []):
                iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role["RoleName"])
            iam.delete_instance_profile(InstanceProfileName=name)
            changes.append(Change(account_id, "deleted", f"instance profile {name}"))
    for name in _roles_managed_by(iam, provider_name, WORKLOAD_ROLE_PATH) - wanted.keys():
        _delete_role(iam, name)
        changes.append(Change(account_id, "deleted", f"workload role {name}"))
    return changes


def _ensure_workload_role(iam, account_id: str, workload: WorkloadRole, access: AccessConfig) -> list[Change]:
    name, trust = workload.name, workload_trust_policy(workload)
    changes: list[Change] = []
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        iam.create_role(
            Path=WORKLOAD_ROLE_PATH,
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=workload.description,
            MaxSessionDuration=workload.max_session_duration,
            Tags=[{"Key": MANAGED_BY_TAG, "Value": access.identity_provider_name}],
        )
        changes.append(Change(account_id, "created", f"workload role {name} (trusts {workload.trusted_service})"))
    else:
        tags = _paginate(iam, "list_role_tags", "Tags", RoleName=name)
        if (
            role["Path"] != WORKLOAD_ROLE_PATH
            or {"Key": MANAGED_BY_TAG, "Value": access.identity_provider_name} not in tags
        ):
            raise ProvisioningConflict(
                f"in {account_id}, a role named {name} exists that this broker did not create (path "
                f"{role['Path']}): rename the workload in access.yaml or remove that role"
            )
        if role["AssumeRolePolicyDocument"] != trust:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
            changes.append(Change(account_id, "updated", f"workload role {name} trust policy"))
        if (role.get("Description", ""), role["MaxSessionDuration"]) != (
            workload.description,
            workload.max_session_duration,
        ):
            iam.update_role(
                RoleName=name, Description=workload.description, MaxSessionDuration=workload.max_session_duration
            )
            changes.append(Change(account_id, "updated", f"workload role {name} description and session duration"))
    for arn in _paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name, key="PolicyArn"):
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)  # its inline policy is all it may do
        changes.append(Change(account_id, "detached", f"{arn} from workload role {name}"))
    inline_names = set(_paginate(iam, "list_role_policies", "PolicyNames", RoleName=name))
    document = workload.inline_policy(account_id, access.region)
    if (
        WORKLOAD_POLICY_NAME not in inline_names
        or iam.get_role_policy(RoleName=name, PolicyName=WORKLOAD_POLICY_NAME)["PolicyDocument"] != document
    ):
        iam.put_role_policy(RoleName=name, PolicyName=WORKLOAD_POLICY_NAME, PolicyDocument=json.dumps(document))
        action = "updated" if WORKLOAD_POLICY_NAME in inline_names else "created"
        changes.append(Change(account_id, action, f"inline policy of workload role {name}"))
    for stale in sorted(inline_names - {WORKLOAD_POLICY_NAME}):
        iam.delete_role_policy(RoleName=name, PolicyName=stale)
        changes.append(Change(account_id, "deleted", f"inline policy {stale} of workload role {name}"))
    return changes


def _ensure_instance_profile(iam, account_id: str, name: str, role_name: str, provider_name: str) -> list[Change]:
    """The instance profile `name` holding exactly `role_name` (an instance profile holds one role)."""
    changes: list[Change] = []
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(
            InstanceProfileName=name,
            Path=WORKLOAD_ROLE_PATH,
            Tags=[{"Key": MANAGED_BY_TAG, "Value": provider_name}],
        )["InstanceProfile"]
        changes.append(Change(account_id, "created", f"instance profile {name}"))
    roles = [role["RoleName"] for role in profile.get("Roles", [])]
    for other in roles:
        if other != role_name:
            iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=other)
            changes.append(Change(account_id, "removed", f"role {other} from instance profile {name}"))
    if role_name not in roles:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role_name)
        changes.append(Change(account_id, "added", f"role {role_name} to instance profile {name}"))
    return changes


class ProvisioningConflict(ClientError):
    """A role of a workload's name exists that this broker did not make: provisioning never takes it over.
    What IAM would answer to creating it (EntityAlreadyExists), with the reason."""

    def __init__(self, message: str):
        super().__init__({"Error": {"Code": "EntityAlreadyExists", "Message": message}}, "CreateRole")


def _roles_managed_by(iam, provider_name: str, path: str = SSO_ROLE_PATH) -> set[str]:
    names = set()
    for role in _paginate(iam, "list_roles", "Roles", PathPrefix=path):
        tags = _paginate(iam, "list_role_tags", "Tags", RoleName=role["RoleName"])
        if {"Key": MANAGED_BY_TAG, "Value": provider_name} in tags:
            names.add(role["RoleName"])
    return names


def _delete_role(iam, name: str) -> None:
    for profile in _paginate(iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name):
        iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
    for arn in _paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name, key="PolicyArn"):
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)
    for policy_name in _paginate(iam, "list_role_policies", "PolicyNames", RoleName=name):
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)


def _paginate(client, operation: str, result_key: str, key: str | None = None, **params) -> list:
    items = [item for page in client.get_paginator(operation).paginate(**params) for item in page[result_key]]
    return [item[key] for item in items] if key else items


# The demo application: a few employees, their photos in S3, their records in DynamoDB.
DEMO_EMPLOYEES = (  # as config/directory.yaml knows them (frank, disabled, has left)
    {"username": "alice", "display_name": "Alice Anderson", "department": "Engineering"},
    {"username": "bob", "display_name": "Bob Brown", "department": "Engineering"},
    {"username": "carol", "display_name": "Carol Chen", "department": "Finance"},
    {"username": "dave", "display_name": "Dave Diaz", "department": "External"},
    {"username": "erin", "display_name": "Erin Evans", "department": "Security"},
    {"username": "grace", "display_name": "Grace Green", "department": "Security"},
    {"username": "heidi", "display_name": "Heidi Hoffmann", "department": "People (HR)"},
)


def _seed_employee_directory(s3, dynamodb, account_id: str, directory: EmployeeDirectory, region: str) -> list[Change]:
    """Create the bucket, table, photos and records that are missing; never overwrite existing data."""
    bucket = directory.bucket(account_id)
    changes: list[Change] = []
    if not _exists(s3.head_bucket, Bucket=bucket):
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **location)
        changes.append(Change(account_id, "created", f"bucket {bucket}"))
    if not _exists(dynamodb.describe_table, TableName=directory.table):
        dynamodb.create_table(
            TableName=directory.table,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "username", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "username", "AttributeType": "S"}],
        )
        dynamodb.get_waiter("table_exists").wait(
            TableName=directory.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        changes.append(Change(account_id, "created", f"table {directory.table}"))
    for employee in DEMO_EMPLOYEES:
        photo_key = f"photos/{employee['username']}.svg"
        if not _exists(s3.head_object, Bucket=bucket, Key=photo_key):
            s3.put_object(
                Bucket=bucket,
                Key=photo_key,
                Body=_placeholder_photo(employee["display_name"]),
                ContentType="image/svg+xml",
            )
            changes.append(Change(account_id, "created", f"object s3://{bucket}/{photo_key}"))
        record = {**employee, "email": f"{employee['username']}@example.com", "photo_key": photo_key}
        try:
            dynamodb.put_item(
                TableName=directory.table,
                Item={k: {"S": v} for k, v in record.items()},
                ConditionExpression="attribute_not_exists(username)",
            )
            changes.append(Change(account_id, "created", f"item {employee['username']} in {directory.table}"))
        except dynamodb.exceptions.ConditionalCheckFailedException:
            pass  # already there, possibly edited by a developer: keep it
    return changes


def _placeholder_photo(display_name: str) -> bytes:
    """A small SVG badge with the person's initials."""
    svg = etree.Element(
        "{http://www.w3.org/2000/svg}svg",
        nsmap={None: "http://www.w3.org/2000/svg"},
        width="96",
        height="96",
        viewBox="0 0 96 96",
    )
    etree.SubElement(svg, "{http://www.w3.org/2000/svg}rect", width="96", height="96", fill="#3b5b92")
    initials = etree.SubElement(
        svg,
        "{http://www.w3.org/2000/svg}text",
        x="48",
        y="60",
        fill="#ffffff",
        attrib={"text-anchor": "middle", "font-size": "36", "font-family": "sans-serif"},
    )
    initials.text = "".join(part[0] for part in display_name.split()[:2]).upper()
    return etree.tostring(svg, xml_declaration=True, encoding="UTF-8")


def _exists(probe: Callable[..., Any], **params: str) -> bool:
    """True if `probe(**params)` succeeds, False if AWS answers "not found"; other errors propagate."""
    try:
        probe(**params)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchBucket", "ResourceNotFoundException"):
            return False
        raise
    return True
