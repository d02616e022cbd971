"""Client authentication at the token endpoint, as pure functions: RFC 6749 2.3.1's encoding, the choice of
method from discovery, and the broker's private_key_jwt key."""

from __future__ import annotations

import base64
import stat
from urllib.parse import unquote_plus

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from broker.connectors.client_auth import (
    CLIENT_KEY_FILE,
    basic_authorization,
    choose_method,
    load_or_create_client_key,
)

SPECIAL = "p+ss/w=rd%20:é &?#"  # every character RFC 6749 2.3.1's form-urlencoding changes


def test_basic_form_urlencodes_id_and_secret_before_base64():
    header = basic_authorization("my client:1", SPECIAL)
    decoded = base64.b64decode(header.removeprefix("Basic ")).decode()
    client_id, _, secret = decoded.partition(":")  # the encoded ID holds no colon of its own any more
    assert (unquote_plus(client_id), unquote_plus(secret)) == ("my client:1", SPECIAL)
    assert secret == "p%2Bss%2Fw%3Drd%2520%3A%C3%A9+%26%3F%23"  # not the raw secret (authlib 1.9's bug)


@pytest.mark.parametrize(
    "configured, has_secret, supported, chosen",
    [
        ("client_secret_post", True, ["client_secret_basic"], "client_secret_post"),  # configuration wins
        (None, True, None, "client_secret_basic"),  # OIDC Discovery's default
        (None, True, ["client_secret_post", "client_secret_basic"], "client_secret_basic"),
        (None, True, ["client_secret_post"], "client_secret_post"),
        (None, True, ["private_key_jwt", "tls_client_auth"], "private_key_jwt"),
        (None, False, ["client_secret_basic", "private_key_jwt"], "private_key_jwt"),
        (None, False, ["client_secret_basic"], None),
        (None, True, ["tls_client_auth"], None),
        (None, True, "client_secret_post", "client_secret_basic"),  # malformed: the default
    ],
)
def test_the_method_comes_from_configuration_or_discovery(configured, has_secret, supported, chosen):
    assert choose_method(configured, has_secret, supported) == chosen


def test_the_client_key_is_made_once_private_and_its_assertions_verify_with_the_published_jwks(tmp_path):
    key = load_or_create_client_key(tmp_path)
    assert load_or_create_client_key(tmp_path).kid == key.kid  # kept across restarts
    assert stat.S_IMODE((tmp_path / CLIENT_KEY_FILE).stat().st_mode) == 0o600
    published = key.public_jwks()
    assert [k["kid"] for k in published["keys"]] == [key.kid] and "d" not in published["keys"][0]
    token = jwt.decode(
        key.assertion("portal", "https://op.example/token", now=1_800_000_000),
        KeySet.import_key_set(published),
        algorithms=["RS256"],
    )
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "portal" and claims["aud"] == "https://op.example/token"
    assert claims["exp"] - claims["iat"] == 60 and len(claims["jti"]) >= 32
    assert key.assertion("portal", "x") != key.assertion("portal", "x")  # a new jti each time
