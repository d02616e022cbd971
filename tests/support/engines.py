"""Real Redis and PostgreSQL servers for the tests, from Debian's packages, on free loopback ports: started
once per test session (and per xdist worker), torn down at its end. Registered as a plugin in conftest.py."""

from __future__ import annotations

import uuid

import pytest

from devstack.engines import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer.start()
    yield server
    server.destroy()


def fresh_schema() -> str:
    """A schema name no test used: each store under test starts empty, with its migrations applied."""
    return f"t_{uuid.uuid4().hex[:16]}"
