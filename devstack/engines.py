"""Redis, PostgreSQL and nginx from Debian's packages, started on loopback ports for the tests, the
benchmark and the replicated stack (`devstack.replicas`); each stops with its folder.

`./run test` installs the packages (redis-server, postgresql, nginx) when they are missing. PostgreSQL
refuses to run as root: as root, its folder is given to the `postgres` user (the Debian package creates
it) and initdb and pg_ctl run as that user (runuser); as anyone else they run as that user. The server
is tuned for throw-away data (no fsync), never for a deployment: compose runs the real images.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import free_port
from sso_common.keys import private_directory, private_log

LOOPBACK = "127.0.0.1"


class EngineMissing(RuntimeError):
    """A Debian package the caller needs is not installed (`./run test` installs it)."""


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"exited with code {process.returncode} before listening on {port}:\n{tail}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f} s")


def _stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


# --- Redis -----------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """redis-server on loopback. Without `persistence` (the default, as the issue's worst case) a restart
    loses every key; with it, an append-only file fsynced every second keeps them."""

    directory: Path
    port: int = 0
    persistence: bool = False
    process: subprocess.Popen | None = None

    @classmethod
    def start(cls, directory: Path, port: int = 0, persistence: bool = False) -> RedisServer:
        server = cls(Path(directory), port or free_port(), persistence)
        server.launch()
        return server

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EngineMissing("redis-server is not installed (Debian package redis-server; ./run test installs it)")
        private_directory(self.directory)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistence else ["--appendonly", "no"]
        )
        with os.fdopen(private_log(self.log_path), "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    LOOPBACK,
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.directory),
                    "--save",
                    "",
                    *persistence,
                    "--protected-mode",
                    "yes",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.port, 15, self.process, self.log_path)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop (SIGTERM: no save, since persistence is off by default) and start again on the same port."""
        self.stop()
        time.sleep(down_for)
        self.launch()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def stop(self) -> None:
        _stop(self.process)


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """Debian's binaries of the newest installed major version (/usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise EngineMissing("PostgreSQL is not installed (Debian package postgresql; ./run test installs it)")
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    """A throw-away cluster: superuser `user` with `password`, database `database`, on loopback only
    (password over TCP, scram-sha-256)."""

    directory: Path
    port: int
    user: str = "sso"
    password: str = "pg-test-password"
    database: str = "sso"
    owner: str | None = None  # the system user the server runs as (postgres when we are root)
    log_lines: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, port: int = 0, password: str = "pg-test-password", user: str = "sso", database: str = "sso"
    ) -> PostgresServer:
        """A new cluster in a folder of its own under the system's temporary folder (the postgres user must
        reach it, which it cannot inside a private pytest folder)."""
        bin_dir = postgres_bin_dir()
        directory = Path(tempfile.mkdtemp(prefix="sso-postgres-"))
        owner = "postgres" if os.geteuid() == 0 else None
        if owner:
            account = pwd.getpwnam(owner)
            os.chown(directory, account.pw_uid, account.pw_gid)
        server = cls(directory, port or free_port(), user=user, password=password, database=database, owner=owner)
        (directory / "pwfile").write_text(password + "\n")
        if owner:
            os.chown(directory / "pwfile", account.pw_uid, account.pw_gid)
        server._run(
            str(bin_dir / "initdb"),
            "-D", str(server.data), "-U", server.user, f"--pwfile={directory / 'pwfile'}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        (directory / "pwfile").unlink()
        server.launch()
        server._create_database()
        return server

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, schema: str | None = None, password: str | None = None) -> str:
        query = f"?schema={schema}" if schema else ""
        return f"postgresql://{self.user}:{password or self.password}@{LOOPBACK}:{self.port}/{self.database}{query}"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.owner, "--"] if self.owner else []
        answer = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, cwd=self.directory)
        if check and answer.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({answer.returncode}):\n{answer.stdout}{answer.stderr}")
        return answer

    def launch(self) -> None:
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.launch()

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host=LOOPBACK, port=self.port, user=self.user, password=self.password, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


# --- nginx -----------------------------------------------------------------------------------------


@dataclass
class NginxServer:
    """nginx in the foreground with a configuration of ours (devstack.edge), everything under `directory`."""

    directory: Path
    process: subprocess.Popen | None = None

    @classmethod
    def start(cls, directory: Path, config: str, ports: list[int]) -> NginxServer:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise EngineMissing("nginx is not installed (Debian package nginx; ./run test installs it)")
        directory = Path(directory)
        # nginx creates its logs world-readable: made here first, private (it appends to them as they are)
        for log_name in ("access.log", "error.log"):
            os.close(private_log(directory / "logs" / log_name))
        (directory / "nginx.conf").write_text(config)
        server = cls(directory)
        checked = subprocess.run(
            [binary, "-t", "-p", str(directory), "-c", str(directory / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if checked.returncode != 0:
            raise RuntimeError(f"nginx refuses the configuration:\n{checked.stderr}")
        with os.fdopen(private_log(directory / "logs" / "stderr.log"), "ab") as log:
            server.process = subprocess.Popen(
                [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for port in ports:
            _wait_for_port(port, 15, server.process, directory / "logs" / "error.log")
        return server

    def access_log(self) -> str:
        path = self.directory / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        _stop(self.process)


def _serve_postgres(argv: list[str] | None = None) -> int:
    """`python -m devstack.engines postgres --port P --user U --password W --database D`: what the official
    image's entrypoint does (a cluster, its superuser and database), in the foreground until SIGTERM. The
    compose tests run the postgres service with it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.engines postgres")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="sso")
    parser.add_argument("--password", required=True)
    parser.add_argument("--database", default="sso")
    args = parser.parse_args(argv)
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    server = PostgresServer.start(args.port, args.password, user=args.user, database=args.database)
    print(f"PostgreSQL ready on {LOOPBACK}:{args.port}", flush=True)
    try:
        while not stopping["now"]:
            time.sleep(0.2)
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["postgres"]:
        raise SystemExit("usage: python -m devstack.engines postgres --port P --password W [--user U] [--database D]")
    raise SystemExit(_serve_postgres(sys.argv[2:]))
