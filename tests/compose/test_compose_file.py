"""docker-compose.yml without a Docker engine: the compose specification's schema, Debian's
docker-compose 1.29 (`config -q`), and the addresses in the file against the configuration the
services read (the issuer, redirect and ACS addresses, published ports, names on the network).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from flask import Flask

from tests.compose.composefile import (
    COMPOSE_FILE,
    ENGINES,
    REPO,
    compose,
    healthcheck_command,
    published_ports,
    services,
    start_order,
    volume_mounts,
)

CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def check_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_file_follows_the_compose_specification():
    answer = check_schema(COMPOSE_FILE)
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_the_schema_check_does_catch_mistakes(tmp_path):
    broken = compose()
    broken["services"]["idp-1"]["healthcheck"]["intervall"] = "5s"
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    assert check_schema(tmp_path / "docker-compose.yml").returncode != 0


def test_docker_compose_accepts_the_file():
    # Never skipped: `./run test` installs Debian's docker-compose, and a missing binary must fail loudly.
    assert shutil.which("docker-compose"), "Debian's docker-compose is missing (./run test installs it)"
    # 1.29 also catches undefined services and a missing build folder (and rejects keys it predates).
    answer = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_every_service_runs_the_projects_image_but_the_engines_their_pinned_official_ones():
    for name, service in services().items():
        if name in ENGINES:
            assert "build" not in service and re.fullmatch(
                r"(redis|postgres|nginx):\d+\.\d+(\.\d+)?-bookworm", service["image"]
            )
        else:
            assert service["build"] == "." and service["image"] == "sso-login-broker:local", name


def test_the_emulator_runs_as_the_demo_runs_it(monkeypatch, tmp_path):
    """One implementation: the aws service's command and environment are those of MotoServer.start."""
    from devstack import aws_emulator, processes

    seen = {}

    class Exited:
        returncode = 1

        def __init__(self, args, env, **_):
            seen.update(args=args, env=env)

        def poll(self):
            return 1

        def wait(self, timeout=None):
            return 1

    monkeypatch.setattr(processes.subprocess, "Popen", Exited)
    with pytest.raises(RuntimeError):
        aws_emulator.MotoServer(tmp_path, port=8002, host="0.0.0.0").start(timeout=1)
    aws = services()["aws"]
    assert ["python", *seen["args"][1:]] == aws["command"]
    assert {k: v for k, v in seen["env"].items() if k != "HOME"} == aws["environment"]


def test_long_running_services_have_healthchecks_and_the_one_shot_does_not_restart():
    for name, service in services().items():
        if name == "provision":
            assert "healthcheck" not in service and service["restart"] == "no"
        elif name in ENGINES:
            assert healthcheck_command(service)[0] in ("redis-cli", "pg_isready", "curl"), name
        else:
            assert healthcheck_command(service)[:2] == ["python", "-c"], name
    for name in ("idp-1", "idp-2", "broker-1", "broker-2"):  # ready: the replica reaches its stores
        assert "/readyz'" in healthcheck_command(services()[name])[2], name


def test_services_start_in_dependency_order():
    all_services = services()
    healthy = {"condition": "service_healthy"}
    assert start_order(all_services).index("aws") < start_order(all_services).index("provision")
    assert all_services["provision"]["depends_on"] == {"aws": healthy}
    for name in ("broker-1", "broker-2"):
        assert all_services[name]["depends_on"] == {
            "redis": healthy,
            "postgres": healthy,
            "aws": healthy,
            "provision": {"condition": "service_completed_successfully"},
        }
    for name in ("idp-1", "idp-2"):
        assert all_services[name]["depends_on"] == {"redis": healthy, "postgres": healthy}
    assert all_services["edge"]["depends_on"] == dict.fromkeys(("idp-1", "idp-2", "broker-1", "broker-2"), healthy)
    assert not any("depends_on" in all_services[name] for name in ("aws", "redis", "postgres"))


