"""A second, independent SP implementation: pysaml2 (with xmlsec1) trusts the IdP from its published metadata."""

from __future__ import annotations

import base64
import re
import shutil
from html import unescape

import pytest
import requests
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from idp_mock.session import ACR_PASSWORD
from tests.support.idp_client import form_fields
from tests.support.saml_sp import (
    XMLSEC1,
    new_sp_identity,
    post_form,
    pysaml2_client,
    register_sp,
    sign_in_through,
)


@pytest.fixture(scope="module")
def client(idp, tmp_path_factory):
    # Never skipped: `./run test` installs xmlsec1, and a missing binary must fail loudly.
    assert shutil.which(XMLSEC1), "pysaml2 needs Debian's xmlsec1 (./run test installs it)"
    directory = tmp_path_factory.mktemp("pysaml2")
    client, metadata = pysaml2_client(idp.url, new_sp_identity(directory), directory)
    assert register_sp(idp.url, metadata).status_code == 201
    return client


def idp_entity(idp):
    return f"{idp.url}/saml/metadata"


def login(idp, client, http, start, request_id, username):
    posted = post_form(sign_in_through(http, idp.url, start, username))
    response = client.parse_authn_request_response(
        posted.fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={request_id: "/"}
    )
    assert response is not None and response.in_response_to == request_id
    return response


def test_pysaml2_redirect_login(idp, client):
    request_id, info = client.prepare_for_authenticate(
        entityid=idp_entity(idp), relay_state="/x", binding=BINDING_HTTP_REDIRECT
    )
    location = dict(info["headers"])["Location"]
    assert "Signature=" in location  # pysaml2 signs its AuthnRequests; the IdP checks them
    http = requests.Session()
    response = login(idp, client, http, http.get(location, allow_redirects=False), request_id, "alice")
    identity = response.get_identity()
    assert identity["email"] == ["alice@example.com"]
    assert identity["displayName"] == ["Alice Anderson"]
    assert sorted(identity["groups"]) == ["aws-admins", "engineering"]
    assert response.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == ACR_PASSWORD
    assert response.assertion.subject.name_id.text  # persistent subject


def test_pysaml2_post_login(idp, client):
    request_id, info = client.prepare_for_authenticate(
        entityid=idp_entity(idp), relay_state="/y", binding=BINDING_HTTP_POST
    )
    action = unescape(re.search(r'action="([^"]*)"', info["data"]).group(1))
    fields = form_fields(info["data"])
    signature = etree.fromstring(base64.b64decode(fields["SAMLRequest"])).find(f"{{{SAML.NS_DS}}}Signature")
    assert signature is not None  # signed enveloped (by xmlsec1); the IdP checks it
    http = requests.Session()
    start = http.post(action, data=fields, allow_redirects=False)
    response = login(idp, client, http, start, request_id, "bob")
    assert response.get_identity()["groups"] == ["engineering"]


def test_pysaml2_decrypts_an_encrypted_assertion(idp, tmp_path):
    """The encrypted Assertion carries its own namespace declarations: pysaml2 decrypts it into a document of
    its own (it failed with "unbound prefix" when they were declared only on the enclosing Response)."""
    client, metadata = pysaml2_client(idp.url, new_sp_identity(tmp_path), tmp_path, decrypt=True)
    assert register_sp(idp.url, metadata, encrypt_assertion=True).status_code == 201
    request_id, info = client.prepare_for_authenticate(entityid=idp_entity(idp), binding=BINDING_HTTP_REDIRECT)
    http = requests.Session()
    start = http.get(dict(info["headers"])["Location"], allow_redirects=False)
    posted = post_form(sign_in_through(http, idp.url, start, "carol"))
    assert b"EncryptedAssertion" in posted.xml and b"<saml:Assertion" not in posted.xml
    response = client.parse_authn_request_response(
        posted.fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={request_id: "/"}
    )
    assert response is not None and response.in_response_to == request_id
    assert response.get_identity()["email"] == ["carol@example.com"]
    assert response.assertion.subject.name_id.text
