"""What an AWS service does to give a workload its role's credentials, for the development stand-ins of
EC2 (devstack/instance_metadata.py) and ECS (devstack/container_credentials.py).

EC2 and ECS assume the role for the workload (sts:AssumeRole, the instance or task as the session name),
and only if the role's trust policy names them: the lesson's "trusted entity". They hand out the
temporary credentials and replace them before they expire. Here the service acts in the emulator as
`devstack.aws_emulator` lets it: a session of the account's organization access role named after the
service (e.g. `ec2.amazonaws.com`), which the emulator's trust-policy check treats as that service.

`RoleCredentialSource` checks the trust policy itself first, so that a role the service may not assume
is refused with a message that says why (STS, emulator or AWS, would only say AccessDenied). It assumes
the role for `duration_seconds` and serves the same credentials until less than `rotate_before_seconds`
remain, then fetches new ones (EC2 makes new credentials available at least five minutes before the old
ones expire). Every time it reads comes from `clock`, so tests move time instead of waiting.

A caveat of short sessions: botocore's instance-metadata provider pushes the expiry of credentials that
have less than 17 to 25 minutes left to 17 to 25 minutes from now (its "static stability" for IMDS
outages), then refreshes 15 minutes before that. With the demo's 900-second sessions it may so keep using
credentials for a few minutes after they expired; the emulator does not check expiry (AWS would).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from broker.aws.accounts import AccountSessions

log = logging.getLogger(__name__)

DEFAULT_SESSION_SECONDS = 900  # STS's minimum for AssumeRole: the demo rotates often enough to be seen
DEFAULT_ROTATE_BEFORE_SECONDS = 300  # new credentials when less than five minutes remain
HISTORY_LENGTH = 50  # credentials (and trust checks) remembered for the portal's explanation
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 900, 43200

Clock = Callable[[], float]  # seconds since the epoch


@dataclass(frozen=True)
class RoleCredentials:
    role_arn: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    obtained_at: float  # on the source's clock
    expires_at: float  # on the source's clock

    @property
    def masked_key(self) -> str:
        """Enough of the access key ID to tell two apart in a log, no more."""
        return f"{self.access_key_id[:4]}...{self.access_key_id[-4:]}"


class CredentialsRefused(Exception):
    """The service will not (or cannot) hand out the role's credentials. `code` is what the instance
    metadata service puts in its JSON (`AssumeRoleUnauthorizedAccess`...); `transient` says whether trying
    again later may help (STS unreachable) or the configuration must change (trust policy, missing role)."""

    def __init__(self, code: str, message: str, *, transient: bool = False):
        super().__init__(message)
        self.code, self.message, self.transient = code, message, transient


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    trust_policy: dict


def trusted_services(trust_policy: dict) -> list[str]:
    """The services an Allow of sts:AssumeRole names as principals (a Deny naming one takes it out)."""
    allowed: list[str] = []
    denied: set[str] = set()
    statements = trust_policy.get("Statement", [])
    for statement in [statements] if isinstance(statements, dict) else statements:
        if not isinstance(statement, dict) or not _names_assume_role(statement.get("Action")):
            continue
        principal = statement.get("Principal")
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else list(services)
        if statement.get("Effect") == "Allow":
            allowed += [s for s in services if s not in allowed]
        elif statement.get("Effect") == "Deny":
            denied.update(services)
    return [service for service in allowed if service not in denied]


def _names_assume_role(action: object) -> bool:
    actions = [action] if isinstance(action, str) else action if isinstance(action, list) else []
    return any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions)


def describe_principals(trust_policy: dict) -> str:
    """Who a trust policy lets in, in a few words, for a refusal message."""
    named: list[str] = []
    statements = trust_policy.get("Statement", [])
    for statement in [statements] if isinstance(statements, dict) else statements:
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            principal = statement.get("Principal")
            if isinstance(principal, dict):
                for kind, values in principal.items():
                    values = [values] if isinstance(values, str) else values
                    named += [f"{kind} {value}" for value in values]
            elif principal is not None:
                named.append(str(principal))
    return ", ".join(named) or "nobody"


class ServiceInAccount:
    """A service (EC2, ECS) acting in one account of the emulator: its IAM and STS clients."""

    def __init__(self, sessions: AccountSessions, account_id: str, service: str):
        self.sessions, self.account_id, self.service = sessions, account_id, service

    def iam(self):
        return self.sessions.client(self.account_id, "iam")

    def sts(self):
        return self.sessions.client(self.account_id, "sts")


class RoleCredentialSource:
    """The role's current credentials as the service hands them out: trust checked, rotated on time."""

    def __init__(
        self,
        service: ServiceInAccount,
        find_role: Callable[[], Role],
        session_name: str,
        *,
        duration_seconds: int = DEFAULT_SESSION_SECONDS,
        rotate_before_seconds: int = DEFAULT_ROTATE_BEFORE_SECONDS,
        clock: Clock = time.time,
        service_label: str = "the service",
    ):
        if not MIN_SESSION_SECONDS <= duration_seconds <= MAX_SESSION_SECONDS:
            raise ValueError(f"session length {duration_seconds} s: STS allows {MIN_SESSION_SECONDS} to 43200")
        if not 0 <= rotate_before_seconds < duration_seconds:
            raise ValueError("rotate_before_seconds must be shorter than the session")
        self.service, self.find_role, self.session_name = service, find_role, session_name
        self.duration, self.rotate_before, self.clock = duration_seconds, rotate_before_seconds, clock
        self.service_label = service_label
        self._current: RoleCredentials | None = None
        self._lock = threading.Lock()
        # For the portal's "How did I get here?" (its workload path): every set of credentials obtained (no
        # secret: the access key's last 4 characters) and every trust check, with the outcome reached here.
        self.history: deque[dict] = deque(maxlen=HISTORY_LENGTH)
        self.trust_checks: deque[dict] = deque(maxlen=HISTORY_LENGTH)

    def credentials(self) -> RoleCredentials:
        """The credentials to hand out now: the current ones while more than `rotate_before` remain,
        otherwise new ones. If new ones cannot be had, the current ones while they are still valid."""
        with self._lock:
            now = self.clock()
            current = self._current
            if current is not None and now <= current.expires_at - self.rotate_before:
                return current
            try:
                fresh = self._assume(now)
            except CredentialsRefused as refused:
                if current is not None and now < current.expires_at and refused.transient:
                    log.warning(
                        "could not rotate the credentials of %s (%s); still serving the current ones, valid for %d s",
                        current.role_arn,
                        refused.message,
                        current.expires_at - now,
                    )
                    return current
                self._current = None
                raise
            self._current = fresh
            self.history.append(
                {
                    "kind": "rotated" if current is not None else "first",
                    "role_arn": fresh.role_arn,
                    "session_name": self.session_name,
                    "access_key": f"…{fresh.access_key_id[-4:]}",
                    "access_key_sha256": hashlib.sha256(fresh.access_key_id.encode()).hexdigest()[:12],
                    "obtained_at": fresh.obtained_at,
                    "expires_at": fresh.expires_at,
                }
            )
            log.info(
                "%s credentials for %s: access key %s, valid until %s",
                "new (rotated)" if current is not None else "first",
                fresh.role_arn,
                fresh.masked_key,
                iso8601(fresh.expires_at),
            )
            return fresh

    def _assume(self, now: float) -> RoleCredentials:
        role = self.find_role()
        service = self.service.service
        trusted = trusted_services(role.trust_policy)
        self.trust_checks.append(
            {
                "time": now,
                "role_arn": role.arn,
                "service": service,
                "trusted_services": trusted,
                "outcome": "passed" if service in trusted else "failed",
                "trust_policy": role.trust_policy,
            }
        )
        if service not in trusted:
            raise CredentialsRefused(
                "AssumeRoleUnauthorizedAccess",
                f"{self.service_label} cannot assume the role {role.name}: its trust policy does not name "
                f'{service} as a trusted entity ("Principal": {{"Service": "{service}"}} with "Action": '
                f'"sts:AssumeRole"); it trusts {describe_principals(role.trust_policy)}',
            )
        asked_at = datetime.now(UTC)
        try:
            answer = self.service.sts().assume_role(
                RoleArn=role.arn, RoleSessionName=self.session_name, DurationSeconds=self.duration
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            if code in ("AccessDenied", "AccessDeniedException"):
                raise CredentialsRefused(
                    "AssumeRoleUnauthorizedAccess",
                    f"{self.service_label} cannot assume the role {role.name}: STS refused ({message})",
                ) from None
            raise CredentialsRefused("ServiceUnavailable", f"STS refused AssumeRole: {code}", transient=True) from None
        except BotoCoreError as error:
            raise CredentialsRefused("ServiceUnavailable", f"STS did not answer: {error}", transient=True) from None
        issued = answer["Credentials"]
        # The lifetime STS granted, counted from before the call (so never beyond the real expiry), placed on
        # this source's clock (the same instant when the clock is the real one).
        lifetime = (issued["Expiration"] - asked_at).total_seconds()
        lifetime = max(0, min(self.duration, int(lifetime)))
        return RoleCredentials(
            role_arn=role.arn,
            access_key_id=issued["AccessKeyId"],
            secret_access_key=issued["SecretAccessKey"],
            session_token=issued["SessionToken"],
            obtained_at=now,
            expires_at=now + lifetime,
        )


def role_by_name(service: ServiceInAccount, name: str) -> Callable[[], Role]:
    """The role `name` as IAM describes it (ECS: the task definition names its task role)."""

    def find() -> Role:
        try:
            role = service.iam().get_role(RoleName=name)["Role"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
                raise CredentialsRefused(
                    "RoleNotFound", f"there is no role {name} in account {service.account_id}: run `broker provision`"
                ) from None
            raise CredentialsRefused("ServiceUnavailable", "IAM refused GetRole", transient=True) from None
        except BotoCoreError as error:
            raise CredentialsRefused("ServiceUnavailable", f"IAM did not answer: {error}", transient=True) from None
        return Role(role["RoleName"], role["Arn"], role["AssumeRolePolicyDocument"])

    return find


def iso8601(seconds: float) -> str:
    """The form the SDKs parse: 2026-11-30T12:00:00Z (whole seconds, UTC)."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
