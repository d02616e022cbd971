"""What the connectors record for "How did I get here?": each check with the outcome the validating code
actually reached, in that code's order, and "not reached" for whatever it never got to. joserfc checks
the claims in the token's own order and stops at the first bad one; python3-saml's is_valid stops at its
first failure with an error code. Nothing is validated a second time: these tests change the answers,
not the checks, and read what was recorded."""

from __future__ import annotations

import json
import time

import pytest

from broker.connectors import recording as names
from broker.core.evidence import FAILED, NOT_REACHED, PASSED, SKIPPED, recording
from broker.errors import LoginFailed
from tests.broker.connectors import test_saml as saml_module
from tests.broker.connectors.test_oidc import begin, make_connector
from tests.broker.connectors.test_saml import forged, set_times, sign_in, unsigned
from tests.support.forge import FakeOIDCProvider, assertion_of, decode_response, tamper_payload, unsigned_token

DS = "http://www.w3.org/2000/09/xmldsig#"

# --- OpenID Connect ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider():
    fake = FakeOIDCProvider()
    yield fake
    fake.stop()


@pytest.fixture
def fake(provider):
    provider.token_answers.clear()
    provider.userinfo_answers.clear()
    return provider


def oidc_outcomes(fake, *, token=None, ordered_claims=None, access_token="access-token-1", **claims):
    """One sign-in answered with `token` (default: a valid one with `claims`); (outcomes by check, the
    upstream section, the failure or None)."""
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    if token is None:
        signed = fake.claims(kept.nonce, **claims)
        if ordered_claims is not None:  # the order joserfc meets them in
            signed = {name: signed[name] for name in ordered_claims if name in signed}
        token = fake.sign(signed)
    fake.answer_token(token, access_token=access_token)
    failure = None
    with recording() as record:
        try:
            connector.complete({"code": "a-code-of-the-identity-provider-0001", "state": "state-123"}, kept)
        except LoginFailed as refused:
            failure = refused
    [section] = record.sections("upstream")
    return {check.name: check for check in section.checks}, section, failure


def test_a_good_id_token_passes_every_check_it_has(fake):
    checks, section, failure = oidc_outcomes(fake)
    assert failure is None
    for name in (names.CODE_PRESENT, names.CODE_REDEEMED, names.SIGNATURE, names.ESSENTIAL, "iss", "aud", "sub"):
        assert checks[name].outcome == PASSED, checks[name]
    assert checks["exp"].outcome == checks["iat"].outcome == checks["nonce"].outcome == PASSED
    assert checks["nbf"].outcome == SKIPPED  # not in the token: joserfc had nothing to check
    assert checks[names.AZP].outcome == SKIPPED and checks[names.AT_HASH].outcome == SKIPPED
    assert "kid rsa-1" in checks[names.SIGNATURE].received and "RS256" in checks[names.SIGNATURE].received
    assert checks["exp"].expected.endswith("(60 s)")  # the allowed skew, as configured
    assert "a-code-of-the-identity-provider-0001" not in json.dumps(section.to_record())
    decoded = json.loads(next(d for d in section.documents if d.label == "ID token (decoded)").text)
    assert decoded["header"]["kid"] == "rsa-1" and decoded["claims"]["email"] == "alice@example.com"
    assert decoded["claims"]["nonce"].startswith("sha256:")  # a one-time value of this sign-in, not shown


def test_an_expired_token_stops_joserfc_at_exp_in_the_tokens_own_order(fake):
    old = int(time.time()) - 3600
    order = ["iss", "sub", "aud", "iat", "exp", "nonce", "email", "groups"]
    checks, _, failure = oidc_outcomes(fake, iat=old, exp=old + 300, ordered_claims=order)
    assert failure is not None
    assert checks["exp"].outcome == FAILED and "expired" in checks["exp"].detail.lower()
    assert [checks[name].outcome for name in ("iss", "sub", "aud", "iat")] == [PASSED] * 4
    assert checks["nonce"].outcome == NOT_REACHED  # after exp in this token: joserfc never got there
    assert checks[names.AZP].outcome == checks[names.AT_HASH].outcome == NOT_REACHED


