"""Read docker-compose.yml and the Dockerfile, and turn a service into a local process.

No Docker engine runs here. What a container would run is run as a process instead: the service's
`command` with its `environment` (and the image's ENV), in its working directory, with every address
rewritten to a free local port and every container path to a scratch folder. Its healthcheck's `test`
is then run the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from devstack.processes import free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments and parser directives dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), " ".join(rest.split())))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def image_env() -> dict[str, str]:
    """ENV of the final stage (KEY=VALUE form)."""
    env = {}
    for word, arguments in final_stage(dockerfile_instructions()):
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def image_workdir() -> str:
    return [arguments for word, arguments in final_stage(dockerfile_instructions()) if word == "WORKDIR"][-1]


def image_copies() -> dict[str, str]:
    """Container path -> repository path, for the final stage's COPY from the build context."""
    copies = {}
    for word, arguments in final_stage(dockerfile_instructions()):
        if word == "COPY" and not arguments.startswith("--from"):
            *sources, target = arguments.split()
            if len(sources) == 1:
                copies[target.rstrip("/")] = sources[0]
    return copies


def volume_mounts(service: dict) -> dict[str, str]:
    """Container path -> named volume (or, for a read-only configuration file, its path: ./...)."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


ENGINES = {"redis", "postgres", "edge"}  # official images of the engines; every other service is the project's
PROGRAMS = {  # what an engine's image runs, as Debian's packages install it here (./run test)
    "redis-server": "redis-server",
    "redis-cli": "redis-cli",
    "pg_isready": "pg_isready",
    "curl": "curl",
    "nginx": "nginx",
    "postgres": "postgres",
}


def local_edge_config(text: str, rewrite: LocalRewrite, folder: Path) -> str:
    """deploy/nginx.conf for a local nginx (Debian's 1.22): replicas and listeners on the local ports, logs
    and temporary files in `folder`, no run-time re-resolution (Docker's DNS and nginx >= 1.27.3 only)."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "tmp" / name).mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    text = re.sub(r"^user [^;]+;\n", "", text, flags=re.M)
    text = re.sub(r"^\s*(zone [^;]+|resolver [^;]+);\n", "", text, flags=re.M)
    text = text.replace(" resolve;", ";")
    text = re.sub(
        r"listen (\d+)(;| ssl;)", lambda m: f"listen 127.0.0.1:{rewrite.ports[int(m.group(1))]}{m.group(2)}", text
    )
    text = re.sub(r"server ([\w.-]+):(\d+) ", lambda m: f"server {rewrite.text(m.group(0).split()[1])} ", text)
    text = text.replace("pid /tmp/nginx.pid;", f"pid {folder}/nginx.pid;")
    text = text.replace("error_log /dev/stderr", f"error_log {folder}/logs/error.log")
    text = text.replace("access_log /dev/stdout", f"access_log {folder}/logs/access.log")
    temp = "".join(f"    {name}_temp_path {folder}/tmp/{name.split('_')[0]};\n" for name in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    return text.replace("http {\n", "http {\n" + temp, 1)


def published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each `ports` entry of the form [ADDRESS:]HOST:CONTAINER."""
    ports = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        ports.append((address, int(parts[-2]), int(parts[-1])))
    return ports


def listening_ports(service: dict) -> list[int]:
    """The ports its command listens on (`--port N` or `-p N`), published or not."""
    command = [str(part) for part in service.get("command", [])]
    return [int(command[i + 1]) for i, part in enumerate(command[:-1]) if part in ("--port", "-p")]


def start_order(all_services: dict[str, dict]) -> list[str]:
    """Services in an order that respects depends_on (and fails on a cycle)."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AssertionError(f"depends_on cycle: {' -> '.join(path + (name,))}")
        if name not in order:
            for dependency in all_services[name].get("depends_on", {}):
                visit(dependency, path + (name,))
            order.append(name)

    for name in all_services:
        visit(name, ())
    return order


@dataclass
class LocalRewrite:
    """Addresses and container paths of the compose file, mapped onto this machine."""

    ports: dict[int, int]  # container port -> free local port
    hosts: dict[str, str]  # compose host name -> local host name
    paths: dict[str, Path]  # container path prefix -> local path

    @classmethod
    def for_compose(cls, all_services: dict[str, dict], scratch: Path) -> LocalRewrite:
        ports = {
            container: free_port() for service in all_services.values() for _, _, container in published_ports(service)
        }
        for service in all_services.values():  # ports only a neighbour reaches (a shared network namespace)
            for port in listening_ports(service):
                ports.setdefault(port, free_port())
        # Service names and network aliases become loopback; `localhost` stays `localhost` (the portal's own
        # site, distinct from 127.0.0.1); listening on every interface becomes listening on loopback.
        hosts = {"0.0.0.0": "127.0.0.1", "127.0.0.1": "127.0.0.1", "localhost": "localhost"}
        for name, service in all_services.items():
            hosts[name] = "127.0.0.1"
            for network in (service.get("networks") or {}).values():
                for alias in (network or {}).get("aliases", []):
                    hosts[alias] = "127.0.0.1"
        paths: dict[str, Path] = {}
        for service in all_services.values():
            for target, volume in volume_mounts(service).items():
                paths[target] = REPO / volume if volume.startswith("./") else scratch / "volumes" / volume
            if service.get("working_dir"):
                paths.setdefault(service["working_dir"], scratch / "workdirs" / service["working_dir"].strip("/"))
        for target, source in image_copies().items():
            paths[target] = REPO / source
        paths.setdefault(image_workdir(), scratch / "home")
        return cls(ports, hosts, paths)

    def text(self, value: str) -> str:
        host_names = "|".join(re.escape(h) for h in sorted(self.hosts, key=len, reverse=True))
        value = re.sub(
            rf"\b({host_names}):(\d+)\b",
            lambda m: f"{self.hosts[m.group(1)]}:{self.ports.get(int(m.group(2)), int(m.group(2)))}",
            value,
        )
        for prefix in sorted(self.paths, key=len, reverse=True):
            value = re.sub(rf"(?<![\w/]){re.escape(prefix)}(?=/|$|\b)", str(self.paths[prefix]), value)
        return value

    def argument(self, value: str) -> str:
        if value.isdigit() and int(value) in self.ports:
            return str(self.ports[int(value)])
        if value == "0.0.0.0":  # a bind address: listen on loopback only
            return "127.0.0.1"
        return self.text(value)

    def command(self, command: list[str]) -> list[str]:
        assert isinstance(command, list), f"use the exec form (a list) for commands and healthchecks: {command!r}"
        program, *arguments = command
        if program == "python":  # the project's image
            return [sys.executable, *(self.argument(a) for a in arguments)]
        assert program in PROGRAMS, f"every command runs the image's python or an engine's program: {command!r}"
        if program == "postgres":  # not on PATH in Debian's package: its versioned folder
            from devstack.engines import postgres_bin_dir

            return [str(postgres_bin_dir() / "postgres"), *(self.argument(a) for a in arguments)]
        found = shutil.which(PROGRAMS[program])
        assert found, f"{program} is missing (./run test installs it from Debian)"
        return [found, *(self.argument(a) for a in arguments)]

    def environment(self, service: dict) -> dict[str, str]:
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IDP_", "BROKER_", "PORTAL_", "MOTO_"))
        }
        image = {k: self.text(v) for k, v in image_env().items()}
        own = {k: self.text(str(v)) for k, v in (service.get("environment") or {}).items()}
        return {**inherited, **image, "HOME": str(self.paths[image_workdir()]), **own}

    def workdir(self, service: dict) -> Path:
        path = Path(self.text(service.get("working_dir") or image_workdir()))
        path.mkdir(parents=True, exist_ok=True)
        return path


def healthcheck_command(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", f"healthchecks run without a shell (CMD form): {test!r}"
    return test[1:]


def run_healthcheck(rewrite: LocalRewrite, service: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        rewrite.command(healthcheck_command(service)),
        env=rewrite.environment(service),
        cwd=rewrite.workdir(service),
        capture_output=True,
        text=True,
        timeout=30,
    )


def seconds(duration: str) -> float:
    """Compose durations used here: 5s, 1m30s, 500ms."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unreadable duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)
