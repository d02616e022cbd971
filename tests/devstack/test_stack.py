"""The demo launcher (`./run demo` = `python -m devstack.stack`) as a newcomer meets it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.processes import free_port, python_env
from devstack.stack import DEFAULT_ADDRESSES, PortInUse, check_ports_free, demo_users, free_addresses
from sso_common.keys import private_directory, private_log
from tests.support.idp_client import TOTP_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener():
    """Something already listening on a loopback port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_free_ports_pass_and_a_busy_one_names_its_variable(listener):
    addresses = free_addresses()
    check_ports_free(addresses)
    addresses["AWS_URL"] = f"http://127.0.0.1:{listener}"
    with pytest.raises(PortInUse, match=rf"port {listener} of AWS_URL=.* set AWS_URL to another address"):
        check_ports_free(addresses)


@pytest.mark.parametrize("variable", ["EMPLOYEE_DIRECTORY_URL", "INSTANCE_METADATA_URL"])
def test_the_instances_ports_are_checked_like_the_others(listener, variable):
    addresses = {**free_addresses(), variable: f"http://127.0.0.1:{listener}"}
    with pytest.raises(PortInUse, match=rf"port {listener} of {variable}=.* set {variable} to another address"):
        check_ports_free(addresses)


def test_a_busy_port_stops_the_demo_in_one_line_before_anything_starts(listener, tmp_path):
    env = python_env(**{**free_addresses(), "IDP_URL": f"http://127.0.0.1:{listener}"})
    run = subprocess.run(
        [sys.executable, "-m", "devstack.stack", "--instance-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
    assert "IDP_URL" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_every_demo_user_is_listed_with_what_makes_them_differ():
    lines = {line.split()[0]: line for line in demo_users()}
    assert set(lines) == {"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
    assert "TOTP" in lines["erin"] and "disabled" in lines["frank"] and "TOTP" not in lines["grace"]


def children_running(parent: int, module: str) -> list[int]:
    """PIDs of `python -m <module>` processes started by `parent` (gunicorn's master, not its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent
                and module in (entry / "cmdline").read_bytes().decode(errors="replace").split("\x00")
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    "module, name, log",
    [("idp_mock", "idp", "idp.log"), ("devstack.aws_emulator", "moto server", "moto_server.log")],
    ids=["the-idp", "the-emulator"],  # the emulator is kept apart from the other services: it went unnoticed
)
def test_the_demo_says_what_it_does_lists_everyone_and_says_which_service_died(tmp_path, module, name, log):
    addresses = free_addresses()
    instance = tmp_path / "instance"
    demo = subprocess.Popen(
        [sys.executable, "-m", "devstack.stack", "--instance-dir", str(instance)],
        env=python_env(**addresses, **TOTP_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (line := demo.stdout.readline()):
            out.append(line)
            if line.startswith("Logs:"):
                break
        shown = "".join(out)
        for step in (
            "starting the Example Corp IdP",
            "starting the AWS emulator",
            "provisioning the accounts",
            "starting the access portal",
            "starting the Employee Directory's instance",
        ):
            assert step in shown, shown
        assert "The demo is up" in shown and addresses["PORTAL_URL"] in shown and "grace" in shown
        assert f"AWS_ENDPOINT_URL={addresses['AWS_URL']}" in shown
        # The instance is listed: the app, its metadata service, and how to be the app from a shell.
        assert f"Employee Directory (the app):       {addresses['EMPLOYEE_DIRECTORY_URL']}/" in shown
        assert f"AWS_EC2_METADATA_SERVICE_ENDPOINT={addresses['INSTANCE_METADATA_URL']}" in shown
        assert "aws_secret_access_key" not in shown.lower() and "AKIA" not in shown
        keys = instance / "broker" / "aws-credentials"
        assert oct(keys.stat().st_mode & 0o777) == "0o600"

        provision = subprocess.run(
            [sys.executable, "-m", "broker", "provision"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=python_env(**addresses, BROKER_INSTANCE_DIR=str(instance / "broker")),
        )
        assert provision.returncode == 0, provision.stderr
        assert provision.stdout.strip().endswith("0 change(s).")

        (service,) = children_running(demo.pid, module)
        os.kill(service, signal.SIGTERM)
        assert demo.wait(timeout=30) == 1
        said = demo.stderr.read()
        assert f"The {name} stopped" in said and log in said
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=30)


def test_provision_without_credentials_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in python_env(**DEFAULT_ADDRESSES).items() if not k.startswith("AWS_")}
    env.update(BROKER_INSTANCE_DIR=str(tmp_path), HOME=str(tmp_path), AWS_URL=f"http://127.0.0.1:{free_port()}")
    run = subprocess.run(
        [sys.executable, "-m", "broker", "provision"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert run.returncode == 1 and "no AWS credentials" in run.stderr and "Traceback" not in run.stderr


def test_every_folder_the_stack_creates_is_private_and_every_log_0600(stack):
    """instance/ (the demo's, here the test's) holds keys, state, the emulator's keys and logs."""
    instance = stack.instance_dir
    folders = [instance, *(path for path in instance.rglob("*") if path.is_dir())]
    moto = instance / "aws"  # the emulator's folder is ours; what moto writes in it is moto's
    ours = [path for path in folders if path == moto or not path.is_relative_to(moto)]
    assert {"logs", "idp", "broker", "aws"} <= {path.name for path in ours}
    for folder in ours:
        assert folder.stat().st_mode & 0o777 == 0o700, f"{folder} is {oct(folder.stat().st_mode & 0o777)}"
    logs = list((instance / "logs").glob("*.log")) + [instance / "aws" / "moto_server.log"]
    assert {"idp.log", "broker.log", "provision.log"} <= {log.name for log in logs}
    for log in logs:
        assert log.stat().st_mode & 0o777 == 0o600, f"{log} is {oct(log.stat().st_mode & 0o777)}"


def test_private_folders_and_logs_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o000)
    try:
        log = tmp_path / "new" / "deeper" / "service.log"
        os.close(private_log(log))
        wide = tmp_path / "wide"
        wide.mkdir(mode=0o755)
        os.chmod(wide, 0o755)
        private_directory(wide)
    finally:
        os.umask(old)
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper", wide):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert log.stat().st_mode & 0o777 == 0o600
