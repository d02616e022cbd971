"""The SAML connector: real sign-ins at the mock IdP, and genuine Responses turned bad.

Two kinds of bad Response:
- a genuine Response changed without a valid signature (python3-saml's signature check must catch it);
- a genuine Response changed and re-signed by a key the test holds, given to a connector whose IdP
  metadata names that key (`trusting`). Its signature is valid, so each test isolates one semantic
  check (times, audience, recipient, InResponseTo, replay). `test_a_resigned_response_is_accepted_as_is`
  shows that re-signing alone changes nothing.
"""

from __future__ import annotations

import base64
import time
import zlib
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from broker.connectors.fetch import FetchPolicy
from broker.connectors.mapping import IdentityMapping
from broker.connectors.saml import DEFAULT_ATTRIBUTES as SAML_ATTRIBUTES
from broker.connectors.saml import SAMLConnector, SAMLLoginState
from broker.core.identity import LogoutHint
from broker.errors import LoginFailed, UpstreamUnavailable
from devstack.processes import free_port
from sso_common.keys import load_or_create_signing_identity
from sso_common.store.memory import MemoryStateStore
from tests.broker.connectors.trusts import trust
from tests.support.forge import (
    NS,
    FakeOIDCProvider,
    assertion_of,
    decode_response,
    encode_response,
    idp_answer,
    idp_metadata,
    resign,
)
from tests.support.idp_client import ERIN_TOTP_SECRET
from tests.support.saml_sp import MetadataSite, post_form, register_sp
from tests.support.servers import start_idp

# The portal SP the mock IdP's config registers, as the IdP of this module sees it (PORTAL_URL): the IdP
# reads the portal's signing certificate from {PORTAL}/saml/metadata, served here by a MetadataSite.
PORTAL = f"http://127.0.0.1:{free_port()}"
UPSTREAM = "example-corp-saml"
ACS = f"{PORTAL}/login/{UPSTREAM}/acs"


def saml_connector(sp_keys, portal: str, **options) -> SAMLConnector:
    """The connector under test, with its own replay cache."""
    return SAMLConnector(
        id=UPSTREAM,
        display_name="Example Corp (SAML)",
        portal_url=portal,
        mapping=IdentityMapping(**SAML_ATTRIBUTES, trust=trust(UPSTREAM)),
        sp_identity=sp_keys,
        store=MemoryStateStore(),
        clock_skew=60,
        **options,
    )


@pytest.fixture(scope="module")
def sp_keys(tmp_path_factory):
    return load_or_create_signing_identity(tmp_path_factory.mktemp("saml-sp"), "sp", f"{PORTAL}/saml/metadata")


@pytest.fixture(scope="module")
def idp(tmp_path_factory, sp_keys):
    """This module's own IdP (a TOTP code works once per IdP, so two modules signing erin in within the
    same 30 s window would otherwise refuse each other's code), configured with PORTAL as the portal,
    whose metadata (with sp_keys' certificate) the site publishes as the real portal does."""
    site = MetadataSite(int(PORTAL.rsplit(":", 1)[1])).start()
    site.publish(saml_connector(sp_keys, PORTAL, metadata_url=f"{PORTAL}/none").sp_metadata_xml())
    service = start_idp(tmp_path_factory.mktemp("idp"), env={"PORTAL_URL": PORTAL})
    yield service
    service.stop()
    site.stop()


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    return load_or_create_signing_identity(tmp_path_factory.mktemp("attacker"), "attacker", "attacker")


@pytest.fixture
def connect(idp, sp_keys):
    """Factory: a SAML connector with its own replay cache (the real IdP's metadata unless given)."""

    def make(portal: str = PORTAL, **options) -> SAMLConnector:
        options.setdefault("metadata_url", f"{idp.url}/saml/metadata")
        return saml_connector(sp_keys, portal, **options)

    return make


@pytest.fixture
def trusting(idp, connect, attacker):
    """A connector whose metadata names the real IdP's entity ID with the attacker's certificate."""
    return connect(
        metadata_url=None, metadata_xml=idp_metadata(f"{idp.url}/saml/metadata", f"{idp.url}/saml/sso", attacker)
    )


