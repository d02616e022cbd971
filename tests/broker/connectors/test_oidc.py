"""The OIDC connector: real sign-ins at the mock IdP, and every way an ID token can be bad.

Bad tokens are signed by `FakeOIDCProvider` (tests/support/forge.py), whose keys the test holds. Each
one must end in LoginFailed: never an Identity, never another exception.
"""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.jwk import RSAKey

from broker.connectors.fetch import FetchPolicy
from broker.connectors.mapping import IdentityMapping
from broker.connectors.oidc import DEFAULT_CLAIMS as OIDC_CLAIMS
from broker.connectors.oidc import JWKS_REFRESH_INTERVAL, OIDCConnector
from broker.core.identity import LogoutHint
from broker.errors import LoginFailed, UpstreamUnavailable
from devstack.processes import free_port
from tests.broker.connectors.trusts import trust
from tests.support.forge import (
    FakeOIDCProvider,
    hmac_token,
    idp_answer,
    tamper_payload,
    unsigned_token,
)
from tests.support.idp_client import ERIN_TOTP_SECRET

PORTAL = "http://localhost:8000"
STRANGER_KEY = RSAKey.generate_key(2048)  # a key the provider never published


def make_connector(
    issuer: str, client_secret: str | None = "test-secret", upstream_id: str = "test-oidc", boundary=None, **options
) -> OIDCConnector:
    return OIDCConnector(
        id=upstream_id,
        display_name="Test IdP",
        issuer=issuer,
        client_id="access-portal",
        client_secret=client_secret,
        redirect_uri=f"{PORTAL}/login/{upstream_id}/callback",
        scopes=["openid", "email", "profile", "groups"],
        mapping=IdentityMapping(**OIDC_CLAIMS, trust=boundary or trust(upstream_id)),
        clock_skew=60,
        **options,
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
    provider.extra_discovery.clear()
    provider.jwks_headers.clear()
    provider.delay = 0.0
    provider.trickle = None
    return provider


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def begin(connector):
    redirect, kept = connector.begin("state-123")
    return parse_qs(urlsplit(redirect.url).query), kept


def sign_in_with(fake, connector, id_token=None, **claims):
    """One sign-in at the fake provider answered with `id_token` (default: a valid one with `claims`)."""
    _, kept = begin(connector)
    fake.answer_token(id_token or fake.sign(fake.claims(kept.nonce, **claims)))
    return connector.complete({"code": "code-1", "state": "state-123"}, kept)


def refused(fake, connector, id_token=None, **claims) -> str:
    with pytest.raises(LoginFailed) as failure:
        sign_in_with(fake, connector, id_token, **claims)
    assert not isinstance(failure.value, UpstreamUnavailable)
    return failure.value.reason


# -- the protocol -------------------------------------------------------------------------------


def test_authorization_request_uses_pkce_state_and_nonce(fake):
    connector = make_connector(fake.url)
    params, kept = begin(connector)
    assert params["response_type"] == ["code"] and params["client_id"] == ["access-portal"]
    assert params["redirect_uri"] == [f"{PORTAL}/login/test-oidc/callback"]
    assert params["state"] == ["state-123"] and params["nonce"] == [kept.nonce]
    assert params["code_challenge_method"] == ["S256"]
    assert params["code_challenge"] == [create_s256_code_challenge(kept.code_verifier)]
    assert params["scope"] == ["openid email profile groups"]


def test_valid_token_gives_the_identity(fake):
    login = sign_in_with(fake, make_connector(fake.url), amr=["pwd", "otp"], email="Alice@Example.com")
    identity = login.identity
    assert identity.subject == "subject-alice" and identity.username == "alice"
    assert identity.email == "alice@example.com" and identity.display_name == "Alice Anderson"
    assert identity.groups == {"engineering", "aws-admins"} and identity.department == "Engineering"
    assert identity.mfa and identity.issuer == fake.url
    assert login.logout_hint.id_token
    sent = fake.token_requests[-1]
    assert sent["grant_type"] == "authorization_code" and sent["code"] == "code-1"
    assert sent["code_verifier"] and sent["redirect_uri"] == f"{PORTAL}/login/test-oidc/callback"
    assert sent["authorization"].startswith("Basic ")


def test_es256_tokens_are_accepted(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce), kid="ec-1", alg="ES256"))
    assert connector.complete({"code": "c"}, kept).identity.email == "alice@example.com"


def test_without_amr_the_method_is_password(fake):
    identity = sign_in_with(fake, make_connector(fake.url), amr=None).identity
    assert identity.authn_methods == {"pwd"} and not identity.mfa


def test_username_falls_back_to_the_email_local_part(fake):
    fake.answer_userinfo({"sub": "subject-alice"})  # asked because the username claim is missing: none there either
    assert sign_in_with(fake, make_connector(fake.url), preferred_username=None).identity.username == "alice"