def test_state_and_keys_live_on_named_volumes():
    declared = set(compose()["volumes"])
    all_services = services()
    for name, service in all_services.items():
        if name != "edge":
            assert set(volume_mounts(service).values()) <= declared, f"{name}: bind mount or undeclared volume"

    def on_volume(service: dict, path: str) -> str:
        return next(
            volume
            for target, volume in volume_mounts(service).items()
            if path.startswith(target + "/") or path == target
        )

    idp, broker, provision = all_services["idp-1"], all_services["broker-1"], all_services["provision"]
    assert on_volume(idp, idp["environment"]["IDP_INSTANCE_DIR"]) == "idp-state"
    # Replicas share their service's keys: one volume per service, mounted by each replica.
    assert (
        all_services["idp-2"]["volumes"] == idp["volumes"] and all_services["broker-2"]["volumes"] == broker["volumes"]
    )
    assert all_services["edge"]["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]  # configuration only
    # Provisioning registers the broker's signing key in every account: both use the same keys.
    assert provision["environment"]["BROKER_INSTANCE_DIR"] == broker["environment"]["BROKER_INSTANCE_DIR"]
    assert on_volume(broker, broker["environment"]["BROKER_INSTANCE_DIR"]) == "broker-state"
    assert on_volume(provision, provision["environment"]["BROKER_INSTANCE_DIR"]) == "broker-state"
    # The one-shot leaves the emulator's keys where the portal's boto3 looks for them.
    credentials = broker["environment"]["AWS_SHARED_CREDENTIALS_FILE"]
    assert provision["command"][-2:] == ["--prepare-aws", credentials]
    assert on_volume(broker, credentials) == on_volume(provision, credentials) == "broker-state"


# --- the addresses in the file against what the services read ------------------------------------


@pytest.fixture
def configured(monkeypatch, tmp_path):
    """The IdP's and the broker's settings as each service loads them with its compose environment."""
    from broker.settings import load_settings as broker_settings
    from idp_mock.settings import load_settings as idp_settings

    def load(service_name, loader):
        for name, value in services()[service_name]["environment"].items():
            monkeypatch.setenv(name, str(value))
        return loader(instance_dir=tmp_path / service_name)

    for variable in ("PORTAL_URL", "IDP_URL", "AWS_URL"):
        monkeypatch.delenv(variable, raising=False)
    return {"idp": load("idp-1", idp_settings), "broker": load("broker-1", broker_settings)}


def test_the_issuer_the_portal_checks_is_the_issuer_the_idp_serves(configured):
    idp, broker = configured["idp"], configured["broker"]
    issuer = services()["broker-1"]["environment"]["IDP_URL"]
    assert idp.issuer == issuer == services()["idp-1"]["environment"]["IDP_URL"]
    upstreams = {node.child("id").value: node for node in broker.upstreams_node.elements()}
    assert upstreams["example-corp-oidc"].child("issuer").value == issuer
    assert upstreams["example-corp-saml"].child("metadata_url").value == f"{issuer}/saml/metadata"
    assert idp.saml.entity_id == f"{issuer}/saml/metadata"


def test_the_idp_sends_people_back_to_the_portals_published_address(configured):
    """The redirect, post-logout and ACS addresses the IdP allows resolve from PORTAL_URL to real portal routes."""
    from broker.http import login

    portal = services()["broker-1"]["environment"]["PORTAL_URL"]
    assert configured["broker"].portal_url == portal == services()["idp-1"]["environment"]["PORTAL_URL"]
    assert services()["provision"]["environment"]["PORTAL_URL"] == portal
    app = Flask("routes")
    app.register_blueprint(login.blueprint)
    routes = app.url_map.bind(urlsplit(portal).netloc)

    def route(address: str, method: str) -> str:
        assert address.startswith(portal + "/"), address
        return routes.match(urlsplit(address).path, method=method)[0]

    client = configured["idp"].oidc.clients["access-portal"]
    assert [route(uri, "GET") for uri in client.redirect_uris] == ["login.oidc_callback"]
    assert [route(uri, "GET") for uri in client.post_logout_redirect_uris] == ["login.signed_out"]
    portal_sp = next(sp for sp in configured["idp"].saml.service_providers.values() if sp.entity_id.startswith(portal))
    assert [route(acs.url, "POST") for acs in portal_sp.acs] == ["login.saml_acs"]


def test_the_idp_fetches_the_portals_metadata_from_inside_the_network(configured):
    """The portal's published entity ID is what the browser sees; the IdP fetches the same document through
    the edge by service name, since localhost inside an idp container is that container."""
    from devstack.edge import COMPOSE

    portal_sp = next(
        sp
        for sp in configured["idp"].saml.service_providers.values()
        if sp.entity_id == services()["broker-1"]["environment"]["PORTAL_URL"] + "/saml/metadata"
    )
    fetched = urlsplit(portal_sp.metadata_url)
    portal_site = next(site for site in COMPOSE.sites if site.name == "portal")
    assert (fetched.hostname, fetched.port, fetched.path) == ("edge", int(portal_site.listen), "/saml/metadata")


def test_published_ports_and_names_match_the_urls():
    from devstack.edge import COMPOSE

    all_services = services()
    portal = urlsplit(all_services["broker-1"]["environment"]["PORTAL_URL"])
    idp = urlsplit(all_services["broker-1"]["environment"]["IDP_URL"])
    aws = urlsplit(all_services["broker-1"]["environment"]["AWS_URL"])

    def serve_port(command: list[str], flag: str) -> int:
        return int(command[command.index(flag) + 1])

    # The browser reaches the portal and the IdP at their URLs' ports, published by the edge on loopback, and
    # nothing else of theirs: the replicas are reached through the edge.
    assert portal.hostname == "localhost"
    edge = all_services["edge"]
    assert published_ports(edge) == [("127.0.0.1", portal.port, portal.port), ("127.0.0.1", idp.port, idp.port)]
    sites = {site.name: site for site in COMPOSE.sites}
    assert (int(sites["portal"].listen), int(sites["idp"].listen)) == (portal.port, idp.port)
    # The edge passes each site to exactly its service's replicas, at the ports they listen on.
    for site, service in (("portal", "broker"), ("idp", "idp")):
        replicas = {f"{name}:{serve_port(s['command'], '--port')}" for name, s in all_services.items()
                    if name.startswith(f"{service}-")}  # fmt: skip
        assert set(sites[site].replicas) == replicas and len(replicas) == 2
        assert all("ports" not in all_services[name.split(":")[0]] for name in replicas)
    # The IdP's name works in the browser (*.localhost is loopback) and on the compose network (the edge's alias).
    assert idp.hostname.endswith(".localhost")
    assert edge["networks"]["default"]["aliases"] == [idp.hostname]
    assert idp.hostname != portal.hostname  # two sites, as in production
    # Containers reach the emulator by its service name, on the port moto listens on.
    assert aws.hostname == "aws" and all_services["provision"]["environment"]["AWS_URL"] == aws.geturl()
    assert serve_port(all_services["aws"]["command"], "-p") == aws.port
    assert published_ports(all_services["aws"]) == [("127.0.0.1", aws.port, aws.port)]
    for name in ("aws", "idp-1", "idp-2", "broker-1", "broker-2"):
        command = all_services[name]["command"]
        assert command[command.index("-H" if name == "aws" else "--host") + 1] == "0.0.0.0", name


def test_the_edge_runs_the_generated_configuration():
    from devstack.edge import COMPOSE, nginx_config

    assert (REPO / "deploy" / "nginx.conf").read_text() == nginx_config(COMPOSE), "run python -m devstack.edge"
    assert services()["edge"]["command"] == ["nginx", "-g", "daemon off;"]


def test_replicas_differ_only_in_their_port():
    all_services = services()
    for first, second in (("idp-1", "idp-2"), ("broker-1", "broker-2")):
        one, other = dict(all_services[first]), dict(all_services[second])
        for service in (one, other):
            service.pop("command"), service.pop("healthcheck")
        assert one == other, (first, second)
        port = all_services[second]["command"][-1]
        assert all_services[second]["healthcheck"]["test"][-1].count(f":{port}/") == 1


def test_the_stores_are_the_engines_with_the_engines_credentials():
    all_services = services()
    postgres, edge = all_services["postgres"], all_services["edge"]
    broker, idp = all_services["broker-1"]["environment"], all_services["idp-1"]["environment"]
    assert broker["BROKER_STATE_URL"] == "redis://redis:6379/0" and idp["IDP_STATE_URL"] == "redis://redis:6379/1"
    durable = [broker[f"BROKER_{name}_URL"] for name in ("LASTING", "DIRECTORY", "AUDIT", "CHANGES")]
    assert idp["IDP_CHANGES_URL"] == idp["IDP_LASTING_URL"]
    assert len(set(durable)) == 1 and durable[0].endswith("?schema=broker")
    assert idp["IDP_LASTING_URL"].endswith("?schema=idp")
    for url in (durable[0], idp["IDP_LASTING_URL"]):
        parts = urlsplit(url)
        env = postgres["environment"]
        assert (parts.username, parts.password, parts.path.strip("/")) == (
            env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"],
        )  # fmt: skip
        assert (parts.hostname, parts.port) == ("postgres", int(postgres["command"][-1]))
    # The replicas take X-Real-IP from the edge only: its fixed address on the network.
    edge_address = edge["networks"]["default"]["ipv4_address"]
    assert broker["WEB_TRUSTED_PROXIES"] == idp["WEB_TRUSTED_PROXIES"] == edge_address


def test_the_region_is_the_access_configs():
    from broker.core.access import load_access

    region = load_access(REPO / "config" / "access.yaml").region
    assert services()["broker-1"]["environment"]["AWS_DEFAULT_REGION"] == region


# --- the Employee Directory: a task with its role, beside its credentials endpoint ---------------------------


def test_the_app_shares_the_credentials_endpoints_network_namespace_and_reaches_it_on_loopback():
    from botocore.utils import ContainerMetadataFetcher

    from devstack.container_credentials import CREDENTIALS_PATH

    all_services = services()
    app, endpoint = all_services["employee-directory"], all_services["task-credentials"]
    assert app["network_mode"] == "service:task-credentials"
    assert "ports" not in app and "networks" not in app  # a shared namespace has one set of both: the endpoint's
    uri = urlsplit(app["environment"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
    command = endpoint["command"]
    assert (uri.hostname, uri.port, uri.path) == (
        "127.0.0.1",
        int(command[command.index("--port") + 1]),
        CREDENTIALS_PATH,
    )
    assert command[command.index("--host") + 1] == "127.0.0.1"  # nothing outside the namespace reaches it
    ContainerMetadataFetcher()._validate_allowed_url(uri.geturl())  # botocore takes it (loopback)
    assert app["depends_on"] == {
        "task-credentials": {"condition": "service_healthy"},
        "edge": {"condition": "service_healthy"},  # the IdP's address
    }
    assert endpoint["depends_on"] == {
        "aws": {"condition": "service_healthy"},
        "provision": {"condition": "service_completed_successfully"},
    }


def test_the_app_is_given_no_key_only_where_its_credentials_are_and_a_token_file():
    all_services = services()
    app, endpoint = all_services["employee-directory"], all_services["task-credentials"]
    aws_variables = {name for name in app["environment"] if name.startswith("AWS_")}
    assert aws_variables == {"AWS_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}
    # The emulator's management keys (on broker-state) are the endpoint's, read-only, never the app's.
    assert "broker-state" not in volume_mounts(app).values()
    assert "broker-state:/var/lib/sso/broker:ro" in endpoint["volumes"]
    token_file = app["environment"]["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
    command = endpoint["command"]
    assert command[command.index("--token-file") + 1] == token_file
    shared = {target: volume for target, volume in volume_mounts(app).items() if token_file.startswith(target + "/")}
    assert (
        shared == {"/var/lib/sso/task": "task-token"} and volume_mounts(endpoint)["/var/lib/sso/task"] == "task-token"
    )
    assert "task-token:/var/lib/sso/task:ro" in app["volumes"]  # the app reads the token, never writes it
    assert command[command.index("--role") + 1] == "EmployeeWebAppTaskRole"


def test_the_apps_address_is_published_by_its_namespace_and_the_idp_sends_people_back_there(configured):
    all_services = services()
    app = all_services["employee-directory"]
    url = urlsplit(app["environment"]["EMPLOYEE_DIRECTORY_URL"])
    port = int(app["command"][app["command"].index("--port") + 1])
    assert url.hostname == "localhost" and url.port == port
    assert app["command"][app["command"].index("--host") + 1] == "0.0.0.0"
    assert published_ports(all_services["task-credentials"]) == [("127.0.0.1", port, port)]
    assert all_services["idp-1"]["environment"]["EMPLOYEE_DIRECTORY_URL"] == url.geturl()
    client = configured["idp"].oidc.clients["employee-directory"]
    assert client.redirect_uris == (f"{url.geturl()}/auth/callback",)
    assert app["environment"]["IDP_URL"] == all_services["broker-1"]["environment"]["IDP_URL"]
