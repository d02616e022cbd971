"""An OIDC upstream after the sign-in (broker/connectors/oidc_session.py), against `FakeOIDCProvider`: asking it
again (refresh token, then userinfo) and hearing it sign a session out (back-channel logout tokens)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from broker.connectors.oidc_session import LOGOUT_EVENT, OIDCRevalidator, verify_logout_token
from broker.connectors.upstream_sessions import upstream_session
from broker.core.identity import Identity, UpstreamSession
from broker.errors import LoginFailed, UpstreamUnavailable
from tests.broker.connectors.test_oidc import make_connector
from tests.support.forge import FakeOIDCProvider

ALICE = Identity(
    subject="subject-alice",
    username="alice",
    email="alice@example.com",
    display_name="Alice",
    groups=frozenset({"engineering"}),
    department="Engineering",
    authn_methods=frozenset({"pwd", "mfa"}),
    issuer="set below",
    auth_time=1_800_000_000,
)


@pytest.fixture(scope="module")
def provider():
    fake = FakeOIDCProvider()
    yield fake
    fake.stop()


@pytest.fixture
def fake(provider):
    provider.token_answers.clear()
    provider.token_requests.clear()
    provider.userinfo_answers.clear()
    provider.userinfo_requests.clear()
    return provider


@pytest.fixture
def connector(fake):
    return make_connector(fake.url)


def profile(**claims):
    return {"sub": "subject-alice", "email": "alice@example.com", "name": "Alice", "groups": ["engineering"], **claims}


# --- what a sign-in leaves behind ----------------------------------------------------------------------------


def test_a_sign_in_keeps_the_sid_and_the_tokens():
    kept = upstream_session(
        {"sid": "s1"}, {"refresh_token": "r1", "access_token": "a1", "token_type": "Bearer", "expires_in": 60}, 100.0
    )
    assert kept == UpstreamSession(sid="s1", refresh_token="r1", access_token="a1", access_expires_at=160.0)
    assert "r1" not in repr(kept) and "a1" not in repr(kept)
    odd = upstream_session({"sid": 7}, {"access_token": "a", "token_type": "mac", "refresh_token": ""}, 0.0)
    assert odd == UpstreamSession()


# --- re-validation -------------------------------------------------------------------------------------------


def test_revalidation_refreshes_then_reads_userinfo_with_the_new_token(fake, connector):
    fake.answer_token(None, access_token="a2", refresh_token="r2")
    fake.answer_userinfo(profile(groups=["engineering", "aws-admins"]))
    identity = replace(ALICE, issuer=fake.url)
    login = OIDCRevalidator(connector).revalidate(UpstreamSession(sid="s1", refresh_token="r1"), identity)
    assert fake.token_requests[-1]["grant_type"] == "refresh_token" and fake.token_requests[-1]["refresh_token"] == "r1"
    assert fake.token_requests[-1]["authorization"].startswith("Basic ")  # the upstream's client authentication
    assert fake.userinfo_requests == ["Bearer a2"]
    assert login.identity.groups == {"engineering", "aws-admins"}  # current groups, through the mapping
    assert login.identity.mfa and login.identity.auth_time == identity.auth_time  # how they signed in carries over
    assert login.upstream_session == UpstreamSession(
        sid="s1", refresh_token="r2", access_token="a2", access_expires_at=login.upstream_session.access_expires_at
    )


def test_an_op_that_does_not_rotate_keeps_the_refresh_token(fake, connector):
    fake.answer_token(None, access_token="a2")
    fake.answer_userinfo(profile())
    login = OIDCRevalidator(connector).revalidate(UpstreamSession(refresh_token="r1"), replace(ALICE, issuer=fake.url))
    assert login.upstream_session.refresh_token == "r1"


def test_an_unexpired_access_token_alone_is_enough(fake, connector):
    fake.answer_userinfo(profile())
    session = UpstreamSession(access_token="a1", access_expires_at=time.time() + 300)
    OIDCRevalidator(connector).revalidate(session, replace(ALICE, issuer=fake.url))
    assert fake.token_requests == [] and fake.userinfo_requests == ["Bearer a1"]


@pytest.mark.parametrize(
    ("queue", "session"),
    [
        (lambda fake: fake.answer_token(None, status=400, error="invalid_grant"), UpstreamSession(refresh_token="r1")),
        (
            lambda fake: fake.answer_userinfo({"error": "invalid_token"}, status=401),
            UpstreamSession(access_token="a1", access_expires_at=time.time() + 300),
        ),
        (
            lambda fake: fake.answer_userinfo(profile(sub="subject-mallory")),
            UpstreamSession(access_token="a1", access_expires_at=time.time() + 300),
        ),
        (
            lambda fake: fake.answer_userinfo(profile(email="alice@elsewhere.example")),
            UpstreamSession(access_token="a1", access_expires_at=time.time() + 300),
        ),
        (lambda fake: None, UpstreamSession(access_token="a1", access_expires_at=1.0)),
        (lambda fake: None, UpstreamSession()),
    ],
    ids=["refresh refused", "userinfo refused", "another subject", "outside the boundary", "expired token", "nothing"],
)
def test_an_upstream_that_no_longer_vouches_is_a_login_failure(fake, connector, queue, session):
    queue(fake)
    with pytest.raises(LoginFailed) as refusal:
        OIDCRevalidator(connector).revalidate(session, replace(ALICE, issuer=fake.url))
    assert not isinstance(refusal.value, UpstreamUnavailable)


def test_an_upstream_that_fails_is_unavailable_not_a_refusal(fake, connector):
    fake.answer_token(None, status=503)
    with pytest.raises(UpstreamUnavailable):
        OIDCRevalidator(connector).revalidate(UpstreamSession(refresh_token="r1"), replace(ALICE, issuer=fake.url))


# --- back-channel logout tokens ------------------------------------------------------------------------------


def logout_claims(fake, **overrides):
    now = int(time.time())
    claims = {
        "iss": fake.url,
        "aud": "access-portal",
        "iat": now,
        "exp": now + 120,
        "jti": f"jti-{time.monotonic_ns()}",
        "sid": "session-1",
        "sub": "subject-alice",
        "events": {LOGOUT_EVENT: {}},
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def signed(fake, claims, typ="logout+jwt", key=None):
    header = {"alg": "RS256", "kid": "rsa-1", **({"typ": typ} if typ else {})}
    return jwt.encode(header, claims, key or fake.keys.get_by_kid("rsa-1"), algorithms=["RS256"])


def test_a_valid_logout_token_names_the_session_and_the_person(fake, connector):
    seen: set[str] = set()

    def first_use(jti, ttl):
        return not (jti in seen or seen.add(jti))

    token = signed(fake, logout_claims(fake))
    assert verify_logout_token(connector, token, first_use) == ("session-1", "subject-alice")
    with pytest.raises(LoginFailed, match="used before"):
        verify_logout_token(connector, token, first_use)
    only_sub = signed(fake, logout_claims(fake, sid=None), typ=None)
    assert verify_logout_token(connector, only_sub, first_use) == (None, "subject-alice")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"aud": "another-client"}, "another client"),
        ({"iat": int(time.time()) + 3600}, "not recent"),
        ({"iat": int(time.time()) - 3600}, "not recent"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"events": None}, "no logout event"),
        ({"events": {"http://example.com/other": {}}}, "no logout event"),
        ({"nonce": "n"}, "nonce"),
        ({"jti": None}, "no jti"),
        ({"sid": None, "sub": None}, "no sid or sub"),
        ({"sid": ["a"]}, "sid"),
    ],
)
def test_a_wrong_logout_token_is_refused(fake, connector, change, why):
    token = signed(fake, logout_claims(fake, **change))
    with pytest.raises(LoginFailed, match=why):
        verify_logout_token(connector, token, lambda jti, ttl: True)


def test_an_unsigned_mistyped_or_foreign_logout_token_is_refused(fake, connector):
    from tests.support.forge import unsigned_token

    for token in (
        unsigned_token(logout_claims(fake)),
        signed(fake, logout_claims(fake), key=RSAKey.generate_key(2048)),
        signed(fake, logout_claims(fake), typ="at+jwt"),
        "not.a.jwt",
        "",
        "x" * 20_000,
    ):
        with pytest.raises(LoginFailed):
            verify_logout_token(connector, token, lambda jti, ttl: True)