def test_a_token_within_the_clock_skew_is_accepted(fake):
    now = int(time.time())
    assert sign_in_with(fake, make_connector(fake.url), exp=now - 30, iat=now + 30).identity


# -- bad ID tokens ----------------------------------------------------------------------------


def test_alg_none_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(unsigned_token(fake.claims(kept.nonce)))
    with pytest.raises(LoginFailed):
        connector.complete({"code": "c"}, kept)


def test_hs256_keyed_with_the_public_key_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    public_pem = fake.keys.get_by_kid("rsa-1").as_pem(private=False)
    fake.answer_token(hmac_token(fake.claims(kept.nonce), public_pem))
    with pytest.raises(LoginFailed):
        connector.complete({"code": "c"}, kept)


def test_wrong_issuer_is_refused(fake):
    assert "iss" in refused(fake, make_connector(fake.url), iss="https://evil.example.test")


def test_wrong_audience_is_refused(fake):
    assert "aud" in refused(fake, make_connector(fake.url), aud="another-client")


def test_several_audiences_need_azp_naming_us(fake):
    connector = make_connector(fake.url)
    assert "azp" in refused(fake, connector, aud=["access-portal", "other"])
    assert "azp" in refused(fake, connector, aud=["access-portal", "other"], azp="other")
    assert sign_in_with(fake, connector, aud=["access-portal", "other"], azp="access-portal").identity


def test_bad_nonce_is_refused(fake):
    assert "nonce" in refused(fake, make_connector(fake.url), nonce="someone-elses-nonce")


def test_missing_nonce_is_refused(fake):
    assert "nonce" in refused(fake, make_connector(fake.url), nonce=None)


def test_unknown_kid_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce), kid="rsa-9", key=STRANGER_KEY))
    with pytest.raises(LoginFailed):
        connector.complete({"code": "c"}, kept)


def test_a_known_kid_with_another_key_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce), kid="rsa-1", key=STRANGER_KEY))
    with pytest.raises(LoginFailed):
        connector.complete({"code": "c"}, kept)


def test_expired_token_is_refused(fake):
    now = int(time.time())
    assert "expired" in refused(fake, make_connector(fake.url), iat=now - 900, exp=now - 120)


def test_token_from_the_future_is_refused(fake):
    now = int(time.time())
    refused(fake, make_connector(fake.url), iat=now + 600, exp=now + 900)
    refused(fake, make_connector(fake.url), nbf=now + 600)


def test_tampered_payload_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    genuine = fake.sign(fake.claims(kept.nonce, groups=["engineering"]))
    fake.answer_token(tamper_payload(genuine, groups=["engineering", "aws-admins"]))
    with pytest.raises(LoginFailed):
        connector.complete({"code": "c"}, kept)


def test_at_hash_must_match_the_access_token(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce, at_hash="AAAAAAAAAAAAAAAAAAAAAA")), access_token="real")
    with pytest.raises(LoginFailed, match="at_hash"):
        connector.complete({"code": "c"}, kept)


@pytest.mark.parametrize("missing", ["sub", "email"])
def test_a_token_without_subject_or_email_is_refused(fake, missing):
    refused(fake, make_connector(fake.url), **{missing: None})


def test_garbage_instead_of_a_token_is_refused(fake):
    refused(fake, make_connector(fake.url), id_token="not.a.token")


def test_a_token_answer_without_id_token_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(None)
    with pytest.raises(LoginFailed, match="no ID token"):
        connector.complete({"code": "c"}, kept)


# -- keys -------------------------------------------------------------------------------------


def test_key_rotation_is_picked_up_but_unknown_kids_do_not_hammer_the_idp(fake):
    clock = Clock()
    connector = make_connector(fake.url, monotonic=clock)
    assert sign_in_with(fake, connector).identity
    fetched = fake.jwks_requests

    new_kid = fake.rotate()
    clock.now += JWKS_REFRESH_INTERVAL + 1
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce), kid=new_kid))
    assert connector.complete({"code": "c"}, kept).identity
    assert fake.jwks_requests == fetched + 1

    for _ in range(5):  # garbage kids right after a fetch: refused from the cached key set
        _, kept = begin(connector)
        fake.answer_token(fake.sign(fake.claims(kept.nonce), kid="garbage", key=fake.keys.get_by_kid("rsa-1")))
        with pytest.raises(LoginFailed):
            connector.complete({"code": "c"}, kept)
    assert fake.jwks_requests == fetched + 1


# -- the IdP's answers ----------------------------------------------------------------------------


