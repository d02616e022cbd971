"""A local AWS for development and tests: moto server in a subprocess, plus an emulated organization.

moto server (run through `python -m devstack.aws_emulator`: moto's WSGI application served by granian, one
worker process, as sso_common.serve serves the apps (`--server werkzeug`: moto's own threaded server), with the
fixes below, all in `install_patches`: managed policies parsed once, trust policies naming a service, the
session keys `aws:TokenIssueTime` and `aws:SourceIdentity` evaluated in Deny statements
(`_session_keys_in_deny_statements`), and three for the cost of a request, written up for moto's maintainers in
docs/moto-notes.md: a caller's session found by its access key in one lookup instead of a scan of every session
issued, the service of a host name resolved once instead of a folder listing per request, and the signature of
a form body checked over the bytes received instead of a byte-by-byte re-encoding; and an unsigned request
refused with AWS's 403 MissingAuthenticationToken, where moto failed with a 500) keeps all state in memory,
so every start is a clean set of accounts. It writes a pid and log folder in its
working directory, hence the scratch `workdir`. IAM policy enforcement is off at start (moto's default)
and switched with `set_enforcement`, which maps to moto's ``POST /moto-api/reset-auth``
(``inf`` = never enforce, ``0`` = enforce from the next request).
"""

from __future__ import annotations

import io
import json
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from broker.aws.accounts import ORGANIZATION_ACCESS_ROLE
from devstack.processes import Process, free_port

if TYPE_CHECKING:
    import boto3

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

    @property
    def process(self) -> Process | None:
        """The emulator's process while started (its name, log and whether it still runs)."""
        return self._process

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
        import boto3  # here: the emulator's own process never needs it

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
        import boto3

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
      session from AssumeRoleWithSAML the SourceIdentity its assertion carries (`_saml_assertions_read_once`);
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
    if None in (request_base, statement, assumed_role) or not hasattr(statement, "is_action_permitted"):
        return  # another moto version: leave it as it is
    caller = threading.local()

    original_init = getattr(assumed_role, "__init__")  # noqa: B009 - the class's, to wrap

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.token_issue_time = datetime.now(UTC).replace(microsecond=0)
        self.source_identity = None

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
    setattr(request_base, "check_action_permitted", check_action_permitted)  # noqa: B010
    setattr(statement, "is_action_permitted", is_action_permitted)  # noqa: B010


SAML_ATTRIBUTE = "{urn:oasis:names:tc:SAML:2.0:assertion}Attribute"
SAML_ATTRIBUTE_VALUE = "{urn:oasis:names:tc:SAML:2.0:assertion}AttributeValue"
AWS_SAML_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/"


def _saml_attributes(encoded: str) -> dict[str, str | None] | None:
    """The text of each attribute's first value in a base64 SAML response, by name (None if it does not parse)."""
    import base64

    from lxml import etree

    try:
        root = etree.fromstring(base64.b64decode(encoded), parser=etree.XMLParser(resolve_entities=False))
    except (ValueError, etree.XMLSyntaxError):
        return None
    attributes: dict[str, str | None] = {}
    for attribute in root.iter(SAML_ATTRIBUTE):
        value = attribute.find(SAML_ATTRIBUTE_VALUE)
        attributes.setdefault(attribute.get("Name", ""), value.text if value is not None else None)
    return attributes


