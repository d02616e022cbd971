"""What the stand-ins of AWS services for workloads (devstack/instance_metadata.py, for EC2, and
devstack/container_credentials.py, for ECS) share: their command-line options, how the service reaches the
emulator, and a small threaded HTTP server.

The service acts in the workload's account as `devstack.aws_emulator` lets an AWS service act: from the
emulator's management keys (the file the demo launcher and the compose provision step write), through the
account's organization access role, in a session named after the service principal.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.aws.accounts import AccountSessions, broker_session
from broker.core.access import load_access
from broker.settings import DEFAULT_CONFIG
from devstack.aws_emulator import service_principal_session
from devstack.workload_credentials import (
    DEFAULT_ROTATE_BEFORE_SECONDS,
    DEFAULT_SESSION_SECONDS,
    MAX_SESSION_SECONDS,
    MIN_SESSION_SECONDS,
)

DEFAULT_ACCOUNT = "example-production"  # where the demo's Employee Directory instance runs
DEFAULT_CREDENTIALS_FILE = "instance/broker/aws-credentials"  # the demo launcher's (devstack/stack.py)


def add_workload_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default: {default_port})")
    parser.add_argument(
        "--account",
        default=os.environ.get("WORKLOAD_ACCOUNT", DEFAULT_ACCOUNT),
        help="the workload's account, by name or ID in config/access.yaml "
        f"(default: $WORKLOAD_ACCOUNT or {DEFAULT_ACCOUNT})",
    )
    parser.add_argument(
        "--aws-url",
        default=os.environ.get("AWS_URL", "http://127.0.0.1:8002"),
        help="the AWS emulator (default: $AWS_URL or http://127.0.0.1:8002)",
    )
    parser.add_argument(
        "--credentials-file",
        default=os.environ.get("AWS_SHARED_CREDENTIALS_FILE", DEFAULT_CREDENTIALS_FILE),
        help="the emulator's management keys, as the demo writes them "
        f"(default: $AWS_SHARED_CREDENTIALS_FILE or {DEFAULT_CREDENTIALS_FILE})",
    )
    parser.add_argument(
        "--session-seconds",
        type=int,
        default=int(os.environ.get("WORKLOAD_SESSION_SECONDS", DEFAULT_SESSION_SECONDS)),
        help=f"lifetime of the role's credentials, {MIN_SESSION_SECONDS} to {MAX_SESSION_SECONDS} "
        f"(default: $WORKLOAD_SESSION_SECONDS or {DEFAULT_SESSION_SECONDS})",
    )
    parser.add_argument(
        "--rotate-before",
        type=int,
        default=DEFAULT_ROTATE_BEFORE_SECONDS,
        help=f"new credentials when fewer seconds than this remain (default: {DEFAULT_ROTATE_BEFORE_SECONDS})",
    )


@dataclass(frozen=True)
class WorkloadContext:
    sessions: AccountSessions
    account_id: str
    region: str


def workload_context(args: argparse.Namespace, service: str) -> WorkloadContext:
    """The service principal `service` acting in the account of `--account` (and logging set up). Exits with a
    one-line message when the options do not fit the access config."""
    configure_logging()
    access = load_access(Path(os.environ.get("BROKER_CONFIG", DEFAULT_CONFIG)).parent / "access.yaml")
    by_name = {account.name: account.id for account in access.accounts.values()}
    account_id = args.account if args.account in access.accounts else by_name.get(args.account)
    if account_id is None:
        raise SystemExit(f"unknown account {args.account!r} (config/access.yaml has: {', '.join(by_name)})")
    if not MIN_SESSION_SECONDS <= args.session_seconds <= MAX_SESSION_SECONDS:
        raise SystemExit(f"--session-seconds {args.session_seconds}: STS allows {MIN_SESSION_SECONDS} to 43200")
    if not 0 <= args.rotate_before < args.session_seconds:
        raise SystemExit("--rotate-before must be shorter than --session-seconds")
    sessions = AccountSessions(
        broker_session(Path(args.credentials_file)),
        access.region,
        endpoint_url=args.aws_url or None,
        session_name=service_principal_session(service),
    )
    return WorkloadContext(sessions, account_id, access.region)


def configure_logging() -> None:
    """One line per record on standard error, control characters escaped (a request's path is the caller's
    text), as the servers log (sso_common.logs); the launcher puts it in the service's log file."""
    from sso_common.logs import configure_logging as escaped_lines

    escaped_lines()


def serve_wsgi(app: Callable, host: str, port: int, *, name: str) -> None:
    """Serve `app` until SIGTERM or Ctrl-C with the project's one serving stack, in ONE worker process:
    the stand-ins keep their tokens and cached credentials in memory, which a second worker would not see."""
    from sso_common.serve import serve

    logging.getLogger("devstack").info("%s listening on http://%s:%d", name, host, port)
    serve(lambda: app, host, port, workers=1)
