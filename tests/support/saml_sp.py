"""SP-side helpers for SAML tests: real SP libraries (python3-saml, pysaml2) talking to the IdP over plain HTTP.

Test SPs are registered with the IdP at run time (admin endpoint) from the metadata their own library
generates, each with a fresh certificate, so signed AuthnRequests are exercised. Their ACS and SLO URLs
never need to answer: the tests read the IdP's auto-post form and hand the message to the SP library.
An SP that the IdP's config describes by its `metadata_url` (the portal) is played by `MetadataSite`,
which publishes the test SP's metadata where the config says the portal publishes its own.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
import zlib
from dataclasses import dataclass, field
from html import unescape
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from sso_common.keys import SigningIdentity, load_or_create_signing_identity
from tests.support.idp_client import (
    DEMO_PASSWORD,
    answer_consent,
    form_fields,
    is_consent_page,
    is_login_page,
    submit_login,
)
from tests.support.loopback import LoopbackServer

ADMIN_TOKEN = "demo-saml-admin-token"
XMLSEC1 = "/usr/bin/xmlsec1"
PORTAL_UPSTREAM = "example-corp-saml"  # the portal's SAML connector, in its ACS and SLO paths


class MetadataSite:
    """A stand-in for an SP's web site: publishes `metadata` at /saml/metadata (as the portal does), answers
    with `status`, after `delay` seconds, and counts the fetches in `hits`."""

    def __init__(self, port: int = 0):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/saml/metadata":
                    self.send_error(404)
                    return
                site.hits += 1
                time.sleep(site.delay)
                body = site.metadata if site.status == 200 else b"unavailable"
                self.send_response(site.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.metadata, self.status, self.delay, self.hits = b"", 200, 0.0, 0
        self._server = LoopbackServer(Handler, port)
        self.url = self._server.url

    def publish(self, metadata: bytes | str) -> None:
        self.metadata = metadata if isinstance(metadata, bytes) else metadata.encode()

    def start(self) -> MetadataSite:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.close()


def portal_sp(idp_url: str, site_url: str, identity: SigningIdentity | None, **options) -> OneLoginSP:
    """The portal as config/idp.yaml describes it when PORTAL_URL is site_url, signing with `identity`."""
    return OneLoginSP(
        idp_url,
        identity,
        entity_id=f"{site_url}/saml/metadata",
        acs_url=f"{site_url}/login/{PORTAL_UPSTREAM}/acs",
        slo_url=f"{site_url}/login/{PORTAL_UPSTREAM}/slo",
        **options,
    )


def logout_request_xml(
    issuer: str,
    destination: str,
    name_id: str,
    name_id_format: str = SAML.NAMEID_PERSISTENT,
    issue_instant: float | None = None,
) -> bytes:
    """A hand-made, unsigned LogoutRequest, as anyone can write one."""
    root = etree.Element(f"{{{SAML.NS_SAMLP}}}LogoutRequest", nsmap={"samlp": SAML.NS_SAMLP, "saml": SAML.NS_SAML})
    root.set("ID", f"_{uuid.uuid4().hex}")
    root.set("Version", "2.0")
    root.set(
        "IssueInstant", OneLogin_Saml2_Utils.parse_time_to_SAML(time.time() if issue_instant is None else issue_instant)
    )
    root.set("Destination", destination)
    etree.SubElement(root, f"{{{SAML.NS_SAML}}}Issuer").text = issuer
    etree.SubElement(root, f"{{{SAML.NS_SAML}}}NameID", Format=name_id_format).text = name_id
    return etree.tostring(root)


def new_sp_identity(directory: Path) -> SigningIdentity:
    """A fresh key and self-signed certificate for a test SP."""
    name = uuid.uuid4().hex[:8]
    return load_or_create_signing_identity(directory, name, f"test SP {name}")


def register_sp(idp_url: str, metadata: bytes | str, token: str = ADMIN_TOKEN, **options) -> requests.Response:
    """POST SP metadata to the IdP's admin endpoint; options become query parameters."""
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items()}
    return requests.post(
        f"{idp_url}/saml/admin/service-providers",
        params=query,
        data=metadata if isinstance(metadata, bytes) else metadata.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/samlmetadata+xml"},
        timeout=10,
    )


