"""An AWS emulator as the workloads meet it: organization, `provision` of config/access.yaml (workload
roles, instance profile, Employee Directory data), IAM enforcement on; a clock tests move by hand; and
WSGI apps served on a free loopback port in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from werkzeug.serving import make_server

from broker.aws.accounts import AccountSessions
from broker.aws.assertion import idp_metadata_xml
from broker.aws.provisioning import provision
from broker.core.access import AccessConfig, load_access
from devstack.aws_emulator import MotoServer, service_principal_session
from sso_common.keys import load_or_create_signing_identity

REPO = Path(__file__).resolve().parents[2]
SANDBOX, PRODUCTION = "111111111111", "222222222222"


@dataclass
class ProvisionedEmulator:
    moto: MotoServer
    access: AccessConfig
    management: boto3.Session  # the organization's management keys, as the demo hands them to devstack
    admin: AccountSessions  # the organization access role, as `broker provision` acts

    def service(self, principal: str) -> AccountSessions:
        """An AWS service (ec2.amazonaws.com...) acting in the accounts, as devstack's stand-ins do."""
        return AccountSessions(
            self.management,
            self.access.region,
            endpoint_url=self.moto.endpoint_url,
            session_name=service_principal_session(principal),
        )


@contextmanager
def provisioned_emulator(folder: Path) -> Iterator[ProvisionedEmulator]:
    access = load_access(REPO / "config" / "access.yaml")
    with MotoServer(folder) as moto:
        management = moto.create_organization(list(access.accounts))
        admin = AccountSessions(management, access.region, endpoint_url=moto.endpoint_url)
        signing = load_or_create_signing_identity(folder / "keys", "aws-idp-signing", "https://broker.test/saml")
        metadata = idp_metadata_xml("https://broker.test/saml", signing, "https://broker.test/")
        provision(access, metadata, admin.client)
        moto.set_enforcement(True)
        yield ProvisionedEmulator(moto, access, management, admin)


class FakeClock:
    """Seconds since the epoch, starting at the real time, moving only when told."""

    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def served(app, port: int = 0) -> Iterator[str]:
    """`app` on 127.0.0.1 (on `port`, or a free one) in a thread; yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
