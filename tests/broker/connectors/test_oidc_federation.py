"""The OIDC connector against OpenID Providers that are not the project's IdP, played by FakeOIDCProvider:
thin ID tokens and userinfo, client authentication on the wire, the JWKS and discovery caches, RFC 9207,
claims hygiene and the trickling token endpoint. (tests/broker/connectors/test_oidc_provider_peer.py does
the same against panva's oidc-provider, a certified implementation.)"""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from broker.connectors.client_auth import load_or_create_client_key
from broker.connectors.fetch import FetchPolicy
from broker.connectors.oidc import JWKS_REFRESH_INTERVAL
from broker.errors import LoginFailed, UpstreamTimeout, UpstreamUnavailable
from tests.broker.connectors.test_oidc import Clock, make_connector
from tests.broker.connectors.trusts import trust
from tests.support.forge import FakeOIDCProvider

SECRET = "p+ss/w=rd%:é &"  # what RFC 6749 2.3.1's encoding changes; a conformant OP would refuse it raw
THIN = {"email": None, "name": None, "preferred_username": None, "groups": None, "department": None}


@pytest.fixture
def fake():
    provider = FakeOIDCProvider()
    yield provider
    provider.stop()


def sign_in(fake, connector, *, params=None, id_token=None, key=None, **claims):
    redirect, kept = connector.begin("state-1")
    nonce = parse_qs(urlsplit(redirect.url).query)["nonce"][0]
    fake.token_answers.clear()  # an answer a refused sign-in never fetched
    fake.answer_token(id_token or fake.sign(fake.claims(nonce, **claims), key=key))
    return connector.complete({"code": "code-1", "state": "state-1", **(params or {})}, kept)


def refused(fake, connector, **claims) -> str:
    with pytest.raises(LoginFailed) as failure:
        sign_in(fake, connector, **claims)
    assert not isinstance(failure.value, UpstreamUnavailable), failure.value.reason
    return failure.value.reason


# -- 1. UserInfo -------------------------------------------------------------------------------------


def test_a_thin_id_token_is_completed_from_userinfo(fake):
    fake.answer_userinfo(
        {
            "sub": "subject-alice",
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Anderson",
            "groups": ["engineering", "aws-admins"],
            "amr": ["otp"],  # protocol claims never come from userinfo
        }
    )
    identity = sign_in(fake, make_connector(fake.url), amr=["pwd"], **THIN).identity
    assert identity.email == "alice@example.com" and identity.display_name == "Alice Anderson"
    assert identity.groups == {"engineering", "aws-admins"} and identity.username == "alice"
    assert not identity.mfa
    assert fake.userinfo_requests == ["Bearer access-token-1"]


def test_the_id_token_wins_over_userinfo_and_userinfo_only_adds(fake):
    fake.answer_userinfo({"sub": "subject-alice", "email": "eve@example.com", "groups": ["engineering"]})
    identity = sign_in(fake, make_connector(fake.url), groups=None).identity
    assert identity.email == "alice@example.com" and identity.groups == {"engineering"}


def test_userinfo_about_another_subject_is_refused(fake):
    fake.answer_userinfo({"sub": "subject-eve", "email": "alice@example.com"})
    assert "about another subject" in refused(fake, make_connector(fake.url), **THIN)


def test_a_signed_userinfo_answer_is_verified(fake):
    claims = {"sub": "subject-alice", "email": "alice@example.com", "iss": fake.url, "aud": "access-portal"}
    fake.answer_userinfo(fake.sign(claims))
    assert sign_in(fake, make_connector(fake.url), **THIN).identity.email == "alice@example.com"
    fake.answer_userinfo(fake.sign(claims, key=RSAKey.generate_key(2048)))  # not the OP's key
    assert "signed profile answer (userinfo) was rejected" in refused(fake, make_connector(fake.url), **THIN)


def test_userinfo_is_asked_only_when_needed_or_configured(fake):
    assert sign_in(fake, make_connector(fake.url)).identity and fake.userinfo_requests == []  # a full ID token
    fake.answer_userinfo({"sub": "subject-alice", "department": "Security"})
    identity = sign_in(fake, make_connector(fake.url, userinfo="always"), department=None).identity
    assert identity.department == "Security" and len(fake.userinfo_requests) == 1
    assert "no email address" in refused(fake, make_connector(fake.url, userinfo="never"), **THIN)
    assert len(fake.userinfo_requests) == 1


