"""Start the project's real services as subprocesses on free 127.0.0.1 ports, and stop them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import Process, free_port, python_env
from tests.support.idp_client import TOTP_ENV

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    """A running service; `logs()` returns what it printed, to explain a failing test."""

    url: str
    process: Process
    env: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return self.process.logs()

    def stop(self) -> None:
        self.process.stop()


def start_service(
    name: str,
    args: list[str],
    url: str,
    workdir: Path,
    env: dict[str, str] | None = None,
    health_path: str = "/healthz",
    timeout: float = 30,
) -> ServiceProcess:
    """Run `python -m <args>` and wait until GET url+health_path answers 200."""
    full_env = python_env(**{"WEB_WORKERS": "1", **(env or {})})
    process = Process.start(name, args, log_path=workdir / f"{name}.log", cwd=workdir, env=full_env)
    try:
        process.wait_healthy(url + health_path, timeout)
    except RuntimeError:
        process.stop()
        raise
    return ServiceProcess(url, process, full_env)


def start_idp(workdir: Path, config: Path | None = None, env: dict[str, str] | None = None) -> ServiceProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["idp_mock"] + (["--config", str(config)] if config else []) + ["serve", "--port", str(port)]
    # A wide TOTP window, so tests signing erin in take an unused step instead of waiting (fresh_totp).
    # Alone, it pushes its directory nowhere (IDP_SCIM_PUSH): a portal it knows nothing of is not its target.
    defaults = {"IDP_URL": url, "IDP_INSTANCE_DIR": str(workdir / "instance"), "IDP_SCIM_PUSH": "false", **TOTP_ENV}
    return start_service("idp", args, url, workdir, {**defaults, **(env or {})})
