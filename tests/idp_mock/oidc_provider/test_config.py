"""Pure parts of the OpenID provider: the `oidc:` config section, the client model, claims by scope."""

from __future__ import annotations

import pytest

from idp_mock.directory import Employee
from idp_mock.oidc_provider.claims import user_claims
from idp_mock.oidc_provider.config import parse_oidc_settings, uri_problem
from idp_mock.oidc_provider.models import hash_secret
from idp_mock.settings import load_settings
from sso_common.config import ConfigError, Node

SOURCE = "config/idp.yaml"
CLIENT = {"client_id": "app", "client_secret": "a-long-enough-secret", "redirect_uris": ["https://app.example/cb"]}


def parse(**oidc):
    section = {"registration_token": "a-long-enough-token", "clients": [CLIENT], **oidc}
    return parse_oidc_settings(Node(SOURCE, "oidc", section), "https://idp.example")


def error_of(**oidc) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(**oidc)
    assert caught.value.source == SOURCE
    return caught.value


def test_valid_section_builds_clients_with_hashed_secrets():
    settings = parse(code_lifetime_seconds="30")
    client = settings.clients["app"]
    assert settings.code_lifetime == 30 and settings.access_token_lifetime == 900
    assert client.token_endpoint_auth_method == "client_secret_basic" and client.name == "app"
    assert client.secret_hash == hash_secret("a-long-enough-secret")
    assert "a-long-enough-secret" not in repr(settings) and "a-long-enough-token" not in repr(settings)


def test_repository_config_seeds_the_portal_client(monkeypatch):
    monkeypatch.delenv("PORTAL_URL", raising=False)
    monkeypatch.delenv("BROKER_OIDC_CLIENT_SECRET", raising=False)
    client = load_settings().oidc.clients["access-portal"]
    assert client.check_client_secret("demo-portal-oidc-secret")
    assert client.redirect_uris == ("http://localhost:8000/login/example-corp-oidc/callback",)
    assert client.post_logout_redirect_uris == ("http://localhost:8000/signed-out",)


def test_unknown_key_is_named():
    assert error_of(code_lifetime=60).key == "oidc.code_lifetime"


def test_unknown_client_key_is_named():
    assert error_of(clients=[{**CLIENT, "redirect_uri": "https://x/"}]).key == "oidc.clients[0].redirect_uri"


@pytest.mark.parametrize(
    "uri",
    [
        "/cb",
        "https://app.example/cb#frag",
        "javascript:alert(1)",
        "https://u@app.example/",
        "https://app.example/a b",
        "https://app.example:99999/",
    ],
)
def test_bad_redirect_uri_is_named(uri):
    error = error_of(clients=[{**CLIENT, "redirect_uris": [uri]}])
    assert error.key == "oidc.clients[0].redirect_uris[0]"


def test_bad_post_logout_redirect_uri_is_named():
    error = error_of(clients=[{**CLIENT, "post_logout_redirect_uris": ["https://ok.example/", "nope"]}])
    assert error.key == "oidc.clients[0].post_logout_redirect_uris[1]"


def test_client_without_redirect_uris_is_refused():
    assert error_of(clients=[{**CLIENT, "redirect_uris": []}]).key == "oidc.clients[0].redirect_uris"


def test_duplicate_client_id_is_named():
    error = error_of(clients=[CLIENT, {**CLIENT, "redirect_uris": ["https://other.example/cb"]}])
    assert error.key == "oidc.clients[1].client_id" and "duplicate" in error.problem


def test_unknown_auth_method_is_named():
    error = error_of(clients=[{**CLIENT, "token_endpoint_auth_method": "private_key_jwt"}])
    assert error.key == "oidc.clients[0].token_endpoint_auth_method"


def test_confidential_client_needs_a_secret():
    client = {k: v for k, v in CLIENT.items() if k != "client_secret"}
    assert error_of(clients=[client]).key == "oidc.clients[0].client_secret"


def test_public_client_must_not_have_a_secret():
    error = error_of(clients=[{**CLIENT, "token_endpoint_auth_method": "none"}])
    assert error.key == "oidc.clients[0].client_secret"


def test_short_secret_is_refused():
    assert error_of(clients=[{**CLIENT, "client_secret": "short"}]).key == "oidc.clients[0].client_secret"


def test_short_registration_token_is_refused():
    assert error_of(registration_token="short").key == "oidc.registration_token"


def test_lifetime_out_of_range_is_named():
    assert error_of(code_lifetime_seconds=3600).key == "oidc.code_lifetime_seconds"


@pytest.mark.parametrize(
    "uri,ok",
    [
        ("https://app.example/cb", True),
        ("http://127.0.0.1:8080/cb?x=1", True),
        ("https://app.example/cb#", False),
        ("https://app.example/\u00e9", False),
        ('https://app.example/"', False),
        ("mailto:a@b.example", False),
        ("https://", False),
        (None, False),
    ],
)
def test_uri_problem(uri, ok):
    assert (uri_problem(uri) is None) == ok


def test_client_redirect_uri_match_is_exact_and_scope_needs_openid():
    client = parse().clients["app"]
    assert client.check_redirect_uri("https://app.example/cb")
    for near in (
        "https://app.example/cb/",
        "https://app.example/c",
        "https://APP.example/cb",
        "https://app.example/cb?",
    ):
        assert not client.check_redirect_uri(near)
    assert client.get_allowed_scope("openid email openid") == "openid email"
    assert client.get_allowed_scope("email") is None
    assert not client.check_client_secret("wrong") and client.check_client_secret("a-long-enough-secret")


def test_claims_follow_the_granted_scopes():
    employee = Employee("erin", "sub-1", "erin@example.com", "Erin", "Security", ("security",), "hash")
    assert user_claims(employee, "openid") == {"sub": "sub-1"}
    assert user_claims(employee, "openid groups profile") == {
        "sub": "sub-1",
        "groups": ["security"],
        "name": "Erin",
        "preferred_username": "erin",
        "department": "Security",
    }
    assert user_claims(employee, "openid email") == {
        "sub": "sub-1",
        "email": "erin@example.com",
        "email_verified": True,
    }
