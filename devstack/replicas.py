"""The replicated stack on one machine: Redis, PostgreSQL, the AWS emulator, N IdP and N portal replicas
behind nginx, on free loopback ports (the end-to-end and fault tests, `python -m bench --replicas 2`).

What compose runs (docker-compose.yml), as local processes: every replica is the same `serve` command
with the same environment but its port; state in Redis (portal: database 0, IdP: 1), the durable records
and the lasting state in PostgreSQL (schemas `broker` and `idp`); keys and certificates in one instance
folder per service, shared by its replicas (compose: a named volume), so that a key made or rotated by one
replica is the key of all. nginx (devstack/edge.py) is the only address people and the other service use:
the portal reaches the IdP through it, and the IdP the portal's metadata.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.aws_emulator import MotoServer
from devstack.edge import EdgeConfig, Site, nginx_config
from devstack.engines import NginxServer, PostgresServer, RedisServer
from devstack.processes import Process, answers, free_port, python_env, stop_all
from devstack.stack import DIRECTORY_TOKEN, prepare_aws, wait_for_provisioning
from sso_common.keys import private_directory, private_log

LOOPBACK = "127.0.0.1"


@dataclass
class Replica:
    service: str  # "idp" or "broker"
    index: int
    port: int
    process: Process | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


@dataclass
class ReplicatedStack:
    instance_dir: Path
    replicas: int = 2
    workers: int = 1  # WEB_WORKERS per replica: 2 x 2 replicas already share two cores
    extra_env: dict[str, str] = field(default_factory=dict)
    redis_persistence: bool = False
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    moto: MotoServer | None = None
    nginx: NginxServer | None = None
    members: list[Replica] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)

    # --- addresses and environment -----------------------------------------------------------------

    def __post_init__(self) -> None:
        self.instance_dir = Path(self.instance_dir)
        self.edge_ports = {"portal": free_port(), "idp": free_port()}
        self.addresses = {
            # Two sites, as in production: the portal on localhost, the IdP on 127.0.0.1; both are nginx.
            "PORTAL_URL": f"http://localhost:{self.edge_ports['portal']}",
            "IDP_URL": f"http://{LOOPBACK}:{self.edge_ports['idp']}",
            "AWS_URL": f"http://{LOOPBACK}:{free_port()}",
        }
        for service in ("idp", "broker"):
            for index in range(1, self.replicas + 1):
                self.members.append(Replica(service, index, free_port()))

    def replicas_of(self, service: str) -> list[Replica]:
        return [member for member in self.members if member.service == service]

    def store_env(self) -> dict[str, str]:
        assert self.redis is not None and self.postgres is not None
        return {
            "BROKER_STATE_URL": self.redis.url(0),
            "BROKER_LASTING_URL": self.postgres.url("broker"),
            "BROKER_DIRECTORY_URL": self.postgres.url("broker"),
            "BROKER_AUDIT_URL": self.postgres.url("broker"),
            "BROKER_CHANGES_URL": self.postgres.url("broker"),
            "IDP_STATE_URL": self.redis.url(1),
            "IDP_LASTING_URL": self.postgres.url("idp"),
            "IDP_CHANGES_URL": self.postgres.url("idp"),
        }

    @property
    def env(self) -> dict[str, str]:
        return python_env(
            **self.addresses,
            **self.store_env(),
            IDP_INSTANCE_DIR=str(self.instance_dir / "idp"),
            BROKER_INSTANCE_DIR=str(self.instance_dir / "broker"),
            WEB_WORKERS=str(self.workers),
            WEB_TRUSTED_PROXIES=LOOPBACK,  # nginx: its X-Real-IP is the person's address
            **self.extra_env,
        )

    def log_path(self, name: str) -> Path:
        return self.instance_dir / "logs" / f"{name}.log"

    # --- life cycle ------------------------------------------------------------------------------------

    def start(self) -> ReplicatedStack:
        private_directory(self.instance_dir / "logs")
        try:
            self.redis = RedisServer.start(self.instance_dir / "redis", persistence=self.redis_persistence)
            self.postgres = PostgresServer.start()
            aws_port = int(self.addresses["AWS_URL"].rsplit(":", 1)[1])
            self.moto = MotoServer(self.instance_dir / "aws", port=aws_port, host=LOOPBACK)
            self.moto.start()
            with os.fdopen(private_log(self.log_path("provision"), append=False), "wb") as log:
                prepare_aws(self.moto, self.env, self.instance_dir / "broker" / "aws-credentials", log)
            # The first replica of each service makes the keys (exclusive creation: a second one starting at
            # the same time would read the winner's); the others start once it answers.
            for service in ("idp", "broker"):
                first, *rest = self.replicas_of(service)
                self.launch(first)
                first.process.wait_healthy(f"{first.url}/healthz", timeout=60)  # type: ignore[union-attr]
                for replica in rest:
                    self.launch(replica)
                for replica in rest:
                    replica.process.wait_healthy(f"{replica.url}/healthz", timeout=60)  # type: ignore[union-attr]
            # The edge last, as compose starts it once the replicas are healthy: a replica nginx finds down
            # (still starting) gets its share of requests back only gradually.
            self.start_edge()
            self.wait_routed()
            if self.env.get("IDP_SCIM_PUSH", "true").lower() != "false":
                # The portal admits the people the IdP provisioned (SCIM, through the edge): up once synced.
                wait_for_provisioning(
                    self.addresses["IDP_URL"], self.env.get("IDP_DIRECTORY_ADMIN_TOKEN", DIRECTORY_TOKEN)
                )
        except BaseException:
            self.stop()
            raise
        return self

    def start_edge(self) -> None:
        config = EdgeConfig(
            sites=(
                Site(
                    "portal",
                    f"{LOOPBACK}:{self.edge_ports['portal']}",
                    tuple(f"{LOOPBACK}:{r.port}" for r in self.replicas_of("broker")),
                ),
                Site(
                    "idp",
                    f"{LOOPBACK}:{self.edge_ports['idp']}",
                    tuple(f"{LOOPBACK}:{r.port}" for r in self.replicas_of("idp")),
                ),
            ),
            prefix=self.instance_dir / "edge",
            worker_processes=1,
        )
        for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            private_directory(self.instance_dir / "edge" / "tmp" / folder)
        self.nginx = NginxServer.start(self.instance_dir / "edge", nginx_config(config), list(self.edge_ports.values()))

    def wait_routed(self, timeout: float = 15.0) -> None:
        """Until nginx passes requests to every replica again: a replica it found down (a call made while
        the stack was starting) is retried only after `fail_timeout`."""
        deadline = time.monotonic() + timeout
        for url in (self.addresses["PORTAL_URL"], self.addresses["IDP_URL"]):
            answered = 0
            while answered < 2 * self.replicas:  # round robin: two rounds all answered
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx does not pass requests to the replicas of {url} within {timeout} s")
                answered = answered + 1 if answers(f"{url}/healthz") else 0
                time.sleep(0.05 if answered else 0.3)

    def launch(self, replica: Replica) -> None:
        module = "idp_mock" if replica.service == "idp" else "broker"
        replica.process = Process.start(
            replica.name,
            [module, "serve", "--host", LOOPBACK, "--port", str(replica.port)],
            log_path=self.log_path(replica.name),
            cwd=self.instance_dir,
            env=self.env,
        )

    def restart(self, replica: Replica) -> None:
        if replica.process is not None:
            replica.process.stop()
        self.launch(replica)
        replica.process.wait_healthy(f"{replica.url}/healthz", timeout=60)  # type: ignore[union-attr]

    def kill(self, replica: Replica) -> None:
        """SIGKILL the replica's whole process group (granian's parent and its workers): a crash."""
        if replica.process is not None and replica.process.running():
            replica.process.kill()

    def logs(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def rotate_idp_keys(self) -> str:
        """`idp-mock rotate-keys` against the shared instance folder; the new key ID."""
        answer = subprocess.run(
            [sys.executable, "-m", "idp_mock", "rotate-keys"],
            env=self.env,
            cwd=self.instance_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if answer.returncode != 0:
            raise RuntimeError(answer.stdout + answer.stderr)
        return answer.stdout.strip()

    def stop(self) -> None:
        stop_all([m.process for m in self.members if m.process is not None])
        if self.nginx is not None:
            self.nginx.stop()
        if self.moto is not None:
            self.moto.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.destroy()


def supervise(stack: ReplicatedStack, retries: dict[str, tuple[float, float]]) -> None:
    """Start again a replica that stopped (killed, crashed), saying so: the edge routes to the others meanwhile.
    One that does not come back is tried again less and less often (`retries`: name -> (next try, delay)), each
    time saying why (its log's last line)."""
    for replica in stack.members:
        process = replica.process
        if process is None or process.running() or time.monotonic() < retries.get(replica.name, (0.0, 0.0))[0]:
            continue
        print(
            f"{replica.name} stopped (exit code {process.popen.returncode}; its log: {stack.log_path(replica.name)}); "
            "starting it again",
            flush=True,
        )
        process.kill()  # its workers, if only the parent died: they hold its port
        try:
            stack.restart(replica)
        except RuntimeError as error:
            if replica.process is not None:
                replica.process.stop()  # one that did not answer in time: stopped, so it is looked at again
            delay = min(60.0, 2 * retries.get(replica.name, (0.0, 1.0))[1])
            retries[replica.name] = (time.monotonic() + delay, delay)
            last = [line for line in str(error).splitlines() if line.strip()][-1:] or ["?"]
            print(f"{replica.name} did not start ({last[0].strip()}); trying again in {delay:.0f} s", flush=True)
            continue
        retries.pop(replica.name, None)
        print(f"{replica.name} is back: {replica.url} (process group {process_group(replica)})", flush=True)


def process_group(replica: Replica) -> str:
    return str(replica.process.pid) if replica.process is not None else "-"


def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.replicas`: the replicated stack on this machine until Ctrl-C or SIGTERM."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.replicas", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--instance-dir",
        default=os.environ.get("INSTANCE_DIR", "instance/replicated"),
        help="keys, state and logs (created on first start; default instance/replicated, git-ignored)",
    )
    parser.add_argument("--replicas", type=int, default=2, choices=range(1, 5), help="of each service (default 2)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stack = ReplicatedStack(Path(args.instance_dir).resolve(), replicas=args.replicas)
    try:
        stack.start()
        replicas = "".join(
            f"  {replica.name}: {replica.url} (process group {process_group(replica)})\n" for replica in stack.members
        )
        print(
            f"The replicated stack is up ({args.replicas} IdP and {args.replicas} portal replicas behind nginx):\n"
            f"  access portal:  {stack.addresses['PORTAL_URL']}/\n"
            f"  Example Corp IdP: {stack.addresses['IDP_URL']}/\n"
            f"  AWS emulator:   {stack.addresses['AWS_URL']}\n"
            f"The replicas, each started again when it stops (as an orchestrator would):\n{replicas}"
            f"Logs: {stack.instance_dir / 'logs'} (the edge's in {stack.instance_dir / 'edge' / 'logs'}). "
            "Ctrl-C stops everything.",
            flush=True,
        )
        retries: dict[str, tuple[float, float]] = {}
        while True:
            time.sleep(1)
            supervise(stack, retries)
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:  # an engine missing, a service that did not start: said in one line
        print(f"The replicated stack could not start: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
