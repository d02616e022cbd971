"""Start the project's processes on loopback and wait until they answer: one helper for the demo
launcher, the AWS emulator wrapper, the tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sso_common.keys import private_log

LOG_TAIL = 3000  # characters of a failed process's log shown in the error


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now, and never one this process handed out before. A port is chosen here
    and bound later, by the server it is for; the kernel may offer a port again once its probe is closed, and a
    stack's ports are all chosen before its servers start (seen: the replicated stack's PostgreSQL given the
    port chosen a moment before for the portal's nginx, whose requests then went to PostgreSQL)."""
    with _handed_out_lock:
        while True:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = int(probe.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port


@dataclass
class Process:
    """A started `python -m ...` process whose output goes to `log_path`."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @classmethod
    def start(
        cls,
        name: str,
        module_args: list[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        new_session: bool = True,
    ) -> Process:
        """Run `python -m <module_args>` in `cwd`, appending its output to `log_path`. A new session
        (the default) keeps Ctrl-C in a terminal from reaching it before the launcher stops it."""
        with os.fdopen(private_log(log_path), "ab") as log:  # 0600, in 0700 folders
            popen = subprocess.Popen(
                [sys.executable, "-m", *module_args],
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        return cls(name, popen, log_path)

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_healthy(self, url: str, timeout: float = 30.0) -> None:
        """Wait until GET `url` answers 200 from this process (it, or a child, listens on the URL's port, where
        /proc tells); RuntimeError with the log's tail if the process exits or the time runs out. A server of
        another test that took the same free port answers too: it does not count (this one then refuses the
        port and exits: sso_common.serve.refuse_taken_port)."""
        port = urlsplit(url).port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{self.logs()[-LOG_TAIL:]}")
            if answers(url) and (port is None or listens_on(self.pid, port) is not False):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f} s:\n{self.logs()[-LOG_TAIL:]}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then `kill` if it has not exited within `timeout` seconds."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL it and, when it leads a process group, the rest of the group too (a server's workers, which
        outlive a parent killed alone, holding its port), even once the parent itself is gone."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # no such group: it leads none, or every member is gone
            if self.running():
                self.popen.kill()
        self.popen.wait(timeout=10)


def stop_all(processes: list[Process], timeout: float = 10.0) -> None:
    """Signal every process first, then wait for each: they stop in parallel."""
    for process in processes:
        if process.running():
            process.popen.send_signal(signal.SIGTERM)
    for process in processes:
        process.stop(timeout)


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process `pid` or one of its descendants has a TCP socket listening on `port`; None where /proc
    cannot tell (not Linux)."""
    proc = Path("/proc")
    if not (proc / str(pid) / "fd").is_dir():
        return None
    family = process_tree(pid)
    inodes: set[str] = set()
    for member in family:
        try:
            links = [os.readlink(fd) for fd in (proc / str(member) / "fd").iterdir()]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # sl local_address rem_address st ... inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from /proc/*/stat's parent IDs (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and every process below it (`children`: a `children_by_parent()` already read)."""
    children = children_by_parent() if children is None else children
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether GET `url` answers 200 right now (no proxy: everything here is on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def python_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child Python, unbuffered, plus `extra`."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
