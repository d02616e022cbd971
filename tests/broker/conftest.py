"""Fixtures for the broker's core: the seed access config, a signing key, people, and a real moto server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.core.access import load_access
from broker.core.identity import Identity
from devstack.aws_emulator import MotoServer
from sso_common.keys import load_or_create_signing_identity

REPO = Path(__file__).resolve().parents[2]
ACCESS_FILE = REPO / "config" / "access.yaml"
BROKER_ENTITY_ID = "https://broker.example.test/saml/idp"


@pytest.fixture(scope="session")
def access():
    return load_access(ACCESS_FILE)


@pytest.fixture(scope="session")
def signing_identity(tmp_path_factory):
    return load_or_create_signing_identity(tmp_path_factory.mktemp("broker-keys"), "saml-idp", "sso-broker")


def _person(
    username: str = "bob", groups: tuple[str, ...] = ("engineering",), mfa: bool = False, **overrides
) -> Identity:
    """An identity as a connector would produce it after a successful upstream login."""
    fields = dict(
        subject=f"subject-{username}",
        username=username,
        email=f"{username}@example.com",
        display_name=username.title(),
        groups=frozenset(groups),
        department="Engineering",
        authn_methods=frozenset({"pwd", "otp"} if mfa else {"pwd"}),
        issuer="https://idp.example.test",
        auth_time=int(time.time()),
    )
    fields.update(overrides)
    return Identity(**fields)


@pytest.fixture(scope="session")
def person():
    """Factory: person("bob", groups=("engineering",), mfa=False, **other Identity fields)."""
    return _person


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A real moto server subprocess on a free 127.0.0.1 port, stopped after the session."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server
