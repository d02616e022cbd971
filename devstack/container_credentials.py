"""A container credentials endpoint (as the ECS agent, or EKS Pod Identity, runs beside a task) for the
compose stack's Employee Directory: its task role's credentials, to the app's unmodified boto3.

The SDKs use it given `AWS_CONTAINER_CREDENTIALS_FULL_URI` (botocore accepts only a loopback address,
169.254.170.2/23, fd00:ec2::23 or https there) and `AWS_CONTAINER_AUTHORIZATION_TOKEN`, or
`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (a file holding the token, as EKS mounts it). So the endpoint and
the app share a network namespace (compose: `network_mode: service:...`) and it listens on loopback only:

    GET /v1/credentials   Authorization: <token>
    -> 200 {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn", "AccountId"}

Refused: a request from anything but a loopback address (403), without the token or with another one
(401), another path (404) or method (405). The role must trust ecs-tasks.amazonaws.com: another role is
refused (403) with the reason, which botocore passes on in its error. The credentials rotate as the
instance metadata service's do (devstack/workload_credentials.py).

    python -m devstack.container_credentials --port 8005 --role EmployeeWebAppTaskRole --token-file PATH
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from werkzeug.wrappers import Request, Response

from devstack.workload_credentials import (
    DEFAULT_ROTATE_BEFORE_SECONDS,
    DEFAULT_SESSION_SECONDS,
    Clock,
    CredentialsRefused,
    RoleCredentialSource,
    ServiceInAccount,
    iso8601,
    role_by_name,
)

log = logging.getLogger("devstack.container_credentials")

ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"
CREDENTIALS_PATH = "/v1/credentials"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 512


class ContainerCredentialsEndpoint:
    """The WSGI app: one task role's credentials, to loopback callers holding the token."""

    def __init__(self, token: str, credentials: RoleCredentialSource, account_id: str, clock: Clock = time.time):
        if len(token) < MIN_TOKEN_LENGTH or not token.isprintable():
            raise ValueError(f"the authorization token must be at least {MIN_TOKEN_LENGTH} printable characters")
        self._token = token.encode()
        self.source, self.account_id, self.clock = credentials, account_id, clock

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.answer(request)
        except Exception:
            log.exception("error answering %s %s", request.method, request.path)
            response = _json({"code": "InternalError", "message": "see the endpoint's log"}, 500)
        log.info("%s %s %s", request.method, request.path, response.status_code)  # never the token
        return response(environ, start_response)

    def answer(self, request: Request) -> Response:
        if request.path == "/healthz":
            return _json({"status": "ok"})
        if not _loopback(request.remote_addr):
            return _json({"code": "Forbidden", "message": "only a process beside the endpoint may ask"}, 403)
        if request.path != CREDENTIALS_PATH:
            return _json({"code": "NotFound", "message": f"credentials are at {CREDENTIALS_PATH}"}, 404)
        if request.method not in ("GET", "HEAD"):
            return _json({"code": "MethodNotAllowed", "message": "use GET"}, 405)
        given = request.headers.get("Authorization")
        if not given or len(given) > MAX_TOKEN_LENGTH or not hmac.compare_digest(given.encode(), self._token):
            return _json(
                {
                    "code": "Unauthorized",
                    "message": "the Authorization header must carry the endpoint's token "
                    "(AWS_CONTAINER_AUTHORIZATION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
                },
                401,
            )
        try:
            credentials = self.source.credentials()
        except CredentialsRefused as refused:
            log.warning("refused credentials: %s: %s", refused.code, refused.message)
            return _json({"code": refused.code, "message": refused.message}, 503 if refused.transient else 403)
        return _json(
            {
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "Token": credentials.session_token,
                "Expiration": iso8601(credentials.expires_at),
                "RoleArn": credentials.role_arn,
                "AccountId": self.account_id,
            }
        )


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def build_endpoint(
    sessions,
    account_id: str,
    role: str,
    token: str,
    *,
    task_id: str | None = None,
    duration_seconds: int = DEFAULT_SESSION_SECONDS,
    rotate_before_seconds: int = DEFAULT_ROTATE_BEFORE_SECONDS,
    clock: Clock = time.time,
) -> ContainerCredentialsEndpoint:
    """The endpoint of a task running as `role` in `account_id`; ECS acts through `sessions` (an
    AccountSessions whose session name is the ECS tasks service principal)."""
    ecs = ServiceInAccount(sessions, account_id, ECS_TASKS_SERVICE)
    source = RoleCredentialSource(
        ecs,
        role_by_name(ecs, role),
        task_id or "task-" + secrets.token_hex(8),  # ECS names the role session after the task
        duration_seconds=duration_seconds,
        rotate_before_seconds=rotate_before_seconds,
        clock=clock,
        service_label="ECS",
    )
    return ContainerCredentialsEndpoint(token, source, account_id, clock)


def token_from_file(path: Path) -> str:
    """The token in `path`, made (random, readable by its owner only) when the file does not exist yet;
    the app reads the same file through AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    token = path.read_text().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise SystemExit(f"{path}: the token must be at least {MIN_TOKEN_LENGTH} characters")
    return token


def main(argv: list[str] | None = None) -> int:
    from devstack.serving import add_workload_arguments, serve_wsgi, workload_context

    parser = argparse.ArgumentParser(
        prog="python -m devstack.container_credentials", description=__doc__.split("\n")[0]
    )
    add_workload_arguments(parser, default_port=8005)
    parser.add_argument("--role", default="EmployeeWebAppTaskRole", help="the task role (default: %(default)s)")
    parser.add_argument(
        "--token-file", required=True, type=Path, help="the authorization token's file (made when missing)"
    )
    args = parser.parse_args(argv)
    context = workload_context(args, ECS_TASKS_SERVICE)
    endpoint = build_endpoint(
        context.sessions,
        context.account_id,
        args.role,
        token_from_file(args.token_file),
        duration_seconds=args.session_seconds,
        rotate_before_seconds=args.rotate_before,
    )
    log.info(
        "task role %s in account %s; credentials at http://%s:%d%s for holders of the token in %s",
        args.role,
        context.account_id,
        args.host,
        args.port,
        CREDENTIALS_PATH,
        args.token_file,
    )
    try:
        endpoint.source.credentials()
    except CredentialsRefused as refused:
        log.error("the task role cannot be served: %s: %s", refused.code, refused.message)
    serve_wsgi(endpoint, args.host, args.port, name="container credentials endpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