def sign_in(idp, connector, username="alice", totp=None, state="state-1"):
    """begin(), the real IdP's login, and the auto-post form it answers with: (posted fields, kept)."""
    redirect, kept = connector.begin(state)
    posted = post_form(idp_answer(idp.url, redirect.url, username, totp))
    assert posted.action == connector.acs_url and posted.fields["RelayState"] == state
    return posted.fields, kept


@pytest.fixture(scope="module")
def genuine(idp, sp_keys):
    """One genuine Response for alice and the kept data of its AuthnRequest, to mutate."""
    connector = saml_connector(sp_keys, PORTAL, metadata_url=f"{idp.url}/saml/metadata")
    return sign_in(idp, connector)


def instant(offset: float) -> str:
    return OneLogin_Saml2_Utils.parse_time_to_SAML(time.time() + offset)


def mutated(genuine, change) -> etree._Element:
    root = decode_response(genuine[0]["SAMLResponse"])
    change(root)
    return root


def forged(genuine, key, change=lambda root: None) -> dict:
    return {**genuine[0], "SAMLResponse": encode_response(resign(mutated(genuine, change), key))}


def unsigned(genuine, change) -> dict:
    return {**genuine[0], "SAMLResponse": encode_response(mutated(genuine, change))}


def rejected(connector, params, kept, why: str):
    with pytest.raises(LoginFailed) as failure:
        connector.complete(params, kept)
    assert not isinstance(failure.value, UpstreamUnavailable)
    assert why in failure.value.reason, failure.value.reason
    assert "<" not in failure.value.reason  # no XML echoed


def set_times(root, *, not_before=None, not_on_or_after=None, confirmation_until=None):
    conditions = assertion_of(root).find("saml:Conditions", NS)
    if not_before is not None:
        conditions.set("NotBefore", instant(not_before))
    if not_on_or_after is not None:
        conditions.set("NotOnOrAfter", instant(not_on_or_after))
    if confirmation_until is not None:
        for data in root.iter(f"{{{NS['saml']}}}SubjectConfirmationData"):
            data.set("NotOnOrAfter", instant(confirmation_until))


# -- real sign-ins ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, totp, groups, department, mfa",
    [
        ("alice", None, {"engineering", "aws-admins"}, "Engineering", False),
        ("erin", ERIN_TOTP_SECRET, {"security", "engineering"}, "Security", True),
    ],
)
def test_sign_in_at_the_mock_idp(idp, connect, username, totp, groups, department, mfa):
    connector = connect()
    params, kept = sign_in(idp, connector, username, totp)
    login = connector.complete(params, kept)
    identity = login.identity
    assert identity.email == f"{username}@example.com" and identity.username == username
    assert identity.groups == groups and identity.department == department and identity.mfa is mfa
    assert identity.issuer == f"{idp.url}/saml/metadata" and abs(identity.auth_time - time.time()) < 60
    assert identity.subject == login.logout_hint.name_id and "@" not in identity.subject  # persistent
    assert login.logout_hint.session_index


def test_signed_authn_requests_are_verified_by_an_idp_holding_our_metadata(idp, connect):
    """A second portal registers the metadata `sp_metadata_xml()` publishes: the IdP then checks the
    AuthnRequest signature with the certificate in it."""
    connector = connect(portal="http://portal.example.test")
    assert register_sp(idp.url, connector.sp_metadata_xml()).status_code in (200, 201)
    params, kept = sign_in(idp, connector, "carol")
    assert connector.complete(params, kept).identity.groups == {"finance"}