def _saml_assertions_read_once() -> None:
    """AssumeRoleWithSAML reads its assertion once, with lxml, and its session keeps the SourceIdentity.

    moto 5.2 reads three attributes of the assertion (RoleSessionName, SessionDuration, Role) by parsing it with
    xmltodict, a SAX handler in Python: about 0.3 ms of the emulator's 2.5-3 ms per call (docs/moto-notes.md),
    and it does not read SourceIdentity, which the Deny conditions of `_session_keys_in_deny_statements` need.
    Here one lxml parse reads the four, and moto's own steps make the session (`_create_access_key`,
    `AssumedRole`, appended to the account's sessions), as moto does: the duration from SessionDuration (moto's
    default without it), the role from Role's first ARN; DurationSeconds is ignored, as moto ignores it. An
    assertion that lacks RoleSessionName or Role, or whose SessionDuration is no integer, goes to moto's own
    code, which answers it as before."""
    from moto.sts import models as sts_models

    backend: Any = getattr(sts_models, "STSBackend", None)
    assumed_role: Any = getattr(sts_models, "AssumedRole", None)
    default_duration = getattr(sts_models, "DEFAULT_STS_SESSION_DURATION", None)
    original: Any = getattr(backend, "assume_role_with_saml", None)
    if None in (backend, assumed_role, original):
        return  # another moto version: leave it as it is
    makes_sessions = hasattr(backend, "_create_access_key") and default_duration is not None

    def read(kwargs: dict, attributes: dict[str, str | None]) -> tuple[str, str, int] | None:
        """(role ARN, session name, duration) as moto would read them, or None: moto's own code then."""
        session_name = attributes.get(f"{AWS_SAML_ATTRIBUTE}RoleSessionName")
        roles = attributes.get(f"{AWS_SAML_ATTRIBUTE}Role")
        duration = attributes.get(f"{AWS_SAML_ATTRIBUTE}SessionDuration", str(default_duration))
        if not (makes_sessions and session_name and roles and duration and "role_arn" in kwargs):
            return None
        try:
            return roles.split(",")[0], session_name, int(duration)
        except ValueError:
            return None

    def assume_role_with_saml(self, **kwargs):
        attributes = _saml_attributes(kwargs.get("saml_assertion", "")) or {}
        found = read(kwargs, attributes)
        if found is None:
            role = original(self, **kwargs)  # moto's own reading, and its answer
        else:
            target, session_name, duration = found
            account_id, access_key = self._create_access_key(role=target)
            role = assumed_role(
                role_arn=kwargs["role_arn"],
                role_session_name=session_name,
                duration=duration,
                account_id=account_id,
                region_name=self.region_name,
                access_key=access_key,
                external_id=None,
                policy=None,
            )
            self.assumed_roles.append(role)
        role.source_identity = attributes.get(SOURCE_IDENTITY_ATTRIBUTE)
        return role

    setattr(backend, "assume_role_with_saml", assume_role_with_saml)  # noqa: B010 - a patch of moto's method


def _action_names_kept_per_class() -> None:
    """moto finds the method of a request's action by listing the functions of its response class with
    `inspect.getmembers`, on every request (about 0.1 ms, docs/moto-notes.md). The list depends on the class only,
    so it is made once per class."""
    from moto.core import responses

    original = getattr(responses, "method_names_from_class", None)
    if original is None:
        return  # another moto version: leave it as it is
    known: dict[type, frozenset[str]] = {}

    def method_names_from_class(clazz: type) -> frozenset[str]:
        names = known.get(clazz)
        if names is None:
            names = known[clazz] = frozenset(original(clazz))
        return names

    setattr(responses, "method_names_from_class", method_names_from_class)  # noqa: B010 - a patch of moto's function


def _session_context(access_key: Any) -> dict:
    """The caller's session keys: none for an IAM user's keys; issue time and source identity for a session."""
    from moto.iam.access_control import AssumedRoleAccessKey
    from moto.sts.models import sts_backends

    if not isinstance(access_key, AssumedRoleAccessKey):
        return {}
    role = getattr(access_key, SESSION_ATTRIBUTE, None)  # found when the key was (_sessions_indexed_by_access_key)
    if role is None:
        sessions = sts_backends[access_key.account_id][access_key.partition].assumed_roles
        role = _find_session(sessions, access_key._access_key_id)
    if role is None:
        return {}
    context = {"aws:TokenIssueTime": getattr(role, "token_issue_time", None)}
    if getattr(role, "source_identity", None):
        context["aws:SourceIdentity"] = role.source_identity
    return {key: value for key, value in context.items() if value is not None}


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


SESSION_ATTRIBUTE = "devstack_session"  # set on moto's AssumedRoleAccessKey: the caller's AssumedRole, found once


