"""Single logout, and the one IdP session that serves SAML and OIDC alike."""

from __future__ import annotations

import base64

import pytest
import requests
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from tests.support.idp_client import answer_consent, form_fields, is_consent_page, is_login_page
from tests.support.oidc_rp import authorization, redirect_params, register_client, sign_in
from tests.support.saml_sp import (
    OneLoginSP,
    http_post_binding,
    new_sp_identity,
    post_form,
    sign_in_through,
)

NS = {"samlp": SAML.NS_SAMLP}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return tmp_path_factory.mktemp("sp-keys")


@pytest.fixture(scope="module")
def sp(idp, keys):
    sp = OneLoginSP(idp.url, new_sp_identity(keys))
    sp.register()
    return sp


def saml_login(idp, sp, http, username="alice"):
    url, request_id = sp.login_url()
    return sp.accept(
        post_form(sign_in_through(http, idp.url, http.get(url, allow_redirects=False), username)), request_id
    )


def signed_in(idp, http) -> bool:
    return "You are signed in as" in http.get(f"{idp.url}/").text


def test_sp_initiated_logout_over_redirect_ends_the_idp_session(idp, sp):
    http = requests.Session()
    auth = saml_login(idp, sp, http)
    assert signed_in(idp, http)
    url, request_id = sp.logout_url(auth.get_nameid(), auth.get_session_index(), relay_state="/bye")
    answer = http.get(url, allow_redirects=False)
    assert answer.status_code == 303
    sp.accept_logout_response(answer.headers["Location"], request_id)  # signed, InResponseTo, Success
    assert "RelayState=%2Fbye" in answer.headers["Location"]
    assert not signed_in(idp, http)
    url, _ = sp.login_url()
    assert is_login_page(http.get(url, allow_redirects=False))


def test_sp_initiated_logout_over_post(idp, sp):
    http = requests.Session()
    auth = saml_login(idp, sp, http)
    xml, request_id = sp.logout_request_xml(auth.get_nameid())
    answer = http_post_binding(http, f"{idp.url}/saml/slo", "SAMLRequest", xml)
    assert answer.status_code == 303
    sp.accept_logout_response(answer.headers["Location"], request_id)
    assert not signed_in(idp, http)


def test_logout_response_by_post_to_an_sp_that_wants_it(idp, keys):
    sp = OneLoginSP(idp.url, new_sp_identity(keys), slo_binding=SAML.BINDING_HTTP_POST)
    sp.register()
    http = requests.Session()
    auth = saml_login(idp, sp, http, "bob")
    url, request_id = sp.logout_url(auth.get_nameid(), auth.get_session_index())
    posted = post_form(http.get(url, allow_redirects=False))
    assert posted.action == sp.slo_url
    xml = base64.b64decode(posted.fields["SAMLResponse"])
    idp_cert = sp.settings.get_idp_cert()
    assert OneLogin_Saml2_Utils.validate_sign(
        xml, idp_cert, xpath="/samlp:LogoutResponse/ds:Signature", raise_exceptions=True
    )
    response = etree.fromstring(xml)
    assert response.get("InResponseTo") == request_id and response.get("Destination") == sp.slo_url
    assert response.find("samlp:Status/samlp:StatusCode", NS).get("Value") == SAML.STATUS_SUCCESS
    assert not signed_in(idp, http)


def test_unsigned_logout_request_from_an_sp_with_a_certificate_is_refused(idp, sp):
    http = requests.Session()
    auth = saml_login(idp, sp, http)
    xml, _ = sp.logout_request_xml(auth.get_nameid(), signed=False)
    answer = http_post_binding(http, f"{idp.url}/saml/slo", "SAMLRequest", xml)
    assert answer.status_code == 400 and "must sign its requests" in answer.text
    assert signed_in(idp, http)


def test_logout_request_for_someone_else_leaves_the_session_alone(idp, sp):
    http = requests.Session()
    saml_login(idp, sp, http, "carol")
    url, _ = sp.logout_url("not-carols-name-id", None)
    answer = http.get(url, allow_redirects=False)
    location = answer.headers["Location"]
    response = etree.fromstring(
        OneLogin_Saml2_Utils.decode_base64_and_inflate(
            requests.utils.unquote(location.split("SAMLResponse=")[1].split("&")[0])
        )
    )
    assert response.find("samlp:Status/samlp:StatusCode", NS).get("Value") == SAML.STATUS_REQUESTER
    assert signed_in(idp, http)


def test_logout_request_without_a_session_succeeds(idp, sp):
    url, request_id = sp.logout_url("anyone", None)
    answer = requests.get(url, allow_redirects=False)
    sp.accept_logout_response(answer.headers["Location"], request_id)


def test_a_logout_response_is_not_expected(idp):
    answer = requests.get(f"{idp.url}/saml/slo", params={"SAMLResponse": "x"})
    assert answer.status_code == 400 and "expects no logout response" in answer.text


def test_signing_out_at_the_idp_ends_saml_sign_in_too(idp, sp):
    http = requests.Session()
    saml_login(idp, sp, http)
    page = http.get(f"{idp.url}/logout")
    assert http.post(f"{idp.url}/logout", data=form_fields(page.text), allow_redirects=False).status_code == 303
    url, _ = sp.login_url()
    assert is_login_page(http.get(url, allow_redirects=False))


def test_a_saml_login_serves_an_oidc_authorization_without_a_password(idp, sp):
    http = requests.Session()
    saml_login(idp, sp, http, "bob")
    answer = sign_in(http, idp.url, authorization(register_client(idp.url)), username=None)
    assert "code" in redirect_params(answer)  # no login page on the way


def test_an_oidc_login_serves_a_saml_request_without_a_password(idp, sp):
    http = requests.Session()
    client = register_client(idp.url)
    assert "code" in redirect_params(sign_in(http, idp.url, authorization(client), "carol"))
    url, request_id = sp.login_url()
    answer = http.get(url, allow_redirects=False)
    assert answer.status_code == 200 and not is_login_page(answer)  # no password asked
    if is_consent_page(answer):  # carol's first visit to this SP (whatever ran before in this module)
        answer = answer_consent(http, idp.url, answer)
    assert sp.accept(post_form(answer), request_id).get_attributes()["email"] == ["carol@example.com"]