def test_a_refused_access_token_at_userinfo_is_a_clear_refusal(fake):
    fake.answer_userinfo({"error": "invalid_token"}, status=401)
    assert "refused to tell the portal who you are (userinfo: HTTP 401)" in refused(
        fake, make_connector(fake.url), **THIN
    )


# -- 2. Client authentication -------------------------------------------------------------------------


def test_client_secret_basic_form_urlencodes_the_secret(fake):
    sign_in(fake, make_connector(fake.url, client_secret=SECRET))
    sent = fake.token_requests[-1]
    client_id, _, secret = base64.b64decode(sent["authorization"].removeprefix("Basic ")).decode().partition(":")
    assert unquote_plus(client_id) == "access-portal" and unquote_plus(secret) == SECRET and secret != SECRET
    assert "client_secret" not in sent


def test_client_secret_post_from_discovery(fake):
    fake.extra_discovery["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    sign_in(fake, make_connector(fake.url, client_secret=SECRET))
    sent = fake.token_requests[-1]
    assert sent["client_id"] == "access-portal" and sent["client_secret"] == SECRET and sent["authorization"] is None


def test_private_key_jwt_with_the_brokers_own_key(fake, tmp_path):
    fake.extra_discovery["token_endpoint_auth_methods_supported"] = ["private_key_jwt", "client_secret_basic"]
    key = load_or_create_client_key(tmp_path)
    sign_in(fake, make_connector(fake.url, client_secret=None, client_key=key))
    sent = fake.token_requests[-1]
    assert sent["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert sent["authorization"] is None and "client_secret" not in sent
    claims = jwt.decode(sent["client_assertion"], KeySet.import_key_set(key.public_jwks()), algorithms=["RS256"]).claims
    assert claims["iss"] == claims["sub"] == "access-portal" and claims["aud"] == f"{fake.url}/token"


def test_an_op_without_a_method_the_broker_can_use_is_a_clear_failure(fake):
    fake.extra_discovery["token_endpoint_auth_methods_supported"] = ["tls_client_auth"]
    with pytest.raises(UpstreamUnavailable, match="supports none of the client authentication methods"):
        sign_in(fake, make_connector(fake.url))


def test_invalid_client_says_what_to_check(fake):
    connector = make_connector(fake.url)
    redirect, kept = connector.begin("s")
    fake.token_answers.append((401, {"error": "invalid_client"}))
    with pytest.raises(LoginFailed, match="client authentication \\(invalid_client\\): check the client ID"):
        connector.complete({"code": "c"}, kept)


# -- 3. Caches ------------------------------------------------------------------------------------------


def test_jwks_max_age_is_honoured_and_a_withdrawn_key_is_dropped(fake):
    clock = Clock()
    fake.jwks_headers["Cache-Control"] = "public, max-age=120"
    connector = make_connector(fake.url, monotonic=clock)
    assert sign_in(fake, connector).identity and fake.jwks_requests == 1
    withdrawn = fake.keys.get_by_kid("rsa-1")
    fake.keys = KeySet([fake.keys.get_by_kid("ec-1"), RSAKey.generate_key(2048, {"kid": "rsa-2"})])
    clock.now += 60  # still fresh: the cached set (with rsa-1) is used
    assert sign_in(fake, connector, key=withdrawn).identity and fake.jwks_requests == 1
    clock.now += 61  # expired: fetched again, without rsa-1
    redirect, kept = connector.begin("s")
    nonce = parse_qs(urlsplit(redirect.url).query)["nonce"][0]
    fake.answer_token(fake.sign(fake.claims(nonce), kid="rsa-1", key=withdrawn))
    with pytest.raises(LoginFailed, match="ID token was rejected"):
        connector.complete({"code": "c"}, kept)
    assert fake.jwks_requests == 2


def test_a_kid_reused_for_a_new_key_works_at_once_rate_limited(fake):
    clock = Clock()
    connector = make_connector(fake.url, monotonic=clock)
    assert sign_in(fake, connector).identity
    fake.keys = KeySet([RSAKey.generate_key(2048, {"kid": "rsa-1", "use": "sig"}), fake.keys.get_by_kid("ec-1")])
    clock.now += JWKS_REFRESH_INTERVAL + 1
    assert sign_in(fake, connector).identity  # bad signature under a known kid: refetched, then verified
    assert fake.jwks_requests == 2
    forged = RSAKey.generate_key(2048)
    for _ in range(3):  # right after a fetch: a bad signature does not refetch again
        assert "ID token was rejected" in refused(
            fake, connector, id_token=fake.sign(fake.claims("n"), kid="rsa-1", key=forged)
        )
    assert fake.jwks_requests == 2


def test_discovery_is_kept_for_its_lifetime_then_read_again(fake):
    clock = Clock()
    connector = make_connector(fake.url, monotonic=clock)
    assert sign_in(fake, connector).identity
    fake.extra_discovery["authorization_response_iss_parameter_supported"] = True
    assert sign_in(fake, connector).identity  # the cached document does not say so yet
    clock.now += 3601
    assert "does not name its issuer" in refused(fake, connector)


# -- 4. RFC 9207 ------------------------------------------------------------------------------------------


def test_an_op_that_sends_iss_must_send_it(fake):
    fake.extra_discovery["authorization_response_iss_parameter_supported"] = True
    connector = make_connector(fake.url)
    assert "does not name its issuer (iss)" in refused(fake, connector)
    assert sign_in(fake, connector, params={"iss": fake.url}).identity
    with pytest.raises(LoginFailed, match="another issuer"):
        sign_in(fake, connector, params={"iss": "https://evil.example"})
    with pytest.raises(LoginFailed, match="does not name its issuer"):  # an error answer too
        connector.complete({"error": "access_denied"}, connector.begin("s")[1])


# -- 5. Claims hygiene and the trust boundary ----------------------------------------------------------------


@pytest.mark.parametrize(
    "claims, problem",
    [
        ({"sub": "alice\x00admin"}, "subject identifier with control or invisible characters"),
        ({"sub": "a" * 300}, "subject identifier longer than 256"),
        ({"email": ["alice@example.com"] * 2 + ["eve@example.com"]}, "several values as the email address"),
        ({"email": 7}, "email address that is not text"),
        ({"preferred_username": "alice\r\nadmin"}, "username with control"),
        ({"groups": ["engineering", {"admin": True}]}, "group name that is not text"),
        ({"email_verified": False}, "not verified"),
        ({"email": "alice@partner.example"}, "may not vouch for alice@partner.example"),
    ],
)
def test_bad_claims_are_refused_with_a_clear_reason(fake, claims, problem):
    assert problem in refused(fake, make_connector(fake.url), **claims)


def test_email_verified_false_is_accepted_only_with_the_opt_out(fake):
    connector = make_connector(fake.url, boundary=trust("test-oidc", email_verified="ignore"))
    assert sign_in(fake, connector, email_verified=False).identity.email == "alice@example.com"


def test_a_partner_cannot_become_a_corp_admin(fake):
    """A partner IdP trusted for partner.example with prefixed groups asserts alice@example.com, then its
    own user in aws-admins: the first is refused, the second gets partner-aws-admins only."""
    partner = trust("partner", domains=("partner.example",), keep=(), prefix="partner-")
    connector = make_connector(fake.url, upstream_id="partner", boundary=partner)
    assert "may not vouch for alice@example.com" in refused(fake, connector)
    login = sign_in(fake, connector, email="mallory@partner.example", groups=["aws-admins"])
    assert login.identity.groups == {"partner-aws-admins"}


# -- 6. Deadlines ----------------------------------------------------------------------------------------------


def test_a_trickled_token_answer_is_cut_at_the_deadline(fake):
    connector = make_connector(fake.url, fetch=FetchPolicy(deadline=1.0))
    redirect, kept = connector.begin("s")
    fake.trickle = 0.05  # every byte well within a read timeout; the answer would take over a minute
    fake.answer_token(fake.sign(fake.claims("n")))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as late:
        connector.complete({"code": "c"}, kept)
    assert 0.9 <= time.monotonic() - started < 1.6
    assert late.value.status == 504 and "token endpoint" in late.value.reason
