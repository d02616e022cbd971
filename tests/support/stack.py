"""The full stack (AWS emulator, IdP, portal, the Employee Directory on its instance) on free ports, for
end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from devstack.stack import Stack, free_addresses
from tests.support.idp_client import TOTP_ENV


def start_stack(instance_dir: Path, extra_env: dict | None = None) -> Stack:
    addresses = free_addresses()  # two sites, as in production: the portal on localhost, the IdP on 127.0.0.1
    # Several tests fail logins on purpose from one address: keep the address throttle out of their way.
    # A wide TOTP window, so tests signing erin in take an unused step instead of waiting (fresh_totp).
    env = {"IDP_MAX_FAILURES_PER_ADDRESS": "100000", **TOTP_ENV, **(extra_env or {})}
    return Stack(instance_dir, addresses, workers=2, extra_env=env).start()
