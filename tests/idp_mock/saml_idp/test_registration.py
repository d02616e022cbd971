"""Run-time SP registration (POST metadata to /saml/admin/service-providers) and the IdP's own metadata."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import requests
from cryptography import x509
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from tests.support.idp_client import is_login_page
from tests.support.saml_sp import (
    ADMIN_TOKEN,
    OneLoginSP,
    new_sp_identity,
    post_form,
    register_sp,
    sign_in_through,
)

NS = {"md": SAML.NS_MD, "ds": SAML.NS_DS}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return tmp_path_factory.mktemp("sp-keys")


@pytest.fixture
def sp(idp, keys):
    return OneLoginSP(idp.url, new_sp_identity(keys))


# --- the IdP's metadata -------------------------------------------------------------------------------


def test_idp_metadata_describes_endpoints_formats_and_the_persisted_certificate(idp):
    answer = requests.get(f"{idp.url}/saml/metadata")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/samlmetadata+xml")
    root = OneLogin_Saml2_XML.validate_xml(answer.content, "saml-schema-metadata-2.0.xsd")
    assert isinstance(root, etree._Element), root
    assert root.get("entityID") == f"{idp.url}/saml/metadata"
    descriptor = root.find("md:IDPSSODescriptor", NS)
    for service in ("SingleSignOnService", "SingleLogoutService"):
        endpoints = {(e.get("Binding"), e.get("Location")) for e in descriptor.findall(f"md:{service}", NS)}
        path = "/saml/sso" if service == "SingleSignOnService" else "/saml/slo"
        assert endpoints == {(SAML.BINDING_HTTP_REDIRECT, idp.url + path), (SAML.BINDING_HTTP_POST, idp.url + path)}
    assert [e.text for e in descriptor.findall("md:NameIDFormat", NS)] == [
        SAML.NAMEID_PERSISTENT,
        SAML.NAMEID_EMAIL_ADDRESS,
        SAML.NAMEID_UNSPECIFIED,
    ]
    published = descriptor.findtext(
        "md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS
    )
    on_disk = x509.load_pem_x509_certificate((Path(idp.env["IDP_INSTANCE_DIR"]) / "saml-signing.crt").read_bytes())
    assert x509.load_der_x509_certificate(base64.b64decode(published)) == on_disk
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(answer.text)["idp"]
    assert parsed["entityId"] == f"{idp.url}/saml/metadata" and parsed["x509cert"]
    # The IdP requires signed AuthnRequests of every SP registered with a signing certificate: it says so.
    assert descriptor.get("WantAuthnRequestsSigned") == "true"


def test_idp_metadata_for_one_sp_says_whether_its_requests_must_be_signed(idp, sp):
    """SAML libraries that compare WantAuthnRequestsSigned with their own AuthnRequestsSigned (samlify) read
    the metadata meant for them: true for an SP with a signing certificate, false for one without."""
    unsigned = OneLoginSP(sp.idp_url, None)
    for client, expected in ((sp, "true"), (unsigned, "false")):
        assert register_sp(idp.url, client.metadata()).status_code == 201
        answer = requests.get(f"{idp.url}/saml/metadata", params={"sp": client.entity_id}, timeout=10)
        root = etree.fromstring(answer.content)
        assert root.find("md:IDPSSODescriptor", NS).get("WantAuthnRequestsSigned") == expected
    aws = requests.get(f"{idp.url}/saml/metadata", params={"sp": "urn:amazon:webservices"}, timeout=10)
    assert b'WantAuthnRequestsSigned="false"' in aws.content  # configured without a certificate
    unknown = requests.get(f"{idp.url}/saml/metadata", params={"sp": "https://nobody.example"}, timeout=10)
    assert unknown.status_code == 404


def test_signing_key_survives_a_restart(tmp_path):
    from idp_mock.app import create_app
    from idp_mock.settings import load_settings

    first = create_app(load_settings(instance_dir=tmp_path)).test_client().get("/saml/metadata").data
    second = create_app(load_settings(instance_dir=tmp_path)).test_client().get("/saml/metadata").data
    assert first == second and b"X509Certificate" in first


# --- registration -------------------------------------------------------------------------------------


def test_registration_answers_201_and_the_sp_can_sign_in(idp, sp):
    answer = register_sp(idp.url, sp.metadata())
    assert answer.status_code == 201 and answer.json() == {"entity_id": sp.entity_id}
    url, request_id = sp.login_url()
    http = requests.Session()
    sp.accept(post_form(sign_in_through(http, idp.url, http.get(url, allow_redirects=False), "bob")), request_id)


def test_registering_again_replaces_the_sp(idp, keys):
    unsigned = OneLoginSP(idp.url, None)
    assert register_sp(idp.url, unsigned.metadata()).status_code == 201
    url, _ = unsigned.login_url()
    assert is_login_page(requests.get(url, allow_redirects=False))  # unsigned requests welcome
    signing = OneLoginSP(idp.url, new_sp_identity(keys), entity_id=unsigned.entity_id)
    assert register_sp(idp.url, signing.metadata()).status_code == 201
    answer = requests.get(unsigned.login_url()[0], allow_redirects=False)
    assert answer.status_code == 400 and "must sign its requests" in answer.text


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", "Bearer "])
def test_registration_needs_the_admin_token(idp, sp, header):
    headers = {"Authorization": header} if header else {}
    answer = requests.post(f"{idp.url}/saml/admin/service-providers", data=sp.metadata(), headers=headers)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json()["error"] == "unauthorized"


def test_an_sp_from_the_config_file_cannot_be_replaced(idp):
    portal = OneLoginSP(idp.url, None, entity_id="http://localhost:8000/saml/metadata")
    answer = register_sp(idp.url, portal.metadata())
    assert answer.status_code == 409 and "config file" in answer.json()["error_description"]


def edited(metadata: str, old: str, new: str) -> str:
    assert old in metadata
    return metadata.replace(old, new)


def with_doctype(metadata: str, doctype: str) -> str:
    return '<?xml version="1.0"?>' + doctype + re.sub(r"^<\?xml[^>]*\?>", "", metadata.strip())


BAD_METADATA = {
    "not XML": lambda sp: "this is not metadata",
    "DOCTYPE": lambda sp: with_doctype(sp.metadata(), "<!DOCTYPE x>"),
    "external entity": lambda sp: with_doctype(
        edited(sp.metadata(), f'entityID="{sp.entity_id}"', 'entityID="&e;"'),
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    ),
    "not an EntityDescriptor": lambda sp: '<x xmlns="urn:oasis:names:tc:SAML:2.0:metadata"/>',
    "schema-invalid": lambda sp: edited(sp.metadata(), 'index="1"', 'index="one"'),
    "no POST ACS": lambda sp: edited(sp.metadata(), SAML.BINDING_HTTP_POST, SAML.BINDING_HTTP_ARTIFACT),
    "ACS not http(s)": lambda sp: edited(sp.metadata(), sp.acs_url, "javascript:alert(1)"),
    "bad entityID": lambda sp: edited(sp.metadata(), f'entityID="{sp.entity_id}"', 'entityID="not a url"'),
    "bad certificate": lambda sp: edited(sp.metadata(), sp.identity.certificate_base64[:40], "AAAA"),
    "signed requests without a certificate": lambda sp: edited(
        OneLoginSP(sp.idp_url, None).metadata(), 'AuthnRequestsSigned="false"', 'AuthnRequestsSigned="true"'
    ),
    "unsupported NameID format": lambda sp: edited(sp.metadata(), SAML.NAMEID_PERSISTENT, SAML.NAMEID_TRANSIENT),
    "too large": lambda sp: edited(
        sp.metadata(), "</md:EntityDescriptor>", "<!--" + "x" * 70_000 + "--></md:EntityDescriptor>"
    ),
}


@pytest.mark.parametrize("case", BAD_METADATA)
def test_bad_metadata_gets_a_clear_400(idp, sp, case):
    answer = register_sp(idp.url, BAD_METADATA[case](sp))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_metadata" and answer.json()["error_description"]
    assert "root:" not in answer.text


def test_a_schema_error_names_the_line_and_the_element(idp, sp):
    metadata = sp.metadata()
    line = next(number for number, text in enumerate(metadata.splitlines(), 1) if 'index="1"' in text)
    answer = register_sp(idp.url, edited(metadata, 'index="1"', 'index="one"'))
    description = answer.json()["error_description"]
    assert answer.status_code == 400 and f"line {line}:" in description, description
    assert "AssertionConsumerService" in description and "index" in description and "'one'" in description
    assert "{urn:" not in description  # element names without their namespace URIs


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"sign": "never"}, "sign must be one of"),
        ({"encrypt_assertion": "yes"}, "encrypt_assertion must be true or false"),
        ({"colour": "blue"}, "Unknown option"),
    ],
)
def test_bad_options_get_a_clear_400(idp, sp, options, problem):
    answer = register_sp(idp.url, sp.metadata(), **options)
    assert answer.status_code == 400 and problem in answer.json()["error_description"]


def test_encryption_needs_a_certificate(idp):
    answer = register_sp(idp.url, OneLoginSP(idp.url, None).metadata(), encrypt_assertion=True)
    assert answer.status_code == 400 and "encrypt_assertion needs" in answer.json()["error_description"]


def test_signed_assertions_wanted_by_metadata_conflict_with_sign_response(idp, sp):
    assert 'WantAssertionsSigned="true"' in sp.metadata()
    answer = register_sp(idp.url, sp.metadata(), sign="response")
    assert answer.status_code == 400 and "signed assertions" in answer.json()["error_description"]


def test_oversized_body_is_refused(idp):
    answer = register_sp(idp.url, "x" * 300_000)
    assert answer.status_code == 413 and answer.json()["error"] == "invalid_request"  # the API's JSON, not a page
    wrong = requests.get(f"{idp.url}/saml/admin/service-providers", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"] == "invalid_request" and wrong.headers["Allow"]


def test_a_registration_reaches_every_worker(private_idp, keys):
    """The registry lives in the shared state store: on a two-worker IdP, fresh connections (spread over both
    workers) all know the SP."""
    sp = OneLoginSP(private_idp.url, new_sp_identity(keys))
    sp.register()
    for _ in range(8):
        url, _ = sp.login_url()
        answer = requests.get(url, allow_redirects=False, headers={"Connection": "close"})
        assert is_login_page(answer)