def test_the_same_failure_in_another_order_leaves_other_checks_unreached(fake):
    old = int(time.time()) - 3600
    order = ["exp", "iat", "nonce", "iss", "sub", "aud", "email", "groups"]
    checks, _, _ = oidc_outcomes(fake, iat=old, exp=old + 300, ordered_claims=order)
    assert checks["exp"].outcome == FAILED
    assert [checks[name].outcome for name in ("iat", "nonce", "iss", "sub", "aud")] == [NOT_REACHED] * 5


def test_a_wrong_nonce_fails_nonce(fake):
    checks, _, failure = oidc_outcomes(fake, nonce="another-sign-in")
    assert failure is not None and checks["nonce"].outcome == FAILED
    assert checks["nonce"].received.startswith("sha256:") and "another-sign-in" not in checks["nonce"].received


def test_a_missing_essential_claim_stops_before_any_claim_check(fake):
    checks, _, _ = oidc_outcomes(fake, nonce=None)
    assert checks[names.ESSENTIAL].outcome == FAILED and "nonce" in checks[names.ESSENTIAL].detail
    assert {checks[name].outcome for name in names.CLAIMS} == {NOT_REACHED}


def test_a_bad_signature_stops_before_the_claims(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    token = tamper_payload(fake.sign(fake.claims(kept.nonce)), groups=["aws-admins"])
    checks, _, failure = oidc_outcomes(fake, token=token)
    assert failure is not None and checks[names.SIGNATURE].outcome == FAILED
    assert checks[names.ESSENTIAL].outcome == NOT_REACHED and checks["iss"].outcome == NOT_REACHED


def test_alg_none_fails_the_algorithm_check(fake):
    checks, _, _ = oidc_outcomes(fake, token=unsigned_token({"iss": fake.url, "sub": "x"}))
    assert checks[names.SIGNATURE].outcome == FAILED and checks[names.ESSENTIAL].outcome == NOT_REACHED


def test_at_hash_is_the_brokers_own_check_after_joserfc(fake):
    checks, _, failure = oidc_outcomes(fake, at_hash="AAAAAAAAAAAAAAAAAAAAAA")
    assert failure is not None
    assert checks["exp"].outcome == PASSED and checks[names.AT_HASH].outcome == FAILED
    assert checks[names.USERINFO].outcome == NOT_REACHED


def test_an_error_answer_stops_at_the_first_check(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    with recording() as record, pytest.raises(LoginFailed):
        connector.complete({"error": "access_denied", "state": "state-123"}, kept)
    checks = {check.name: check for check in record.sections("upstream")[0].checks}
    assert checks[names.NO_ERROR].outcome == FAILED and checks[names.CODE_PRESENT].outcome == NOT_REACHED


def test_the_trust_boundary_records_where_each_field_came_from(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce, groups=["engineering", "lunch-club"])))
    with recording() as record:
        connector.complete({"code": "c", "state": "state-123"}, kept)
    [identity] = record.sections("identity")
    facts = {fact.label: fact for fact in identity.facts}
    assert facts["email"].value == "alice@example.com" and facts["email"].source == "claim 'email'"
    assert facts["subject"].source == "claim 'sub' of the ID token"
    assert {check.outcome for check in identity.checks} == {PASSED}
    fates = {fate.upstream_group: fate.broker_group for fate in record.groups}
    assert fates["lunch-club"] is None and fates["engineering"] == "engineering"


def test_a_domain_outside_the_boundary_fails_there_and_stops(fake):
    connector = make_connector(fake.url)
    _, kept = begin(connector)
    fake.answer_token(fake.sign(fake.claims(kept.nonce, email="mallory@elsewhere.example")))
    with recording() as record, pytest.raises(LoginFailed):
        connector.complete({"code": "c", "state": "state-123"}, kept)
    checks = {check.name: check.outcome for check in record.sections("identity")[0].checks}
    assert checks["email domain allowed"] == FAILED and checks["groups"] == NOT_REACHED


# --- SAML -------------------------------------------------------------------------------------------

# The SAML connector tests' fixtures (the real mock IdP, the portal's keys, a key the test holds), used here too.
sp_keys, idp, attacker, connect = saml_module.sp_keys, saml_module.idp, saml_module.attacker, saml_module.connect
trusting, genuine = saml_module.trusting, saml_module.genuine