def test_redirect_signatures_are_python3_samls_own(idp, connect, sp_keys):
    """The AuthnRequest and LogoutRequest queries are signed with a key kept per connector; the signature is
    the one python3-saml makes by parsing the key each time (RSA PKCS#1 v1.5 is deterministic), over the
    query exactly as sent, and verifies with the SP certificate."""
    connector = connect()
    params, kept = sign_in(idp, connector)
    login = connector.complete(params, kept)
    for url in (connector.begin("state-2")[0].url, connector.logout(login.logout_hint, f"{PORTAL}/out").url):
        raw = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
        signed = f"SAMLRequest={raw['SAMLRequest']}&RelayState={raw['RelayState']}&SigAlg={raw['SigAlg']}"
        expected = OneLogin_Saml2_Utils.sign_binary(signed, sp_keys.key_pem)
        assert base64.b64decode(unquote(raw["Signature"])) == expected
        assert OneLogin_Saml2_Utils.validate_binary_sign(signed, expected, sp_keys.certificate_pem)


def test_encrypted_assertions_are_decrypted_with_the_sp_key(idp, connect):
    """We do not require encryption, but an IdP set up to encrypt to the SP's key must still work."""
    connector = connect(portal="http://portal-encrypted.example.test")
    both_uses = connector.sp_metadata_xml().replace(' use="signing"', "")  # the key for encryption too
    assert register_sp(idp.url, both_uses, encrypt_assertion=True).status_code in (200, 201)
    params, kept = sign_in(idp, connector, "bob")
    assert b"EncryptedAssertion" in base64.b64decode(params["SAMLResponse"])
    assert connector.complete(params, kept).identity.email == "bob@example.com"


def test_sp_metadata_needs_no_idp(connect, sp_keys):
    metadata = connect(metadata_url=f"http://127.0.0.1:{free_port()}/saml/metadata").sp_metadata_xml()
    assert f'entityID="{PORTAL}/saml/metadata"' in metadata and f'Location="{ACS}"' in metadata
    assert 'AuthnRequestsSigned="true"' in metadata and 'WantAssertionsSigned="true"' in metadata
    assert sp_keys.certificate_base64 in metadata


def test_logout_sends_a_logout_request_for_the_session(idp, connect):
    connector = connect()
    params, kept = sign_in(idp, connector)
    login = connector.complete(params, kept)
    url = urlsplit(connector.logout(login.logout_hint, f"{PORTAL}/signed-out").url)
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{idp.url}/saml/slo"
    assert query["RelayState"] == [f"{PORTAL}/signed-out"] and query["Signature"]
    request = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
    assert login.logout_hint.name_id in request and login.logout_hint.session_index in request


# -- broken signatures --------------------------------------------------------------------------


def test_a_replayed_response_is_refused(idp, connect):
    connector = connect()
    params, kept = sign_in(idp, connector)
    assert connector.complete(params, kept).identity
    rejected(connector, params, kept, "replayed")


def test_an_unsigned_response_is_refused(connect, genuine):
    def strip(root):
        return [s.getparent().remove(s) for s in list(root.iter(f"{{{NS['ds']}}}Signature"))]

    rejected(connect(), unsigned(genuine, strip), genuine[1], "not signed")


def test_a_response_resigned_by_another_key_is_refused(connect, genuine, attacker):
    rejected(connect(), forged(genuine, attacker), genuine[1], "signature is not valid")


def test_a_changed_assertion_breaks_the_signature(connect, genuine):
    def promote(root):
        for value in root.iter(f"{{{NS['saml']}}}AttributeValue"):
            if value.text == "engineering":
                value.text = "security"

    rejected(connect(), unsigned(genuine, promote), genuine[1], "signature is not valid")


def test_a_response_for_another_request_is_refused(connect, genuine):
    rejected(connect(), genuine[0], SAMLLoginState("ONELOGIN_another_request"), "another sign-in request")


def test_a_response_to_another_address_is_refused(connect, genuine):
    """Destination sits on the unsigned Response envelope: changing it needs no key."""
    rejected(
        connect(),
        unsigned(genuine, lambda root: root.set("Destination", "https://evil.example.test/acs")),
        genuine[1],
        "destination",
    )


