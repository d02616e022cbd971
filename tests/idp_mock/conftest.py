"""Fixtures for the IdP's tests."""

from __future__ import annotations

import pytest

from tests.support.oidc_rp import (
    PRIVATE_ACCESS_TOKEN_LIFETIME,
    PRIVATE_CODE_LIFETIME,
    register_client,
)
from tests.support.servers import start_idp

# --- OIDC ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def private_idp(tmp_path_factory):
    """A second IdP (two workers, short-lived codes and access tokens) for OIDC tests that change server
    state (key rotation), wait for a code or token to expire, or log in erin (a TOTP code works once,
    so her logins must not race other tests on `idp`)."""
    service = start_idp(
        tmp_path_factory.mktemp("private-idp"),
        env={
            "WEB_WORKERS": "2",
            "IDP_OIDC_CODE_LIFETIME_SECONDS": str(PRIVATE_CODE_LIFETIME),
            "IDP_OIDC_ACCESS_TOKEN_LIFETIME_SECONDS": str(PRIVATE_ACCESS_TOKEN_LIFETIME),
        },
    )
    yield service
    service.stop()


@pytest.fixture(scope="session")
def oidc_client(idp):
    """A confidential client (client_secret_basic, refresh tokens) registered on `idp`."""
    return register_client(idp.url)


@pytest.fixture(scope="session")
def public_client(idp):
    """A public client (no secret, PKCE) registered on `idp`."""
    return register_client(idp.url, auth_method="none")
