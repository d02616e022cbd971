"""Who may have which AWS access: accounts, permission sets and group assignments (config/access.yaml).

Loaded and validated once at start-up; a mistake stops the broker with a `ConfigError` naming the file,
the key and the problem, instead of surfacing later as a role AWS refuses or a user who gets too much.

Format decisions:
- Lists with explicit names, not mappings keyed by name: YAML silently keeps the last of two equal
  keys, and a duplicated account or permission set must be an error.
- `session_duration` is an ISO-8601 duration (PT1H, PT8H, PT1H30M), as IAM Identity Center writes it;
  AWS allows 1 to 12 hours.
- Inline policies are JSON text. They may use the placeholders `{account_id}` and `{region}`, filled
  in per account at provisioning, so one permission set can name each account's own resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from broker.core.workloads import WorkloadRole, parse_workloads
from sso_common.config import EMAIL_PATTERN, Node, load_yaml

ACCOUNT_ID_PATTERN = r"\d{12}"
PERMISSION_SET_NAME_PATTERN = r"[A-Za-z0-9+=,.@_-]{1,32}"
PROVIDER_NAME_PATTERN = r"[A-Za-z0-9._-]{1,128}"
REGION_PATTERN = r"[a-z]{2}(-[a-z]+)+-\d"
MANAGED_POLICY_ARN_PATTERN = r"arn:aws:iam::aws:policy/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,128}"
BUCKET_NAME_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
TABLE_NAME_PATTERN = r"[A-Za-z0-9_.-]{3,255}"
DESCRIPTION_PATTERN = r"[\t\n\r\x20-\x7e\xa1-\xff]{1,700}"  # IAM role descriptions' alphabet
DURATION_PATTERN = r"PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?"
# An AWS account's root email address: AWS Organizations takes 6 to 64 characters, one @, a dotted domain.
ACCOUNT_EMAIL_PATTERN = rf"(?=.{{6,64}}$){EMAIL_PATTERN}"

MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 3600, 12 * 3600
MAX_MANAGED_POLICIES_PER_ROLE = 10  # IAM's default quota
MAX_INLINE_POLICY_CHARS = 10_240  # IAM's limit for a role's inline policies, whitespace excluded
POLICY_PLACEHOLDERS = ("account_id", "region")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    email: str | None = None  # the account's root email address, as AWS Organizations knows it


@dataclass(frozen=True)
class PermissionSet:
    name: str
    description: str
    session_duration: int  # seconds
    managed_policy_arns: tuple[str, ...]
    inline_policy_template: str | None
    requires_mfa: bool

    def inline_policy(self, account_id: str, region: str) -> dict | None:
        """The inline policy document as deployed into `account_id`."""
        if self.inline_policy_template is None:
            return None
        return json.loads(_fill_placeholders(self.inline_policy_template, account_id, region))


@dataclass(frozen=True)
class Assignment:
    group: str
    account_id: str
    permission_set: str


@dataclass(frozen=True)
class EmployeeDirectory:
    """The demo application's data in every account; names may use `{account_id}`."""

    bucket_template: str
    table: str

    def bucket(self, account_id: str) -> str:
        return self.bucket_template.replace("{account_id}", account_id)


@dataclass(frozen=True)
class AccessConfig:
    source: str
    identity_provider_name: str  # the SAML provider's name in every account; also names this broker
    region: str
    accounts: Mapping[str, Account]  # by account ID, in file order
    permission_sets: Mapping[str, PermissionSet]  # by name, in file order
    assignments: tuple[Assignment, ...]
    employee_directory: EmployeeDirectory | None
    workloads: tuple[WorkloadRole, ...] = ()  # roles for applications (broker/core/workloads.py)

    def assigned_permission_sets(self, account_id: str) -> list[PermissionSet]:
        """Permission sets some group holds in `account_id`: the roles that must exist there."""
        names = {a.permission_set for a in self.assignments if a.account_id == account_id}
        return [ps for name, ps in self.permission_sets.items() if name in names]


