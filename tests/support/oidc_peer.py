"""panva's oidc-provider (npm, a certified OpenID Provider) as an independent upstream for the tests.

The module is the one the benchmark installs into bench/peers/node_modules (git-ignored); when it is not
there yet it is installed the same way (`npm ci`, bounded in time). `./run test` installs node and npm
when the machine lacks them; without them these tests fail, saying so (never skip)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.processes import answers, free_port

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "bench" / "peers"
MODULE = PEERS / "node_modules" / "oidc-provider" / "lib" / "index.js"
SCRIPT = Path(__file__).resolve().parent / "peers" / "oidc_provider.mjs"
INSTALL_TIMEOUT = 300
START_TIMEOUT = 30


@dataclass
class OIDCProviderPeer:
    url: str
    popen: subprocess.Popen
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def ensure_installed() -> None:
    """Install oidc-provider with npm ci when it is not there yet; fail clearly when node is missing."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: panva's oidc-provider cannot run (./run test installs nodejs)")
    if MODULE.exists():
        return
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: panva's oidc-provider cannot be installed (./run test installs npm)")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS, check=True, timeout=INSTALL_TIMEOUT
    )


def start_oidc_provider(
    workdir: Path, clients: list[dict], account: dict, amr: list[str] | None = None
) -> OIDCProviderPeer:
    """The peer on a free port with these clients (oidc-provider client metadata) and one account."""
    ensure_installed()
    port = free_port()
    config = {"port": port, "clients": clients, "account": account, "amr": amr or ["pwd"]}
    log_path = workdir / "oidc-provider.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=workdir,
            env={
                **os.environ,
                "OIDC_PROVIDER": str(MODULE),
                "PEER_CONFIG": json.dumps(config),
                "NODE_ENV": "production",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    peer = OIDCProviderPeer(f"http://127.0.0.1:{port}", popen, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"oidc-provider exited:\n{peer.logs()[-3000:]}")
        if answers(f"{peer.url}/.well-known/openid-configuration"):
            return peer
        time.sleep(0.05)
    peer.stop()
    raise RuntimeError(f"oidc-provider did not start within {START_TIMEOUT} s:\n{peer.logs()[-3000:]}")
