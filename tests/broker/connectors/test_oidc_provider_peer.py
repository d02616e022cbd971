"""The OIDC connector against panva's oidc-provider, a certified OpenID Provider, with its default claims
behaviour: a thin ID token (sub, amr, auth_time), everything else at the userinfo endpoint; it sends `iss`
with every authorization answer (RFC 9207) and checks client authentication strictly (RFC 6749 2.3.1).

Each test is one real authorization code flow: the connector's redirect, the OP's interaction (which
signs the one account in without a form), the code, the token request, userinfo."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
import requests

from broker.connectors.client_auth import load_or_create_client_key
from broker.connectors.mapping import IdentityMapping
from broker.connectors.oidc import DEFAULT_CLAIMS, OIDCConnector
from broker.connectors.trust import MfaPolicy
from broker.errors import LoginFailed
from tests.broker.connectors.trusts import trust
from tests.support.oidc_peer import start_oidc_provider

PORTAL = "http://localhost:8000"
# Characters RFC 6749 2.3.1's form-urlencoding changes: a client sending them raw (authlib 1.9) is refused.
SECRET = "Xy+9/abc=def%41:ghi jkl&mno?pq#rs~tuvwxyz-0123456789"
ACCOUNT = {
    "sub": "peer-alice-0001",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Anderson",
    "preferred_username": "alice",
    "groups": ["engineering", "aws-admins", "lunch-club"],
}


def client(client_id: str, method: str, **extra) -> dict:
    return {
        "client_id": client_id,
        "redirect_uris": [f"{PORTAL}/login/{client_id}/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        **extra,
    }


@pytest.fixture(scope="module")
def client_key(tmp_path_factory):
    return load_or_create_client_key(tmp_path_factory.mktemp("broker-instance"))


@pytest.fixture(scope="module")
def peer(tmp_path_factory, client_key):
    clients = [
        client("peer-post", "client_secret_post", client_secret=SECRET),
        client("peer-basic", "client_secret_basic", client_secret=SECRET),
        client("peer-jwt", "private_key_jwt", jwks=client_key.public_jwks()),
    ]
    started = start_oidc_provider(tmp_path_factory.mktemp("oidc-provider"), clients, ACCOUNT, amr=["pwd", "otp"])
    yield started
    started.stop()


def connector(peer, client_id: str, method: str | None, secret: str | None = SECRET, **options) -> OIDCConnector:
    return OIDCConnector(
        id=client_id,
        display_name="Peer OP",
        issuer=peer.url,
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=method,
        redirect_uri=f"{PORTAL}/login/{client_id}/callback",
        scopes=["openid", "email", "profile", "groups"],
        mapping=IdentityMapping(
            **DEFAULT_CLAIMS,
            trust=trust(client_id, keep=("engineering", "aws-admins"), mfa=MfaPolicy(amr=frozenset({"otp"}))),
        ),
        clock_skew=60,
        **options,
    )


def authorize(rp: OIDCConnector) -> tuple[dict[str, str], object]:
    """The connector's redirect followed through the OP until it sends the browser back: (callback params, kept)."""
    redirect, kept = rp.begin("state-peer")
    http = requests.Session()
    answer = http.get(redirect.url, allow_redirects=False, timeout=10)
    for _ in range(10):
        assert answer.is_redirect, f"{answer.status_code}: {answer.text[:500]}"
        location = urljoin(answer.url, answer.headers["Location"])
        if location.startswith(rp.redirect_uri):
            return dict(parse_qsl(urlsplit(location).query)), kept
        answer = http.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("the OP kept redirecting")


def payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_thin_id_token_userinfo_and_client_secret_post_with_special_characters(peer):
    rp = connector(peer, "peer-post", "client_secret_post")
    params, kept = authorize(rp)
    assert params["iss"] == peer.url and params["state"] == "state-peer"
    login = rp.complete(params, kept)
    identity = login.identity
    thin = payload(login.logout_hint.id_token)
    assert "email" not in thin and "groups" not in thin and thin["sub"] == ACCOUNT["sub"]  # the OP's default
    assert identity.subject == ACCOUNT["sub"] and identity.email == "alice@example.com"
    assert identity.display_name == "Alice Anderson" and identity.username == "alice"
    assert identity.groups == {"engineering", "aws-admins"} and login.dropped_groups == {"lunch-club"}
    assert identity.mfa  # amr otp, which this upstream is trusted for
    assert rp.http.server.startswith("http://127.0.0.1:")


def test_client_secret_basic_is_form_urlencoded_as_the_op_expects(peer):
    rp = connector(peer, "peer-basic", "client_secret_basic")
    assert rp.complete(*authorize(rp)).identity.email == "alice@example.com"


def test_the_method_defaults_from_discovery(peer):
    rp = connector(peer, "peer-basic", None)  # the OP lists client_secret_basic first of those we can do
    assert rp.complete(*authorize(rp)).identity.email == "alice@example.com"


def test_private_key_jwt_with_the_brokers_key(peer, client_key):
    rp = connector(peer, "peer-jwt", "private_key_jwt", secret=None, client_key=client_key)
    assert rp.complete(*authorize(rp)).identity.email == "alice@example.com"


def test_a_wrong_secret_is_invalid_client(peer):
    rp = connector(peer, "peer-post", "client_secret_post", secret=SECRET + "x")
    with pytest.raises(LoginFailed, match="invalid_client"):
        rp.complete(*authorize(rp))


def test_an_answer_without_iss_is_refused(peer):
    """The OP advertises authorization_response_iss_parameter_supported: an answer without iss may come
    from another OP (mix-up attack) and is refused, as RFC 9207 says."""
    rp = connector(peer, "peer-post", "client_secret_post")
    params, kept = authorize(rp)
    del params["iss"]
    with pytest.raises(LoginFailed, match="does not name its issuer"):
        rp.complete(params, kept)
