"""How the apps are served (sso_common/serve.py, granian): slow clients cannot stop them, log lines cannot
be forged, https brings HSTS, and the access log keeps its format."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from devstack.processes import Process, free_port, python_env
from sso_common.keys import generate_rsa_key
from sso_common.logs import EscapeControlCharacters, escape
from tests.support.idp_client import submit_login

REPO = Path(__file__).resolve().parents[2]
IDP_CONFIG = REPO / "config" / "idp.yaml"
DEMO_SECRETS = re.compile(r"\$\{([A-Z0-9_]+):-demo-[^}]*\}")
SLOW_CLIENTS = 100
BUDGET = 20.0  # seconds the slow-client check may take at most, start to finish


class Dripper:
    """`count` connections that send a request head one byte per second and never finish it."""

    def __init__(self, host: str, port: int, count: int):
        self.sockets = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.sockets:
                try:
                    sock.send(b"X")
                except OSError:
                    pass

    def still_open(self) -> int:
        """How many the server has not closed (a closed one reads as EOF)."""
        open_ = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                open_ += sock.recv(1) != b""
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return open_

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def test_a_hundred_slow_clients_do_not_stop_healthz_or_logins(idp):
    """gunicorn's threaded workers stopped answering with 40 such connections (one thread each, no
    deadline for a request head); granian reads request heads in its event loop."""
    started = time.monotonic()
    host, port = idp.url.removeprefix("http://").split(":")
    dripper = Dripper(host, int(port), SLOW_CLIENTS)
    try:
        time.sleep(1.5)  # let every connection send a byte or two more: slow, not idle
        before = time.monotonic()
        assert requests.get(f"{idp.url}/healthz", timeout=5).status_code == 200
        healthz = time.monotonic() - before
        http = requests.Session()
        before = time.monotonic()
        page = http.get(f"{idp.url}/login", timeout=5)
        answer = submit_login(http, idp.url, page, "alice")
        login = time.monotonic() - before
        assert answer.status_code == 303, answer.text[:300]
        assert dripper.still_open() == SLOW_CLIENTS  # they were all still there while we were served
    finally:
        dripper.close()
    assert healthz < 1.0 and login < 3.0, f"/healthz {healthz:.2f} s, login {login:.2f} s"
    assert time.monotonic() - started < BUDGET


# --- log lines --------------------------------------------------------------------------------------


def test_a_newline_in_a_path_writes_one_log_line(idp):
    marker = f"FORGED-{uuid.uuid4().hex[:8]}"
    forged_line = f"2026-01-01 00:00:00,000 INFO idp_mock.login: sign-in succeeded for {marker}"
    for path in (f"/%0a{marker}", f"/oidc/authorize/continue/%0d%0a{forged_line.replace(' ', '%20')}"):
        requests.get(idp.url + path, timeout=5)
    deadline = time.monotonic() + 5
    while marker not in idp.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in idp.logs().splitlines() if marker in line]
    assert lines, idp.logs()[-2000:]
    assert all(not line.startswith(("FORGED", "2026-01-01")) for line in lines), lines
    access = [line for line in lines if "sso.access" in line and '"GET /\\n' in line]
    assert len(access) == 1 and access[0].endswith("s") and " 404 " in access[0], lines


def test_the_escaping_filter_keeps_one_record_on_one_line():
    assert escape("plain ascii, accents é and ü") == "plain ascii, accents é and ü"
    assert escape("a\nb\rc\td\x1be\u2028f\x00") == "a\\nb\\rc\\td\\x1be\\u2028f\\x00"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "user %s said %r", ("bob\nINFO forged", "\x07"), None)
    try:
        raise ValueError("bad value\n2026-01-01 INFO forged")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    EscapeControlCharacters().filter(record)
    formatted = logging.Formatter("%(levelname)s %(message)s").format(record)
    lines = formatted.splitlines()
    assert lines[0] == "INFO user bob\\nINFO forged said '\\x07'"
    assert lines[-1] == "ValueError: bad value\\n2026-01-01 INFO forged"
    assert all(not line.startswith("2026") for line in lines)


def test_the_access_log_writes_the_path_without_the_query(idp):
    requests.get(f"{idp.url}/healthz?code=secret-code-123", timeout=5)
    deadline = time.monotonic() + 5
    while '"GET /healthz" 200' not in idp.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in idp.logs().splitlines() if '"GET /healthz" 200' in line)
    assert re.search(r'sso\.access: 127\.0\.0\.1 "GET /healthz" 200 \d+ \d+\.\d{6}s$', line), line
    assert "secret-code-123" not in idp.logs()


# --- https ------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = generate_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_served_over_https_by_itself_the_app_sends_hsts(tmp_path, idp):
    cert_file, key_file = self_signed(tmp_path)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = python_env(
        IDP_URL=url,
        IDP_INSTANCE_DIR=str(tmp_path / "instance"),
        WEB_WORKERS="1",
        WEB_TLS_CERTFILE=str(cert_file),
        WEB_TLS_KEYFILE=str(key_file),
        # an https IdP refuses the shipped demo secrets: every one gets a value of its own
        **{name: f"not-a-demo-secret-{name.lower()}" for name in DEMO_SECRETS.findall(IDP_CONFIG.read_text())},
    )
    process = Process.start("idp-https", ["idp_mock", "serve"], log_path=tmp_path / "idp.log", cwd=tmp_path, env=env)
    try:
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline and process.running():
            try:
                answer = requests.get(f"{url}/healthz", verify=str(cert_file), timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, process.logs()[-2000:]
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        process.stop()
    # plain http (behind a TLS-terminating proxy in production): the proxy's business, not the app's
    assert "Strict-Transport-Security" not in requests.get(f"{idp.url}/healthz", timeout=5).headers


@pytest.mark.parametrize("names", [("WEB_TLS_CERTFILE",), ("WEB_TLS_KEYFILE",)])
def test_https_needs_both_certificate_and_key(tmp_path, names):
    env = python_env(IDP_INSTANCE_DIR=str(tmp_path / "instance"), **dict.fromkeys(names, str(tmp_path / "x.pem")))
    process = Process.start(
        "idp-half-tls",
        ["idp_mock", "serve", "--port", str(free_port())],
        log_path=tmp_path / "l",
        cwd=tmp_path,
        env=env,
    )
    process.popen.wait(timeout=30)
    assert process.popen.returncode != 0 and "needs both WEB_TLS_CERTFILE and WEB_TLS_KEYFILE" in process.logs()


def test_a_server_refuses_a_port_another_server_listens_on():
    """granian binds with SO_REUSEPORT: without the check, a second server on a taken port would start and the
    kernel would split connections between the two."""
    from sso_common.serve import refuse_taken_port

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as granian binds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            refuse_taken_port("127.0.0.1", port)
    refuse_taken_port("127.0.0.1", port)  # free again once it closed


def test_the_emulator_does_not_start_on_a_port_a_server_already_has(tmp_path):

    from devstack.aws_emulator import MotoServer

    with MotoServer(tmp_path) as first:
        second = subprocess.run(
            [sys.executable, "-m", "devstack.aws_emulator", "-H", "127.0.0.1", "-p", str(first.port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"cannot listen on 127.0.0.1:{first.port}" in second.stderr + second.stdout


def test_a_worker_starts_with_what_start_up_made_out_of_the_collectors_reach(tmp_path):
    """sso_common.serve.freeze_startup_heap: modules, the app and its config live as long as the process, so a
    full garbage collection in a worker walks only what requests made since."""
    port = free_port()
    process = Process.start(
        "frozen", ["tests.support.frozen_app", str(port)], log_path=tmp_path / "frozen.log", cwd=REPO, env=python_env()
    )
    try:
        process.wait_healthy(f"http://127.0.0.1:{port}/frozen")
        frozen = int(requests.get(f"http://127.0.0.1:{port}/frozen", timeout=5).text)
    finally:
        process.stop()
    assert frozen > 10_000, f"{frozen} objects frozen"  # Flask and granian alone make tens of thousands
