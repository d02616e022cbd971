"""`python -m devstack.replicas`: the replicated stack as a command (the README's "Scaling out"), up until
SIGTERM, then every process and engine stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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
        said, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline and (line := stack.stdout.readline()):
            said.append(line)
            if line.startswith("Logs:"):
                break
        text = "".join(said)
        assert "The replicated stack is up" in text, text[-3000:]
        portal = re.search(r"access portal:\s+(\S+)/", text).group(1)
        assert requests.get(f"{portal}/healthz", timeout=10).json()["status"] == "ok"  # through the edge
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0
        try:
            requests.get(f"{portal}/healthz", timeout=2)
            raise AssertionError("the edge still answers")
        except requests.ConnectionError:
            pass
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait(30)
