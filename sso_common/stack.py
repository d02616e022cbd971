"""Start the whole demo stack as local processes, wait until every /healthz answers, print the URLs.

`./run demo` calls this. Each service is a separate process, as in production (gunicorn for the web
apps, moto server for the AWS emulator); Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

DEFAULTS = {
    "PORTAL_URL": "http://localhost:8000",
    "IDP_URL": "http://127.0.0.1:8001",
    "AWS_URL": "http://127.0.0.1:8002",
}


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str
    env: dict = field(default_factory=dict)


def addresses() -> dict[str, str]:
    """The public URLs, from the environment or the defaults."""
    return {name: os.environ.get(name, default).rstrip("/") for name, default in DEFAULTS.items()}


def stack_services(instance_dir: Path) -> list[Service]:
    urls = addresses()
    python = sys.executable
    return [
        Service("Example Corp IdP (mock)", [python, "-m", "idp_mock", "serve"], urls["IDP_URL"] + "/healthz",
                {"IDP_INSTANCE_DIR": str(instance_dir / "idp")}),
    ]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance-dir", default=os.environ.get("INSTANCE_DIR", "instance"),
                        help="where keys and state are kept (created on first start; git-ignored)")
    args = parser.parse_args(argv)
    instance = Path(args.instance_dir).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen] = []

    def stop(*_):
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    begin = time.monotonic()
    try:
        for service in stack_services(instance):
            process = subprocess.Popen(service.argv, env={**os.environ, **service.env}, cwd=instance)
            started.append(process)
            try:
                wait_healthy(service.health_url, process, timeout=30)
            except RuntimeError as error:
                print(f"{service.name} failed to start: {error}", file=sys.stderr)
                stop()
                return 1
        urls = addresses()
        print(f"\nThe demo is up ({time.monotonic() - begin:.1f}s). Open:\n"
              f"  Example Corp sign-in (IdP):  {urls['IDP_URL']}/\n"
              f"Demo users: alice, bob, carol, dave, erin (TOTP), frank (disabled); password Welcome-2026.\n"
              f"Press Ctrl-C to stop.\n", flush=True)
        while all(process.poll() is None for process in started):
            time.sleep(0.5)
        print("A service stopped; stopping the others.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
