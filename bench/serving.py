"""The serving-stack comparison behind docs/architecture.md ("Serving"): a hello-world Flask app and the
IdP's own /healthz under each candidate, measured the same way.

    .venv/bin/python -m bench.serving            # granian, as sso_common.serve runs it
    .venv/bin/pip install gunicorn==27.0.1 && .venv/bin/python -m bench.serving   # gunicorn too

Per candidate: server CPU per request (utime+stime of the server's process tree, from /proc, over N
keep-alive requests from C concurrent clients), then whether /healthz still answers while 100 connections
drip their request heads. Loopback only; every run is bounded in requests and time.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.monitor import cpu_seconds
from bench.slow import Drippers
from devstack.processes import answers, free_port, process_tree, python_env

HELLO = """
from flask import Flask
app = Flask(__name__)
@app.get("/healthz")
def healthz():
    return "ok"
def create():
    return app
"""

GRANIAN = """
import sys
sys.path.insert(0, {folder!r})
from hello import create
from sso_common.serve import serve
serve(create, "127.0.0.1", {port}, workers=2, threads=8)
"""

GUNICORN = [
    "-m",
    "gunicorn",
    "-w",
    "2",
    "--threads",
    "8",
    "-k",
    "gthread",
    "--header-map",
    "dangerous",
    "--access-logfile",
    "-",
    "--access-logformat",
    '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
]


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(member) for member in process_tree(pid))


def load(port: int, requests: int, clients: int) -> float:
    """Seconds for `requests` GET /healthz over `clients` keep-alive connections."""

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(count):
            connection.request("GET", "/healthz")
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"status {answer.status}")
        connection.close()

    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - began


def measure(name: str, command: list[str], port: int, cwd: Path, requests: int, clients: int) -> None:
    log = open(cwd / f"{name}.log", "wb")  # noqa: SIM115 - closed below, after the server stops
    server = subprocess.Popen(
        [sys.executable, *command], cwd=cwd, env=python_env(LOG_LEVEL="info"), stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while not answers(f"http://127.0.0.1:{port}/healthz") and time.monotonic() < deadline:
            time.sleep(0.1)
        load(port, 400, clients)  # warm up
        before = tree_cpu_seconds(server.pid)
        seconds = load(port, requests, clients)
        cpu = tree_cpu_seconds(server.pid) - before
        drippers = Drippers(f"http://127.0.0.1:{port}", 100, max_seconds=30)
        try:
            time.sleep(1.5)
            began = time.monotonic()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", "/healthz")
                status = connection.getresponse().status
            except OSError as error:
                status = f"no answer ({type(error).__name__})"
            slow = f"{status} in {time.monotonic() - began:.2f} s"
        finally:
            drippers.close()
        print(
            f"{name:>10}: {cpu * 1000 / requests:.3f} ms server CPU per request, {requests / seconds:.0f} req/s "
            f"({requests} requests, {clients} clients); /healthz with 100 slow clients: {slow}",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sso-serving-") as scratch:
        folder = Path(scratch)
        (folder / "hello.py").write_text(HELLO)
        port = free_port()
        (folder / "run_granian.py").write_text(GRANIAN.format(folder=str(folder), port=port))
        measure("granian", [str(folder / "run_granian.py")], port, folder, args.requests, args.clients)
        if importlib.util.find_spec("gunicorn"):
            port = free_port()
            command = [*GUNICORN, "-b", f"127.0.0.1:{port}", "--chdir", str(folder), "hello:create()"]
            measure("gunicorn", command, port, folder, args.requests, args.clients)
        else:
            print("  gunicorn: not installed (pip install gunicorn==27.0.1 to compare)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
