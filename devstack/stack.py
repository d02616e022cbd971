"""The whole stack on one machine: AWS emulator, corporate IdP, access portal, and the Employee Directory
on its "EC2 instance".

`./run demo` starts it on the default addresses; the end-to-end tests start the same thing on free
ports. Every port is checked first: the launcher never uses (or prepares) a server it did not start.
The IdP and the Employee Directory app (employee_directory/, whose environment holds no AWS key, only its
instance's metadata service's address, asked when the app first uses AWS) need nothing at start and start at
once. The emulator comes first for the rest: an organization with an access role per account, whose management
keys go into the portal's instance folder (`aws-credentials`, where `broker serve` and `broker provision` find
them); the portal starts as soon as they and its signing key for AWS exist, while provisioning (SAML provider,
roles, demo data; what `broker provision` does, here in the launcher's process, the accounts in parallel) runs;
then IAM enforcement goes on. Then the instance's metadata service starts (devstack/instance_metadata.py:
EmployeeWebAppRole's credentials, IMDSv2). The stack is up when all that is done, the IdP has provisioned the
portal over SCIM, and every service answers /healthz. Ctrl-C stops everything.
The compose stack (docker-compose.yml) runs the same preparation in its one-shot provision service
(`--prepare-aws`), against the emulator's container.
"""

from __future__ import annotations

import argparse
import configparser
import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from devstack.aws_emulator import MANAGEMENT_ACCOUNT_ID, MotoServer
from devstack.processes import Process, free_port, python_env, stop_all
from sso_common.keys import private_directory, private_log, write_private

DEFAULT_ADDRESSES = {
    "PORTAL_URL": "http://localhost:8000",
    "IDP_URL": "http://127.0.0.1:8001",
    "AWS_URL": "http://127.0.0.1:8002",
    "EMPLOYEE_DIRECTORY_URL": "http://localhost:8003",  # the app on the instance, for the browser
    "INSTANCE_METADATA_URL": "http://127.0.0.1:8004",  # the instance's metadata service (169.254.169.254 on EC2)
}
INSTANCE_PROFILE = "EmployeeWebAppRole"  # attached to the instance: config/access.yaml's EC2 workload role
CREDENTIALS_FILE = "aws-credentials"  # in the portal's instance folder: config/broker.yaml's aws_credentials_file


class PortInUse(RuntimeError):
    """Something else listens where the stack would; the message names the variable to change."""


def addresses_from_environment() -> dict[str, str]:
    return {name: os.environ.get(name, default).rstrip("/") for name, default in DEFAULT_ADDRESSES.items()}


def check_ports_free(addresses: dict[str, str]) -> None:
    """PortInUse for the first address whose port something already listens on (or cannot be bound)."""
    for variable, url in addresses.items():
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not _free(parts.hostname or "127.0.0.1", port):
            raise PortInUse(
                f"port {port} of {variable}={url} is in use (another demo still running?): stop what listens "
                f"there, or set {variable} to another address, e.g. {variable}={parts.scheme}://"
                f"{parts.hostname}:{port + 100}"
            )


def _free(host: str, port: int) -> bool:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):  # e.g. no IPv6 here: not ours
                    continue
                return False
    return True


