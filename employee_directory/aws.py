"""The app's AWS side: its role's session (boto3's default chain, nothing else), the Employees table and
the photos bucket, and what it can tell about its own credentials.

boto3 resolves the credentials when the session is first used: if there are none yet (the instance's
metadata service is not up), nothing is kept, and the next request tries again, so the app recovers
without a restart. Credentials from anything but a role (keys in a file, a profile) are refused: the
lesson's app holds no keys. Every failure to reach AWS becomes `AwsUnavailable`, a message fit for the
error page (never a credential).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from employee_directory.settings import Settings

log = logging.getLogger(__name__)

# How botocore names credentials that come from a role handed to the workload by an AWS service.
ROLE_METHODS = {
    "iam-role": "the EC2 instance profile's role",
    "container-role": "the task's role",
    "assume-role-with-web-identity": "the pod's role (web identity)",
}
USERNAME_PATTERN = r"[a-z][a-z0-9._-]{0,63}"
MAX_PHOTO_BYTES = 1024 * 1024
PHOTO_TYPES = {  # what an upload may be, recognised by its first bytes, never by its name
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
SERVED_PHOTO_TYPES = {*PHOTO_TYPES, "image/webp", "image/svg+xml"}  # the seeded badges are SVG


class AwsUnavailable(Exception):
    """AWS cannot be used right now; the message says why, for people (no secret in it)."""


@dataclass(frozen=True)
class Employee:
    username: str
    display_name: str
    department: str
    email: str
    photo_key: str | None

    def matches(self, words: list[str]) -> bool:
        text = f"{self.username} {self.display_name} {self.department} {self.email}".lower()
        return all(word in text for word in words)


@dataclass(frozen=True)
class Photo:
    body: bytes
    content_type: str
    uploaded: bool  # under the uploads prefix (an editor's), or the seeded one


@dataclass(frozen=True)
class Attempt:
    """What AWS answered to something the role should not be allowed to do."""

    action: str
    resource: str
    denied: bool
    code: str
    message: str


@dataclass
class CredentialView:
    """The app's credentials as boto3 holds them, and the rotations the app has seen."""

    method: str
    source: str
    access_key: str  # masked
    expires: datetime | None
    first_seen: datetime
    current_since: datetime
    rotations: int
    last_rotation: datetime | None


def photo_type(data: bytes) -> str | None:
    for content_type, signatures in PHOTO_TYPES.items():
        if data.startswith(signatures):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def mask(access_key: str) -> str:
    return f"{access_key[:4]}…{access_key[-4:]}" if len(access_key) > 8 else "…"


def credential_source_description(environ: dict[str, str] | None = None) -> str:
    """Where boto3's default chain will look for this app's role, from the standard variables."""
    environ = dict(os.environ if environ is None else environ)
    if environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return f"the container credentials endpoint at {environ['AWS_CONTAINER_CREDENTIALS_FULL_URI']}"
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return "the ECS container credentials endpoint (169.254.170.2)"
    endpoint = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254"
    return f"the instance metadata service at {endpoint.rstrip('/')}"


