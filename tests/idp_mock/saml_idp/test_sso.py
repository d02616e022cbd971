"""SAML single sign-on against the real IdP, every Response validated by python3-saml in strict mode."""

from __future__ import annotations

import pytest
import requests
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML

from idp_mock.directory import load_directory
from idp_mock.session import ACR_MFA, ACR_PASSWORD
from idp_mock.settings import DEFAULT_CONFIG_DIR
from tests.support.idp_client import ERIN_TOTP_SECRET, answer_consent, form_fields, is_consent_page, is_login_page
from tests.support.saml_sp import (
    OneLoginSP,
    http_post_binding,
    new_sp_identity,
    post_form,
    sign_in_through,
)

NS = {"samlp": SAML.NS_SAMLP, "saml": SAML.NS_SAML, "ds": SAML.NS_DS}
DIRECTORY = load_directory(DEFAULT_CONFIG_DIR / "directory.yaml")
AWS = "https://aws.amazon.com/SAML/Attributes/"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return tmp_path_factory.mktemp("sp-keys")


@pytest.fixture(scope="module")
def sp(idp, keys):
    """A test SP registered at run time with its own certificate (so its AuthnRequests are signed)."""
    sp = OneLoginSP(idp.url, new_sp_identity(keys))
    sp.register()
    return sp


def redirect_login(idp, sp, http, username, totp_secret=None, relay_state="/after", **options):
    url, request_id = sp.login_url(relay_state=relay_state, **options)
    page = sign_in_through(http, idp.url, http.get(url, allow_redirects=False), username, totp_secret)
    posted = post_form(page)
    return posted, sp.accept(posted, request_id)


def test_redirect_binding_login_releases_identity_and_attributes(idp, sp):
    posted, auth = redirect_login(idp, sp, requests.Session(), "alice", relay_state="/reports?q=1")
    assert auth.get_nameid() == DIRECTORY.find("alice").subject
    assert auth.get_nameid_format() == SAML.NAMEID_PERSISTENT
    attributes = auth.get_attributes()
    assert attributes["email"] == ["alice@example.com"]
    assert attributes["displayName"] == ["Alice Anderson"]
    assert attributes["department"] == ["Engineering"]
    assert sorted(attributes["groups"]) == ["aws-admins", "engineering"]
    assert auth.get_last_authn_contexts() == [ACR_PASSWORD]
    assert auth.get_session_index()
    assert posted.fields["RelayState"] == "/reports?q=1"


def test_post_binding_login_with_signed_request(idp, sp):
    http = requests.Session()
    xml, request_id = sp.authn_request_xml()
    start = http_post_binding(http, f"{idp.url}/saml/sso", "SAMLRequest", xml, relay_state="post-state")
    posted = post_form(sign_in_through(http, idp.url, start, "bob"))
    auth = sp.accept(posted, request_id)
    assert auth.get_attributes()["groups"] == ["engineering"]
    assert posted.fields["RelayState"] == "post-state"


def test_mfa_user_gets_the_mfa_authn_context(idp, sp):
    _, auth = redirect_login(idp, sp, requests.Session(), "erin", totp_secret=ERIN_TOTP_SECRET)
    assert auth.get_last_authn_contexts() == [ACR_MFA]
    assert sorted(auth.get_attributes()["groups"]) == ["engineering", "security"]
    assert auth.get_attributes()["department"] == ["Security"]


def test_signed_in_user_is_not_asked_again_and_keeps_one_session_index(idp, sp):
    http = requests.Session()
    _, first = redirect_login(idp, sp, http, "carol")
    url, request_id = sp.login_url()
    answer = http.get(url, allow_redirects=False)
    assert answer.status_code == 200  # straight to the post form: no login page
    second = sp.accept(post_form(answer), request_id)
    assert second.get_nameid() == first.get_nameid()
    assert second.get_session_index() == first.get_session_index()


def test_force_authn_asks_for_the_password_again(idp, sp):
    http = requests.Session()
    redirect_login(idp, sp, http, "alice")
    url, request_id = sp.login_url(force_authn=True)
    answer = http.get(url, allow_redirects=False)
    assert is_login_page(answer) and form_fields(answer.text).get("force") == "1"
    # Coming back without logging in again does not count.
    again = http.get(idp.url + form_fields(answer.text)["continue"], allow_redirects=False)
    assert is_login_page(again) and form_fields(again.text).get("force") == "1"
    posted = post_form(sign_in_through(http, idp.url, again, "alice"))
    sp.accept(posted, request_id)