@dataclass
class Stack:
    instance_dir: Path
    addresses: dict[str, str]
    workers: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None  # tells a person what is happening, a line at a time
    # Seconds the IdP's first SCIM sync may take: the demo's 8 people take well under one; the benchmark's 5,000
    # take minutes (docs/benchmarks.md).
    provisioning_timeout: float = 900.0
    processes: dict[str, Process] = field(default_factory=dict)
    moto: MotoServer | None = None
    aws_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = python_env(
            **self.addresses,
            IDP_INSTANCE_DIR=str(self.instance_dir / "idp"),
            BROKER_INSTANCE_DIR=str(self.instance_dir / "broker"),
            **self.extra_env,
        )
        if self.workers:
            env["WEB_WORKERS"] = str(self.workers)
        return env

    def log_path(self, name: str) -> Path:
        return self.instance_dir / "logs" / f"{name}.log"

    def _say(self, line: str) -> None:
        if self.progress:
            self.progress(line)

    def start(self) -> Stack:
        check_ports_free(self.addresses)
        private_directory(self.instance_dir / "logs")
        try:
            self._say(f"starting the Example Corp IdP on {self.addresses['IDP_URL']}")
            self._launch("idp", ["idp_mock", "serve"])
            if self.runs_instance:  # it needs nothing at start: it asks the metadata service when it first uses AWS
                self._start_app()
            self._start_aws()
            if self.runs_instance:
                self._start_instance()
            self.processes["idp"].wait_healthy(f"{self.addresses['IDP_URL']}/healthz")
            self.processes["broker"].wait_healthy(f"{self.addresses['PORTAL_URL']}/healthz")
            if self.env.get("IDP_SCIM_PUSH", "true").lower() != "false":  # off: nothing will come to wait for
                self._say("provisioning the directory to the portal (SCIM, a full sync)")
                wait_for_provisioning(
                    self.addresses["IDP_URL"],
                    self.env.get("IDP_DIRECTORY_ADMIN_TOKEN", DIRECTORY_TOKEN),
                    self.provisioning_timeout,
                    progress=self._say,
                )
            if self.runs_instance:
                self.processes["instance-metadata"].wait_healthy(f"{self.addresses['INSTANCE_METADATA_URL']}/healthz")
                self.processes["employee-directory"].wait_healthy(f"{self.addresses['EMPLOYEE_DIRECTORY_URL']}/healthz")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_aws(self) -> None:
        aws = urlsplit(self.addresses["AWS_URL"])
        self._say(f"starting the AWS emulator on {self.addresses['AWS_URL']}")
        self.moto = MotoServer(self.instance_dir / "aws", port=aws.port, host=aws.hostname or "127.0.0.1")
        # What preparing AWS needs (boto3, the portal's settings and provisioning) is imported while the emulator
        # starts: the launcher only waits for it then.
        imports = threading.Thread(target=_import_for_provisioning, name="imports", daemon=True)
        imports.start()
        self.moto.start()  # assigned first, so a stop during start-up still stops it
        imports.join()
        self._say("creating the organization and provisioning the accounts (SAML provider, roles, demo data)")

        def start_portal() -> None:  # it calls AWS only when asked for credentials
            self._say(f"starting the access portal on {self.addresses['PORTAL_URL']}")
            self._launch("broker", ["broker", "serve"])

        with os.fdopen(private_log(self.log_path("provision"), append=False), "wb") as log:
            self.aws_env = prepare_aws(self.moto, self.env, self.credentials_file, log, on_keys=start_portal)

    @property
    def runs_instance(self) -> bool:
        """Whether this stack runs the Employee Directory's instance: it has addresses for it (the demo and the
        tests do; the benchmark, which measures the portal, does not)."""
        return {"EMPLOYEE_DIRECTORY_URL", "INSTANCE_METADATA_URL"} <= self.addresses.keys()

    def _start_app(self) -> None:
        """The Employee Directory app, on its "EC2 instance": it knows only where the instance's metadata service
        is, and asks it for the role's credentials when it first uses AWS."""
        self._say(f"starting the Employee Directory app on {self.addresses['EMPLOYEE_DIRECTORY_URL']}")
        self.processes["employee-directory"] = Process.start(
            "employee-directory",
            ["employee_directory", "serve"],
            log_path=self.log_path("employee-directory"),
            cwd=self.instance_dir,
            env=self.app_env(),
        )

    def _start_instance(self) -> None:
        """The rest of the Employee Directory's "EC2 instance": its metadata service (EC2's part: it assumes the
        instance profile's role and hands out its credentials), once that role exists."""
        metadata = urlsplit(self.addresses["INSTANCE_METADATA_URL"])
        self._say(
            f"starting the Employee Directory's instance: metadata service on {self.addresses['INSTANCE_METADATA_URL']}"
            f" (instance profile {INSTANCE_PROFILE})"
        )
        self._launch(
            "instance-metadata",
            [
                "devstack.instance_metadata",
                "--host",
                metadata.hostname or "127.0.0.1",
                "--port",
                str(metadata.port or 80),
                "--aws-url",
                self.addresses["AWS_URL"],
                "--credentials-file",
                str(self.credentials_file),
                "--instance-profile",
                INSTANCE_PROFILE,
            ],
        )

    def app_env(self) -> dict[str, str]:
        """The app's environment, as on a fresh instance: where the metadata service, the IdP and the AWS
        endpoint are; no AWS key, profile or credentials file, and a home of its own (no ~/.aws)."""
        app_dir = private_directory(self.instance_dir / "employee-directory")
        inherited = {
            name: value
            for name, value in python_env().items()
            if not name.startswith("AWS_") and name not in ("BROKER_INSTANCE_DIR", "IDP_INSTANCE_DIR")
        }
        return {
            **inherited,
            "HOME": str(private_directory(app_dir / "home")),
            "EMPLOYEE_DIRECTORY_INSTANCE_DIR": str(app_dir),
            "EMPLOYEE_DIRECTORY_URL": self.addresses["EMPLOYEE_DIRECTORY_URL"],
            "IDP_URL": self.addresses["IDP_URL"],
            "AWS_URL": self.addresses["AWS_URL"],  # the emulator's address: an endpoint, not a credential
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.addresses["INSTANCE_METADATA_URL"],
        }

    @property
    def credentials_file(self) -> Path:
        """The emulator's management keys, where the portal (and `broker provision`) read them."""
        return self.instance_dir / "broker" / CREDENTIALS_FILE

    def _launch(self, name: str, module_args: list[str], env: dict[str, str] | None = None) -> None:
        self.processes[name] = Process.start(
            name, module_args, log_path=self.log_path(name), cwd=self.instance_dir, env={**self.env, **(env or {})}
        )

    def logs(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def stopped(self) -> Process | None:
        """A service that is no longer running, if any: the emulator too (kept apart, as the compose stack
        runs it in a container of its own)."""
        emulator = [self.moto.process] if self.moto is not None and self.moto.process is not None else []
        return next((process for process in [*self.processes.values(), *emulator] if not process.running()), None)

    def stop(self) -> None:
        stop_all(list(self.processes.values()))
        self.processes.clear()
        if self.moto is not None:
            self.moto.stop()
            self.moto = None


def free_addresses(*, instance: bool = True) -> dict[str, str]:
    """The stack's addresses on free loopback ports, on two sites as in production: the portal (and the Employee
    Directory app) on localhost, the IdP, the emulator (and the instance's metadata service) on 127.0.0.1. Without
    `instance`, no Employee Directory instance (the benchmark's stack)."""
    addresses = {
        "PORTAL_URL": f"http://localhost:{free_port()}",
        "IDP_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_URL": f"http://127.0.0.1:{free_port()}",
    }
    if instance:
        addresses["EMPLOYEE_DIRECTORY_URL"] = f"http://localhost:{free_port()}"
        addresses["INSTANCE_METADATA_URL"] = f"http://127.0.0.1:{free_port()}"
    return addresses


def _import_for_provisioning() -> None:
    import importlib

    for name in ("boto3", "broker.settings", "broker.aws.provisioning", "broker.aws.assertion"):
        importlib.import_module(name)


DIRECTORY_TOKEN = "demo-directory-admin-token"  # config/idp.yaml's default provisioning.admin_token


def wait_for_provisioning(
    idp_url: str, token: str, timeout: float = 60.0, progress: Callable[[str], None] | None = None
) -> dict:
    """Once the portal is up: ask the IdP to push now, then wait until every SCIM target has taken the whole
    directory (its full sync done, nothing pending). The portal admits only people the IdP provisioned, so
    the stack is not up before this. RuntimeError after `timeout` with the IdP's last error."""
    import json
    import urllib.error
    import urllib.request

    def call(method: str) -> dict:
        request = urllib.request.Request(
            f"{idp_url}/admin/directory/sync", method=method, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    status = call("POST")
    started = time.monotonic()
    deadline, said = started + timeout, started
    while not all(t["synced"] and t["pending_changes"] == 0 and not t["last_error"] for t in status["targets"]):
        if progress is not None and time.monotonic() - said >= 15:
            said = time.monotonic()
            failing = [f"{t['name']}: {t['last_error']}" for t in status["targets"] if t["last_error"]]
            retrying = f"; retrying after {failing[0]}" if failing else ""
            progress(f"still provisioning ({said - started:.0f} s){retrying}")
        if time.monotonic() > deadline:
            errors = "; ".join(f"{t['name']}: {t['last_error']}" for t in status["targets"] if t["last_error"])
            raise RuntimeError(f"the IdP did not provision the portal within {timeout:.0f} s ({errors or 'no error'})")
        time.sleep(0.1)
        status = call("GET")
    return status


def prepare_aws(
    moto: MotoServer,
    env: dict[str, str],
    credentials_file: Path,
    output: IO[bytes] | None = None,
    on_keys: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Make a running emulator ready for the portal: an organization and its management keys (written to
    `credentials_file`), then provisioning as `python -m broker provision` does it (here, in this process, the
    accounts in parallel; the changes are written to `output`), then IAM enforcement on. Returns the keys as
    environment variables; `on_keys()`, if given, is called once the file and the portal's signing key for
    AWS exist, before provisioning. RuntimeError if provisioning fails.

    Keys already in the file are kept when the emulator still knows them (it keeps its state in memory
    only), so running this again against the same emulator changes nothing the portal relies on.
    """
    from broker.core.access import load_access
    from broker.settings import DEFAULT_CONFIG
    from sso_common.config import environment

    with environment(env):
        access = load_access(Path(env.get("BROKER_CONFIG") or DEFAULT_CONFIG).parent / "access.yaml")
    known = read_keys(credentials_file)
    if known and _known_to(moto, known, access.region):
        keys = known
    else:
        management = moto.create_organization(list(access.accounts)).get_credentials()
        keys = {"AWS_ACCESS_KEY_ID": management.access_key, "AWS_SECRET_ACCESS_KEY": management.secret_key}
        write_keys(credentials_file, keys)
    provisioning = Provisioning(env, credentials_file.parent)  # the signing key exists before the portal starts
    if on_keys is not None:
        on_keys()
    provisioning.run(output)
    moto.set_enforcement(True)
    return {**keys, "AWS_DEFAULT_REGION": access.region}


class ProvisioningFailed(RuntimeError):
    """`Provisioning.run` failed (its output has the details)."""


class Provisioning:
    """`python -m broker provision` (broker/cli.py) in the launcher's process: the portal's settings as its
    process will read them (`env`, `instance_dir`), its SAML signing identity for AWS (created here when new,
    so the portal starting next loads this one), then every account brought in line with access.yaml."""

    def __init__(self, env: dict[str, str], instance_dir: Path):
        from broker.aws.assertion import idp_metadata_xml
        from broker.settings import load_settings
        from sso_common.config import environment
        from sso_common.keys import load_or_create_signing_identity

        with environment(env):
            self.settings = load_settings(env.get("BROKER_CONFIG"), instance_dir)
        signing = load_or_create_signing_identity(
            self.settings.instance_dir / "keys", "aws-idp-signing", self.settings.idp_entity_id
        )
        self.metadata = idp_metadata_xml(self.settings.idp_entity_id, signing, f"{self.settings.portal_url}/")

    def run(self, output: IO[bytes] | None = None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from broker.aws.accounts import AccountSessions, broker_session
        from broker.aws.provisioning import provision

        settings = self.settings
        accounts = AccountSessions(
            broker_session(settings.aws_credentials_file), settings.access.region, settings.aws_endpoint_url
        )
        try:
            changes = provision(settings.access, self.metadata, accounts.client)
        except (BotoCoreError, ClientError) as error:
            if output is not None:
                output.write(f"provisioning {settings.aws_endpoint_url} failed: {error}\n".encode())
            raise ProvisioningFailed(f"provisioning the AWS emulator failed: {error}") from None
        if output is not None:
            output.write("".join(f"{change}\n" for change in changes).encode())
            output.write(f"{len(changes)} change(s).\n".encode())


def read_keys(credentials_file: Path) -> dict[str, str] | None:
    """The keys of an AWS shared-credentials file's [default] profile, or None."""
    parser = configparser.ConfigParser()
    parser.read(credentials_file)
    if not (
        parser.has_option("default", "aws_access_key_id") and parser.has_option("default", "aws_secret_access_key")
    ):
        return None
    return {
        "AWS_ACCESS_KEY_ID": parser["default"]["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": parser["default"]["aws_secret_access_key"],
    }


def write_keys(credentials_file: Path, keys: dict[str, str]) -> None:
    """An AWS shared-credentials file, readable by its owner only, replaced in one step."""
    write_private(
        credentials_file,
        (
            "# The AWS emulator's management keys, written by devstack.stack (emulator only).\n"
            f"[default]\naws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n"
        ).encode(),
    )


def _known_to(moto: MotoServer, keys: dict[str, str], region: str) -> bool:
    """Whether these are an IAM user's keys in the emulator's management account (moto, enforcement on or
    off, answers an unknown key with an error or with its default `sts::...:user/moto`)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    sts = boto3.client(
        "sts",
        endpoint_url=moto.endpoint_url,
        region_name=region,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        return sts.get_caller_identity()["Arn"].startswith(f"arn:aws:iam::{MANAGEMENT_ACCOUNT_ID}:user/")
    except (BotoCoreError, ClientError):
        return False


def prepare_running_emulator(credentials_file: Path) -> int:
    """The compose stack's one-shot `provision` service: make the emulator at $AWS_URL (another
    container) ready, and leave its management keys in `credentials_file` for the portal. Safe to run
    again: the keys in the file are kept while they work."""
    aws = urlsplit(addresses_from_environment()["AWS_URL"])
    # It runs elsewhere (another container): never started here.
    moto = MotoServer(Path.cwd(), port=aws.port or 80, host=aws.hostname or "127.0.0.1")
    prepare_aws(moto, python_env(), credentials_file)
    print(
        f"The AWS emulator at {moto.endpoint_url} is ready (IAM enforcement on); keys in {credentials_file}.",
        flush=True,
    )
    return 0


DEMO_PASSWORD = "Welcome-2026"  # every seeded user's (config/directory.yaml holds only its hash)
ERIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"


def banner(stack: Stack, seconds: float) -> str:
    """What a person needs once the demo is up: where to go, who to sign in as, how to use AWS."""
    urls = stack.addresses
    read_only = "example-production-EmployeeDirectoryReadOnly"
    instance, workload = [], []
    if stack.runs_instance:
        instance = [
            f"  Employee Directory (the app):       {urls['EMPLOYEE_DIRECTORY_URL']}/",
            f"    on an EC2 instance stand-in whose metadata service is {urls['INSTANCE_METADATA_URL']}",
            f"    (instance profile {INSTANCE_PROFILE}: the app holds no key; heidi, of hr, may upload photos)",
        ]
        workload = [
            "A workload's credentials: what the app gets from its instance's metadata service, with no key at all:",
            f'    env -i PATH="$PWD/.venv/bin:/usr/bin:/bin" HOME="$(mktemp -d)" '
            f"AWS_EC2_METADATA_SERVICE_ENDPOINT={urls['INSTANCE_METADATA_URL']} \\",
            f"      aws sts get-caller-identity --region us-east-1 --endpoint-url {urls['AWS_URL']}",
            f"  The app's status page shows the same, and a denied action: {urls['EMPLOYEE_DIRECTORY_URL']}/status",
            "",
        ]
    return "\n".join(
        [
            f"The demo is up ({seconds:.1f} s).",
            "",
            f"  AWS access portal (open this one):  {urls['PORTAL_URL']}/",
            f"  Example Corp identity provider:     {urls['IDP_URL']}/",
            f"  AWS emulator (moto, IAM enforced):  {urls['AWS_URL']}",
            *instance,
            "",
            f"Demo users (password {DEMO_PASSWORD}):",
            *(f"  {line}" for line in demo_users()),
            f"  erin's authenticator secret is {ERIN_TOTP_SECRET}; print her current code with",
            f"  .venv/bin/python -c \"import pyotp; print(pyotp.TOTP('{ERIN_TOTP_SECRET}').now())\"",
            "",
            "The IdP provisions the portal over SCIM (README, 'Provisioning and revocation'): change its directory and",
            "the portal follows within a second, sessions and credentials included, e.g.",
            "    .venv/bin/idp-mock directory disable bob        (enable bob; add-member aws-admins bob; list)",
            "",
            "AWS from a shell: credentials come from the portal or broker-login, never long-term keys.",
            "  In the portal, a role's credentials panel gives exports that include",
            f"  AWS_ENDPOINT_URL={urls['AWS_URL']} (the emulator). From the command line:",
            f'    export PATH="$PWD/.venv/bin:$PATH" AWS_ENDPOINT_URL_SSO={urls["PORTAL_URL"]} '
            f"AWS_ENDPOINT_URL_SSO_OIDC={urls['PORTAL_URL']}",
            "    broker-login configure",
            f"    aws --profile {read_only} s3 ls s3://employee-directory-photos-222222222222/",
            "",
            *workload,
            f"Logs: {stack.instance_dir / 'logs'}. Press Ctrl-C to stop.",
            "",
        ]
    )


def demo_users() -> list[str]:
    """One line per employee of the IdP's directory: groups, second factor, disabled. (The directory alone is
    read: the IdP's whole settings would import its SCIM client's models, a second of CPU at start-up.)"""
    from broker.settings import DEFAULT_CONFIG
    from idp_mock.directory import load_directory
    from sso_common.config import load_yaml

    config = Path(os.environ.get("IDP_CONFIG") or Path(DEFAULT_CONFIG).parent / "idp.yaml")
    directory = load_directory(config.parent / load_yaml(config).child("directory").string())
    lines = []
    for employee in directory.employees.values():
        notes = [", ".join(employee.groups) or "no groups"]
        notes += ["TOTP"] if employee.mfa_required else []
        notes += ["disabled: cannot sign in"] if employee.disabled else []
        lines.append(f"{employee.username:<8} {'; '.join(notes)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--instance-dir",
        default=os.environ.get("INSTANCE_DIR", "instance"),
        help="where keys, state and logs are kept (created on first start; git-ignored)",
    )
    parser.add_argument(
        "--prepare-aws",
        metavar="CREDENTIALS_FILE",
        type=Path,
        help="only make the AWS emulator already running at $AWS_URL ready and write its "
        "management keys to this file, then exit (the compose stack's provision step)",
    )
    args = parser.parse_args(argv)
    if args.prepare_aws:
        return prepare_running_emulator(args.prepare_aws)
    began = time.monotonic()
    stack = Stack(
        Path(args.instance_dir).resolve(),
        addresses_from_environment(),
        progress=lambda line: print(f"==> {line} ({time.monotonic() - began:.1f} s)", flush=True),
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        print(f"\n{banner(stack, time.monotonic() - began)}", flush=True)
        while (stopped := stack.stopped()) is None:
            time.sleep(0.5)
        print(
            f"The {stopped.name} stopped (exit code {stopped.popen.returncode}); stopping the others. "
            f"The end of {stopped.log_path}:\n{stopped.logs()[-2000:]}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0
    except PortInUse as busy:
        print(f"The demo cannot start: {busy}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        print(f"The demo could not start: {error}", file=sys.stderr)
        if isinstance(error, ProvisioningFailed):
            print(f"See {stack.log_path('provision')}.", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