class CredentialWatch:
    """Notices when the access key boto3 uses changes: a rotation the app went through without restarting."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._key: str | None = None
        self._lock = threading.Lock()
        self.first_seen: float | None = None
        self.current_since: float | None = None
        self.rotations = 0
        self.last_rotation: float | None = None

    def observe(self, access_key: str) -> None:
        with self._lock:
            if access_key == self._key:
                return
            now = self.clock()
            if self._key is None:
                self.first_seen = now
            else:
                self.rotations += 1
                self.last_rotation = now
                log.info("the role's credentials rotated (now %s); no restart needed", mask(access_key))
            self._key, self.current_since = access_key, now


class AwsAccess:
    """The role's boto3 session and clients, made when first needed and made again after a credential failure."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.watch = CredentialWatch(clock)
        self._lock = threading.Lock()
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}
        self._account_id: str | None = None
        self._config = Config(
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"} if settings.endpoint_url else None,
        )

    def _credentials(self, session: boto3.Session):
        try:
            credentials = session.get_credentials()
        except BotoCoreError as error:
            raise AwsUnavailable(self._no_credentials(str(error))) from None
        if credentials is None:
            raise AwsUnavailable(self._no_credentials(None))
        if credentials.method not in ROLE_METHODS:
            raise AwsUnavailable(
                f"boto3 found credentials of the kind '{credentials.method}', not a role's: the Employee "
                "Directory uses only its role (instance metadata or the container endpoint). Remove them."
            )
        return credentials

    def _no_credentials(self, detail: str | None) -> str:
        said = f" It said: {detail}" if detail else ""
        return (
            "The Employee Directory has no AWS credentials: it takes its role's from "
            f"{credential_source_description()}, which gave none.{said} Is the instance's metadata service "
            "(or the container endpoint) running?"
        )

    def client(self, service: str):
        with self._lock:
            if self._session is None:
                session = boto3.Session(region_name=self.settings.region)  # the default chain, no keys
                self._credentials(session)
                self._session, self._clients = session, {}
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service, endpoint_url=self.settings.endpoint_url, config=self._config
                )
            return self._clients[service]

    def forget(self) -> None:
        """Drop the session: the next call resolves the credentials again."""
        with self._lock:
            self._session, self._clients = None, {}

    def call(self, service: str, operation: str, **params: Any) -> dict:
        """One AWS call as the role. AwsUnavailable when there are no credentials or AWS does not answer;
        botocore's ClientError (AWS's own refusals, e.g. AccessDenied) passes through."""
        try:
            answer = getattr(self.client(service), operation)(**params)
        except ClientError:
            raise
        except BotoCoreError as error:
            self.forget()
            where = self.settings.endpoint_url or "AWS"
            if "credential" in type(error).__name__.lower():
                raise AwsUnavailable(self._no_credentials(str(error))) from None
            raise AwsUnavailable(f"The Employee Directory cannot reach {where}: {error}") from None
        self._observe()
        return answer

    def _observe(self) -> None:
        session = self._session
        credentials = session.get_credentials() if session is not None else None
        if credentials is not None:
            self.watch.observe(credentials.get_frozen_credentials().access_key)

    def account_id(self) -> str:
        if self._account_id is None:
            self._account_id = self.call("sts", "get_caller_identity")["Account"]
        return self._account_id

    def bucket(self) -> str:
        return self.settings.bucket(self.account_id())

    # --- what the status page shows ----------------------------------------------------------------------

    def identity(self) -> dict:
        answer = self.call("sts", "get_caller_identity")
        return {"Arn": answer["Arn"], "Account": answer["Account"], "UserId": answer["UserId"]}

    def credential_view(self) -> CredentialView:
        self.client("sts")
        session = self._session
        credentials = self._credentials(session) if session is not None else None
        if credentials is None:
            raise AwsUnavailable(self._no_credentials(None))
        try:
            frozen = credentials.get_frozen_credentials()  # refreshes first when boto3 thinks it is time
        except BotoCoreError as error:
            self.forget()
            raise AwsUnavailable(self._no_credentials(str(error))) from None
        self.watch.observe(frozen.access_key)
        expiry = getattr(credentials, "_expiry_time", None)  # botocore keeps it there; absent for static keys
        watch = self.watch
        return CredentialView(
            method=credentials.method,
            source=f"{ROLE_METHODS[credentials.method]}, from {credential_source_description()}",
            access_key=mask(frozen.access_key),
            expires=expiry.astimezone(UTC) if isinstance(expiry, datetime) else None,
            first_seen=_utc(watch.first_seen),
            current_since=_utc(watch.current_since),
            rotations=watch.rotations,
            last_rotation=_utc(watch.last_rotation) if watch.last_rotation is not None else None,
        )

    def try_to_delete_the_bucket(self) -> Attempt:
        """s3:DeleteBucket, which the role is not given: AWS should answer AccessDenied. The bucket holds the
        photos, so even a role allowed to delete buckets would meet BucketNotEmpty, not an empty account."""
        bucket = self.bucket()
        try:
            self.call("s3", "delete_bucket", Bucket=bucket)
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", "Unknown"))
            return Attempt(
                "s3:DeleteBucket",
                f"arn:aws:s3:::{bucket}",
                code in ("AccessDenied", "403"),
                code,
                str(details.get("Message", "")),
            )
        return Attempt("s3:DeleteBucket", f"arn:aws:s3:::{bucket}", False, "Deleted", "the bucket was deleted")

    # --- the directory -----------------------------------------------------------------------------------

    def employees(self) -> list[Employee]:
        found: list[Employee] = []
        params: dict[str, Any] = {"TableName": self.settings.table}
        while True:
            page = self.call("dynamodb", "scan", **params)
            found += [employee for item in page.get("Items", []) if (employee := _employee(item)) is not None]
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda employee: (employee.display_name.lower(), employee.username))

    def employee(self, username: str) -> Employee | None:
        if not re.fullmatch(USERNAME_PATTERN, username):
            return None
        item = self.call("dynamodb", "get_item", TableName=self.settings.table, Key={"username": {"S": username}})
        return _employee(item["Item"]) if "Item" in item else None

    def upload_key(self, username: str) -> str:
        return f"{self.settings.uploads_prefix}{username}"

    def photo(self, employee: Employee) -> Photo | None:
        """The uploaded photo if there is one, else the seeded one, else None."""
        for key, uploaded in ((self.upload_key(employee.username), True), (employee.photo_key, False)):
            if not key:
                continue
            try:
                answer = self.call("s3", "get_object", Bucket=self.bucket(), Key=key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue
                raise
            content_type = answer.get("ContentType", "")
            body = answer["Body"].read(MAX_PHOTO_BYTES + 1)
            if content_type not in SERVED_PHOTO_TYPES or len(body) > MAX_PHOTO_BYTES:
                log.warning("photo %s of %s is not served (type %r)", key, employee.username, content_type)
                continue
            return Photo(body, content_type, uploaded)
        return None

    def put_photo(self, employee: Employee, data: bytes, content_type: str, uploaded_by: str) -> str:
        key = self.upload_key(employee.username)
        self.call(
            "s3",
            "put_object",
            Bucket=self.bucket(),
            Key=key,
            Body=data,
            ContentType=content_type,
            Metadata={"uploaded-by": uploaded_by},
        )
        return key


def _employee(item: dict) -> Employee | None:
    values = {name: value.get("S") for name, value in item.items() if isinstance(value, dict)}
    username = values.get("username")
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        log.warning("skipping an Employees item without a valid username")
        return None
    return Employee(
        username=username,
        display_name=values.get("display_name") or username,
        department=values.get("department") or "",
        email=values.get("email") or "",
        photo_key=values.get("photo_key"),
    )


def _utc(seconds: float | None) -> datetime:
    return datetime.fromtimestamp(seconds if seconds is not None else time.time(), UTC)
