"""devstack/processes.py: a started process counts as healthy only when it is what answers at its address."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from devstack.processes import Process, free_port, listens_on
from tests.support.loopback import LoopbackServer


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def another_server():
    """Something else answering 200 on a port, as another test's server that took the same free port."""
    with LoopbackServer(_Ok) as server:
        yield server.port


def test_an_answer_from_another_server_on_the_port_is_not_this_process_being_healthy(tmp_path, another_server):
    waiting = Process.start(
        "idle", ["timeit", "-n", "1", "import time; time.sleep(30)"], log_path=tmp_path / "idle.log", cwd=tmp_path
    )
    try:
        with pytest.raises(RuntimeError, match="did not answer"):
            waiting.wait_healthy(f"http://127.0.0.1:{another_server}/", timeout=1.5)
        assert listens_on(waiting.pid, another_server) is False
    finally:
        waiting.stop(timeout=2)


def test_a_process_listening_on_its_port_is_healthy(tmp_path):
    port = free_port()
    server = Process.start(
        "server", ["http.server", str(port), "--bind", "127.0.0.1"], log_path=tmp_path / "server.log", cwd=tmp_path
    )
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}/", timeout=15)
        assert listens_on(server.pid, port) is True
    finally:
        server.stop(timeout=5)


def test_a_port_once_handed_out_is_never_handed_out_again(monkeypatch):
    """Ports are chosen before their servers bind them: the kernel offering a closed probe's port again must not
    give two servers of one stack the same port."""
    import devstack.processes as processes

    offered = iter([52001, 52001, 52002, 52001, 52003])

    class Probe:
        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def bind(self, address):
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(processes.socket, "socket", Probe)
    monkeypatch.setattr(processes, "_handed_out", set())
    assert [processes.free_port() for _ in range(3)] == [52001, 52002, 52003]


STUBBORN_PARENT = """
import signal, subprocess, sys, time
IGNORE_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", IGNORE_SIGTERM])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_process_that_will_not_stop_is_killed_with_its_children(tmp_path):
    """A server's parent that does not stop in time is killed with its workers (granian's workers outlived a
    parent killed alone, holding their port)."""
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN_PARENT)
    log = tmp_path / "stubborn.log"
    stubborn = Process.start("stubborn", ["stubborn"], log_path=log, cwd=tmp_path)  # (-m: its folder on the path)
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(log.read_text().split()[0])
    stubborn.stop(timeout=0.5)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its parent's stop"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
