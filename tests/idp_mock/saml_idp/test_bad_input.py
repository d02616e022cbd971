"""Hostile or broken SAML requests: each gets a readable HTML 4xx page, never a 500 and never a Response."""

from __future__ import annotations

import base64
import time
import uuid
import zlib

import pytest
import requests

from tests.support.idp_client import is_login_page
from tests.support.saml_sp import (
    OneLoginSP,
    authn_request_xml,
    deflate_base64,
    http_post_binding,
    new_sp_identity,
    signed_redirect_query,
)

# An SP registered without a certificate, so its unsigned requests pass the signature step and reach the
# checks these tests bend. (The portal signs its requests: see test_saml_sp_metadata.py.)
APP = f"https://app-{uuid.uuid4().hex[:8]}.example.test/saml/metadata"


@pytest.fixture(scope="module", autouse=True)
def app(idp):
    app = OneLoginSP(idp.url, None, entity_id=APP)
    app.register()
    return app


@pytest.fixture(scope="module")
def sp(idp, tmp_path_factory):
    sp = OneLoginSP(idp.url, new_sp_identity(tmp_path_factory.mktemp("sp")))
    sp.register()
    return sp


def assert_refused(answer: requests.Response, phrase: str, status: int = 400) -> None:
    assert answer.status_code == status, answer.text[:1000]
    assert answer.headers["Content-Type"].startswith("text/html")
    assert phrase in answer.text
    assert "SAMLResponse" not in answer.text


def redirect(idp, xml: bytes | str, **params) -> requests.Response:
    return requests.get(
        f"{idp.url}/saml/sso", params={"SAMLRequest": deflate_base64(xml), **params}, allow_redirects=False
    )


def post(idp, xml: bytes | str, **params) -> requests.Response:
    return http_post_binding(requests.Session(), f"{idp.url}/saml/sso", "SAMLRequest", xml, **params)


def app_request(idp, **kwargs) -> bytes:
    return authn_request_xml(APP, f"{idp.url}/saml/sso", **kwargs)


def test_a_well_formed_request_is_accepted(idp):
    """The baseline the other tests bend: the same request, unchanged, is answered with the login form."""
    answer = redirect(idp, app_request(idp))
    assert is_login_page(answer)


@pytest.mark.parametrize("send", [redirect, post])
def test_unknown_issuer(idp, send):
    assert_refused(
        send(idp, authn_request_xml("https://evil.example.test/sp", f"{idp.url}/saml/sso")),
        "not registered with Example Corp",
    )


def test_missing_issuer(idp):
    xml = app_request(idp).replace(b"<saml:Issuer>" + APP.encode() + b"</saml:Issuer>", b"")
    assert_refused(redirect(idp, xml), "no Issuer")


@pytest.mark.parametrize("send", [redirect, post])
def test_acs_url_not_registered_for_the_sp(idp, send):
    xml = app_request(idp, AssertionConsumerServiceURL="https://attacker.example.test/acs")
    assert_refused(send(idp, xml), "not registered for it")


def test_acs_url_of_another_sp_is_refused(idp, sp):
    xml = app_request(idp, AssertionConsumerServiceURL=sp.acs_url)
    assert_refused(redirect(idp, xml), "not registered for it")


def test_acs_index_not_registered(idp):
    assert_refused(redirect(idp, app_request(idp, AssertionConsumerServiceIndex="7")), "Index is not registered")


