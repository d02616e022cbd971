"""Outbound SAML messages: the Response carrying the Assertion, and the LogoutResponse.

Built with lxml's element API (user data only ever lands in text and attribute values), signed with
sso_common.xmlsign (RSA-SHA256, exclusive c14n, signature after the Issuer), encrypted with the xmlsec
binding. The order follows the spec: sign the Assertion, then encrypt it, then sign the Response.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from idp_mock.directory import Employee
from idp_mock.faults import SHIFT_SECONDS, Fault
from idp_mock.saml_idp.config import ATTRIBUTES, AWSRelease, ServiceProvider, name_id_value
from idp_mock.session import SignIn
from sso_common.keys import SigningIdentity, generate_rsa_key, self_signed_certificate
from sso_common.xmlsign import sign_element

ASSERTION_LIFETIME = 300  # seconds an SP may take to consume the assertion
_SAML, _SAMLP = f"{{{SAML.NS_SAML}}}", f"{{{SAML.NS_SAMLP}}}"
_AWS = "https://aws.amazon.com/SAML/Attributes/"
WRONG_AUDIENCE = "https://wrong-audience.example.test"


def new_id() -> str:
    return "_" + secrets.token_hex(20)  # an xs:ID must not start with a digit


def _instant(timestamp: float) -> str:
    return OneLogin_Saml2_Utils.parse_time_to_SAML(timestamp)


def _sub(
    parent: etree._Element, tag: str, text: str | None = None, nsmap: dict | None = None, **attributes: str | None
) -> etree._Element:
    """A child element; attributes given as None are left out."""
    element = etree.SubElement(parent, tag, {k: v for k, v in attributes.items() if v is not None}, nsmap=nsmap)
    element.text = text
    return element


def _child(parent: etree._Element, path: str) -> etree._Element:
    """An element this module built (missing, it would be a bug here)."""
    element = parent.find(path)
    if element is None:
        raise LookupError(path)
    return element


def _id(element: etree._Element) -> str:
    """The ID this module gave a message (missing, it would be a bug here)."""
    element_id = element.get("ID")
    if element_id is None:
        raise LookupError("ID")
    return element_id


def _message(
    kind: str, issuer: str, destination: str, in_response_to: str | None, status: str, now: float
) -> etree._Element:
    """A protocol message with its Issuer and Status (a top-level StatusCode)."""
    attributes = {"ID": new_id(), "Version": "2.0", "IssueInstant": _instant(now), "Destination": destination}
    if in_response_to is not None:  # absent in IdP-initiated responses
        attributes["InResponseTo"] = in_response_to
    root = etree.Element(_SAMLP + kind, attributes, nsmap={"samlp": SAML.NS_SAMLP, "saml": SAML.NS_SAML})
    _sub(root, _SAML + "Issuer", issuer)
    _sub(_sub(root, _SAMLP + "Status"), _SAMLP + "StatusCode", Value=status)
    return root


@dataclass(frozen=True)
class Attribute:
    name: str
    name_format: str
    values: tuple[str, ...]


def released_attributes(sp: ServiceProvider, employee: Employee) -> list[Attribute]:
    attributes = [
        Attribute(name, SAML.ATTRNAME_FORMAT_BASIC, tuple(ATTRIBUTES[name](employee))) for name in sp.attributes
    ]
    if sp.aws is not None:
        attributes += _aws_attributes(sp.aws, employee)
    return [attribute for attribute in attributes if attribute.values]


def _aws_attributes(aws: AWSRelease, employee: Employee) -> list[Attribute]:
    attributes = [
        Attribute(_AWS + "Role", SAML.ATTRNAME_FORMAT_URI, tuple(aws.roles_for(employee))),
        Attribute(_AWS + "RoleSessionName", SAML.ATTRNAME_FORMAT_URI, (employee.email,)),
        Attribute(_AWS + "SessionDuration", SAML.ATTRNAME_FORMAT_URI, (str(aws.session_duration),)),
    ]
    for tag, source in aws.principal_tags.items():
        values = tuple(ATTRIBUTES[source](employee))
        attributes.append(Attribute(f"{_AWS}PrincipalTag:{tag}", SAML.ATTRNAME_FORMAT_URI, values))
    return attributes


@dataclass(frozen=True)
class Grant:
    """What one Response asserts: who, to whom, where, in answer to what."""

    sp: ServiceProvider
    acs_url: str
    in_response_to: str | None
    sign_in: SignIn
    name_id_format: str
    session_index: str
    session_not_on_or_after: float


_unknown: dict[str, SigningIdentity] = {}
_unknown_lock = threading.Lock()


def _unknown_identity() -> SigningIdentity:
    """A key and certificate of this process that no metadata ever names (the unknown_key fault)."""
    with _unknown_lock:
        if "identity" not in _unknown:
            key = generate_rsa_key()
            certificate = self_signed_certificate(key, "unknown key (mock IdP fault)", days=365)
            _unknown["identity"] = SigningIdentity(key, certificate)
        return _unknown["identity"]


def _with_faults(attributes: list[Attribute], faults: dict[str, Fault]) -> list[Attribute]:
    """The attributes a sign_in_as fault sets (they replace those of the same name) and a missing one drops."""
    if "sign_in_as" in faults:
        given = faults["sign_in_as"].values
        attributes = [a for a in attributes if a.name not in given] + [
            Attribute(name, SAML.ATTRNAME_FORMAT_BASIC, tuple(values)) for name, values in given.items() if values
        ]
    if "missing" in faults:
        attributes = [a for a in attributes if a.name != faults["missing"].name]
    return attributes


def sso_response(
    grant: Grant,
    idp_entity_id: str,
    identity: SigningIdentity,
    clock_skew: int,
    faults: dict[str, Fault] | None = None,
) -> bytes:
    """The signed Response for `grant`; `faults` (idp_mock.faults, by kind) make it wrong on purpose."""
    faults = faults or {}
    now = time.time()
    sp, employee = grant.sp, grant.sign_in.employee
    valid_from, valid_until = now - clock_skew, now + ASSERTION_LIFETIME
    if "expired" in faults:
        valid_from, valid_until = now - SHIFT_SECONDS - ASSERTION_LIFETIME, now - SHIFT_SECONDS
    if "not_yet_valid" in faults:
        valid_from, valid_until = now + SHIFT_SECONDS, now + SHIFT_SECONDS + ASSERTION_LIFETIME
    audience = sp.audience_uri
    if "wrong_audience" in faults:
        audience = faults["wrong_audience"].audience or WRONG_AUDIENCE
    sha1 = "refused_algorithm" in faults
    if "unknown_key" in faults:
        identity = _unknown_identity()
    response = _message("Response", idp_entity_id, grant.acs_url, grant.in_response_to, SAML.STATUS_SUCCESS, now)
    assertion_id = new_id()
    assertion = _sub(response, _SAML + "Assertion", ID=assertion_id, Version="2.0", IssueInstant=_instant(now))
    assertion_issuer = _sub(assertion, _SAML + "Issuer", idp_entity_id)

    subject = _sub(assertion, _SAML + "Subject")
    _sub(subject, _SAML + "NameID", name_id_value(employee, grant.name_id_format), Format=grant.name_id_format)
    confirmation = _sub(subject, _SAML + "SubjectConfirmation", Method=SAML.CM_BEARER)
    _sub(
        confirmation,
        _SAML + "SubjectConfirmationData",
        NotOnOrAfter=_instant(valid_until),
        Recipient=grant.acs_url,
        InResponseTo=grant.in_response_to,
    )

    # NotBefore is back-dated by the allowed clock skew, so an SP whose clock runs behind accepts it.
    conditions = _sub(
        assertion,
        _SAML + "Conditions",
        NotBefore=_instant(valid_from),
        NotOnOrAfter=_instant(valid_until),
    )
    _sub(_sub(conditions, _SAML + "AudienceRestriction"), _SAML + "Audience", audience)

    statement = _sub(
        assertion,
        _SAML + "AuthnStatement",
        AuthnInstant=_instant(grant.sign_in.auth_time),
        SessionIndex=grant.session_index,
        SessionNotOnOrAfter=_instant(grant.session_not_on_or_after),
    )
    _sub(_sub(statement, _SAML + "AuthnContext"), _SAML + "AuthnContextClassRef", grant.sign_in.acr)

    attributes = _with_faults(released_attributes(sp, employee), faults)
    if attributes:
        statement = _sub(assertion, _SAML + "AttributeStatement")
        for attribute in attributes:
            element = _sub(statement, _SAML + "Attribute", Name=attribute.name, NameFormat=attribute.name_format)
            for value in attribute.values:
                _sub(
                    element,
                    _SAML + "AttributeValue",
                    value,
                    nsmap={"xs": SAML.NS_XS, "xsi": SAML.NS_XSI},
                    **{f"{{{SAML.NS_XSI}}}type": "xs:string"},
                )

    response_id = _id(response)
    if sp.sign in ("assertion", "both"):  # a signed copy: later steps work on it, not on `assertion`
        response = sign_element(response, assertion_id, identity, after=assertion_issuer, sha1=sha1)
    if sp.encrypt_assertion:
        if sp.encryption_certificate is None:  # check_options and remote.merge rule this out
            raise LookupError(f"{sp.entity_id} has no encryption certificate")
        _encrypt_assertion(_child(response, _SAML + "Assertion"), sp.encryption_certificate)
    if sp.sign in ("response", "both"):
        response = sign_element(response, response_id, identity, after=_child(response, _SAML + "Issuer"), sha1=sha1)
    return etree.tostring(response, xml_declaration=True, encoding="UTF-8")


def _encrypt_assertion(assertion: etree._Element, certificate: x509.Certificate) -> None:
    """Replace the Assertion with an EncryptedAssertion for the SP's certificate: AES-256-GCM content, its
    key wrapped with RSA-OAEP (the xmlsec template calls python3-saml makes for EncryptedIDs, with GCM
    instead of CBC, which XML Encryption padding-oracle attacks target).

    The plaintext is the Assertion serialised on its own, with the namespace declarations it uses (saml,
    and ds for its signature): an SP decrypts it into a document of its own, where prefixes declared only on
    the enclosing Response would be unbound (pysaml2: "unbound prefix"; node-saml: an invalid signature)."""
    plaintext = etree.tostring(assertion)  # lxml writes the in-scope declarations on a serialised subtree
    encrypted_assertion = etree.Element(_SAML + "EncryptedAssertion")
    template = xmlsec.template.encrypted_data_create(
        encrypted_assertion, xmlsec.constants.TransformAes256Gcm, type=xmlsec.constants.TypeEncElement, ns="xenc"
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(
        xmlsec.Key.from_memory(
            certificate.public_bytes(serialization.Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem, None
        )
    )
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession)
    encrypted_assertion.append(context.encrypt_binary(template, plaintext))
    assertion.addprevious(encrypted_assertion)
    parent = assertion.getparent()
    if parent is None:  # sso_response only encrypts an Assertion inside its Response
        raise LookupError("the Assertion has no parent")
    parent.remove(assertion)


def status_response(
    acs_url: str,
    in_response_to: str | None,
    status: str | None,
    idp_entity_id: str,
    identity: SigningIdentity,
    top: str = SAML.STATUS_RESPONDER,
    message: str | None = None,
) -> bytes:
    """A Response without an Assertion (NoPassive, RequestDenied, a fault's error), signed so the SP can
    trust the refusal: top-level status `top`, second-level `status` (if any), StatusMessage `message`."""
    response = _message("Response", idp_entity_id, acs_url, in_response_to, top, time.time())
    if status is not None:
        _sub(_child(response, f"{_SAMLP}Status/{_SAMLP}StatusCode"), _SAMLP + "StatusCode", Value=status)
    if message:
        _sub(_child(response, f"{_SAMLP}Status"), _SAMLP + "StatusMessage", message)
    return signed_post(response, identity)


def logout_response(destination: str, in_response_to: str, status: str, idp_entity_id: str) -> etree._Element:
    """An unsigned LogoutResponse: sign it for its binding with `signed_post` or `signed_redirect_url`."""
    return _message("LogoutResponse", idp_entity_id, destination, in_response_to, status, time.time())


def signed_post(message: etree._Element, identity: SigningIdentity) -> bytes:
    """An enveloped signature over the whole message (HTTP-POST binding)."""
    signed = sign_element(message, _id(message), identity, after=_child(message, _SAML + "Issuer"))
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def signed_redirect_url(
    location: str, message: etree._Element, relay_state: str | None, identity: SigningIdentity
) -> str:
    """A response by the HTTP-Redirect binding: DEFLATE + base64 in the query, signed over the query octets."""
    params = {"SAMLResponse": OneLogin_Saml2_Utils.deflate_and_base64_encode(etree.tostring(message))}
    if relay_state is not None:
        params["RelayState"] = relay_state
    params["SigAlg"] = SAML.RSA_SHA256
    query = urlencode(params)
    signature = identity.key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{query}&{urlencode({'Signature': base64.b64encode(signature).decode()})}"
