"""The broker's SAML Response toward STS: signed where validators expect, saying exactly what AWS reads."""

from __future__ import annotations

import base64
import re

import pytest
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature

from broker.aws.assertion import (
    AWS_ATTRIBUTE,
    AWS_SAML_ENDPOINT,
    aws_name,
    build_saml_response,
    idp_metadata_xml,
    tag_value,
)
from broker.core.entitlements import check_entitlement
from broker.core.identity import aws_person_name, aws_person_tag
from broker.errors import IdentityRefused
from sso_common.keys import load_or_create_signing_identity
from sso_common.xmlsign import sign_element
from tests.broker.conftest import BROKER_ENTITY_ID

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


@pytest.fixture
def bob(person):
    return person("bob", department="R&D <Platform>")


@pytest.fixture
def developer(access, bob):
    return check_entitlement(bob, access, "111111111111", "EmployeeDirectoryDeveloper")


@pytest.fixture
def response(bob, developer, signing_identity) -> bytes:
    return build_saml_response(bob, developer, BROKER_ENTITY_ID, signing_identity, now=NOW)


def attributes(xml: bytes) -> dict[str, list[str]]:
    root = etree.fromstring(xml)
    return {
        a.get("Name"): [v.text for v in a.findall("saml:AttributeValue", NS)]
        for a in root.iterfind(".//saml:Attribute", NS)
    }


def test_signature_verifies_against_the_brokers_certificate_and_covers_the_assertion(response, signing_identity):
    verified = XMLVerifier().verify(response, x509_cert=signing_identity.certificate_pem)
    assert verified.signed_xml.tag == f"{{{NS['saml']}}}Assertion"
    # An independent implementation (xmlsec, through python3-saml) agrees.
    assert OneLogin_Saml2_Utils.validate_sign(
        response, cert=signing_identity.certificate_pem, xpath="//saml:Assertion/ds:Signature"
    )


def test_signature_sits_right_after_the_assertion_issuer_with_exclusive_c14n(response):
    assertion = etree.fromstring(response).find("saml:Assertion", NS)
    assert [child.tag.split("}")[1] for child in assertion][:3] == ["Issuer", "Signature", "Subject"]
    methods = assertion.xpath("ds:Signature/ds:SignedInfo/*/@Algorithm", namespaces=NS)
    assert "http://www.w3.org/2001/10/xml-exc-c14n#" in methods
    assert "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" in methods


def test_attributes_are_what_sts_reads(response, developer):
    values = attributes(response)
    assert values[AWS_ATTRIBUTE + "Role"] == [f"{developer.role_arn},{developer.provider_arn}"]
    assert values[AWS_ATTRIBUTE + "RoleSessionName"] == ["bob@example.com"]
    assert values[AWS_ATTRIBUTE + "SourceIdentity"] == ["bob@example.com"]  # unique across upstreams, not "bob"
    assert values[AWS_ATTRIBUTE + "SessionDuration"] == [str(8 * 3600)]
    assert values[AWS_ATTRIBUTE + "PrincipalTag:username"] == ["bob@example.com"]
    assert values[AWS_ATTRIBUTE + "PrincipalTag:email"] == ["bob@example.com"]
    assert values[AWS_ATTRIBUTE + "PrincipalTag:department"] == ["R_D _Platform_"]


def test_envelope_addresses_aws_for_five_minutes_as_a_bearer_assertion(response, bob):
    root = etree.fromstring(response)
    assert root.get("Destination") == AWS_SAML_ENDPOINT
    assert root.findtext("saml:Issuer", namespaces=NS) == BROKER_ENTITY_ID
    assertion = root.find("saml:Assertion", NS)
    assert assertion.findtext("saml:Issuer", namespaces=NS) == BROKER_ENTITY_ID
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    assert (name_id.text, name_id.get("Format")) == (
        bob.subject,
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    )
    confirmation = assertion.find("saml:Subject/saml:SubjectConfirmation", NS)
    assert confirmation.get("Method") == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
    data = confirmation.find("saml:SubjectConfirmationData", NS)
    assert (data.get("Recipient"), data.get("NotOnOrAfter")) == (AWS_SAML_ENDPOINT, "2027-01-15T08:05:00Z")
    conditions = assertion.find("saml:Conditions", NS)
    assert (conditions.get("NotBefore"), conditions.get("NotOnOrAfter")) == (
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:05:00Z",
    )
    assert conditions.findtext("saml:AudienceRestriction/saml:Audience", namespaces=NS) == AWS_SAML_ENDPOINT


def test_a_tampered_assertion_fails_verification(response, access, person, signing_identity):
    admin = person("eve", groups=("aws-admins",))  # whose role an attacker would swap in
    admin_role = check_entitlement(admin, access, "111111111111", "AdministratorAccess").role_arn
    root = etree.fromstring(response)
    role = root.find(f".//saml:Attribute[@Name='{AWS_ATTRIBUTE}Role']/saml:AttributeValue", NS)
    role.text = admin_role + role.text[role.text.index(",") :]
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(etree.tostring(root), x509_cert=signing_identity.certificate_pem)


