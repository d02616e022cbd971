"""The replicated stack (devstack/replicas.py) for the end-to-end and fault tests, and what they need to
see which replica served which request."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import requests

from devstack.replicas import ReplicatedStack
from tests.support.idp_client import TOTP_ENV


def start_replicated(folder: Path, **env: str) -> ReplicatedStack:
    extra = {
        # Tests fail logins on purpose from one address: keep the address throttle out of their way
        # (the per-person throttle, counted across replicas, is what the throttle test checks).
        "IDP_MAX_FAILURES_PER_ADDRESS": "100000",
        **TOTP_ENV,
        "LOG_LEVEL": "info",
        **env,
    }
    return ReplicatedStack(folder / "stack", extra_env=extra).start()


class TaggedSession(requests.Session):
    """A browser whose every request carries an X-Request-ID of its own, remembered in `sent`."""

    def __init__(self, prefix: str | None = None):
        super().__init__()
        self.prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
        self.counter = itertools.count(1)
        self.sent: list[tuple[str, str, str]] = []  # (request ID, method, URL)

    def request(self, method, url, *args, **kwargs):
        request_id = f"{self.prefix}-{next(self.counter)}"
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Request-ID": request_id}
        kwargs.setdefault("timeout", 30)
        self.sent.append((request_id, method, url))
        return super().request(method, url, *args, **kwargs)


def served_by(stack: ReplicatedStack, service: str, request_id: str) -> set[str]:
    """The replicas of `service` whose log has a line of this request ID."""
    marker = f"[{request_id}]"
    return {replica.name for replica in stack.replicas_of(service) if marker in stack.logs(replica.name)}