def test_is_passive_without_a_session_answers_no_passive(idp, sp):
    url, request_id = sp.login_url(is_passive=True)
    posted = post_form(requests.get(url, allow_redirects=False))
    assert posted.action == sp.acs_url
    response = etree.fromstring(posted.xml)
    assert response.get("InResponseTo") == request_id
    codes = [code.get("Value") for code in response.iterfind(".//samlp:StatusCode", NS)]
    assert codes == [SAML.STATUS_RESPONDER, SAML.STATUS_NO_PASSIVE]
    assert response.find("saml:Assertion", NS) is None
    assert response.find("ds:Signature", NS) is not None


def test_email_name_id_when_the_sp_asks_for_it(idp, keys):
    sp = OneLoginSP(idp.url, new_sp_identity(keys), name_id_format=SAML.NAMEID_EMAIL_ADDRESS)
    sp.register()
    _, auth = redirect_login(idp, sp, requests.Session(), "bob")
    assert auth.get_nameid() == "bob@example.com"
    assert auth.get_nameid_format() == SAML.NAMEID_EMAIL_ADDRESS


def test_name_id_format_the_sp_is_not_set_up_for_is_refused(idp, sp):
    other = OneLoginSP(idp.url, sp.identity, entity_id=sp.entity_id, name_id_format=SAML.NAMEID_EMAIL_ADDRESS)
    url, _ = other.login_url()
    answer = requests.get(url, allow_redirects=False)
    assert answer.status_code == 400 and "NameID format" in answer.text


@pytest.mark.parametrize(
    "sign, encrypt, security",
    [
        ("response", False, {"wantMessagesSigned": True, "wantAssertionsSigned": False}),
        ("both", False, {"wantMessagesSigned": True, "wantAssertionsSigned": True}),
        ("assertion", True, {"wantAssertionsEncrypted": True, "wantAssertionsSigned": True}),
        ("both", True, {"wantAssertionsEncrypted": True, "wantMessagesSigned": True}),
    ],
)
def test_signing_and_encryption_variants(idp, keys, sign, encrypt, security):
    sp = OneLoginSP(idp.url, new_sp_identity(keys), security=security)
    sp.register(sign=sign, encrypt_assertion=encrypt)
    posted, auth = redirect_login(idp, sp, requests.Session(), "alice")
    assert auth.get_attributes()["email"] == ["alice@example.com"]
    response = etree.fromstring(posted.xml)
    assert (response.find("ds:Signature", NS) is not None) == (sign in ("response", "both"))
    if encrypt:
        assert response.find("saml:Assertion", NS) is None
        assert response.find("saml:EncryptedAssertion", NS) is not None
        assert b"alice@example.com" not in posted.xml
    else:
        assert (response.find("saml:Assertion/ds:Signature", NS) is not None) == (sign in ("assertion", "both"))


def test_idp_initiated_login(idp, keys):
    sp = OneLoginSP(idp.url, new_sp_identity(keys))
    sp.register(allow_idp_initiated=True)
    http = requests.Session()
    start = http.get(
        f"{idp.url}/saml/idp-initiated", params={"sp": sp.entity_id, "RelayState": "/home"}, allow_redirects=False
    )
    posted = post_form(sign_in_through(http, idp.url, start, "bob"))
    auth = sp.accept(posted, None)
    assert auth.get_last_response_in_response_to() is None
    assert posted.fields["RelayState"] == "/home"


def test_idp_initiated_login_is_refused_for_sps_that_do_not_allow_it(idp, sp):
    answer = requests.get(f"{idp.url}/saml/idp-initiated", params={"sp": sp.entity_id})
    assert answer.status_code == 403 and "does not accept sign-ins started here" in answer.text
    answer = requests.get(f"{idp.url}/saml/idp-initiated", params={"sp": "https://nobody.example.test"})
    assert answer.status_code == 404


def test_an_sp_without_a_certificate_may_send_unsigned_requests(idp):
    """Registered without a certificate (so nothing to check a signature with): its AuthnRequests pass
    unsigned. The configured portal is not such an SP: see test_saml_sp_metadata.py."""
    app = OneLoginSP(idp.url, None, name_id_format=SAML.NAMEID_EMAIL_ADDRESS)
    app.register()
    _, auth = redirect_login(idp, app, requests.Session(), "carol")
    assert auth.get_nameid() == "carol@example.com"
    assert auth.get_attributes()["groups"] == ["finance"]


def aws_sign_in(idp, username, totp_secret=None):
    http = requests.Session()
    start = http.get(f"{idp.url}/saml/idp-initiated", params={"sp": "urn:amazon:webservices"}, allow_redirects=False)
    return sign_in_through(http, idp.url, start, username, totp_secret)


