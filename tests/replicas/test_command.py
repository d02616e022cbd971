"""`python -m devstack.replicas`: the replicated stack as a command (the README's "Scaling out"), up until
SIGTERM, then every process and engine stopped; a replica that stops is said and started again."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import requests

from devstack.processes import python_env
from tests.support.servers import REPO


def test_the_command_starts_the_stack_says_where_and_stops_it(tmp_path):
    stack = subprocess.Popen(
        [sys.executable, "-m", "devstack.replicas", "--instance-dir", str(tmp_path / "replicated"), "--replicas", "1"],
        cwd=REPO,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        said, deadline, output = [], time.monotonic() + 120, read_lines(stack)
        said += lines_until(output, "Logs:", deadline)
        text = "".join(said)
        assert "The replicated stack is up" in text, text[-3000:]
        portal = re.search(r"access portal:\s+(\S+)/", text).group(1)
        assert requests.get(f"{portal}/healthz", timeout=10).json()["status"] == "ok"  # through the edge

        # a replica that stops is said and started again (one portal replica: the edge has no other meanwhile)
        os.killpg(int(re.search(r"broker-1: \S+ \(process group (\d+)\)", text).group(1)), signal.SIGKILL)
        said += lines_until(output, "broker-1 is back", deadline)
        text = "".join(said)
        assert "broker-1 stopped (exit code -9" in text and "broker-1 is back" in text, text[-3000:]
        answered = False
        while not answered and time.monotonic() < deadline:  # the edge passes requests to it again
            try:
                answered = requests.get(f"{portal}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                pass
            time.sleep(0.2)
        assert answered
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0
        try:
            requests.get(f"{portal}/healthz", timeout=2)
            raise AssertionError("the edge still answers")
        except requests.ConnectionError:
            pass
    finally:  # after a failure: SIGTERM first, so that the command stops its engines and replicas (each in a
        # process group of its own: a SIGKILL of the command alone left them running)
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
                stack.wait(30)


def lines_until(lines: queue.Queue, prefix: str, deadline: float) -> list[str]:
    """The lines read (`read_lines`) until one starts with `prefix`, or the deadline passes (never blocking past
    it), or the output ends."""
    said: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        said.append(line)
        if line.startswith(prefix):
            break
    return said


def read_lines(process: subprocess.Popen) -> queue.Queue:
    """`process`'s output, line by line, read by a thread of its own (None at its end)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


class Stopped:
    """A replica's process that has exited."""

    popen = type("Popen", (), {"returncode": 1})()

    def running(self) -> bool:
        return False

    def kill(self) -> None:  # (the rest of its process group: none here)
        pass

    def stop(self) -> None:
        pass


def test_a_replica_that_does_not_come_back_is_tried_less_often_and_its_log_says_why(tmp_path, capsys):
    from devstack.replicas import Replica, supervise

    replica = Replica("broker", 1, 18199, Stopped())
    tries: list[str] = []

    class Stack:
        members = [replica]

        def log_path(self, name):
            return tmp_path / f"{name}.log"

        def restart(self, member):
            tries.append(member.name)
            raise RuntimeError("broker-1 exited with code 1:\nstarting...\nPostgreSQL is unavailable (sso:***@db)\n")

    retries: dict = {}
    for _ in range(3):  # three looks, a second apart in the command: the first fails, the next two wait
        supervise(Stack(), retries)
    said = capsys.readouterr().out
    assert tries == ["broker-1"], "tried again before its delay"
    assert "broker-1 did not start (PostgreSQL is unavailable (sso:***@db)); trying again in 2 s" in said, said
    retries["broker-1"] = (0.0, retries["broker-1"][1])  # its delay is over
    supervise(Stack(), retries)
    assert tries == ["broker-1"] * 2 and "trying again in 4 s" in capsys.readouterr().out
