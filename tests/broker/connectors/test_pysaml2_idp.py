"""The SAML connector against pysaml2's IdP, an independent implementation, set up as ADFS or Entra ID
are: claim-URI attribute names, signed AuthnRequests required, SP endpoints trusted only from the SP's
metadata, MFA reported as an AuthnContextClassRef, certificates that roll over."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from saml2 import SAMLError
from saml2.response import IncorrectlySigned

from broker.connectors.mapping import IdentityMapping
from broker.connectors.saml import METADATA_REFRESH_INTERVAL, SAMLConnector, sp_metadata
from broker.connectors.trust import MfaPolicy
from broker.errors import LoginFailed
from sso_common.keys import load_or_create_signing_identity
from sso_common.store.memory import MemoryStateStore
from tests.broker.connectors.test_oidc import Clock
from tests.broker.connectors.trusts import trust
from tests.support.pysaml2_idp import (
    ADFS,
    ADFS_GROUP,
    AUTHN_METHODS,
    ENTRA_GROUPS,
    ENTRA_OBJECT_ID,
    MFA,
    PySAML2IdP,
)
from tests.support.saml_sp import MetadataSite

PORTAL = "http://localhost:8000"
IDP_ENTITY = "http://adfs.example.test/adfs/services/trust"
SSO = "http://adfs.example.test/adfs/ls/"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
ALICE = {
    ADFS + "emailaddress": ["alice@example.com"],
    ADFS + "name": ["Alice Anderson"],
    ADFS_GROUP: ["engineering"],
    ENTRA_GROUPS: ["aws-admins", "Domain Users"],
    ENTRA_OBJECT_ID: ["7f3c2a90-0000-4000-8000-00000000a11c"],
}


@pytest.fixture(scope="module")
def sp_keys(tmp_path_factory):
    return load_or_create_signing_identity(tmp_path_factory.mktemp("saml-sp"), "sp", f"{PORTAL}/saml/metadata")


def adfs_connector(sp_keys, upstream_id="adfs", boundary=None, subject=(), **options) -> SAMLConnector:
    options.setdefault("metadata_url", "http://127.0.0.1:9/not-fetched-yet")
    return SAMLConnector(
        id=upstream_id,
        display_name="Example Corp ADFS",
        portal_url=PORTAL,
        mapping=IdentityMapping(
            email=(ADFS + "emailaddress", ADFS + "upn"),
            display_name=ADFS + "name",
            groups=(ADFS_GROUP, ENTRA_GROUPS),
            department=(),
            trust=boundary or trust(upstream_id, mfa=MfaPolicy(authn_contexts=frozenset({MFA}))),
            extra={"subject": subject},
        ),
        sp_identity=sp_keys,
        store=MemoryStateStore(),
        clock_skew=60,
        **options,
    )


@pytest.fixture(scope="module")
def idp(tmp_path_factory, sp_keys):
    """The IdP trusts the broker's SP metadata as published at /saml/metadata: both upstreams' ACS."""
    metadata = sp_metadata([adfs_connector(sp_keys, "adfs"), adfs_connector(sp_keys, "adfs-eu")])
    return PySAML2IdP(tmp_path_factory.mktemp("adfs"), IDP_ENTITY, SSO, metadata)


@pytest.fixture
def connect(idp, sp_keys):
    def make(upstream_id="adfs", **options) -> SAMLConnector:
        options.setdefault("metadata_url", None)
        options.setdefault("metadata_xml", idp.metadata())
        return adfs_connector(sp_keys, upstream_id, **options)

    return make


def sign_in(idp, connector, attributes=None, **answer):
    redirect, kept = connector.begin("relay-1")
    posted = idp.answer(redirect.url, ALICE if attributes is None else attributes, **answer)
    assert posted.acs_url == connector.acs_url and posted.request_id == kept.request_id
    return connector.complete(posted.fields, kept)


def test_adfs_style_claims_sign_in(idp, connect):
    login = sign_in(idp, connect())
    identity = login.identity
    assert identity.subject == "S-1-5-21-1004" and identity.issuer == IDP_ENTITY
    assert identity.email == "alice@example.com" and identity.display_name == "Alice Anderson"
    assert identity.groups == {"engineering", "aws-admins"} and login.dropped_groups == {"Domain Users"}
    assert not identity.mfa and login.logout_hint.session_index


def test_the_email_can_come_from_the_upn_claim(idp, connect):
    claims = {k: v for k, v in ALICE.items() if k != ADFS + "emailaddress"} | {ADFS + "upn": ["Alice@Example.com"]}
    assert sign_in(idp, connect(), claims).identity.email == "alice@example.com"


def test_the_second_upstreams_acs_is_trusted_from_the_published_metadata(idp, connect, sp_keys, tmp_path):
    """pysaml2 sends a Response only to an ACS the SP's metadata lists: with the broker's combined
    metadata, the second SAML upstream works; with the first upstream's alone it would be refused."""
    assert sign_in(idp, connect("adfs-eu")).identity.email == "alice@example.com"
    narrow = PySAML2IdP(tmp_path, IDP_ENTITY, SSO, adfs_connector(sp_keys, "adfs").sp_metadata_xml())
    second = connect("adfs-eu", metadata_xml=narrow.metadata())
    redirect, _ = second.begin("relay-2")
    with pytest.raises(SAMLError, match="Unknown entity or unsupported bindings"):  # no such ACS in its metadata
        narrow.answer(redirect.url, ALICE)


