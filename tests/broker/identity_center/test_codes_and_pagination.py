"""Pure rules of the Identity Center compatible API: user codes, PKCE, loopback redirects, page tokens,
token lifetimes. No HTTP here."""

from __future__ import annotations

import pytest

from broker.identity_center.codes import (
    USER_CODE_ALPHABET,
    display_user_code,
    is_loopback_redirect_uri,
    new_secret,
    new_user_code,
    normalise_user_code,
    pkce_challenge,
    pkce_matches,
    redirect_uri_allowed,
    secret_digest,
    secret_matches,
)
from broker.identity_center.grants import GrantSettings, access_token_lifetime
from broker.identity_center.pagination import BadPageRequest, PageTokens, page_size, paginate


def test_user_codes_are_eight_unambiguous_letters_shown_in_two_halves():
    codes = {new_user_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == 8 and set(code) <= set(USER_CODE_ALPHABET)
    assert not set("AEIOU01") & set(USER_CODE_ALPHABET)
    assert display_user_code("BCDFGHJK") == "BCDF-GHJK"


@pytest.mark.parametrize("typed", ["BCDF-GHJK", "bcdf-ghjk", " bcdfghjk ", "BCDF GHJK", "bcdf\tghjk"])
def test_typed_user_codes_are_normalised(typed):
    assert normalise_user_code(typed) == "BCDFGHJK"


@pytest.mark.parametrize("typed", [None, "", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ0", "B" * 40, "BCDF_GHJK"])
def test_malformed_user_codes_are_refused(typed):
    assert normalise_user_code(typed) is None


def test_secrets_are_random_and_only_their_digest_matches():
    secret = new_secret("bsc-")
    assert secret.startswith("bsc-") and len(secret) > 60 and secret != new_secret("bsc-")
    digest = secret_digest(secret)
    assert secret not in digest
    assert secret_matches(digest, secret)
    assert not secret_matches(digest, secret + "x") and not secret_matches(digest, None)


def test_pkce_s256_with_or_without_padding():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B
    assert pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=", verifier)
    assert not pkce_matches(pkce_challenge(verifier), verifier[:-1] + "Y")
    assert not pkce_matches(pkce_challenge("short"), "short")  # below RFC 7636's 43 characters
    assert not pkce_matches(pkce_challenge(verifier), None)


@pytest.mark.parametrize(
    "uri, loopback",
    [
        ("http://127.0.0.1/oauth/callback", True),
        ("http://127.0.0.1:53682/oauth/callback", True),
        ("http://[::1]:8080/cb", True),
        ("http://localhost:8080/cb", True),
        ("https://127.0.0.1/cb", False),
        ("http://evil.example/cb", False),
        ("http://127.0.0.1.evil.example/cb", False),
        ("http://user:pw@127.0.0.1/cb", False),
        ("http://127.0.0.1/cb#frag", False),
        ("http://127.0.0.1:99999/cb", False),
        ("http://127.0.0.1:port/cb", False),
        ("javascript:alert(1)", False),
        ("http://127.0.0.1:5000/cb\n", False),
        ("http://127.0.0.1:5000/c\r\nb", False),
        ("http://127.0.0.1\t:5000/cb", False),
        ("http://127.0.0.1:5000/cb\x00", False),
        ("http://127.0.0.1:5000/cb\x7f", False),
        ("http://127.0.0.1:5000/c b", False),
        ("http://127.0.0.1:5000/cb\u2028", False),
        ("http://127.0.0.1:5000/caf\u00e9", False),
        ("http://127.0.0.1:5000\\@evil.example/cb", False),
        ("http://127.0.0.1:5000/cb?x=%0A", True),
    ],
)
def test_only_loopback_redirect_uris_are_accepted(uri, loopback):
    assert is_loopback_redirect_uri(uri) is loopback


def test_redirect_uri_matches_a_registered_one_on_any_port():
    registered = ["http://127.0.0.1/oauth/callback"]
    assert redirect_uri_allowed(registered, "http://127.0.0.1:41234/oauth/callback")
    assert not redirect_uri_allowed(registered, "http://127.0.0.1:41234/other")
    assert not redirect_uri_allowed(registered, "http://localhost:41234/oauth/callback")
    assert not redirect_uri_allowed(registered, "http://127.0.0.1:41234/oauth/callback?x=1")
    assert not redirect_uri_allowed([], "http://127.0.0.1/oauth/callback")


@pytest.mark.parametrize(
    "requested",
    [
        "http://127.0.0.1:41234/oauth/callback\n",
        "http://127.0.0.1:41234/oauth/\ncallback",
        "\nhttp://127.0.0.1:41234/oauth/callback",
        "http://127.0.0.1:41234/oauth/callback\t",
        "http://127.0.0.1:41234/oauth/callback\r",
        "HTTP://127.0.0.1:41234/oauth/callback",
        "http://127.0.0.1:41234//oauth/callback",
        "http://127.0.0.1:41234/oauth/callback/",
        "http://127.0.0.1:41234/oauth/callback?",
        "http://127.0.0.1:41234/oauth/callback#",
    ],
)
def test_redirect_uri_is_the_registered_one_exactly_but_for_the_port(requested):
    assert redirect_uri_allowed(["http://127.0.0.1/oauth/callback"], "http://127.0.0.1:41234/oauth/callback")
    assert not redirect_uri_allowed(["http://127.0.0.1/oauth/callback"], requested)


def test_a_registered_uri_with_a_port_matches_on_any_port():
    assert redirect_uri_allowed(["http://[::1]:8080/cb?a=1"], "http://[::1]:9999/cb?a=1")
    assert redirect_uri_allowed(["http://localhost:8080/cb"], "http://localhost/cb")
    assert not redirect_uri_allowed(["http://[::1]:8080/cb"], "http://127.0.0.1:8080/cb")


def test_pages_follow_each_other_to_the_end():
    tokens, items = PageTokens(b"key"), list(range(5))
    first, token = paginate(items, tokens, "accounts\x00bob", None, 2)
    second, token = paginate(items, tokens, "accounts\x00bob", token, 2)
    third, token = paginate(items, tokens, "accounts\x00bob", token, 2)
    assert (first, second, third, token) == ([0, 1], [2, 3], [4], None)
    assert paginate(items, tokens, "accounts\x00bob", None, 5) == (items, None)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # edited
        lambda t: "x" + t,  # not base64 of the right length
        lambda t: "!!!!",
        lambda t: t * 20,  # too long
    ],
)
def test_edited_page_tokens_are_refused(tamper):
    tokens = PageTokens(b"key")
    _, token = paginate(list(range(5)), tokens, "ctx", None, 2)
    with pytest.raises(BadPageRequest):
        paginate(list(range(5)), tokens, "ctx", tamper(token), 2)


def test_page_tokens_only_work_for_what_they_page():
    tokens = PageTokens(b"key")
    _, token = paginate(list(range(5)), tokens, "roles\x00bob\x00111111111111", None, 2)
    for other in ("roles\x00bob\x00222222222222", "roles\x00alice\x00111111111111"):
        with pytest.raises(BadPageRequest):
            paginate(list(range(5)), tokens, other, token, 2)
    with pytest.raises(BadPageRequest):  # another server key
        paginate(list(range(5)), PageTokens(b"other"), "roles\x00bob\x00111111111111", token, 2)


@pytest.mark.parametrize("raw, size", [(None, 20), ("", 20), ("1", 1), ("100", 100)])
def test_page_size(raw, size):
    assert page_size(raw) == size


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "101",
        "-1",
        "ten",
        "1.5",
        "\u00b2",
        "1\u00b2",
        "\u0661",
        "\uff15",
        "9" * 5000,
        " 5",
        "5\n",
        "+5",
        "0" * 20 + "5",
    ],
)
def test_page_size_out_of_range(raw):
    with pytest.raises(BadPageRequest):
        page_size(raw)


def test_access_tokens_never_outlive_the_sign_in():
    assert access_token_lifetime(28800, grant_expires_at=1000 + 3600, now=1000) == 3600
    assert access_token_lifetime(600, grant_expires_at=1000 + 3600, now=1000) == 600
    assert access_token_lifetime(600, grant_expires_at=900, now=1000) == 0


@pytest.mark.parametrize(
    "env, lifetime",
    [
        ({}, 28800),
        ({"BROKER_SSO_TOKEN_LIFETIME_SECONDS": "900"}, 900),
        ({"BROKER_SSO_TOKEN_LIFETIME_SECONDS": "99999"}, 28800),
        ({"BROKER_SSO_TOKEN_LIFETIME_SECONDS": "soon"}, 28800),
        ({"BROKER_SSO_TOKEN_LIFETIME_SECONDS": "\u00b2"}, 28800),
        ({"BROKER_SSO_TOKEN_LIFETIME_SECONDS": "\u0669\u0660\u0660"}, 28800),
    ],
)
def test_token_lifetime_from_the_environment_is_capped_by_the_session(env, lifetime):
    assert GrantSettings.from_environment(28800, env).token_lifetime == lifetime
