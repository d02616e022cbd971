"""A local AWS for development and tests: moto server in a subprocess, plus an emulated organization.

moto server (run through `python -m devstack.aws_emulator`: moto's `moto_server`, with the fixes below) keeps
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


if __name__ == "__main__":  # the emulator process: moto server, started by MotoServer
    from moto.server import main as moto_server_main

    _load_managed_policies_once()
    _service_principals_in_trust_policies()
    moto_server_main(sys.argv[1:])