def test_the_idp_verifies_our_authn_request_signature(idp, connect):
    redirect, _ = connect().begin("relay-3")
    parts = urlsplit(redirect.url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["RelayState"] = "changed-after-signing"
    with pytest.raises(IncorrectlySigned):
        idp.answer(parts._replace(query=urlencode(query)).geturl(), ALICE)


def test_the_sp_metadata_lists_every_acs_and_is_schema_valid(sp_keys):
    metadata = sp_metadata([adfs_connector(sp_keys, "adfs"), adfs_connector(sp_keys, "adfs-eu")])
    assert not isinstance(OneLogin_Saml2_XML.validate_xml(metadata, "saml-schema-metadata-2.0.xsd"), str)
    for upstream in ("adfs", "adfs-eu"):
        assert f'Location="{PORTAL}/login/{upstream}/acs"' in metadata
    assert 'index="0" isDefault="true"' in metadata and 'index="1"' in metadata
    assert metadata.count(sp_keys.certificate_base64) == 1 and f'entityID="{PORTAL}/saml/metadata"' in metadata


@pytest.mark.parametrize(
    "policy, context, outcome",
    [
        (MfaPolicy(authn_contexts=frozenset({MFA})), MFA, "mfa"),
        (MfaPolicy(), MFA, "pwd"),  # not trusted for MFA: the claim is ignored
        (MfaPolicy(authn_contexts=frozenset({MFA}), require=True), MFA, "mfa"),
        (
            MfaPolicy(authn_contexts=frozenset({MFA}), require=True),
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
            "refused",
        ),
    ],
)
def test_mfa_is_recognised_from_the_authn_context_it_is_trusted_for(idp, connect, policy, context, outcome):
    connector = connect(boundary=trust("adfs", mfa=policy))
    if outcome == "refused":
        with pytest.raises(LoginFailed, match="did not report a second factor"):
            sign_in(idp, connector, context=context)
    else:
        assert sign_in(idp, connector, context=context).identity.mfa is (outcome == "mfa")


def test_mfa_from_the_authentication_methods_attribute_as_adfs_and_entra_send_it(idp, connect):
    policy = MfaPolicy(amr=frozenset({MFA}), amr_attribute=AUTHN_METHODS, require=True)
    password = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"
    connector = connect(boundary=trust("adfs", mfa=policy))
    assert sign_in(idp, connector, {**ALICE, AUTHN_METHODS: [password, MFA]}).identity.mfa
    with pytest.raises(LoginFailed, match="did not report a second factor"):
        sign_in(idp, connector, {**ALICE, AUTHN_METHODS: [password]})


def test_a_transient_name_id_is_refused_unless_an_attribute_holds_the_subject(idp, connect):
    with pytest.raises(LoginFailed, match="transient NameID"):
        sign_in(idp, connect(), name_id="_e1f2a3", name_id_format=NAMEID_TRANSIENT)
    login = sign_in(idp, connect(subject=(ENTRA_OBJECT_ID,)), name_id="_e1f2a4", name_id_format=NAMEID_TRANSIENT)
    assert login.identity.subject == "7f3c2a90-0000-4000-8000-00000000a11c"
    assert login.logout_hint.name_id == "_e1f2a4"  # logout still names the session's NameID


def test_a_partner_saml_idp_cannot_assert_a_corp_address(idp, connect):
    partner = trust("partner-saml", domains=("partner.example",), keep=(), prefix="partner-")
    with pytest.raises(LoginFailed, match="may not vouch for alice@example.com"):
        sign_in(idp, connect(boundary=partner))


def test_a_certificate_rollover_is_picked_up_from_the_metadata(tmp_path, sp_keys):
    idp = PySAML2IdP(tmp_path, IDP_ENTITY, SSO, adfs_connector(sp_keys, "adfs").sp_metadata_xml())
    site = MetadataSite().start()
    site.publish(idp.metadata())
    clock = Clock()
    try:
        connector = adfs_connector(sp_keys, "adfs", metadata_url=f"{site.url}/saml/metadata", monotonic=clock)
        assert sign_in(idp, connector).identity and site.hits == 1
        idp.rotate()
        site.publish(idp.metadata())
        with pytest.raises(LoginFailed, match="signature is not valid"):  # refetched moments ago: not again
            sign_in(idp, connector)
        assert site.hits == 1
        clock.now += METADATA_REFRESH_INTERVAL + 1
        assert sign_in(idp, connector).identity.email == "alice@example.com"  # refetched, the new certificate
        assert site.hits == 2
    finally:
        site.stop()
