"""Inbound SAML requests (AuthnRequest, LogoutRequest) over the HTTP-Redirect and HTTP-POST bindings.

Everything here treats the message as hostile until proven otherwise: decoding is bounded (message
size, DEFLATE output), parsing refuses DTDs and entities (python3-saml's hardened parser, so no XXE and
no entity expansion), the message must be schema-valid, and its signature is checked with the SP's
certificate (query signature for Redirect, enveloped XML signature for POST). A signature is required for
every LogoutRequest, and for AuthnRequests when the SP has `require_signed_requests` (the default for an
SP with a certificate or metadata_url); a signature that is present is always checked.
Every refusal is a `Refused` error (see idp_mock.errors), which the app shows as a readable 400 page.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import zlib
from dataclasses import dataclass
from urllib.parse import unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import request
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from signxml import SignatureConfiguration, XMLVerifier

from idp_mock.errors import BadSignature, Refused
from idp_mock.saml_idp.config import ServiceProvider
from sso_common import saml_schemas

saml_schemas.install()  # the protocol schema compiled once per thread, not per request

MAX_MESSAGE_BYTES = 64 * 1024  # decoded XML; real AuthnRequests and LogoutRequests are a few KiB
MAX_RELAY_STATE = 1024  # the spec says 80 bytes; SPs routinely send more, so be lenient
REQUEST_LIFETIME = 300  # how long after its IssueInstant a request is still accepted

# Query-signature algorithms accepted for the Redirect binding (SHA-1 is refused).
_QUERY_SIG_HASHES: dict[str, hashes.HashAlgorithm] = {
    SAML.RSA_SHA256: hashes.SHA256(),
    SAML.RSA_SHA384: hashes.SHA384(),
    SAML.RSA_SHA512: hashes.SHA512(),
}
_NS = {"samlp": SAML.NS_SAMLP, "saml": SAML.NS_SAML}


@dataclass(frozen=True)
class Inbound:
    """A decoded, parsed, schema-valid message, not yet authenticated."""

    xml: bytes
    root: etree._Element
    relay_state: str | None
    query: dict[str, str] | None  # HTTP-Redirect: parameters as received (still URL-encoded); None for HTTP-POST

    @property
    def issuer(self) -> str:
        issuer = self.root.find("saml:Issuer", _NS)
        text = (issuer.text or "").strip() if issuer is not None else ""
        if not text:
            raise Refused("The request does not say which application sent it (no Issuer).")
        return text


def receive() -> Inbound:
    """Decode the SAMLRequest of this HTTP request, by the binding its method implies."""
    if request.method == "GET":
        query = _raw_query()
        if "SAMLRequest" not in query:
            raise Refused("The request carries no SAMLRequest.")
        relay_state = unquote_plus(query["RelayState"]) if "RelayState" in query else None
        xml = _inflate(_base64(unquote_plus(query["SAMLRequest"])))
        return Inbound(xml, _parse(xml), check_relay_state(relay_state), query)
    encoded = request.form.get("SAMLRequest")
    if not encoded:
        raise Refused("The request carries no SAMLRequest.")
    xml = _base64(encoded)
    if len(xml) > MAX_MESSAGE_BYTES:
        raise Refused("The request is too large.")
    return Inbound(xml, _parse(xml), check_relay_state(request.form.get("RelayState")), None)


def check_relay_state(relay_state: str | None) -> str | None:
    """RelayState goes back to the SP unchanged; only its size is limited."""
    if relay_state is not None and len(relay_state.encode()) > MAX_RELAY_STATE:
        raise Refused(f"The RelayState is longer than {MAX_RELAY_STATE} bytes.")
    return relay_state


def _raw_query() -> dict[str, str]:
    """Query parameters still URL-encoded: a Redirect signature covers the octets as sent."""
    params: dict[str, str] = {}
    for part in request.query_string.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            name = unquote_plus(name)
            if name in params:
                raise Refused(f"The parameter {name} appears more than once.")
            params[name] = value
    return params


def _base64(value: str) -> bytes:
    if len(value) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
        raise Refused("The request is too large.")
    try:
        return base64.b64decode(re.sub(r"\s+", "", value), validate=True)
    except (binascii.Error, ValueError):
        raise Refused("The request is not valid base64.") from None


def _inflate(data: bytes) -> bytes:
    """Raw DEFLATE (Redirect binding), stopping at MAX_MESSAGE_BYTES so a deflate bomb costs nothing."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        xml = inflater.decompress(data, MAX_MESSAGE_BYTES + 1)
    except zlib.error:
        raise Refused("The request is not valid DEFLATE-compressed data.") from None
    if len(xml) > MAX_MESSAGE_BYTES:
        raise Refused("The request is too large.")
    if not inflater.eof:
        raise Refused("The request is not valid DEFLATE-compressed data (it is truncated).")
    return xml


def _parse(xml: bytes) -> etree._Element:
    """Parse with python3-saml's hardened parser (no DTD, no entities, no network) and check the schema."""
    try:
        root = OneLogin_Saml2_XML.to_etree(xml)
    except etree.XMLSyntaxError:
        raise Refused("The request is not well-formed XML.") from None
    except ValueError as error:  # DTDForbidden, EntitiesForbidden
        raise Refused(f"The request contains XML that is not allowed ({type(error).__name__}).") from None
    if not isinstance(OneLogin_Saml2_XML.validate_xml(root, "saml-schema-protocol-2.0.xsd"), etree._Element):
        raise Refused("The request is not a valid SAML 2.0 protocol message.")
    return root