def test_another_keys_certificate_does_not_verify(response, tmp_path):
    stranger = load_or_create_signing_identity(tmp_path, "stranger", "stranger")
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(response, x509_cert=stranger.certificate_pem)


def test_user_data_is_escaped_text_never_markup(access, person, signing_identity):
    mallory = person(
        "mallory",
        email='m"</saml:AttributeValue><x>@example.com',
        display_name="<b>",
        subject="</saml:NameID><saml:NameID>admin",
        groups=("engineering",),
    )
    entitlement = check_entitlement(mallory, access, "111111111111", "EmployeeDirectoryDeveloper")
    xml = build_saml_response(mallory, entitlement, BROKER_ENTITY_ID, signing_identity)
    XMLVerifier().verify(xml, x509_cert=signing_identity.certificate_pem)
    root = etree.fromstring(xml)
    assert root.findtext(".//saml:NameID", namespaces=NS) == mallory.subject
    assert len(root.findall(".//saml:NameID", NS)) == 1
    name = attributes(xml)[AWS_ATTRIBUTE + "RoleSessionName"][0]
    assert name.startswith("m___saml_AttributeValue__x_@example.com,") and len(name) <= 64


def test_tag_values_fit_aws_alphabet_and_length():
    assert tag_value("Ünïcode Team: a/b=c+d-e@f_g.h") == "Ünïcode Team: a/b=c+d-e@f_g.h"
    assert tag_value("tab\there; semi") == "tab_here_ semi"
    assert len(tag_value("x" * 500)) == 256


def test_session_names_fit_aws_alphabet_and_length(person):
    assert aws_name(person("bob")) == "bob@example.com"
    quoted = aws_name(person("bob", email="bob.o'neil@example.com"))
    assert re.fullmatch(r"bob\.o_neil@example\.com,[0-9a-f]{16}", quoted)  # changed: a hash keeps it unique
    long = aws_name(person("a", email="a" * 100 + "@example.com"))
    assert len(long) == 64 and re.fullmatch(r"a{47},[0-9a-f]{16}", long)
    with pytest.raises(IdentityRefused, match="no email address"):
        aws_name(person("b", email=""))


@pytest.mark.parametrize(
    "first, second",
    [
        ("bob@example.com", "bob@partner.example"),  # the same username at two upstreams: `bob` before
        ("o'brien@example.com", "o_brien@example.com"),  # the same once the quote is replaced
        ("x" * 60 + "1@example.com", "x" * 60 + "2@example.com"),  # the same once cut to 64
        ("ünïcode@example.com", "_n_code@example.com"),
    ],
)
def test_aws_names_are_unique_per_person(person, first, second):
    one, two = person("p", email=first), person("p", email=second)
    assert aws_person_name(one) != aws_person_name(two) and aws_person_tag(one) != aws_person_tag(two)
    for value in (aws_person_name(one), aws_person_name(two)):
        assert re.fullmatch(r"[\w+=,.@-]{2,64}", value, re.ASCII)
    for value in (aws_person_tag(one), aws_person_tag(two)):
        assert re.fullmatch(r"[\w .:/=+@-]{1,256}", value)


def test_a_stand_in_never_equals_another_persons_plain_address(person):
    """The separator (`,` in names, `:` in tags) never occurs in an address the connectors accept."""
    assert aws_person_name(person("p", email="o'brien@example.com")).count(",") == 1
    assert aws_person_tag(person("p", email="a!b@example.com")).count(":") == 1
    assert aws_person_tag(person("p", email="ünïcode@example.com")) == "ünïcode@example.com"  # tags take letters


def test_sign_element_leaves_its_input_unchanged(response, signing_identity):
    root = etree.fromstring(response)
    assertion = root.find("saml:Assertion", NS)
    assertion.remove(assertion.find("ds:Signature", NS))
    before = etree.tostring(root)
    signed = sign_element(root, assertion.get("ID"), signing_identity, after=assertion.find("saml:Issuer", NS))
    assert etree.tostring(root) == before
    XMLVerifier().verify(signed, x509_cert=signing_identity.certificate_pem)


def test_metadata_describes_the_broker_as_idp(signing_identity):
    metadata = idp_metadata_xml(BROKER_ENTITY_ID, signing_identity, "https://broker.example.test/saml/sso")
    assert len(metadata) >= 1000  # IAM (and moto) refuse shorter metadata documents
    root = etree.fromstring(metadata.encode())
    assert root.get("entityID") == BROKER_ENTITY_ID
    idp = root.find("md:IDPSSODescriptor", NS)
    certificate = idp.findtext(
        "md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS
    )
    assert base64.b64decode(certificate) == base64.b64decode(signing_identity.certificate_base64)
    assert {s.get("Location") for s in idp.findall("md:SingleSignOnService", NS)} == {
        "https://broker.example.test/saml/sso"
    }
