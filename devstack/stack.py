"""The whole stack on one machine: AWS emulator, corporate IdP, access portal.

`./run demo` starts it on the default addresses; the end-to-end tests start the same thing on free
ports. The IdP needs nothing from AWS and starts at once. The emulator comes first for the rest (an
organization with an access role per account); the portal starts as soon as the organization's keys
exist, while provisioning (SAML provider, roles, demo data) runs; then IAM enforcement goes on. The
stack is up when all that is done and both services answer /healthz. Ctrl-C stops everything. The
compose stack (docker-compose.yml) runs the same preparation in its one-shot provision service
(`--prepare-aws`), against the emulator's container.
"""

from __future__ import annotations

import argparse
import configparser
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from broker.core.access import load_access
from broker.settings import DEFAULT_CONFIG
from devstack.aws_emulator import MANAGEMENT_ACCOUNT_ID, MotoServer
from devstack.processes import Process, python_env, stop_all

DEFAULT_ADDRESSES = {
    "PORTAL_URL": "http://localhost:8000",
    "IDP_URL": "http://127.0.0.1:8001",
    "AWS_URL": "http://127.0.0.1:8002",
}


def addresses_from_environment() -> dict[str, str]:
    return {name: os.environ.get(name, default).rstrip("/") for name, default in DEFAULT_ADDRESSES.items()}


@dataclass
class Stack:
    instance_dir: Path
    addresses: dict[str, str]
    workers: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None  # tells a person what is happening, a line at a time
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
        (self.instance_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self._say(f"starting the Example Corp IdP on {self.addresses['IDP_URL']}")
            self._launch("idp", ["idp_mock", "serve"])
            self._start_aws()
            self.processes["idp"].wait_healthy(f"{self.addresses['IDP_URL']}/healthz")
            self.processes["broker"].wait_healthy(f"{self.addresses['PORTAL_URL']}/healthz")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_aws(self) -> None:
        aws = urlsplit(self.addresses["AWS_URL"])
        self._say(f"starting the AWS emulator on {self.addresses['AWS_URL']}")
        self.moto = MotoServer(self.instance_dir / "aws", port=aws.port, host=aws.hostname or "127.0.0.1")
        self.moto.start()  # assigned first, so a stop during start-up still stops it
        self._say("provisioning the accounts (SAML provider, roles, demo data)")

        def start_portal(aws_env: dict) -> None:  # it calls AWS only when asked for credentials
            self._say(f"starting the access portal on {self.addresses['PORTAL_URL']}")
            self._launch("broker", ["broker", "serve"], aws_env)

        self.aws_env = prepare_aws(self.moto, self.env, self.log_path("provision").open("wb"), on_keys=start_portal)

    def _launch(self, name: str, module_args: list[str], env: dict[str, str] | None = None) -> None:
        self.processes[name] = Process.start(
            name, module_args, log_path=self.log_path(name), cwd=self.instance_dir, env={**self.env, **(env or {})}
        )

    def logs(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop_all(list(self.processes.values()))
        self.processes.clear()
        if self.moto is not None:
            self.moto.stop()
            self.moto = None


def prepare_aws(
    moto: MotoServer,
    env: dict[str, str],
    output: IO[bytes] | None = None,
    known: dict[str, str] | None = None,
    on_keys: Callable[[dict[str, str]], None] | None = None,
) -> dict[str, str]:
    """Make a running emulator ready for the portal: an organization and its management keys, then
    `python -m broker provision`, then IAM enforcement on. Returns the keys as environment variables;
    `on_keys(aws_env)`, if given, is called with them before provisioning starts.

    `known` keys from an earlier run are kept when the emulator still knows them (it keeps its state in
    memory only), so running this again against the same emulator changes nothing the portal relies on.
    """
    access = load_access(Path(os.environ.get("BROKER_CONFIG", DEFAULT_CONFIG)).parent / "access.yaml")
    if known and _known_to(moto, known, access.region):
        keys = known
    else:
        management = moto.create_organization(list(access.accounts)).get_credentials()
        keys = {"AWS_ACCESS_KEY_ID": management.access_key, "AWS_SECRET_ACCESS_KEY": management.secret_key}
    # Emulator keys made at run time: the portal signs its STS calls with them (real STS needs none).
    aws_env = {**keys, "AWS_DEFAULT_REGION": access.region}
    if on_keys is not None:
        on_keys(aws_env)
    subprocess.run(
        [sys.executable, "-m", "broker", "provision"],
        env={**env, **aws_env},
        check=True,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    moto.set_enforcement(True)
    return aws_env


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
    container) ready, and leave its management keys in an AWS shared-credentials file for the portal
    (AWS_SHARED_CREDENTIALS_FILE). Safe to run again: the keys in the file are kept while they work."""
    aws = urlsplit(addresses_from_environment()["AWS_URL"])
    # It runs elsewhere (another container): never started here.
    moto = MotoServer(Path.cwd(), port=aws.port or 80, host=aws.hostname or "127.0.0.1")
    known = configparser.ConfigParser()
    known.read(credentials_file)
    keys = None
    if known.has_option("default", "aws_access_key_id") and known.has_option("default", "aws_secret_access_key"):
        keys = {
            "AWS_ACCESS_KEY_ID": known["default"]["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": known["default"]["aws_secret_access_key"],
        }
    aws_env = prepare_aws(moto, python_env(), known=keys)
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    written = credentials_file.with_name(credentials_file.name + ".new")
    written.unlink(missing_ok=True)
    written.touch(mode=0o600)
    written.write_text(
        "# The AWS emulator's management keys, written by `python -m devstack.stack --prepare-aws`.\n"
        f"[default]\naws_access_key_id = {aws_env['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {aws_env['AWS_SECRET_ACCESS_KEY']}\n"
    )
    written.replace(credentials_file)
    print(
        f"The AWS emulator at {moto.endpoint_url} is ready (IAM enforcement on); keys in {credentials_file}.",
        flush=True,
    )
    return 0


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
        progress=lambda line: print(f"==> {line}", flush=True),
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        urls = stack.addresses
        print(
            f"\nThe demo is up ({time.monotonic() - began:.1f} s).\n"
            f"  Open the AWS access portal:  {urls['PORTAL_URL']}/\n"
            f"  Corporate IdP (Example Corp): {urls['IDP_URL']}/\n"
            f"  AWS emulator (moto, IAM enforcement on): {urls['AWS_URL']}\n"
            f"Users: alice, bob, carol, dave, erin (TOTP), frank (disabled), grace; password Welcome-2026.\n"
            f"Logs: {stack.instance_dir / 'logs'}. Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(process.running() for process in stack.processes.values()):
            time.sleep(0.5)
        print("A service stopped; stopping the others. See the logs.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"The demo could not start: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