# --- browser side ------------------------------------------------------------------------------------


@dataclass
class PostedMessage:
    """The IdP's auto-submitting form: where it posts and what."""

    action: str
    fields: dict[str, str]

    @property
    def xml(self) -> bytes:
        return base64.b64decode(self.fields["SAMLResponse"])


def post_form(page: requests.Response) -> PostedMessage:
    """Read the auto-post form of a SAML response page (fails with the page text if there is none)."""
    match = re.search(r'<form method="post" action="([^"]*)" data-auto-submit', page.text)
    assert page.status_code == 200 and match, f"no SAML post form ({page.status_code}): {page.text[:2000]}"
    return PostedMessage(unescape(match.group(1)), form_fields(page.text))


def sign_in_through(
    http: requests.Session,
    idp_url: str,
    start: requests.Response,
    username: str,
    totp_secret: str | None = None,
    password: str = DEMO_PASSWORD,
    consent: str | None = "allow",
) -> requests.Response:
    """From the IdP's first answer to an SSO request, log in if asked, answer the consent page of an SP
    registered at run time with `consent` (None: stop there), and return the page with the post form."""
    answer = start
    if is_login_page(answer):  # the login form answers the request itself; its POST answers with the Response
        answer = submit_login(http, idp_url, answer, username, password, totp_secret)
        refused = answer.status_code in (401, 403, 429) and 'name="password"' in answer.text
        assert not refused, f"login failed ({answer.status_code}): {answer.text[:500]}"
    if consent and is_consent_page(answer):
        answer = answer_consent(http, idp_url, answer, consent)
    return answer


def http_post_binding(
    http: requests.Session, url: str, parameter: str, xml: bytes | str, relay_state: str | None = None
) -> requests.Response:
    data = {parameter: base64.b64encode(xml if isinstance(xml, bytes) else xml.encode()).decode()}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return http.post(url, data=data, allow_redirects=False)


def authn_request_xml(
    issuer: str,
    destination: str | None,
    issue_instant: float | None = None,
    request_id: str | None = None,
    **attributes: str,
) -> bytes:
    """A hand-made AuthnRequest, for requests no SP library would send (odd times, addresses, bindings)."""
    root = etree.Element(f"{{{SAML.NS_SAMLP}}}AuthnRequest", nsmap={"samlp": SAML.NS_SAMLP, "saml": SAML.NS_SAML})
    root.set("ID", request_id or f"_{uuid.uuid4().hex}")
    root.set("Version", "2.0")
    root.set(
        "IssueInstant", OneLogin_Saml2_Utils.parse_time_to_SAML(time.time() if issue_instant is None else issue_instant)
    )
    if destination is not None:
        root.set("Destination", destination)
    for name, value in attributes.items():
        root.set(name, value)
    etree.SubElement(root, f"{{{SAML.NS_SAML}}}Issuer").text = issuer
    return etree.tostring(root)


def signed_redirect_query(
    identity: SigningIdentity,
    parameter: str,
    xml: bytes,
    relay_state: str | None = None,
    sig_alg: str = SAML.RSA_SHA256,
) -> str:
    """An HTTP-Redirect query string signed with the SP's key, for hand-made messages."""
    params = {parameter: deflate_base64(xml)}
    if relay_state is not None:
        params["RelayState"] = relay_state
    params["SigAlg"] = sig_alg
    query = urlencode(params)
    digest = {SAML.RSA_SHA256: hashes.SHA256(), SAML.RSA_SHA1: hashes.SHA1()}[sig_alg]
    signature = identity.key.sign(query.encode(), padding.PKCS1v15(), digest)
    return f"{query}&{urlencode({'Signature': base64.b64encode(signature).decode()})}"