def test_response_binding_other_than_post_is_refused(idp):
    xml = app_request(idp, ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact")
    assert_refused(redirect(idp, xml), "HTTP-POST")


def test_unsigned_redirect_request_from_an_sp_with_a_certificate(idp, sp):
    url, _ = sp.login_url()
    unsigned = url.split("&SigAlg=")[0]
    assert_refused(requests.get(unsigned, allow_redirects=False), "must sign its requests")


def test_tampered_redirect_request(idp, sp):
    url, _ = sp.login_url(relay_state="/a")
    assert_refused(
        requests.get(url.replace("RelayState=%2Fa", "RelayState=%2Fb"), allow_redirects=False), "signature is not valid"
    )


def test_redirect_request_signed_with_another_key(idp, sp, tmp_path):
    xml, _ = sp.authn_request_xml(signed=False)
    query = signed_redirect_query(new_sp_identity(tmp_path), "SAMLRequest", xml.encode())
    assert_refused(requests.get(f"{idp.url}/saml/sso?{query}", allow_redirects=False), "signature is not valid")


def test_redirect_request_signed_with_sha1_is_refused(idp, sp):
    from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML

    xml, _ = sp.authn_request_xml(signed=False)
    query = signed_redirect_query(sp.identity, "SAMLRequest", xml.encode(), sig_alg=SAML.RSA_SHA1)
    assert_refused(requests.get(f"{idp.url}/saml/sso?{query}", allow_redirects=False), "algorithm")


def test_unsigned_post_request_from_an_sp_with_a_certificate(idp, sp):
    xml, _ = sp.authn_request_xml(signed=False)
    assert_refused(post(idp, xml), "must sign its requests")


def test_tampered_post_request(idp, sp):
    xml, _ = sp.authn_request_xml()
    assert_refused(post(idp, xml.replace(sp.acs_url, sp.acs_url + "x")), "signature is not valid")


def test_post_request_signed_with_another_key(idp, sp, tmp_path):
    impostor = OneLoginSP(idp.url, new_sp_identity(tmp_path), entity_id=sp.entity_id)
    xml, _ = impostor.authn_request_xml()
    assert_refused(post(idp, xml), "signature is not valid")


def test_issue_instant_far_in_the_past(idp):
    assert_refused(redirect(idp, app_request(idp, issue_instant=time.time() - 3600)), "expired")


def test_issue_instant_in_the_future(idp):
    assert_refused(redirect(idp, app_request(idp, issue_instant=time.time() + 3600)), "in the future")


def test_destination_of_another_server(idp):
    xml = authn_request_xml(APP, "https://other-idp.example.test/saml/sso")
    assert_refused(redirect(idp, xml), "Destination does not match")


def test_replayed_request(idp):
    xml = app_request(idp)
    assert is_login_page(redirect(idp, xml))
    assert_refused(redirect(idp, xml), "already used")


def test_message_of_the_wrong_kind(idp):
    xml = app_request(idp).replace(b"AuthnRequest", b"LogoutRequest")
    assert_refused(redirect(idp, xml), "not a valid SAML 2.0 protocol message")


def test_schema_invalid_request(idp):
    xml = app_request(idp).replace(b'Version="2.0"', b'Version="2.0" ForceAuthn="perhaps"')
    assert_refused(redirect(idp, xml), "not a valid SAML 2.0 protocol message")


@pytest.mark.parametrize("send", [redirect, post])
def test_truncated_xml(idp, send):
    assert_refused(send(idp, app_request(idp)[:-20]), "not well-formed XML")


def test_not_xml_at_all(idp):
    assert_refused(post(idp, b"hello, this is not XML"), "not well-formed XML")


@pytest.mark.parametrize("send", [redirect, post])
def test_wrong_base64(idp, send):
    if send is redirect:
        answer = requests.get(f"{idp.url}/saml/sso", params={"SAMLRequest": "%%%not base64!"}, allow_redirects=False)
    else:
        answer = requests.post(f"{idp.url}/saml/sso", data={"SAMLRequest": "%%%not base64!"}, allow_redirects=False)
    assert_refused(answer, "not valid base64")


def test_wrong_deflate(idp):
    not_deflate = base64.b64encode(b"\xff\xfe this is not a deflate stream").decode()
    answer = requests.get(f"{idp.url}/saml/sso", params={"SAMLRequest": not_deflate}, allow_redirects=False)
    assert_refused(answer, "not valid DEFLATE")


def test_truncated_deflate(idp):
    whole = base64.b64decode(deflate_base64(app_request(idp)))
    answer = requests.get(
        f"{idp.url}/saml/sso", params={"SAMLRequest": base64.b64encode(whole[:-10]).decode()}, allow_redirects=False
    )
    assert_refused(answer, "truncated")


@pytest.mark.parametrize("send", [redirect, post])
def test_doctype(idp, send):
    xml = b'<?xml version="1.0"?>\n<!DOCTYPE AuthnRequest>\n' + app_request(idp)
    assert_refused(send(idp, xml), "not allowed")


@pytest.mark.parametrize("send", [redirect, post])
def test_external_entity(idp, send):
    xml = b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n' + app_request(
        idp
    ).replace(APP.encode(), b"&xxe;")
    answer = send(idp, xml)
    assert_refused(answer, "not allowed")
    assert "root:" not in answer.text


@pytest.mark.parametrize("send", [redirect, post])
def test_entity_expansion(idp, send):
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    xml = f'<?xml version="1.0"?>\n<!DOCTYPE r [{entities}]>\n'.encode() + app_request(idp).replace(
        APP.encode(), b"&l9;"
    )
    started = time.monotonic()
    assert_refused(send(idp, xml), "request was refused")  # libxml2 or the DTD ban, whichever trips first
    assert time.monotonic() - started < 2


def test_oversized_post_message(idp):
    padding = b"<!--" + b"x" * 100_000 + b"-->"
    assert_refused(post(idp, app_request(idp) + padding), "too large")


def test_oversized_post_body(idp):
    answer = requests.post(f"{idp.url}/saml/sso", data={"SAMLRequest": "A" * 300_000}, allow_redirects=False)
    assert_refused(answer, "too large", status=413)


def test_deflate_bomb(idp):
    bomb = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = bomb.compress(app_request(idp) + b" " * 1_000_000) + bomb.flush()
    answer = requests.get(
        f"{idp.url}/saml/sso", params={"SAMLRequest": base64.b64encode(data).decode()}, allow_redirects=False
    )
    assert_refused(answer, "too large")


def test_relay_state_too_long(idp):
    assert_refused(redirect(idp, app_request(idp), RelayState="r" * 2000), "RelayState is longer")


def test_duplicate_parameters(idp):
    encoded = deflate_base64(app_request(idp))
    answer = requests.get(
        f"{idp.url}/saml/sso", params=[("SAMLRequest", encoded), ("SAMLRequest", encoded)], allow_redirects=False
    )
    assert_refused(answer, "more than once")


def test_no_request_at_all(idp):
    assert_refused(requests.get(f"{idp.url}/saml/sso"), "carries no SAMLRequest")
