"""docker-compose.yml, run without Docker: every service's command, environment and healthcheck.

The services start in the compose file's dependency order, as local processes (see composefile.py):
each long-running service must fail its healthcheck before it starts and pass it once it is up; the
one-shot provisioning must exit 0 before its dependents start. The engines run from Debian's packages:
redis-server and nginx with the file's command (nginx with deploy/nginx.conf made local), PostgreSQL as
its image's entrypoint would (devstack.engines). Then a person signs in through the composed edge and
gets working credentials, which proves the hand-over between them (the emulator's keys in the credentials
file, the issuer, the redirect addresses, the stores).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import requests

from devstack.stack import DIRECTORY_TOKEN, wait_for_provisioning
from tests.compose.composefile import (
    LocalRewrite,
    healthcheck_command,
    listening_ports,
    local_edge_config,
    run_healthcheck,
    seconds,
    services,
    start_order,
    volume_mounts,
)
from tests.support.directory_app import KEY_SHAPE, csrf, environ_of, sign_in_to_directory
from tests.support.portal import credentials_from_page, request_credentials, signed_in_session

SANDBOX = "111111111111"
LONG_RUNNING = {
    "redis",
    "postgres",
    "aws",
    "idp-1",
    "idp-2",
    "broker-1",
    "broker-2",
    "edge",
    "task-credentials",
    "employee-directory",
}


@dataclass
class Composed:
    rewrite: LocalRewrite
    services: dict[str, dict]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    unhealthy_before_start: dict[str, bool] = field(default_factory=dict)
    healthy_after: dict[str, float] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)

    def env(self, name: str) -> dict[str, str]:
        return self.rewrite.environment(self.services[name])

    def edge_log(self) -> str:
        path = self.logs.parent / "edge" / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def run(self, name: str) -> subprocess.Popen:
        service = self.services[name]
        for target, volume in volume_mounts(service).items():  # named volumes exist before a container starts
            if not volume.startswith("./"):
                Path(self.rewrite.paths[target]).mkdir(parents=True, exist_ok=True)
        command = self.rewrite.command(service["command"])
        if name == "postgres":  # the image's entrypoint: a cluster with POSTGRES_USER, _PASSWORD and _DB
            env = service["environment"]
            command = [sys.executable, "-m", "devstack.engines", "postgres", "--port", command[-1],
                       "--user", env["POSTGRES_USER"], "--password", env["POSTGRES_PASSWORD"],
                       "--database", env["POSTGRES_DB"]]  # fmt: skip
        elif name == "edge":  # nginx with deploy/nginx.conf, the one file mounted into it, made local
            folder = self.logs.parent / "edge"
            (source,) = [Path(self.rewrite.paths[target]) for target in volume_mounts(service)]
            folder.mkdir(exist_ok=True)
            (folder / "nginx.conf").write_text(local_edge_config(source.read_text(), self.rewrite, folder))
            command = [command[0], "-p", str(folder), "-c", str(folder / "nginx.conf"), *command[1:]]
        with (self.logs / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                command,
                env=self.env(name),
                cwd=self.rewrite.workdir(service),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, name: str) -> None:
        service = self.services[name]
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            if condition == "service_healthy":
                assert dependency in self.healthy_after, f"{name} starts before {dependency} is healthy"
            elif condition == "service_completed_successfully":
                assert self.exit_codes.get(dependency) == 0, f"{name} starts before {dependency} completed"
            else:
                raise AssertionError(f"{name}: unexpected depends_on condition {condition}")
        if "healthcheck" in service:
            self.unhealthy_before_start[name] = run_healthcheck(self.rewrite, service).returncode != 0
        began = time.monotonic()
        process = self.processes[name] = self.run(name)
        self.started.append(name)
        if "healthcheck" not in service:  # a one-shot step: it must finish, and succeed
            self.exit_codes[name] = process.wait(timeout=180)
            assert self.exit_codes[name] == 0, f"{name} exited {self.exit_codes[name]}:\n{self.log(name)}"
            return
        check = service["healthcheck"]
        deadline = (
            began
            + seconds(check.get("start_period", "0s"))
            + seconds(check.get("interval", "30s")) * check.get("retries", 3)
        )
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{name} exited {process.returncode}:\n{self.log(name)}"
            if run_healthcheck(self.rewrite, service).returncode == 0:
                self.healthy_after[name] = time.monotonic() - began
                return
            time.sleep(0.5)
        raise AssertionError(f"{name} not healthy within its start period and retries:\n{self.log(name)}")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("compose")
    all_services = services()
    stack = Composed(LocalRewrite.for_compose(all_services, scratch), all_services, scratch / "logs")
    stack.logs.mkdir()
    try:
        for name in start_order(all_services):
            stack.start(name)
        # As `./run demo` does: the portal admits only people the IdP provisioned over SCIM, so the stack is
        # ready for sign-ins once the IdP's full sync reached every target.
        idp = stack.env("idp-1")
        wait_for_provisioning(idp["IDP_URL"], idp.get("IDP_DIRECTORY_ADMIN_TOKEN", DIRECTORY_TOKEN))
        yield stack
    finally:
        stack.stop()


def url(composed, service: str, variable: str) -> str:
    return composed.env(service)[variable]


def test_services_start_in_dependency_order_and_become_healthy(composed):
    order = composed.started
    assert set(order) == set(composed.services)
    assert order.index("aws") < order.index("provision") < order.index("broker-1")
    assert max(order.index(name) for name in ("redis", "postgres")) < order.index("idp-1")
    assert max(order.index(name) for name in ("idp-1", "idp-2", "broker-1", "broker-2")) < order.index("edge")
    long_running = [name for name, service in composed.services.items() if "healthcheck" in service]
    assert set(composed.healthy_after) == set(long_running) == LONG_RUNNING
    assert composed.exit_codes == {"provision": 0}
    assert all(process.poll() is None for name, process in composed.processes.items() if name in long_running)


def test_healthchecks_fail_while_their_service_is_down(composed):
    assert composed.unhealthy_before_start == dict.fromkeys(LONG_RUNNING, True)


def test_each_healthcheck_probes_its_own_service(composed):
    for name in composed.healthy_after:
        command = healthcheck_command(composed.services[name])
        ports = listening_ports(composed.services[name]) or [8000]  # the edge: its portal site
        (own_port,) = ports  # the port its own command listens on
        assert f":{own_port}/" in " ".join(command) or str(own_port) in command, (name, command)


def test_the_issuer_the_portal_checks_is_the_one_the_idp_serves(composed):
    issuer = url(composed, "broker-1", "IDP_URL")
    assert url(composed, "idp-1", "IDP_URL") == issuer
    discovery = requests.get(issuer + "/.well-known/openid-configuration", timeout=5).json()
    assert discovery["issuer"] == issuer
    assert 'entityID="' + issuer + '/saml/metadata"' in requests.get(issuer + "/saml/metadata", timeout=5).text


def test_the_emulator_keys_are_handed_to_the_portal_in_a_private_file(composed):
    path = Path(url(composed, "broker-1", "AWS_SHARED_CREDENTIALS_FILE"))
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    assert "aws_secret_access_key" in path.read_text()


def test_a_person_signs_in_through_the_composed_services_and_gets_credentials(composed):
    portal = url(composed, "broker-1", "PORTAL_URL")
    for upstream in ("example-corp-oidc", "example-corp-saml"):
        http = signed_in_session(portal, "bob", upstream)
        answer = request_credentials(http, portal, SANDBOX, "EmployeeDirectoryDeveloper")
        assert answer.status_code == 200, answer.text[:2000]
        credentials = credentials_from_page(answer.text)
        caller = boto3.client(
            "sts", endpoint_url=url(composed, "broker-1", "AWS_URL"), region_name="us-east-1", **credentials
        ).get_caller_identity()
        assert caller["Account"] == SANDBOX and caller["Arn"].endswith("/bob@example.com")


def test_the_provisioning_step_can_run_again(composed):
    """`docker compose up` runs the one-shot service again while the emulator keeps running: it must
    succeed and keep the keys the running portal holds."""
    keys = Path(url(composed, "broker-1", "AWS_SHARED_CREDENTIALS_FILE")).read_text()
    again = composed.run("provision")
    assert again.wait(timeout=180) == 0, composed.log("provision")
    assert Path(url(composed, "broker-1", "AWS_SHARED_CREDENTIALS_FILE")).read_text() == keys
    test_a_person_signs_in_through_the_composed_services_and_gets_credentials(composed)


def test_the_employee_directory_runs_as_its_task_role_with_no_key(composed):
    app, idp = (
        url(composed, "employee-directory", "EMPLOYEE_DIRECTORY_URL"),
        url(composed, "employee-directory", "IDP_URL"),
    )
    http = sign_in_to_directory(app, idp, "heidi")
    assert "Alice Anderson" in http.get(app + "/").text
    status = http.get(app + "/status").text
    assert re.search(r"arn:aws:sts::222222222222:assumed-role/EmployeeWebAppTaskRole/task-[0-9a-f]{16}", status)
    assert "the container credentials endpoint" in status
    tried = http.post(app + "/status/try-to-delete-the-bucket", data={"csrf_token": csrf(status)}).text
    assert "Denied: AccessDenied" in tried
    environ = environ_of(composed.processes["employee-directory"].pid)
    names = {name.decode() for name in environ if name.startswith(b"AWS_")}
    assert names == {"AWS_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}
    token = Path(environ[b"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].decode()).read_bytes().strip()
    everything = b"\0".join(environ.values())
    assert token not in everything and not KEY_SHAPE.search(everything)


def test_the_edge_spreads_requests_over_both_replicas_of_each_service(composed):
    """After the sign-ins above, the edge's access log names both portal and both IdP replicas."""
    upstreams = set(re.findall(r"upstream=127\.0\.0\.1:(\d+)", composed.edge_log()))
    for names in (("broker-1", "broker-2"), ("idp-1", "idp-2")):
        ports = {str(composed.rewrite.ports[listening_ports(composed.services[name])[0]]) for name in names}
        assert ports <= upstreams, (names, upstreams)