def deflate_base64(xml: bytes | str) -> str:
    """The HTTP-Redirect binding's encoding: raw DEFLATE, then base64."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = xml if isinstance(xml, bytes) else xml.encode()
    return base64.b64encode(compressor.compress(data) + compressor.flush()).decode()


# --- python3-saml SP -----------------------------------------------------------------------------------


@dataclass
class OneLoginSP:
    """A service provider built on python3-saml in strict mode, as an SP developer would configure it."""

    idp_url: str
    identity: SigningIdentity | None  # None: an SP without a certificate (sends unsigned requests)
    entity_id: str = field(default_factory=lambda: f"https://sp-{uuid.uuid4().hex[:8]}.example.test/saml/metadata")
    acs_url: str = ""  # default: <entity base>/saml/acs
    slo_url: str = ""  # default: <entity base>/saml/slo
    name_id_format: str = SAML.NAMEID_PERSISTENT
    slo_binding: str = SAML.BINDING_HTTP_REDIRECT
    security: dict = field(default_factory=dict)

    def __post_init__(self):
        base = self.entity_id.rsplit("/saml/", 1)[0]
        self.acs_url, self.slo_url = self.acs_url or f"{base}/saml/acs", self.slo_url or f"{base}/saml/slo"
        signs = self.identity is not None
        idp = OneLogin_Saml2_IdPMetadataParser.parse(requests.get(f"{self.idp_url}/saml/metadata", timeout=10).text)
        security = {
            "authnRequestsSigned": signs,
            "logoutRequestSigned": signs,
            "logoutResponseSigned": signs,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": False,
            "wantNameId": True,
            "signatureAlgorithm": SAML.RSA_SHA256,
            "digestAlgorithm": SAML.SHA256,
            "rejectDeprecatedAlgorithm": True,
            "wantAttributeStatement": True,
            **self.security,
        }
        self.settings = OneLogin_Saml2_Settings(
            {
                "strict": True,
                "sp": {
                    "entityId": self.entity_id,
                    "assertionConsumerService": {"url": self.acs_url, "binding": SAML.BINDING_HTTP_POST},
                    "singleLogoutService": {"url": self.slo_url, "binding": self.slo_binding},
                    "NameIDFormat": self.name_id_format,
                    **(
                        {"x509cert": self.identity.certificate_pem, "privateKey": self.identity.key_pem}
                        if signs
                        else {}
                    ),
                },
                "idp": idp["idp"],
                "security": security,
            }
        )

    def metadata(self) -> str:
        metadata = self.settings.get_sp_metadata()
        return metadata.decode() if isinstance(metadata, bytes) else metadata

    def register(self, **options) -> None:
        answer = register_sp(self.idp_url, self.metadata(), **options)
        assert answer.status_code == 201, answer.text

    def _request_data(self, url: str, **data) -> dict:
        parts = urlsplit(url)
        return {
            "https": "on" if parts.scheme == "https" else "off",
            "http_host": parts.netloc,
            "script_name": parts.path,
            **data,
        }

    def login_url(self, relay_state: str | None = None, **options) -> tuple[str, str]:
        """An AuthnRequest over HTTP-Redirect (signed per the settings): (URL at the IdP, request ID)."""
        auth = OneLogin_Saml2_Auth(self._request_data(self.acs_url), self.settings)
        url = auth.login(return_to=relay_state, **options)
        return url, auth.get_last_request_id()

    def authn_request_xml(self, signed: bool = True, **options) -> tuple[str, str]:
        """An AuthnRequest for the HTTP-POST binding, signed enveloped with python3-saml's own helper."""
        request = OneLogin_Saml2_Authn_Request(self.settings, **options)
        xml = request.get_xml()
        if signed:
            xml = OneLogin_Saml2_Utils.add_sign(
                xml,
                self.identity.key_pem,
                self.identity.certificate_pem,
                sign_algorithm=SAML.RSA_SHA256,
                digest_algorithm=SAML.SHA256,
            )
        return (xml.decode() if isinstance(xml, bytes) else xml), request.get_id()

    def accept(self, posted: PostedMessage, request_id: str | None) -> OneLogin_Saml2_Auth:
        """Validate a posted Response exactly as the SP's ACS would (strict, InResponseTo checked)."""
        assert posted.action == self.acs_url
        auth = OneLogin_Saml2_Auth(self._request_data(self.acs_url, post_data=posted.fields), self.settings)
        auth.process_response(request_id=request_id)
        assert not auth.get_errors(), f"{auth.get_errors()}: {auth.get_last_error_reason()}"
        assert auth.is_authenticated()
        return auth

    def logout_url(self, name_id: str, session_index: str | None, relay_state: str | None = None) -> tuple[str, str]:
        auth = OneLogin_Saml2_Auth(self._request_data(self.slo_url), self.settings)
        url = auth.logout(
            return_to=relay_state, name_id=name_id, session_index=session_index, name_id_format=self.name_id_format
        )
        return url, auth.get_last_request_id()

    def logout_request_xml(self, name_id: str, signed: bool = True) -> tuple[str, str]:
        request = OneLogin_Saml2_Logout_Request(self.settings, name_id=name_id, name_id_format=self.name_id_format)
        xml = request.get_xml()
        if signed:
            xml = OneLogin_Saml2_Utils.add_sign(
                xml,
                self.identity.key_pem,
                self.identity.certificate_pem,
                sign_algorithm=SAML.RSA_SHA256,
                digest_algorithm=SAML.SHA256,
            )
        return (xml.decode() if isinstance(xml, bytes) else xml), request.id

    def accept_logout_response(self, location: str, request_id: str) -> None:
        """Validate a LogoutResponse sent by HTTP-Redirect (signature over the raw query included)."""
        assert location.startswith(self.slo_url + "?"), location
        query = urlsplit(location).query
        get_data = {k: v[0] for k, v in parse_qs(query).items()}
        auth = OneLogin_Saml2_Auth(
            self._request_data(self.slo_url, get_data=get_data, query_string=query), self.settings
        )
        auth.process_slo(request_id=request_id, delete_session_cb=lambda: None)
        assert not auth.get_errors(), f"{auth.get_errors()}: {auth.get_last_error_reason()}"


