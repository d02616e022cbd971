"""Fixtures shared by every test folder: real services on free ports, torn down after use."""

from __future__ import annotations

import pytest

from tests.support.servers import start_idp
from tests.support.stack import start_stack

# The store conformance suites live in a package, not under tests/: let pytest rewrite their asserts too,
# so a failing contract shows the values it compared. Must run before anything imports the module.
pytest.register_assert_rewrite("sso_common.store.conformance")

# The in-process portal's fixtures (module_app, app, client, clock) for the sso-api tests; real Redis and
# PostgreSQL servers (redis_server, postgres_server) for the shared stores and the replicated stack.
pytest_plugins = ["tests.support.identity_center", "tests.support.engines"]


@pytest.fixture(scope="session")
def idp(tmp_path_factory):
    """The mock IdP, started for real from the repository's config."""
    # Many tests fail logins on purpose from 127.0.0.1: only the throttling tests use the real limit.
    service = start_idp(tmp_path_factory.mktemp("idp"), env={"IDP_MAX_FAILURES_PER_ADDRESS": "100000"})
    yield service
    service.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """AWS emulator (IAM enforcement on, accounts provisioned), IdP and portal, started for real."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()