def test_garbage_is_refused(connect, genuine):
    for garbage in (
        "not base64 at all!",
        base64.b64encode(b"<not-saml/>").decode(),
        base64.b64encode(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>').decode(),
    ):
        rejected(connect(), {"SAMLResponse": garbage}, genuine[1], "rejected")
    with pytest.raises(LoginFailed, match="no SAMLResponse"):
        connect().complete({"RelayState": "state-1"}, genuine[1])


# -- validly signed, semantically bad (the trusting connector) ----------------------------------


def test_a_resigned_response_is_accepted_as_is(trusting, genuine, attacker):
    assert trusting.complete(forged(genuine, attacker), genuine[1]).identity.email == "alice@example.com"


def test_an_expired_assertion_is_refused(trusting, genuine, attacker):
    def change(root):
        return set_times(root, not_before=-900, not_on_or_after=-600, confirmation_until=-600)

    rejected(trusting, forged(genuine, attacker, change), genuine[1], "expired")


def test_a_not_yet_valid_assertion_is_refused(trusting, genuine, attacker):
    def change(root):
        return set_times(root, not_before=900, not_on_or_after=1200)

    rejected(trusting, forged(genuine, attacker, change), genuine[1], "not valid yet")


def test_the_configured_clock_skew_applies_not_python3_saml_s_300_seconds(trusting, genuine, attacker):
    def early(root):
        return set_times(root, not_before=120)

    rejected(trusting, forged(genuine, attacker, early), genuine[1], "not valid yet")

    def late(root):
        return set_times(root, not_on_or_after=-120)

    rejected(trusting, forged(genuine, attacker, late), genuine[1], "expired")

    def within(root):
        return set_times(root, not_before=30, not_on_or_after=-30)

    assert trusting.complete(forged(genuine, attacker, within), genuine[1]).identity


def test_an_assertion_for_another_audience_is_refused(trusting, genuine, attacker):
    def audience(root):
        assertion_of(root).find("saml:Conditions/saml:AudienceRestriction/saml:Audience", NS).text = "urn:other-sp"

    rejected(trusting, forged(genuine, attacker, audience), genuine[1], "audience")


def test_an_assertion_for_another_recipient_is_refused(trusting, genuine, attacker):
    def recipient(root):
        for data in root.iter(f"{{{NS['saml']}}}SubjectConfirmationData"):
            data.set("Recipient", "https://evil.example.test/acs")

    rejected(trusting, forged(genuine, attacker, recipient), genuine[1], "recipient")


def test_an_unsolicited_response_is_refused(trusting, genuine, attacker):
    """python3-saml only compares InResponseTo when there is one: without it, it would accept."""

    def unsolicited(root):
        root.attrib.pop("InResponseTo")
        for data in root.iter(f"{{{NS['saml']}}}SubjectConfirmationData"):
            data.attrib.pop("InResponseTo", None)

    rejected(trusting, forged(genuine, attacker, unsolicited), genuine[1], "InResponseTo")


def test_a_replayed_forgery_with_a_new_signature_is_still_a_replay(trusting, genuine, attacker):
    """The replay cache keys on the assertion ID, which a new signature does not change."""
    assert trusting.complete(forged(genuine, attacker), genuine[1]).identity
    rejected(trusting, forged(genuine, attacker), genuine[1], "replayed")


# -- the IdP unreachable ------------------------------------------------------------------------


def test_an_idp_that_is_down_is_unavailable_quickly(connect):
    connector = connect(metadata_url=f"http://127.0.0.1:{free_port()}/saml/metadata")
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        connector.begin("state-1")
    assert time.monotonic() - started < 2
    assert connector.logout(LogoutHint(name_id="x", session_index="y"), f"{PORTAL}/signed-out") is None


def test_a_slow_idp_is_unavailable_after_the_timeout(connect):
    slow = FakeOIDCProvider()
    slow.delay = 1.5
    try:
        connector = connect(metadata_url=f"{slow.url}/saml/metadata", fetch=FetchPolicy(deadline=0.5))
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="in time"):
            connector.begin("state-1")
        assert time.monotonic() - started < 1.4
    finally:
        slow.stop()