def saml_outcomes(connector, params, kept):
    failure = None
    with recording() as record:
        try:
            connector.complete(params, kept)
        except LoginFailed as refused:
            failure = refused
    [section] = record.sections("upstream")
    return {check.name: check for check in section.checks}, section, failure


def python3_saml(checks) -> list[str]:
    return [checks[name].outcome for name, _, _ in names.SAML_CHECKS]


def test_a_genuine_response_passes_python3_saml_and_the_brokers_checks(idp, connect):
    connector = connect()
    params, kept = sign_in(idp, connector)
    checks, section, failure = saml_outcomes(connector, params, kept)
    assert failure is None
    assert set(python3_saml(checks)) <= {PASSED, SKIPPED} and checks["signature valid"].outcome == PASSED
    for name in (names.IN_RESPONSE_TO, names.CONDITIONS_SKEW, names.REPLAY, names.SUBJECT):
        assert checks[name].outcome == PASSED
    [document] = section.documents
    assert "SIGNED:" in document.text and names.WITHHELD in document.text
    response = json.dumps(section.to_record())
    value = decode_response(params["SAMLResponse"]).findtext(f".//{{{DS}}}SignatureValue")
    assert value and "".join(value.split())[:40] not in response  # never the signature value
    assert params["SAMLResponse"] not in response  # nor the Response as posted


def test_a_tampered_attribute_fails_the_signature_check_and_nothing_after(genuine, connect):
    def more_groups(root):
        assertion_of(root).find(".//{urn:oasis:names:tc:SAML:2.0:assertion}AttributeValue").text = "aws-admins"

    checks, _, failure = saml_outcomes(connect(), unsigned(genuine, more_groups), genuine[1])
    assert failure is not None and checks["signature valid"].outcome == FAILED
    assert set(python3_saml(checks)[:-1]) <= {PASSED, SKIPPED}
    assert checks[names.IN_RESPONSE_TO].outcome == checks[names.REPLAY].outcome == NOT_REACHED


def test_a_wrong_audience_stops_python3_saml_at_the_audience(genuine, trusting, attacker):
    def wrong_audience(root):
        assertion_of(root).find(".//{urn:oasis:names:tc:SAML:2.0:assertion}Audience").text = "https://evil.example/sp"

    checks, _, failure = saml_outcomes(trusting, forged(genuine, attacker, wrong_audience), genuine[1])
    assert failure is not None and checks["Audience"].outcome == FAILED
    order = [name for name, _, _ in names.SAML_CHECKS]
    after = order[order.index("Audience") + 1 :]
    assert {checks[name].outcome for name in after} == {NOT_REACHED}
    assert checks["Destination"].outcome in (PASSED, SKIPPED)


def test_a_replayed_assertion_fails_the_replay_cache_after_every_library_check(genuine, trusting, attacker):
    params = forged(genuine, attacker)
    assert saml_outcomes(trusting, params, genuine[1])[2] is None
    checks, _, failure = saml_outcomes(trusting, params, genuine[1])
    assert failure is not None and checks[names.REPLAY].outcome == FAILED
    assert checks["signature valid"].outcome == PASSED and checks[names.SUBJECT].outcome == NOT_REACHED


def test_the_brokers_own_skew_is_a_check_of_its_own(genuine, trusting, attacker):
    # Expired 120 s ago: within python3-saml's fixed 300 s drift, beyond the configured 60 s.
    params = forged(genuine, attacker, lambda root: set_times(root, not_on_or_after=-120))
    checks, _, failure = saml_outcomes(trusting, params, genuine[1])
    assert failure is not None
    assert checks["NotBefore / NotOnOrAfter (python3-saml's 300 s drift)"].outcome == PASSED
    assert checks[names.CONDITIONS_SKEW].outcome == FAILED and checks[names.REPLAY].outcome == NOT_REACHED


def test_garbage_is_not_readable_and_nothing_else_is_reached(genuine, connect):
    checks, _, failure = saml_outcomes(connect(), {**genuine[0], "SAMLResponse": "PHhtbD4="}, genuine[1])
    assert failure is not None and checks[names.READABLE].outcome == FAILED
    assert set(python3_saml(checks)) == {NOT_REACHED}