def verify(message: Inbound, sp: ServiceProvider, *, required: bool) -> etree._Element:
    """The message's trusted root. A signature, when `required` or present, is checked with the SP's
    certificate; without a certificate, a required signature cannot be checked, so the message is refused.

    For POST, the element returned is the one the signature covers (signxml's output), so content
    outside the signature (a wrapping attack) is never read. BadSignature when the signature does not
    verify (the caller may retry with newer metadata).
    """
    query = message.query
    if query is not None:
        signed = "Signature" in query and "SigAlg" in query
        partly = not signed and ("Signature" in query or "SigAlg" in query)
    else:
        signed, partly = message.root.find(f"{{{SAML.NS_DS}}}Signature") is not None, False
    if sp.certificate is None:
        if required:
            raise Refused(
                f"{sp.name} has no signing certificate registered with Example Corp, so this request, "
                "which must be signed, cannot be verified."
            )
        return message.root  # nothing to check a signature with (none is needed)
    if partly:
        raise Refused(
            "The request's signature is incomplete (it needs both SigAlg and Signature)"
            + (", and this application must sign its requests." if required else ".")
        )
    if not signed:
        if required:
            raise Refused("The request is not signed, but this application must sign its requests.")
        return message.root
    if query is not None:
        _verify_query_signature(query, sp.certificate)
        return message.root
    try:
        result = XMLVerifier().verify(
            message.xml,
            x509_cert=sp.certificate,
            expect_config=SignatureConfiguration(location="./", expect_references=1),
        )
    except Exception:  # noqa: BLE001 - fail closed: whatever signxml trips over in a hostile message is "not valid"
        raise BadSignature() from None
    # One reference expected, so one result: signxml returns a list only when more are expected.
    signed_root = None if isinstance(result, list) else result.signed_xml
    if signed_root is None or signed_root.tag != message.root.tag or signed_root.get("ID") != message.root.get("ID"):
        raise Refused("The request's signature does not cover the request.")
    return signed_root


def _verify_query_signature(query: dict[str, str], certificate: x509.Certificate) -> None:
    sig_alg = unquote_plus(query["SigAlg"])
    if sig_alg not in _QUERY_SIG_HASHES:
        raise Refused("The request is signed with an algorithm that is not accepted (use RSA-SHA256).")
    signed = f"SAMLRequest={query['SAMLRequest']}"
    if "RelayState" in query:
        signed += f"&RelayState={query['RelayState']}"
    signed += f"&SigAlg={query['SigAlg']}"
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):  # the accepted algorithms are all RSA
        raise BadSignature()
    try:
        signature = base64.b64decode(unquote_plus(query["Signature"]), validate=True)
        key.verify(signature, signed.encode("latin-1"), padding.PKCS1v15(), _QUERY_SIG_HASHES[sig_alg])
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        raise BadSignature() from None


def check_envelope(root: etree._Element, kind: str, destination: str, clock_skew: int) -> None:
    """What every request must satisfy: the expected type, SAML 2.0, addressed to us, recent."""
    if root.tag != f"{{{SAML.NS_SAMLP}}}{kind}":
        raise Refused(f"A {kind} was expected here.")
    if root.get("Version") != "2.0":
        raise Refused("Only SAML 2.0 requests are accepted.")
    if root.get("Destination") is not None and root.get("Destination") != destination:
        raise Refused("The request is addressed to another server (Destination does not match).")
    try:
        issued = OneLogin_Saml2_Utils.parse_SAML_to_time(root.get("IssueInstant"))
    except Exception:  # noqa: BLE001 - python3-saml raises a bare Exception for a time it cannot read
        raise Refused("The request's IssueInstant is not a UTC time.") from None
    now = time.time()
    if issued > now + clock_skew:
        raise Refused("The request was issued in the future. Check the application server's clock.")
    if issued < now - clock_skew - REQUEST_LIFETIME:
        raise Refused("The request has expired. Go back to the application and sign in again.")


def _request_id(root: etree._Element) -> str:
    request_id = root.get("ID")
    if request_id is None:  # the schema requires it: never seen after _parse
        raise Refused("The request has no ID.")
    return request_id


@dataclass(frozen=True)
class AuthnRequest:
    id: str
    acs_url: str | None
    acs_index: int | None
    protocol_binding: str | None
    force_authn: bool
    is_passive: bool
    name_id_format: str | None


def parse_authn_request(root: etree._Element) -> AuthnRequest:
    policy = root.find("samlp:NameIDPolicy", _NS)
    index = root.get("AssertionConsumerServiceIndex")
    return AuthnRequest(
        id=_request_id(root),
        acs_url=root.get("AssertionConsumerServiceURL"),
        acs_index=int(index) if index is not None else None,
        protocol_binding=root.get("ProtocolBinding"),
        force_authn=root.get("ForceAuthn") in ("true", "1"),
        is_passive=root.get("IsPassive") in ("true", "1"),
        name_id_format=policy.get("Format") if policy is not None else None,
    )


@dataclass(frozen=True)
class LogoutRequest:
    id: str
    name_id: str | None


def parse_logout_request(root: etree._Element) -> LogoutRequest:
    name_id = root.find("saml:NameID", _NS)
    return LogoutRequest(
        id=_request_id(root),
        name_id=(name_id.text or "").strip() if name_id is not None else None,
    )