class _SessionsByAccessKey(list):
    """moto's `STSBackend.assumed_roles`, with an index by access key ID kept as sessions are appended (moto only
    ever appends to it). `find` is a dictionary lookup where moto scans the whole list on every signed request."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._by_key: dict[str, Any] = {}
        for role in self:
            self._by_key.setdefault(role.access_key_id, role)

    def append(self, role: Any) -> None:
        super().append(role)
        self._by_key.setdefault(role.access_key_id, role)  # the first wins, as in moto's scan

    def find(self, access_key_id: str) -> Any:
        return self._by_key.get(access_key_id)


def _sessions_indexed_by_access_key() -> None:
    """The caller's temporary session found by its access key ID in one lookup.

    moto 5.2 keeps every session it issued in a list per account (`STSBackend.assumed_roles`, never pruned) and,
    for every request signed with a session's keys, scans it from the start (`AssumedRoleAccessKey.__init__`;
    `get_caller_identity` too): a caller whose session is newer than 10,000 others pays about 2 ms per request
    (docs/moto-notes.md). Here the list indexes itself as sessions are appended, and the three places that
    looked a key up (moto's two and this module's session keys) use the index; the checks are moto's own (the
    session token must match, an unknown key is InvalidId)."""
    from moto.iam import access_control
    from moto.sts import models as sts_models

    backend: Any = getattr(sts_models, "STSBackend", None)
    access_key: Any = getattr(access_control, "AssumedRoleAccessKey", None)
    failure: Any = getattr(access_control, "CreateAccessKeyFailure", None)
    if None in (backend, access_key, failure) or not hasattr(backend, "get_assumed_role_from_access_key"):
        return  # another moto version: leave it as it is
    original_init = getattr(backend, "__init__")  # noqa: B009 - the class's, to wrap

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.assumed_roles = _SessionsByAccessKey(self.assumed_roles)

    def get_assumed_role_from_access_key(self, access_key_id: str):
        return _find_session(self.assumed_roles, access_key_id)

    def access_key_init(self, account_id: str, partition: str, access_key_id: str, headers: dict[str, str]):
        self.account_id, self.partition = account_id, partition
        role = _find_session(sts_models.sts_backends[account_id][partition].assumed_roles, access_key_id)
        if role is None:
            raise failure(reason="InvalidId")
        self._access_key_id = access_key_id
        self._secret_access_key = role.secret_access_key
        self._session_token = role.session_token
        self._owner_role_name = role.role_arn.split("/")[-1]
        self._session_name = role.session_name
        setattr(self, SESSION_ATTRIBUTE, role)
        if headers["X-Amz-Security-Token"] != self._session_token:
            raise failure(reason="InvalidToken")

    setattr(backend, "__init__", init)  # noqa: B010 - patches of moto's methods
    setattr(backend, "get_assumed_role_from_access_key", get_assumed_role_from_access_key)  # noqa: B010
    setattr(access_key, "__init__", access_key_init)  # noqa: B010


def _find_session(sessions: list, access_key_id: str) -> Any:
    if isinstance(sessions, _SessionsByAccessKey):
        return sessions.find(access_key_id)
    return next((role for role in sessions if role.access_key_id == access_key_id), None)  # not patched: moto's way


def _routing_memoized() -> None:
    """moto's server finds the service of every request by its host name (`get_backend_for_host`): a listing of
    moto's package folder with an `isdir` per entry (about 200) and then up to about 500 URL regular
    expressions, all under the dispatcher's one lock, about 1.5 ms per request (docs/moto-notes.md). The answer
    depends on the host name only, so it is kept per dispatcher (at most 4,096 names: a host header is the
    client's to choose)."""
    from moto.moto_server import werkzeug_app

    dispatcher: Any = getattr(werkzeug_app, "DomainDispatcherApplication", None)
    original = getattr(dispatcher, "get_backend_for_host", None)
    if original is None:
        return  # another moto version: leave it as it is

    def get_backend_for_host(self, host):
        known = self.__dict__.setdefault("_backend_for_host", {})
        if host in known:
            return known[host]
        backend = original(self, host)
        if len(known) < 4096:
            known[host] = backend
        return backend

    setattr(dispatcher, "get_backend_for_host", get_backend_for_host)  # noqa: B010 - a patch of moto's method


RAW_FORM_BODY = "devstack.raw_form_body"  # environ key: the bytes of a form-encoded request body, as received


class _KeepRawFormBody:
    """WSGI middleware: a form-encoded body is read here and kept in the environ (`RAW_FORM_BODY`) for the
    signature check, then handed on unchanged. Flask consumes such a body to parse the form, and moto then
    re-encodes the parsed form to verify the signature (see `_signature_over_received_body`)."""

    def __init__(self, app: Any):
        self.app = app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > 0:
                body = environ["wsgi.input"].read(length)
                environ[RAW_FORM_BODY] = body
                environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _signature_over_received_body() -> None:
    """The SigV4 signature of a form-encoded request checked over the body as received.

    moto rebuilds the body for the check from the parsed form (`urlencode`, byte by byte in Python: about 1 ms
    for the 10 KB of an AssumeRoleWithSAML), which also refuses a correctly signed body that another client
    encoded differently. The signature covers the bytes sent, so those are what is hashed here; everything
    else of the check is moto's."""
    from moto.iam import access_control

    request_base: Any = getattr(access_control, "IAMRequestBase", None)
    original = getattr(request_base, "_create_aws_request", None)
    if original is None:
        return  # another moto version: leave it as it is

    def create_aws_request(self):
        request = original(self)
        received = getattr(self._headers, "environ", {}).get(RAW_FORM_BODY)
        if received is not None and not self._body:
            request.data = received
        return request

    setattr(request_base, "_create_aws_request", create_aws_request)  # noqa: B010 - a patch of moto's method


def _unsigned_requests_refused() -> None:
    """With IAM enforcement on, moto reads the credential scope from the Authorization header without looking
    whether there is one: an unsigned request failed with a KeyError, answered 500. It is refused as AWS refuses
    a request that needs a signature and has none: 403 MissingAuthenticationToken."""
    from moto.core.exceptions import SignatureDoesNotMatchError
    from moto.iam import access_control

    request_base: Any = getattr(access_control, "IAMRequestBase", None)
    original = getattr(request_base, "__init__", None)
    if original is None:
        return  # another moto version: leave it as it is

    class MissingAuthenticationToken(SignatureDoesNotMatchError):
        def __init__(self) -> None:
            super(SignatureDoesNotMatchError, self).__init__(  # moto's error type, with AWS's code and message
                "MissingAuthenticationToken", "Request is missing Authentication Token"
            )

    def init(self, *args, **kwargs):
        headers = kwargs.get("headers", args[5] if len(args) > 5 else {})
        if "Authorization" not in headers:
            raise MissingAuthenticationToken()
        original(self, *args, **kwargs)

    setattr(request_base, "__init__", init)  # noqa: B010 - a patch of moto's method


# What AWS's JSON-protocol services (DynamoDB, SQS, KMS, Secrets Manager...) call the refusals moto names as the
# query protocol does (AWS's "common errors" of those APIs).
_JSON_PROTOCOL_CODES = {
    "AccessDenied": "AccessDeniedException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "MissingAuthenticationToken": "MissingAuthenticationTokenException",
}


def _refusals_in_the_json_protocol() -> None:
    """moto answers a refusal of IAM enforcement (denied, unknown key, bad signature) in the query protocol's
    XML whatever protocol the service speaks: a DynamoDB client found no error code in it (the AWS CLI printed
    `An error occurred (403)` and the XML, and code checking for AccessDeniedException missed it). A request
    of the JSON protocol (it names its operation in X-Amz-Target) is refused in JSON, with AWS's code there."""
    from moto.core import authorization, exceptions

    mixin: Any = getattr(authorization, "ActionAuthenticatorMixin", None)
    original = getattr(mixin, "_authenticate_and_authorize_normal_action", None)
    rest_error: Any = getattr(exceptions, "_RESTError", None)
    if original is None or rest_error is None:
        return  # another moto version: leave it as it is

    def authorize(self, resource: str = "*") -> None:
        try:
            original(self, resource)
        except rest_error as refusal:
            if isinstance(refusal, exceptions.JsonRESTError) or not self.headers.get("X-Amz-Target"):
                raise
            answer = exceptions.JsonRESTError(
                _JSON_PROTOCOL_CODES.get(refusal.error_type, refusal.error_type), refusal.message
            )
            answer.code = refusal.code
            raise answer from None

    setattr(mixin, "_authenticate_and_authorize_normal_action", authorize)  # noqa: B010 - a patch of moto's method


_installed: list[bool] = []


def install_patches() -> None:
    """Every change this module makes to moto, in this process (the emulator's); a second call does nothing."""
    if _installed:
        return
    _installed.append(True)
    _load_managed_policies_once()
    _service_principals_in_trust_policies()
    _session_keys_in_deny_statements()
    _saml_assertions_read_once()
    _sessions_indexed_by_access_key()
    _action_names_kept_per_class()
    _routing_memoized()
    _signature_over_received_body()
    _unsigned_requests_refused()
    _refusals_in_the_json_protocol()


def application() -> Any:
    """moto server's WSGI application, as `moto_server` builds it, with the raw form body kept."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return _KeepRawFormBody(DomainDispatcherApplication(create_backend_app))


def main(argv: list[str]) -> None:
    """The emulator process, started by MotoServer (and the compose stack): `-H host -p port`."""
    import argparse
    import os
    import signal

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m devstack.aws_emulator", description="moto server, patched")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument(
        "--server",
        choices=("granian", "werkzeug"),
        default="granian",
        help="granian (default: one worker process, moto keeps its state in memory) or moto's own werkzeug server",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto's own callbacks to itself use it
    install_patches()
    if args.server == "granian":
        from sso_common.serve import serve

        serve(application, args.host, args.port, workers=1)  # one process: moto's state is in its memory
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, application(), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":  # the emulator process: moto server, started by MotoServer
    main(sys.argv[1:])
