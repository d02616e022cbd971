"""A local AWS for development and tests: moto server in a subprocess, plus an emulated organization.

moto server (run through `python -m devstack.aws_emulator`: moto's `moto_server`, with the fixes below:
managed policies parsed once, trust policies naming a service, and the session keys `aws:TokenIssueTime` and
`aws:SourceIdentity` evaluated in Deny statements, see `_session_keys_in_deny_statements`) keeps
all state in memory, so every start is a clean set of accounts. It writes a pid and log folder in its
working directory, hence the scratch `workdir`. IAM policy enforcement is off at start (moto's default)
and switched with `set_enforcement`, which maps to moto's ``POST /moto-api/reset-auth``
(``inf`` = never enforce, ``0`` = enforce from the next request).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import boto3

from broker.aws.accounts import ORGANIZATION_ACCESS_ROLE
from devstack.processes import Process, free_port

# moto's default account plays the organization's management account.
MANAGEMENT_ACCOUNT_ID = "123456789012"
BOOTSTRAP_SECRET = "emulator-bootstrap"  # moto checks no signature while enforcement is off


class MotoServer:
    """One moto server process bound to `host:port`, started from `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None, host: str = "127.0.0.1", region: str = "us-east-1"):
        self.workdir, self.host, self.region = Path(workdir), host, region
        self.port = port or free_port(host)
        self.endpoint_url = f"http://{host}:{self.port}"
        self._process: Process | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        # A clean environment: an inherited MOTO_ACCOUNT_ID would fold every account into one.
        # AWS managed policies (AdministratorAccess, SecurityAudit...) exist only when loaded.
        env = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "HOME": str(self.workdir)}
        self._process = Process.start(
            "moto server",
            ["devstack.aws_emulator", "-H", self.host, "-p", str(self.port)],
            log_path=self.workdir / "moto_server.log",
            cwd=self.workdir,
            env=env,
            new_session=False,
        )
        try:
            self._process.wait_healthy(f"{self.endpoint_url}/moto-api/", timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout=5)
            self._process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def set_enforcement(self, enforce: bool) -> None:
        """Turn IAM policy enforcement on (every later request must be signed and allowed) or off."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0" if enforce else b"inf",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form content type would hide the body from moto
        )
        urllib.request.urlopen(request, timeout=5).close()

    def client_in_account(self, service: str, account_id: str):
        """A client acting in `account_id` through moto's `x-moto-account-id` header (enforcement off)."""
        client = boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="AKIAEMULATORBOOTSTRAP",
            aws_secret_access_key=BOOTSTRAP_SECRET,
        )
        client.meta.events.register_first(
            f"before-sign.{client.meta.service_model.endpoint_prefix}.*",
            lambda request, **_: request.headers.__setitem__("x-moto-account-id", account_id),
        )
        return client

    def create_organization(self, member_account_ids: list[str]) -> boto3.Session:
        """Set up what AWS Organizations gives a real deployment, and return the management session.

        Each member account gets `OrganizationAccountAccessRole` (AdministratorAccess, trusting the
        management account); the management account gets an IAM user allowed only to assume it. The
        returned session holds that user's keys, so everything keeps working with enforcement on.
        """
        for account_id in member_account_ids:
            iam = self.client_in_account("iam", account_id)
            iam.create_role(
                RoleName=ORGANIZATION_ACCESS_ROLE,
                AssumeRolePolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "sts:AssumeRole",
                                "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT_ACCOUNT_ID}:root"},
                            }
                        ],
                    }
                ),
            )
            iam.attach_role_policy(
                RoleName=ORGANIZATION_ACCESS_ROLE, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
            )
        iam = self.client_in_account("iam", MANAGEMENT_ACCOUNT_ID)
        iam.create_user(UserName="sso-broker-provisioner")
        iam.put_user_policy(
            UserName="sso-broker-provisioner",
            PolicyName="AssumeOrganizationAccess",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Resource": f"arn:aws:iam::*:role/{ORGANIZATION_ACCESS_ROLE}",
                        }
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName="sso-broker-provisioner")["AccessKey"]
        return boto3.Session(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=self.region
        )


def _load_managed_policies_once() -> None:
    """moto builds a fresh IAM backend, with all ~1,600 AWS managed policies parsed from one large JSON
    string, for every account in every partition it looks at (it looks at all seven partitions of an
    account to find who owns an access key), which made the emulator's first requests take seconds.
    Here the JSON is parsed once per process and only `aws` partition backends get the policies (every
    ARN this project uses is `arn:aws:`); the policies themselves are unchanged."""
    import json

    from moto.iam import models

    original = getattr(models.IAMBackend, "_init_aws_policies", None)
    if original is None or not hasattr(models, "aws_managed_policies_data"):
        return  # another moto version: leave it as it is
    parsed: dict = {}

    def init_aws_policies(self):
        if getattr(self, "partition", "aws") != "aws" or not models.load_iam_aws_managed_policies():
            return []
        if not parsed:
            parsed.update(json.loads(models.aws_managed_policies_data))
        return [
            models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
            for name, data in parsed.items()
        ]

    setattr(models.IAMBackend, "_init_aws_policies", init_aws_policies)  # noqa: B010 - a patch of moto's method


def service_principal_session(service: str) -> str:
    """The session name under which the organization access role acts as the AWS service `service`
    (e.g. ec2.amazonaws.com) in the emulator: see `_service_principals_in_trust_policies`."""
    return service


def _service_principals_in_trust_policies() -> None:
    """Trust policies naming an AWS service (`"Principal": {"Service": "ec2.amazonaws.com"}`), evaluated.

    With enforcement on, moto 5.2 checks a role's trust policy on a same-account sts:AssumeRole, but only
    for `AWS` principals: a statement naming only a `Service` made it answer HTTP 500 (it looks for the
    caller in a missing `AWS` list). Here such a statement matches no IAM principal (as on AWS: nobody but
    the service can use it), except the emulator's stand-in for the service, which AWS has no need of: a
    session of the account's organization access role named after the service
    (`assumed-role/OrganizationAccountAccessRole/ec2.amazonaws.com`), as the instance metadata service and
    the container credentials endpoint of devstack act. Only the account's administrators can open such a
    session; they could change the trust policy anyway."""
    from moto.iam import access_control

    statement = getattr(access_control, "IAMPolicyStatement", None)
    original = getattr(statement, "_check_principal", None)
    if statement is None or original is None:
        return  # another moto version: leave it as it is

    def check_principal(self, principal: str) -> bool:
        expected = self._statement.get("Principal")
        if not isinstance(expected, dict):
            return bool(original(self, principal))
        if "AWS" in expected and original(self, principal):
            return True
        services = expected.get("Service", [])
        services = [services] if isinstance(services, str) else services
        return any(
            principal.endswith(f":assumed-role/{ORGANIZATION_ACCESS_ROLE}/{service_principal_session(service)}")
            for service in services
        )

    setattr(statement, "_check_principal", check_principal)  # noqa: B010 - a patch of moto's method


SESSION_KEYS = ("aws:TokenIssueTime", "aws:SourceIdentity")  # what the emulator knows of a temporary session
SOURCE_IDENTITY_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/SourceIdentity"


def _session_keys_in_deny_statements() -> None:
    """`aws:TokenIssueTime` and `aws:SourceIdentity` in the conditions of Deny statements, evaluated.

    moto 5.2 evaluates only `StringEquals`, and only against the context values a request supplies (none, for
    an ordinary call); any other operator counts as true. A Deny conditioned on these keys (IAM's "revoke active
    sessions", and the broker's revocation of one person) would therefore deny every session of the role, new
    ones too. Here:
    - every temporary session records when it was issued (whole seconds, as AWS gives aws:TokenIssueTime), and a
      session from AssumeRoleWithSAML records the SourceIdentity its assertion carries;
    - in the conditions of a Deny statement of the caller's identity policies, these two keys are evaluated
      against the caller's session: the date operators (DateEquals, DateNotEquals, DateLessThan[Equals],
      DateGreaterThan[Equals]) for aws:TokenIssueTime, the string operators (StringEquals, StringNotEquals,
      their IgnoreCase forms, StringLike, StringNotLike) for aws:SourceIdentity, each with `...IfExists`; a key
      the caller lacks (an IAM user's keys have no issue time, a session may have no source identity) makes
      its condition false, so the Deny does not apply. The statement's other conditions stay as moto treats
      them. Allow statements and trust policies are untouched.
    Not evaluated (only real AWS can confirm): other condition keys, ForAnyValue/ForAllValues, policy
    variables, session policies and resource policies."""
    import threading
    from datetime import UTC, datetime
    from fnmatch import fnmatchcase

    from moto.iam import access_control
    from moto.sts import models as sts_models

    request_base: Any = getattr(access_control, "IAMRequestBase", None)
    statement: Any = getattr(access_control, "IAMPolicyStatement", None)
    assumed_role: Any = getattr(sts_models, "AssumedRole", None)
    backend: Any = getattr(sts_models, "STSBackend", None)
    if None in (request_base, statement, assumed_role, backend) or not hasattr(statement, "is_action_permitted"):
        return  # another moto version: leave it as it is
    caller = threading.local()

    original_init = getattr(assumed_role, "__init__")  # noqa: B009 - the class's, to wrap

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.token_issue_time = datetime.now(UTC).replace(microsecond=0)
        self.source_identity = None

    original_saml = backend.assume_role_with_saml

    def assume_role_with_saml(self, **kwargs):
        source_identity = _saml_source_identity(kwargs.get("saml_assertion", ""))
        role = original_saml(self, **kwargs)
        role.source_identity = source_identity
        return role

    original_check = request_base.check_action_permitted

    def check_action_permitted(self, resource):
        caller.context = _session_context(self._access_key)
        try:
            return original_check(self, resource)
        finally:
            caller.context = None

    original_permitted = statement.is_action_permitted

    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        conditions = self._statement.get("Condition")
        context = getattr(caller, "context", None)
        if self._statement.get("Effect") != "Deny" or not isinstance(conditions, dict) or context is None:
            return original_permitted(self, action, resource, principal, incoming_condition_values)
        others = {}
        for operator, values in conditions.items():
            if not isinstance(values, dict):
                others[operator] = values
                continue
            for key, expected in values.items():
                if key in SESSION_KEYS and not _holds(operator, context.get(key), expected, fnmatchcase):
                    return access_control.PermissionResult.NEUTRAL  # the Deny does not apply to this session
            rest = {key: value for key, value in values.items() if key not in SESSION_KEYS}
            if rest:
                others[operator] = rest
        remaining = {key: value for key, value in self._statement.items() if key != "Condition"}
        if others:
            remaining["Condition"] = others
        return original_permitted(statement(remaining), action, resource, principal, incoming_condition_values)

    setattr(assumed_role, "__init__", init)  # noqa: B010 - patches of moto's methods
    setattr(backend, "assume_role_with_saml", assume_role_with_saml)  # noqa: B010
    setattr(request_base, "check_action_permitted", check_action_permitted)  # noqa: B010
    setattr(statement, "is_action_permitted", is_action_permitted)  # noqa: B010


def _saml_source_identity(encoded: str) -> str | None:
    """The SourceIdentity attribute of a base64 SAML response, if any (moto does not read it)."""
    import base64

    from lxml import etree

    try:
        root = etree.fromstring(base64.b64decode(encoded), parser=etree.XMLParser(resolve_entities=False))
    except (ValueError, etree.XMLSyntaxError):
        return None
    for attribute in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}Attribute"):
        if attribute.get("Name") == SOURCE_IDENTITY_ATTRIBUTE:
            value = attribute.find("{urn:oasis:names:tc:SAML:2.0:assertion}AttributeValue")
            return value.text if value is not None else None
    return None


def _session_context(access_key: Any) -> dict:
    """The caller's session keys: none for an IAM user's keys; issue time and source identity for a session."""
    from moto.iam.access_control import AssumedRoleAccessKey
    from moto.sts.models import sts_backends

    if not isinstance(access_key, AssumedRoleAccessKey):
        return {}
    for role in sts_backends[access_key.account_id][access_key.partition].assumed_roles:
        if role.access_key_id == access_key._access_key_id:
            role = cast(Any, role)
            context = {"aws:TokenIssueTime": getattr(role, "token_issue_time", None)}
            if getattr(role, "source_identity", None):
                context["aws:SourceIdentity"] = role.source_identity
            return {key: value for key, value in context.items() if value is not None}
    return {}


def _holds(operator: str, actual, expected, like) -> bool:
    """One operator on one of the session keys: any expected value matching (none, for the Not operators)."""
    from datetime import datetime

    if_exists = operator.endswith("IfExists")
    name = operator.removesuffix("IfExists")
    if actual is None:
        return if_exists
    values = expected if isinstance(expected, list) else [expected]
    if name.startswith("Date"):
        if not isinstance(actual, datetime):
            return False
        moments = [datetime.fromisoformat(str(value).replace("Z", "+00:00")) for value in values]
        compare = {
            "DateEquals": lambda m: actual == m,
            "DateNotEquals": lambda m: actual != m,
            "DateLessThan": lambda m: actual < m,
            "DateLessThanEquals": lambda m: actual <= m,
            "DateGreaterThan": lambda m: actual > m,
            "DateGreaterThanEquals": lambda m: actual >= m,
        }.get(name)
        if compare is None:
            return True  # an operator moto ignores: as moto would
        return all(compare(m) for m in moments) if name == "DateNotEquals" else any(compare(m) for m in moments)
    text = str(actual)
    matches = {
        "StringEquals": lambda v: text == v,
        "StringEqualsIgnoreCase": lambda v: text.lower() == str(v).lower(),
        "StringLike": lambda v: like(text, str(v)),
    }
    negated = {
        "StringNotEquals": "StringEquals",
        "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
        "StringNotLike": "StringLike",
    }
    if name in matches:
        return any(matches[name](value) for value in values)
    if name in negated:
        return not any(matches[negated[name]](value) for value in values)
    return True  # an operator moto ignores: as moto would


if __name__ == "__main__":  # the emulator process: moto server, started by MotoServer
    from moto.server import main as moto_server_main

    _load_managed_policies_once()
    _service_principals_in_trust_policies()
    _session_keys_in_deny_statements()
    moto_server_main(sys.argv[1:])