def load_access(path: str | Path, known_groups: Collection[str] | None = None) -> AccessConfig:
    """Read and validate the access file; with `known_groups` (a set, or the groups the upstreams' mappings
    can produce: broker.connectors.trust.GroupCatalogue), assignments to other groups are refused."""
    root = load_yaml(path).only_keys(
        "identity_provider_name",
        "region",
        "accounts",
        "permission_sets",
        "assignments",
        "employee_directory",
        "workloads",
    )
    region = root.child("region").string(REGION_PATTERN, "an AWS region name such as us-east-1")
    accounts = _accounts(root.child("accounts"))
    permission_sets = _permission_sets(root.child("permission_sets"), region)
    known = known_groups
    directory = root.child("employee_directory", None)
    return AccessConfig(
        source=root.source,
        identity_provider_name=root.child("identity_provider_name").string(
            PROVIDER_NAME_PATTERN, "a SAML provider name (letters, digits, '._-', at most 128)"
        ),
        region=region,
        accounts=MappingProxyType(accounts),
        permission_sets=MappingProxyType(permission_sets),
        assignments=_assignments(root.child("assignments", []), accounts, permission_sets, known),
        employee_directory=None if directory.value is None else _employee_directory(directory),
        workloads=parse_workloads(
            root.child("workloads", []),
            accounts={**{a.id: a.id for a in accounts.values()}, **{a.name: a.id for a in accounts.values()}},
            policy=lambda node: _inline_policy(node, region),
            duration=_duration_seconds,
        ),
    )


def _accounts(node: Node) -> dict[str, Account]:
    accounts: dict[str, Account] = {}
    names: set[str] = set()
    emails: set[str] = set()
    for element in node.elements():
        element.only_keys("id", "name", "email")
        id_node = element.child("id")
        if isinstance(id_node.value, int):
            raise id_node.error("must be quoted ('012345678901'): a bare number loses leading zeros")
        account_id = id_node.string(ACCOUNT_ID_PATTERN, "a 12-digit AWS account ID")
        name = element.child("name").string()
        if account_id in accounts:
            raise id_node.error(f"account {account_id} is listed twice")
        if name in names:
            raise element.child("name").error(f"account name {name!r} is used twice")
        email_node = element.child("email", None)
        email = None
        if email_node.value is not None:
            email = email_node.string(ACCOUNT_EMAIL_PATTERN, "an email address of 6 to 64 characters")
            if email.lower() in emails:
                raise email_node.error(f"account email {email!r} is used twice: every AWS account has its own")
            emails.add(email.lower())
        accounts[account_id] = Account(account_id, name, email)
        names.add(name)
    if not accounts:
        raise node.error("must list at least one account")
    return accounts


def _permission_sets(node: Node, region: str) -> dict[str, PermissionSet]:
    permission_sets: dict[str, PermissionSet] = {}
    for element in node.elements():
        element.only_keys(
            "name", "description", "session_duration", "managed_policies", "inline_policy", "requires_mfa"
        )
        name_node = element.child("name")
        name = name_node.string(PERMISSION_SET_NAME_PATTERN, "a permission set name ([A-Za-z0-9+=,.@_-], 1 to 32)")
        if name in permission_sets:
            raise name_node.error(f"permission set {name!r} is defined twice")
        managed = tuple(_managed_policy_arn(n) for n in element.child("managed_policies", []).elements())
        if len(managed) > MAX_MANAGED_POLICIES_PER_ROLE:
            raise element.child("managed_policies").error(
                f"{len(managed)} policies; IAM attaches at most {MAX_MANAGED_POLICIES_PER_ROLE} to a role"
            )
        inline_node = element.child("inline_policy", None)
        inline = None if inline_node.value is None else _inline_policy(inline_node, region)
        if not managed and inline is None:
            raise element.error("grants nothing: give managed_policies, inline_policy or both")
        permission_sets[name] = PermissionSet(
            name=name,
            description=element.child("description").string(
                DESCRIPTION_PATTERN, "a description IAM accepts (Latin-1 text, at most 700 characters)"
            ),
            session_duration=_duration_seconds(element.child("session_duration")),
            managed_policy_arns=managed,
            inline_policy_template=inline,
            requires_mfa=element.child("requires_mfa", False).boolean(),
        )
    return permission_sets


def _managed_policy_arn(node: Node) -> str:
    return node.string(MANAGED_POLICY_ARN_PATTERN, "an AWS managed policy ARN (arn:aws:iam::aws:policy/...)")


