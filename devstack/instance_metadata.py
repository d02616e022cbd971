"""An EC2 instance metadata service (IMDSv2) for the development "instance" of the Employee Directory.

On EC2, an app finds its role's credentials at http://169.254.169.254 without being given any key: the
instance profile attached to the instance names the role, EC2 assumes it and the metadata service hands
out the temporary credentials, rotated before they expire. This is that service for one instance, in
front of the AWS emulator; unmodified SDKs and the AWS CLI use it given only
`AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT`.

IMDSv2 as with `HttpTokens=required`:
- `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` gives a session token
  (400 if the header is missing or out of range; 403 if the request carries `X-Forwarded-For`: IMDS
  refuses token requests that went through a proxy);
- every GET needs `X-aws-ec2-metadata-token` with a valid, unexpired token: 401 otherwise (IMDSv1, the
  token-less GET, is refused);
- `/latest/meta-data/` (`instance-id`, `ami-id`, `instance-type`, `local-ipv4`, `placement/...`,
  `iam/info`, `iam/security-credentials/` and `.../<role>` with the JSON the SDKs parse) and
  `/latest/dynamic/instance-identity/document`.

The credentials come from `RoleCredentialSource` (devstack/workload_credentials.py): EC2's trust is checked
(a role whose trust policy does not name ec2.amazonaws.com gets `"Code": "AssumeRoleUnauthorizedAccess"`
with the reason, as IMDS answers), and they rotate when less than five minutes remain. `/healthz` (no
token, nothing in it) is this stand-in's own, for the launcher and the compose healthcheck; so is `/explain`
(with a token, like every GET): the instance, its profile and role, the role's trust policy and each trust
check EC2 made, the session tokens issued (as fingerprints, with who asked and how often each fetched the
role's credentials) and the credentials' rotation history (access keys by their last 4 characters). The
portal's "How did I get here?" shows it as the workload path (`workload_metadata_url` in broker.yaml).

    python -m devstack.instance_metadata --port 8004 --account example-production
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from werkzeug.wrappers import Request, Response

from devstack.workload_credentials import (
    DEFAULT_ROTATE_BEFORE_SECONDS,
    DEFAULT_SESSION_SECONDS,
    Clock,
    CredentialsRefused,
    Role,
    RoleCredentialSource,
    ServiceInAccount,
    iso8601,
)

log = logging.getLogger("devstack.instance_metadata")

EC2_SERVICE = "ec2.amazonaws.com"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MIN_TOKEN_TTL, MAX_TOKEN_TTL = 1, 21600
MAX_TOKENS = 10_000  # live session tokens kept; the oldest go first beyond that
MAX_TOKEN_LENGTH = 128
INSTANCE_ID_PATTERN = r"i-[0-9a-f]{17}"
EXPLAIN_PATH = "/explain"  # this stand-in's own: what the portal's explanation shows of the workload path
CREDENTIALS_PREFIX = "/latest/meta-data/iam/security-credentials/"
TOKENS_REMEMBERED = 20  # the newest session tokens the explanation lists


@dataclass(frozen=True)
class InstanceIdentity:
    """What the instance's metadata says about it (fixed for its life)."""

    instance_id: str
    account_id: str
    region: str
    instance_type: str = "t3.micro"
    private_ip: str = "10.0.1.23"
    launched_at: float = 0.0

    @property
    def availability_zone(self) -> str:
        return f"{self.region}a"

    @property
    def image_id(self) -> str:  # a stable, made-up AMI of the right shape
        return "ami-" + hashlib.sha256(self.instance_id.encode()).hexdigest()[:17]

    @property
    def hostname(self) -> str:
        return f"ip-{self.private_ip.replace('.', '-')}.ec2.internal"

    def document(self) -> dict:
        """/latest/dynamic/instance-identity/document, with the fields EC2 gives."""
        return {
            "accountId": self.account_id,
            "architecture": "x86_64",
            "availabilityZone": self.availability_zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": self.image_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "kernelId": None,
            "pendingTime": iso8601(self.launched_at),
            "privateIp": self.private_ip,
            "ramdiskId": None,
            "region": self.region,
            "version": "2017-09-30",
        }


def new_instance_id() -> str:
    return "i-" + secrets.token_hex(9)[:17]


@dataclass(frozen=True)
class InstanceProfile:
    name: str
    arn: str
    id: str
    role: Role | None


