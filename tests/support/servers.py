"""Start the project's real services as subprocesses on free 127.0.0.1 ports, and stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from sso_common.serve import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    """A running service; `logs()` returns what it printed, to explain a failing test."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_service(name: str, args: list[str], url: str, workdir: Path, env: dict | None = None,
                  health_path: str = "/healthz", timeout: float = 30) -> ServiceProcess:
    """Run `python -m <args>` and wait until GET url+health_path answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WEB_WORKERS": "1", **(env or {})}
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=workdir, env=full_env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    service = ServiceProcess(name, url, process, log_path, full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{service.logs()}")
        try:
            if requests.get(url + health_path, timeout=1).status_code == 200:
                return service
        except requests.RequestException:
            pass
        time.sleep(0.1)
    service.stop()
    raise RuntimeError(f"{name} did not become healthy within {timeout}s:\n{service.logs()}")


def start_idp(workdir: Path, config: Path | None = None, env: dict | None = None) -> ServiceProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["idp_mock"] + (["--config", str(config)] if config else []) + ["serve", "--port", str(port)]
    return start_service("idp", args, url, workdir,
                         {"IDP_URL": url, "IDP_INSTANCE_DIR": str(workdir / "instance"), **(env or {})})