def _duration_seconds(node: Node) -> int:
    text = node.string()
    match = re.fullmatch(DURATION_PATTERN, text)
    if not match:
        raise node.error(f"{text!r} is not an ISO-8601 duration such as PT1H, PT8H or PT1H30M")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not MIN_SESSION_SECONDS <= total <= MAX_SESSION_SECONDS:
        raise node.error(f"{text} is out of range: AWS allows 1 to 12 hours (PT1H to PT12H)")
    return total


def _inline_policy(node: Node, region: str) -> str:
    """Check the template parses as a policy once its placeholders are filled; keep the template."""
    template = node.string()
    unknown = {name for name in _PLACEHOLDER.findall(template) if name not in POLICY_PLACEHOLDERS}
    if unknown:
        raise node.error(
            f"unknown placeholder {{{sorted(unknown)[0]}}} (known: "
            + ", ".join(f"{{{p}}}" for p in POLICY_PLACEHOLDERS)
            + ")"
        )
    try:
        document = json.loads(_fill_placeholders(template, "123456789012", region))
    except json.JSONDecodeError as exc:
        raise node.error(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(document, dict):
        raise node.error("must be a JSON object")
    if document.get("Version") != "2012-10-17":
        raise node.error('must have "Version": "2012-10-17"')
    statements = document.get("Statement")
    statements = [statements] if isinstance(statements, dict) else statements
    if not isinstance(statements, list) or not statements:
        raise node.error('must have a "Statement" object or non-empty list')
    for index, statement in enumerate(statements):
        problem = _statement_problem(statement)
        if problem:
            raise node.error(f"Statement[{index}]: {problem}")
    if len(json.dumps(document, separators=(",", ":"))) > MAX_INLINE_POLICY_CHARS:
        raise node.error(f"longer than IAM's {MAX_INLINE_POLICY_CHARS} characters for inline policies")
    return template


def _statement_problem(statement: object) -> str | None:
    if not isinstance(statement, dict):
        return "must be a JSON object"
    if statement.get("Effect") not in ("Allow", "Deny"):
        return 'needs "Effect": "Allow" or "Deny"'
    if ("Action" in statement) == ("NotAction" in statement):
        return 'needs exactly one of "Action" or "NotAction"'
    if ("Resource" in statement) == ("NotResource" in statement):
        return 'needs exactly one of "Resource" or "NotResource"'
    return None


def _fill_placeholders(template: str, account_id: str, region: str) -> str:
    return template.replace("{account_id}", account_id).replace("{region}", region)


def _assignments(
    node: Node,
    accounts: dict[str, Account],
    permission_sets: dict[str, PermissionSet],
    known_groups: Collection[str] | None,
) -> tuple[Assignment, ...]:
    by_name = {account.name: account.id for account in accounts.values()}
    assignments: list[Assignment] = []
    for element in node.elements():
        element.only_keys("group", "account", "permission_set")
        group_node = element.child("group")
        group = group_node.string()
        if known_groups is not None and group not in known_groups:
            sets = isinstance(known_groups, (set, frozenset))
            known = f"known: {', '.join(sorted(known_groups))}" if sets else str(known_groups)
            raise group_node.error(f"unknown group {group!r} ({known})")
        account_node = element.child("account")
        account = str(account_node.value) if isinstance(account_node.value, int) else account_node.string()
        account_id = account if account in accounts else by_name.get(account)
        if account_id is None:
            raise account_node.error(f"unknown account {account!r} (known: {', '.join(by_name)})")
        set_node = element.child("permission_set")
        permission_set = set_node.string()
        if permission_set not in permission_sets:
            raise set_node.error(f"unknown permission set {permission_set!r} (known: {', '.join(permission_sets)})")
        assignment = Assignment(group, account_id, permission_set)
        if assignment in assignments:
            raise element.error(f"duplicate assignment of {permission_set} in {account} to {group}")
        assignments.append(assignment)
    return tuple(assignments)


def _employee_directory(node: Node) -> EmployeeDirectory:
    node.only_keys("bucket", "table")
    bucket_node = node.child("bucket")
    bucket = bucket_node.string()
    if not re.fullmatch(BUCKET_NAME_PATTERN, bucket.replace("{account_id}", "123456789012")):
        raise bucket_node.error(f"{bucket!r} is not a valid S3 bucket name (with {{account_id}} filled in)")
    table = node.child("table").string(TABLE_NAME_PATTERN, "a DynamoDB table name")
    return EmployeeDirectory(bucket, table)