def test_an_error_callback_is_a_readable_refusal(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    with pytest.raises(LoginFailed) as failure:
        connector.complete({"error": "access_denied", "error_description": "The user said no\r\n", "state": "s"}, kept)
    assert "access_denied" in failure.value.reason and "The user said no" in failure.value.reason
    assert "\n" not in failure.value.reason


def test_an_answer_naming_another_issuer_is_refused(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    with pytest.raises(LoginFailed, match="another issuer"):
        connector.complete({"code": "c", "iss": "https://evil.example.test"}, kept)


def test_token_endpoint_refusal_is_a_login_failure(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.token_answers.append((400, {"error": "invalid_grant"}))
    with pytest.raises(LoginFailed, match="invalid_grant") as failure:
        connector.complete({"code": "c"}, kept)
    assert not isinstance(failure.value, UpstreamUnavailable)


def test_token_endpoint_crash_means_unavailable(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.token_answers.append((503, {"error": "temporarily_unavailable"}))
    with pytest.raises(UpstreamUnavailable):
        connector.complete({"code": "c"}, kept)


def test_discovery_must_name_the_configured_issuer(fake):
    with pytest.raises(UpstreamUnavailable, match="another issuer"):
        begin(make_connector(fake.url + "/"))


def test_an_idp_that_is_down_is_unavailable_quickly():
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        begin(make_connector(f"http://127.0.0.1:{free_port()}"))
    assert time.monotonic() - started < 2


def test_a_slow_idp_is_unavailable_after_the_timeout(fake):
    fake.delay = 1.5
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="in time"):
        begin(make_connector(fake.url, fetch=FetchPolicy(deadline=0.5)))
    assert time.monotonic() - started < 1.4


# -- logout -----------------------------------------------------------------------------------


def test_logout_sends_the_browser_to_the_end_session_endpoint(fake):
    connector = make_connector(fake.url)
    redirect = connector.logout(LogoutHint(id_token="the-id-token"), f"{PORTAL}/signed-out")
    url = urlsplit(redirect.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{fake.url}/logout"
    assert parse_qs(url.query) == {
        "id_token_hint": ["the-id-token"],
        "post_logout_redirect_uri": [f"{PORTAL}/signed-out"],
        "client_id": ["access-portal"],
    }


def test_logout_when_the_idp_is_down_is_local_only():
    assert (
        make_connector(f"http://127.0.0.1:{free_port()}").logout(LogoutHint(id_token="t"), f"{PORTAL}/signed-out")
        is None
    )


# -- the real mock IdP --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp_connector(idp):
    return make_connector(idp.url, client_secret="demo-portal-oidc-secret", upstream_id="example-corp-oidc")


def callback_params(answer) -> dict[str, str]:
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{PORTAL}/login/example-corp-oidc/callback"
    return {name: values[0] for name, values in parse_qs(location.query).items()}


@pytest.mark.parametrize(
    "username, totp, groups, department, mfa",
    [
        ("alice", None, {"engineering", "aws-admins"}, "Engineering", False),
        ("erin", ERIN_TOTP_SECRET, {"security", "engineering"}, "Security", True),
    ],
)
def test_sign_in_at_the_mock_idp(idp, idp_connector, username, totp, groups, department, mfa):
    redirect, kept = idp_connector.begin("state-real")
    params = callback_params(idp_answer(idp.url, redirect.url, username, totp))
    assert params["state"] == "state-real"
    login = idp_connector.complete(params, kept)
    identity = login.identity
    assert identity.username == username and identity.email == f"{username}@example.com"
    assert identity.groups == groups and identity.department == department and identity.mfa is mfa
    assert identity.issuer == idp.url and identity.subject and abs(identity.auth_time - time.time()) < 60

    logout = urlsplit(idp_connector.logout(login.logout_hint, f"{PORTAL}/signed-out").url)
    assert parse_qs(logout.query)["id_token_hint"] == [login.logout_hint.id_token]
    answer = requests.get(f"{logout.scheme}://{logout.netloc}{logout.path}?{logout.query}", allow_redirects=False)
    assert answer.is_redirect and answer.headers["Location"].startswith(f"{PORTAL}/signed-out")


def test_a_code_works_once_and_only_with_its_verifier(idp, idp_connector):
    redirect, kept = idp_connector.begin("state-twice")
    params = callback_params(idp_answer(idp.url, redirect.url, "alice"))
    with pytest.raises(LoginFailed, match="invalid_grant"):
        idp_connector.complete(params, dataclasses.replace(kept, code_verifier="x" * 64))
    with pytest.raises(LoginFailed, match="invalid_grant"):  # the failed attempt used the code up
        idp_connector.complete(params, kept)


def test_an_idp_error_redirect_is_a_login_failure(idp, idp_connector):
    redirect, kept = idp_connector.begin("state-passive")
    answer = requests.get(redirect.url + "&prompt=none", allow_redirects=False)  # no IdP session: login_required
    params = callback_params(answer)
    assert params["state"] == "state-passive"
    with pytest.raises(LoginFailed, match="login_required"):
        idp_connector.complete(params, kept)