def test_aws_idp_initiated_login_carries_roles_for_the_users_groups(idp):
    posted = post_form(aws_sign_in(idp, "alice"))
    # AWS checks the audience, recipient and signature like any SP: validate as the AWS sign-in endpoint.
    aws = OneLoginSP(
        idp.url, None, entity_id="https://signin.aws.amazon.com/saml", acs_url="https://signin.aws.amazon.com/saml"
    )
    attributes = aws.accept(posted, None).get_attributes()
    assert sorted(attributes[AWS + "Role"]) == sorted(
        [
            "arn:aws:iam::111111111111:role/ExampleCorpAdmin,arn:aws:iam::111111111111:saml-provider/ExampleCorp",
            "arn:aws:iam::222222222222:role/ExampleCorpAdmin,arn:aws:iam::222222222222:saml-provider/ExampleCorp",
            "arn:aws:iam::111111111111:role/ExampleCorpDeveloper,arn:aws:iam::111111111111:saml-provider/ExampleCorp",
            "arn:aws:iam::222222222222:role/ExampleCorpReadOnly,arn:aws:iam::222222222222:saml-provider/ExampleCorp",
        ]
    )
    assert attributes[AWS + "RoleSessionName"] == ["alice@example.com"]
    assert attributes[AWS + "SessionDuration"] == ["3600"]
    assert attributes[AWS + "PrincipalTag:Department"] == ["Engineering"]
    assert attributes[AWS + "PrincipalTag:Email"] == ["alice@example.com"]
    assert "email" not in attributes


def test_aws_login_is_refused_for_a_user_without_aws_roles(idp):
    answer = aws_sign_in(idp, "dave")
    assert answer.status_code == 403 and "no role in Amazon Web Services" in answer.text


# --- consent for SPs registered at run time -----------------------------------------------------------


def test_an_sp_registered_at_run_time_asks_consent_once(idp, keys):
    sp = OneLoginSP(idp.url, new_sp_identity(keys))
    sp.register()
    http = requests.Session()
    url, request_id = sp.login_url(relay_state="/first")
    page = sign_in_through(http, idp.url, http.get(url, allow_redirects=False), "bob", consent=None)
    assert is_consent_page(page) and sp.entity_id in page.text and "your email address" in page.text
    forged = http.post(
        f"{idp.url}/saml/consent", data={**form_fields(page.text), "csrf_token": "x", "decision": "allow"}
    )
    assert forged.status_code == 400
    posted = post_form(answer_consent(http, idp.url, page))
    assert sp.accept(posted, request_id).get_attributes()["email"] == ["bob@example.com"]
    # remembered: the next sign-in of bob's goes straight to the post form
    url, request_id = sp.login_url()
    assert sp.accept(post_form(http.get(url, allow_redirects=False)), request_id).is_authenticated()


def test_denied_consent_is_a_request_denied_status_for_the_sp(idp, keys):
    sp = OneLoginSP(idp.url, new_sp_identity(keys))
    sp.register()
    http = requests.Session()
    url, request_id = sp.login_url()
    page = sign_in_through(http, idp.url, http.get(url, allow_redirects=False), "carol", consent=None)
    posted = post_form(answer_consent(http, idp.url, page, decision="deny"))
    status = etree.fromstring(posted.xml).find("samlp:Status", NS)
    codes = [code.get("Value") for code in status.iter(f"{{{SAML.NS_SAMLP}}}StatusCode")]
    assert codes == [SAML.STATUS_REQUESTER, "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"]
    assert b"<saml:Assertion" not in posted.xml
    assert etree.fromstring(posted.xml).find(f"{{{SAML.NS_DS}}}Signature") is not None  # a signed refusal


def test_a_login_takes_two_requests_at_the_idp(idp, sp):
    """The SSO request is answered with the login form, and the POST that signs the person in answers with the
    auto-posting Response (no redirect to /login, none back to the request)."""
    redirect_login(idp, sp, requests.Session(), "dave")  # dave's consent to the run-time SP, once
    http = requests.Session()
    seen: list[str] = []
    http.hooks["response"].append(lambda answer, *args, **kwargs: seen.append(answer.request.method))
    url, request_id = sp.login_url(relay_state="/count")
    page = http.get(url, allow_redirects=False)
    assert is_login_page(page)
    answer = http.post(
        f"{idp.url}/login",
        data={**form_fields(page.text), "username": "dave", "password": "Welcome-2026"},
        allow_redirects=False,
    )
    assert answer.status_code == 200 and "idp_session=" in answer.headers["Set-Cookie"]
    posted = post_form(answer)
    assert sp.accept(posted, request_id).get_nameid() == DIRECTORY.find("dave").subject
    assert posted.fields["RelayState"] == "/count"
    assert seen == ["GET", "POST"]