class InstanceProfileLookup:
    """The instance profile attached to the instance, and its role, as IAM describes them now."""

    def __init__(self, service: ServiceInAccount, name: str):
        self.service, self.name = service, name

    def profile(self) -> InstanceProfile:
        iam = self.service.iam()
        try:
            found = iam.get_instance_profile(InstanceProfileName=self.name)["InstanceProfile"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
                raise CredentialsRefused(
                    "InstanceProfileNotFound",
                    f"the instance profile {self.name} does not exist in account {self.service.account_id}: "
                    "run `broker provision` (it creates the workloads of config/access.yaml)",
                ) from None
            raise CredentialsRefused("ServiceUnavailable", "IAM refused GetInstanceProfile", transient=True) from None
        except BotoCoreError as error:
            raise CredentialsRefused("ServiceUnavailable", f"IAM did not answer: {error}", transient=True) from None
        roles = found.get("Roles", [])
        role = None
        if roles:
            role = Role(roles[0]["RoleName"], roles[0]["Arn"], roles[0]["AssumeRolePolicyDocument"])
        return InstanceProfile(found["InstanceProfileName"], found["Arn"], found["InstanceProfileId"], role)

    def role(self) -> Role:
        role = self.profile().role
        if role is None:
            raise CredentialsRefused("InstanceProfileHasNoRole", f"the instance profile {self.name} holds no role")
        return role


class SessionTokens:
    """IMDSv2 session tokens: random, kept only as hashes, each valid for its TTL on `clock`."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        # The newest tokens as the explanation shows them: a fingerprint, never the token.
        self.recent: deque[dict] = deque(maxlen=TOKENS_REMEMBERED)

    def issue(self, ttl: int, requested_by: str = "") -> str:
        token = secrets.token_urlsafe(42)
        now = self.clock()
        digest = _digest(token)
        self.recent.append(
            {
                "fingerprint": f"sha256:{digest[:12]}… (…{token[-4:]}, {len(token)} characters)",
                "digest": digest,
                "ttl_seconds": ttl,
                "issued_at": now,
                "expires_at": now + ttl,
                "requested_by": requested_by[:80],
                "credential_fetches": 0,
            }
        )
        with self._lock:
            if len(self._expiry) >= MAX_TOKENS:  # full: drop the expired ones, then the oldest
                for digest in [d for d, expiry in self._expiry.items() if expiry <= now]:
                    del self._expiry[digest]
                while len(self._expiry) >= MAX_TOKENS:
                    self._expiry.popitem(last=False)
            self._expiry[_digest(token)] = now + ttl
        return token

    def valid(self, token: str | None) -> bool:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return False
        with self._lock:
            expiry = self._expiry.get(_digest(token))
        return expiry is not None and self.clock() < expiry

    def used_for_credentials(self, token: str | None) -> None:
        digest = _digest(token or "")
        for entry in self.recent:
            if entry["digest"] == digest:
                entry["credential_fetches"] += 1


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InstanceMetadataService:
    """The WSGI app: IMDSv2 for one instance with one instance profile."""

    def __init__(
        self,
        identity: InstanceIdentity,
        profile: InstanceProfileLookup,
        credentials: RoleCredentialSource,
        clock: Clock = time.time,
    ):
        self.identity, self.profile_lookup, self.source, self.clock = identity, profile, credentials, clock
        self.tokens = SessionTokens(clock)

    # --- WSGI ---------------------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.answer(request)
        except Exception:  # a bug: a plain 500, never a traceback or a credential in the answer
            log.exception("error answering %s %s", request.method, request.path)
            response = _text("Internal Server Error", 500)
        response.headers["Server"] = "EC2ws"
        log.info("%s %s %s", request.method, request.path, response.status_code)  # no token, no query
        return response(environ, start_response)

    def answer(self, request: Request) -> Response:
        path = request.path
        if path == "/healthz":
            return _text("ok") if request.method in ("GET", "HEAD") else _text("Method Not Allowed", 405)
        if path == "/latest/api/token":
            return self.token(request) if request.method == "PUT" else _text("Method Not Allowed", 405)
        if request.method not in ("GET", "HEAD"):
            return _text("Method Not Allowed", 405)
        if not self.tokens.valid(request.headers.get(TOKEN_HEADER)):
            return _text("Unauthorized", 401)  # IMDSv1 (no token), an expired or unknown token
        if path == EXPLAIN_PATH:
            return self.explain()
        response = self.metadata(path)
        if path.startswith(CREDENTIALS_PREFIX) and path != CREDENTIALS_PREFIX and response.status_code == 200:
            self.tokens.used_for_credentials(request.headers.get(TOKEN_HEADER))
        return response

    def token(self, request: Request) -> Response:
        if "X-Forwarded-For" in request.headers:
            return _text("Forbidden", 403)
        ttl = request.headers.get(TOKEN_TTL_HEADER)
        if ttl is None or not re.fullmatch(r"[0-9]{1,5}", ttl) or not MIN_TOKEN_TTL <= int(ttl) <= MAX_TOKEN_TTL:
            return _text("Bad Request", 400)
        response = _text(self.tokens.issue(int(ttl), request.headers.get("User-Agent", "")))
        response.headers[TOKEN_TTL_HEADER] = ttl
        return response

    def metadata(self, path: str) -> Response:
        identity = self.identity
        fixed = {
            "/": "latest",
            "/latest": "dynamic\nmeta-data",
            "/latest/": "dynamic\nmeta-data",
            "/latest/meta-data": _listing(META_DATA),
            "/latest/meta-data/": _listing(META_DATA),
            "/latest/meta-data/ami-id": identity.image_id,
            "/latest/meta-data/hostname": identity.hostname,
            "/latest/meta-data/instance-id": identity.instance_id,
            "/latest/meta-data/instance-type": identity.instance_type,
            "/latest/meta-data/local-hostname": identity.hostname,
            "/latest/meta-data/local-ipv4": identity.private_ip,
            "/latest/meta-data/placement/": "availability-zone\nregion",
            "/latest/meta-data/placement/availability-zone": identity.availability_zone,
            "/latest/meta-data/placement/region": identity.region,
            "/latest/meta-data/iam/": "info\nsecurity-credentials/",
            "/latest/dynamic/": "instance-identity/",
            "/latest/dynamic/instance-identity/": "document",
            "/latest/dynamic/instance-identity/document": json.dumps(identity.document(), indent=2),
        }
        if path in fixed:
            return _text(fixed[path])
        if path == "/latest/meta-data/iam/info":
            return self.iam_info()
        if path == "/latest/meta-data/iam/security-credentials/":
            role = self._role_name()
            return _text(role) if role else _text("Not Found", 404)
        prefix = "/latest/meta-data/iam/security-credentials/"
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return self.role_credentials(path[len(prefix) :])
        return _text("Not Found", 404)

    def iam_info(self) -> Response:
        try:
            profile = self.profile_lookup.profile()
        except CredentialsRefused as refused:
            return self._refusal(refused)
        info = {
            "Code": "Success",
            "LastUpdated": iso8601(self.clock()),
            "InstanceProfileArn": profile.arn,
            "InstanceProfileId": profile.id,
        }
        try:
            info["LastUpdated"] = iso8601(self.source.credentials().obtained_at)
        except CredentialsRefused as refused:
            info.update(Code=refused.code, Message=refused.message)
        return _text(json.dumps(info, indent=2))

    def role_credentials(self, name: str) -> Response:
        if not name or name != self._role_name():
            return _text("Not Found", 404)
        try:
            credentials = self.source.credentials()
        except CredentialsRefused as refused:
            return self._refusal(refused)
        return _text(
            json.dumps(
                {
                    "Code": "Success",
                    "LastUpdated": iso8601(credentials.obtained_at),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": credentials.access_key_id,
                    "SecretAccessKey": credentials.secret_access_key,
                    "Token": credentials.session_token,
                    "Expiration": iso8601(credentials.expires_at),
                },
                indent=2,
            )
        )

    def explain(self) -> Response:
        """The workload path as this instance knows it (no secret: fingerprints and last 4 characters)."""
        identity, source = self.identity, self.source
        document: dict = {
            "instance_id": identity.instance_id,
            "account_id": identity.account_id,
            "region": identity.region,
            "service": source.service.service,
            "session_name": source.session_name,
            "session_seconds": source.duration,
            "rotate_before_seconds": source.rotate_before,
            "now": self.clock(),
            "instance_profile": None,
            "role": None,
            "problem": None,
        }
        try:
            profile = self.profile_lookup.profile()
            document["instance_profile"] = {"name": profile.name, "arn": profile.arn, "id": profile.id}
            if profile.role is not None:
                role = profile.role
                document["role"] = {"name": role.name, "arn": role.arn, "trust_policy": role.trust_policy}
        except CredentialsRefused as refused:
            document["problem"] = f"{refused.code}: {refused.message}"
        document["trust_checks"] = [{k: v for k, v in c.items() if k != "trust_policy"} for c in source.trust_checks]
        document["credentials"] = list(source.history)
        document["tokens"] = [{k: v for k, v in t.items() if k != "digest"} for t in self.tokens.recent]
        return Response(json.dumps(document, indent=2), content_type="application/json")

    def _role_name(self) -> str | None:
        """The role of the attached instance profile, or None when there is none to name."""
        try:
            role = self.profile_lookup.profile().role
        except CredentialsRefused:
            return None
        return role.name if role else None

    def _refusal(self, refused: CredentialsRefused) -> Response:
        """As IMDS answers when EC2 cannot get the role's credentials: 200 and a JSON Code and Message (the
        SDKs log it and find no credentials); 503 when the cause is passing (STS or IAM unreachable)."""
        log.warning("refused credentials: %s: %s", refused.code, refused.message)
        body = {"Code": refused.code, "Message": refused.message, "LastUpdated": iso8601(self.clock())}
        return _text(json.dumps(body, indent=2), 503 if refused.transient else 200)


META_DATA = (
    "ami-id",
    "hostname",
    "iam/",
    "instance-id",
    "instance-type",
    "local-hostname",
    "local-ipv4",
    "placement/",
)


def _listing(entries: tuple[str, ...]) -> str:
    return "\n".join(entries)


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/plain")


def build_service(
    sessions,
    account_id: str,
    region: str,
    instance_profile: str,
    *,
    instance_id: str | None = None,
    duration_seconds: int = DEFAULT_SESSION_SECONDS,
    rotate_before_seconds: int = DEFAULT_ROTATE_BEFORE_SECONDS,
    clock: Clock = time.time,
) -> InstanceMetadataService:
    """The metadata service of an instance in `account_id` with `instance_profile` attached; EC2 acts through
    `sessions` (a broker.aws.accounts.AccountSessions whose session name is the EC2 service principal)."""
    ec2 = ServiceInAccount(sessions, account_id, EC2_SERVICE)
    identity = InstanceIdentity(instance_id or new_instance_id(), account_id, region, launched_at=clock())
    lookup = InstanceProfileLookup(ec2, instance_profile)
    source = RoleCredentialSource(
        ec2,
        lookup.role,
        identity.instance_id,  # EC2 names the role session after the instance
        duration_seconds=duration_seconds,
        rotate_before_seconds=rotate_before_seconds,
        clock=clock,
        service_label="EC2",
    )
    return InstanceMetadataService(identity, lookup, source, clock)


def main(argv: list[str] | None = None) -> int:
    from devstack.serving import add_workload_arguments, serve_wsgi, workload_context

    parser = argparse.ArgumentParser(prog="python -m devstack.instance_metadata", description=__doc__.split("\n")[0])
    add_workload_arguments(parser, default_port=8004)
    parser.add_argument(
        "--instance-profile",
        default="EmployeeWebAppRole",
        help="the instance profile attached to the instance (default: EmployeeWebAppRole)",
    )
    parser.add_argument("--instance-id", help="i- and 17 hex digits (default: a new one)")
    args = parser.parse_args(argv)
    if args.instance_id and not re.fullmatch(INSTANCE_ID_PATTERN, args.instance_id):
        parser.error(f"--instance-id {args.instance_id!r} is not i- and 17 hex digits")
    context = workload_context(args, EC2_SERVICE)
    service = build_service(
        context.sessions,
        context.account_id,
        context.region,
        args.instance_profile,
        instance_id=args.instance_id,
        duration_seconds=args.session_seconds,
        rotate_before_seconds=args.rotate_before,
    )
    log.info(
        "instance %s in account %s (%s), instance profile %s; credentials for %d s, rotated %d s before expiry",
        service.identity.instance_id,
        context.account_id,
        context.region,
        args.instance_profile,
        args.session_seconds,
        args.rotate_before,
    )
    try:  # as an instance boots: say at once whether the role can be served, and why not
        service.source.credentials()
    except CredentialsRefused as refused:
        log.error("the instance's role cannot be served: %s: %s", refused.code, refused.message)
    serve_wsgi(service, args.host, args.port, name="instance metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
