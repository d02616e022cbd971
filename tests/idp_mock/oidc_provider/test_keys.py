"""Signing key rotation with `idp-mock rotate-keys` while the IdP runs (two workers, no restart)."""

from __future__ import annotations

import subprocess
import sys

import jwt
import pytest
import requests

from tests.support.oidc_rp import register_client, sign_in_for_tokens, verify_id_token
from tests.support.servers import REPO


def _kids(idp_url) -> list[str]:
    return [key["kid"] for key in requests.get(f"{idp_url}/oidc/jwks", timeout=10).json()["keys"]]


def _rotate(idp) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "idp_mock", "rotate-keys"],
        cwd=REPO,
        env=idp.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("New active signing key: ")[1].split()[0]


def _id_token(idp, client) -> str:
    return sign_in_for_tokens(requests.Session(), idp.url, client, "bob")["id_token"]


@pytest.fixture(scope="module")
def client(private_idp):
    return register_client(private_idp.url)


def test_id_tokens_are_signed_with_the_active_key(private_idp, client):
    token = _id_token(private_idp, client)
    assert jwt.get_unverified_header(token)["kid"] == _kids(private_idp.url)[0]


def test_rotation_is_picked_up_by_the_running_server(private_idp, client):
    before_kids = _kids(private_idp.url)
    signed_before = _id_token(private_idp, client)

    new_kid = _rotate(private_idp)

    assert new_kid not in before_kids
    assert _kids(private_idp.url) == [new_kid, before_kids[0]]  # new and previous; the oldest retired
    for _ in range(4):  # several requests, so both workers answer at least once with high probability
        assert jwt.get_unverified_header(_id_token(private_idp, client))["kid"] == new_kid
    verify_id_token(private_idp.url, signed_before, client)  # still valid against the new JWKS


def test_a_token_two_rotations_old_no_longer_verifies(private_idp, client):
    old = _id_token(private_idp, client)
    _rotate(private_idp)
    _rotate(private_idp)
    with pytest.raises(jwt.PyJWKClientError):
        verify_id_token(private_idp.url, old, client)
