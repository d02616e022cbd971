"""Ask the service that hands the app its role's credentials what it is handing out now: when they were
issued and when they expire, for the status page.

boto3 knows the expiry too, but not as issued: for instance-metadata credentials with less than about 20
minutes left it pushes its own idea of the expiry later (its static stability in an IMDS outage), which
would show the demo's 15-minute credentials living longer than they do. So the page asks the source the
same way boto3 does (the same standard variables: AWS_EC2_METADATA_SERVICE_ENDPOINT, or
AWS_CONTAINER_CREDENTIALS_FULL_URI with its token), reads the dates and the access key's ID, and keeps
nothing else: the secret and the session token are dropped at once.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

TIMEOUT_SECONDS = 2
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class SourceView:
    kind: str  # "instance metadata" or "container endpoint"
    issued: datetime | None
    expires: datetime | None
    access_key_id: str
    instance_id: str | None = None
    profile_arn: str | None = None
    role_arn: str | None = None


class SourceUnreadable(Exception):
    """The source could not be read; the message says why (no secret in it)."""


def read_source(environ: dict[str, str] | None = None) -> SourceView:
    environ = dict(os.environ if environ is None else environ)
    if environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return _container(environ)
    return _instance_metadata(
        (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254").rstrip("/")
    )


def _instance_metadata(base: str) -> SourceView:
    token = _fetch(
        urllib.request.Request(
            f"{base}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
    )

    def get(path: str) -> str:
        return _fetch(urllib.request.Request(base + path, headers={"X-aws-ec2-metadata-token": token}))

    role = get("/latest/meta-data/iam/security-credentials/").strip().splitlines()[0]
    document = _json(get(f"/latest/meta-data/iam/security-credentials/{role}"))
    info = _json(get("/latest/meta-data/iam/info"))
    if document.get("Code") != "Success":
        raise SourceUnreadable(f"the instance metadata service says {document.get('Code')}: {document.get('Message')}")
    return SourceView(
        kind="instance metadata",
        issued=_date(document.get("LastUpdated")),
        expires=_date(document.get("Expiration")),
        access_key_id=str(document.get("AccessKeyId", "")),
        instance_id=get("/latest/meta-data/instance-id").strip(),
        profile_arn=info.get("InstanceProfileArn"),
    )


def _container(environ: dict[str, str]) -> SourceView:
    token = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if token is None and environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
        try:
            with open(environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as error:
            raise SourceUnreadable(f"cannot read the endpoint's token file ({error.strerror})") from None
    headers = {"Authorization": token} if token else {}
    document = _json(_fetch(urllib.request.Request(environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers=headers)))
    return SourceView(
        kind="container endpoint",
        issued=None,
        expires=_date(document.get("Expiration")),
        access_key_id=str(document.get("AccessKeyId", "")),
        role_arn=document.get("RoleArn"),
    )


def _fetch(request: urllib.request.Request) -> str:
    try:
        with _NO_PROXY.open(request, timeout=TIMEOUT_SECONDS) as answer:
            return answer.read(65536).decode()
    except urllib.error.HTTPError as error:
        raise SourceUnreadable(f"{request.get_method()} {request.full_url} answered {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SourceUnreadable(f"{request.full_url} does not answer ({getattr(error, 'reason', error)})") from None


def _json(text: str) -> dict:
    try:
        document = json.loads(text)
    except ValueError:
        raise SourceUnreadable("the credentials source answered something other than JSON") from None
    if not isinstance(document, dict):
        raise SourceUnreadable("the credentials source answered an unexpected JSON document")
    return document


def _date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