# --- pysaml2 SP ----------------------------------------------------------------------------------------


def pysaml2_client(
    idp_url: str, identity: SigningIdentity, directory: Path, entity_id: str | None = None, decrypt: bool = False
):
    """A pysaml2 Saml2Client trusting the IdP's published metadata; returns (client, its SP metadata XML).
    With `decrypt`, its key also decrypts assertions (the metadata then offers the certificate for
    encryption too)."""
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.metadata import create_metadata_string

    entity_id = entity_id or f"https://pysaml2-{uuid.uuid4().hex[:8]}.example.test/metadata"
    directory.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = directory / "sp.key", directory / "sp.crt"
    key_file.write_text(identity.key_pem)
    cert_file.write_text(identity.certificate_pem)
    base = entity_id.rsplit("/", 1)[0]
    config = SPConfig()
    config.load(
        {
            "entityid": entity_id,
            "xmlsec_binary": XMLSEC1,
            "allow_unknown_attributes": True,
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            **({"encryption_keypairs": [{"key_file": str(key_file), "cert_file": str(cert_file)}]} if decrypt else {}),
            "metadata": {"inline": [requests.get(f"{idp_url}/saml/metadata", timeout=10).text]},
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(f"{base}/acs", BINDING_HTTP_POST)],
                        "single_logout_service": [(f"{base}/slo", BINDING_HTTP_REDIRECT)],
                    },
                    "authn_requests_signed": True,
                    "signing_algorithm": SAML.RSA_SHA256,  # pysaml2 still defaults to SHA-1, which the IdP refuses
                    "digest_algorithm": SAML.SHA256,
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "allow_unsolicited": False,
                    "name_id_format": [SAML.NAMEID_PERSISTENT],
                }
            },
        }
    )
    return Saml2Client(config=config), create_metadata_string(None, config=config).decode()
