"""The app's configuration (config/employee-directory.yaml), validated at start-up.

It names where the app is, the identity provider it signs people in with, and the AWS resources it uses,
never an AWS key: there is no key for one (an unknown key stops the app), and the app refuses to start
when its environment holds AWS keys or a profile (`refuse_aws_keys_in_environment`). Its AWS credentials
are its role's, found by boto3's default chain (instance metadata on EC2, the container endpoint in a
task). A mistake stops the app with a message naming the file, the key and the problem. Values written
`${NAME:-default}` come from the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "employee-directory.yaml"
CONFIG_VARIABLE = "EMPLOYEE_DIRECTORY_CONFIG"
INSTANCE_VARIABLE = "EMPLOYEE_DIRECTORY_INSTANCE_DIR"
# Variables that would hand the app credentials other than its role's (or name a file or profile of them).
AWS_KEY_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
URL_PATTERN = r"https?://[^\s/?#]+"
REGION_PATTERN = r"[a-z]{2}(-[a-z]+)+-\d"
TABLE_PATTERN = r"[A-Za-z0-9_.-]{3,255}"
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
PREFIX_PATTERN = r"[a-z0-9][a-z0-9._-]{0,62}/"
GROUP_PATTERN = r"[a-z][a-z0-9._-]{0,63}"
CLIENT_ID_PATTERN = r"[A-Za-z0-9._~-]{1,128}"
MIN_SECRET_LENGTH = 16
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")


class ConfigError(Exception):
    """The configuration is wrong; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class Settings:
    source: str
    url: str  # where people reach the app (its OIDC redirect address is derived from it)
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    editors_group: str
    region: str
    endpoint_url: str | None  # the AWS emulator; None against AWS
    table: str
    bucket_template: str  # may hold {account_id}
    uploads_prefix: str
    session_lifetime: int
    instance_dir: Path

    def bucket(self, account_id: str) -> str:
        return self.bucket_template.replace("{account_id}", account_id)

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/auth/callback"


def load_settings(path: str | Path | None = None, instance_dir: str | Path | None = None) -> Settings:
    source = str(path or os.environ.get(CONFIG_VARIABLE) or DEFAULT_CONFIG)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{source}: cannot read file ({error.strerror})") from None
    try:
        data = yaml.safe_load(_interpolate(text, source))
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {getattr(error, 'problem', error)}") from None
    root = _Node(source, "", data if data is not None else {})
    root.only("url", "identity_provider", "editors_group", "aws", "session_lifetime_seconds")
    url = root.get("url").text(URL_PATTERN, "an http(s) address without a path, e.g. http://localhost:8003")
    idp = root.get("identity_provider").only("issuer", "client_id", "client_secret")
    aws = root.get("aws").only("region", "endpoint_url", "table", "bucket", "uploads_prefix")
    issuer = idp.get("issuer").text(r"https?://[^\s?#]+", "an http(s) issuer URL")
    secret_node = idp.get("client_secret")
    secret = secret_node.text()
    if len(secret) < MIN_SECRET_LENGTH:
        raise secret_node.error(f"must be at least {MIN_SECRET_LENGTH} characters")
    if secret.startswith("demo-") and url.startswith("https://"):
        raise secret_node.error("is the public demo value; set your own secret before serving over https")
    endpoint = aws.get("endpoint_url", "").value
    if endpoint and not (isinstance(endpoint, str) and re.fullmatch(URL_PATTERN + r"/?", endpoint)):
        raise aws.get("endpoint_url").error(f"{endpoint!r} is not an http(s) address (leave it empty for AWS)")
    bucket_node = aws.get("bucket")
    bucket = bucket_node.text()
    if not re.fullmatch(BUCKET_PATTERN, bucket.replace("{account_id}", "123456789012")):
        raise bucket_node.error(f"{bucket!r} is not a valid S3 bucket name (with {{account_id}} filled in)")
    lifetime_node = root.get("session_lifetime_seconds", 28800)
    lifetime = lifetime_node.value
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not 300 <= lifetime <= 86400:
        raise lifetime_node.error("must be a whole number of seconds from 300 to 86400")
    return Settings(
        source=source,
        url=url.rstrip("/"),
        issuer=issuer.rstrip("/"),
        client_id=idp.get("client_id").text(CLIENT_ID_PATTERN, "a client ID (letters, digits, . _ ~ -)"),
        client_secret=secret,
        editors_group=root.get("editors_group").text(GROUP_PATTERN, "a group name of the directory"),
        region=aws.get("region").text(REGION_PATTERN, "an AWS region such as us-east-1"),
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        table=aws.get("table").text(TABLE_PATTERN, "a DynamoDB table name"),
        bucket_template=bucket,
        uploads_prefix=aws.get("uploads_prefix", "uploads/").text(PREFIX_PATTERN, "a key prefix such as uploads/"),
        session_lifetime=lifetime,
        instance_dir=Path(
            instance_dir or os.environ.get(INSTANCE_VARIABLE) or Path.cwd() / "instance" / "employee-directory"
        ),
    )


def refuse_aws_keys_in_environment(environ: Mapping[str, str] | None = None) -> None:
    """ConfigError if the environment could hand the app credentials other than its role's."""
    environ = os.environ if environ is None else environ
    found = [name for name in AWS_KEY_VARIABLES if environ.get(name)]
    if found:
        raise ConfigError(
            f"environment: {', '.join(found)} set: the Employee Directory uses its role's credentials only "
            "(boto3's default chain: instance metadata or the container endpoint); unset them"
        )


def _interpolate(text: str, source: str) -> str:
    def replace(match: re.Match) -> str:
        value = os.environ.get(match.group(1), match.group(2))
        if value is None:
            raise ConfigError(f"{source}: environment variable {match.group(1)} is not set and has no default")
        return value

    while (expanded := _ENV.sub(replace, text)) != text:
        text = expanded
    return text


_MISSING = object()


@dataclass(frozen=True)
class _Node:
    source: str
    key: str
    value: Any

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key or '(top level)'}: {problem}")

    def only(self, *allowed: str) -> _Node:
        if not isinstance(self.value, dict):
            raise self.error("must be a mapping")
        for name in self.value:
            if name not in allowed:
                where = f"{self.key}.{name}" if self.key else str(name)
                hint = " (AWS keys never go here: the app uses its role's)" if "key" in str(name).lower() else ""
                raise ConfigError(f"{self.source}: {where}: unknown key{hint} (allowed: {', '.join(allowed)})")
        return self

    def get(self, name: str, default: Any = _MISSING) -> _Node:
        if not isinstance(self.value, dict):
            raise self.error("must be a mapping")
        key = f"{self.key}.{name}" if self.key else name
        if name not in self.value:
            if default is _MISSING:
                raise ConfigError(f"{self.source}: {key}: is required")
            return _Node(self.source, key, default)
        return _Node(self.source, key, self.value[name])

    def text(self, pattern: str | None = None, what: str = "") -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error("must be a non-empty string")
        if pattern and not re.fullmatch(pattern, self.value):
            raise self.error(f"{self.value!r} is not {what or 'valid'}")
        return self.value
