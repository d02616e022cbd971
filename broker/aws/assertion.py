"""The broker as the AWS accounts' SAML identity provider: the signed Response it hands to STS, and its
IdP metadata that every account's IAM SAML provider holds.

Pure functions: no network. XML is built with lxml's element API, so user data is always escaped text
and never markup. AWS limits and character sets are applied here, because STS refuses the whole
assertion when one attribute breaks them.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime

from lxml import etree

from broker.core.entitlements import Entitlement
from broker.core.identity import TAG_VALUE_MAX, Identity, aws_person_name, aws_person_tag
from broker.errors import IdentityRefused
from sso_common.keys import SigningIdentity
from sso_common.xmlsign import DS_NAMESPACE, sign_element

AWS_SAML_ENDPOINT = "https://signin.aws.amazon.com/saml"  # audience, recipient and destination
AWS_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/"
ASSERTION_LIFETIME = 300  # seconds; the assertion is consumed within the same request

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
ATTRNAME_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
PASSWORD_CONTEXT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
MFA_CONTEXT = "https://refeds.org/profile/mfa"

# Session tags: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html
PRINCIPAL_TAG_VALUE_MAX = TAG_VALUE_MAX
_TAG_VALUE_DISALLOWED = re.compile(r"[^\w .:/=+@-]")


def build_saml_response(
    identity: Identity,
    entitlement: Entitlement,
    idp_entity_id: str,
    signing_identity: SigningIdentity,
    now: float | None = None,
) -> bytes:
    """A SAML 2.0 Response with one signed Assertion that lets `identity` assume `entitlement`'s role."""
    issued = time.time() if now is None else now
    issue_instant = _instant(issued)
    expires = _instant(issued + ASSERTION_LIFETIME)
    assertion_id = _new_id()

    response = etree.Element(
        f"{{{SAMLP}}}Response",
        nsmap={"samlp": SAMLP, "saml": SAML},
        ID=_new_id(),
        Version="2.0",
        IssueInstant=issue_instant,
        Destination=AWS_SAML_ENDPOINT,
    )
    _text(response, f"{{{SAML}}}Issuer", idp_entity_id)
    status = etree.SubElement(response, f"{{{SAMLP}}}Status")
    etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success")

    assertion = etree.SubElement(
        response, f"{{{SAML}}}Assertion", ID=assertion_id, Version="2.0", IssueInstant=issue_instant
    )
    assertion_issuer = _text(assertion, f"{{{SAML}}}Issuer", idp_entity_id)
    subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
    _text(subject, f"{{{SAML}}}NameID", identity.subject, Format=PERSISTENT)
    confirmation = etree.SubElement(subject, f"{{{SAML}}}SubjectConfirmation", Method=BEARER)
    etree.SubElement(
        confirmation, f"{{{SAML}}}SubjectConfirmationData", NotOnOrAfter=expires, Recipient=AWS_SAML_ENDPOINT
    )
    conditions = etree.SubElement(assertion, f"{{{SAML}}}Conditions", NotBefore=issue_instant, NotOnOrAfter=expires)
    restriction = etree.SubElement(conditions, f"{{{SAML}}}AudienceRestriction")
    _text(restriction, f"{{{SAML}}}Audience", AWS_SAML_ENDPOINT)
    authn = etree.SubElement(
        assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=_instant(identity.auth_time), SessionIndex=assertion_id
    )
    context = etree.SubElement(authn, f"{{{SAML}}}AuthnContext")
    _text(context, f"{{{SAML}}}AuthnContextClassRef", MFA_CONTEXT if identity.mfa else PASSWORD_CONTEXT)

    statement = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
    for name, value in aws_attributes(identity, entitlement).items():
        attribute = etree.SubElement(statement, f"{{{SAML}}}Attribute", Name=name, NameFormat=ATTRNAME_URI)
        _text(attribute, f"{{{SAML}}}AttributeValue", value)

    signed = sign_element(response, assertion_id, signing_identity, after=assertion_issuer)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def aws_attributes(identity: Identity, entitlement: Entitlement) -> dict[str, str]:
    """The attributes STS reads, one value each (moto answers 500 to a multi-valued Role).

    RoleSessionName, SourceIdentity and the `username` tag name the person by their email address, which is
    unique across upstreams (broker.core.identity.aws_person_name): `bob@example.com` and
    `bob@partner.example` stay two people in CloudTrail and in policies, never both `bob`."""
    name = aws_name(identity)
    attributes = {
        AWS_ATTRIBUTE + "Role": f"{entitlement.role_arn},{entitlement.provider_arn}",
        AWS_ATTRIBUTE + "RoleSessionName": name,
        AWS_ATTRIBUTE + "SourceIdentity": name,
        AWS_ATTRIBUTE + "SessionDuration": str(entitlement.session_duration),
    }
    for key, value in principal_tags(identity).items():
        attributes[f"{AWS_ATTRIBUTE}PrincipalTag:{key}"] = value
    return attributes


def principal_tags(identity: Identity) -> dict[str, str]:
    """Session tags for attribute-based access control; empty values are left out."""
    tags = {
        "username": aws_person_tag(identity),
        "email": tag_value(identity.email),
        "department": tag_value(identity.department),
    }
    return {key: value for key, value in tags.items() if value}


def tag_value(value: str) -> str:
    """Fit a descriptive value to AWS's tag alphabet (letters, digits, spaces, `_.:/=+-@`) and length."""
    return _TAG_VALUE_DISALLOWED.sub("_", value.strip())[:PRINCIPAL_TAG_VALUE_MAX]


def aws_name(identity: Identity) -> str:
    """The person's RoleSessionName and SourceIdentity; IdentityRefused when there is no address to name
    them by (connectors never make such an identity: this guards the assertion)."""
    if "@" not in identity.email:
        raise IdentityRefused(
            "Your sign-in carries no email address, which AWS sessions are named by. "
            "Ask the IT service desk to fix your directory entry."
        )
    return aws_person_name(identity)


def idp_metadata_xml(entity_id: str, signing_identity: SigningIdentity, sso_url: str) -> str:
    """The broker's IdP metadata, as IAM's CreateSAMLProvider takes it (the certificate is the trust)."""
    descriptor = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap={"md": MD, "ds": DS_NAMESPACE}, entityID=entity_id)
    idp = etree.SubElement(
        descriptor, f"{{{MD}}}IDPSSODescriptor", WantAuthnRequestsSigned="false", protocolSupportEnumeration=SAMLP
    )
    key_descriptor = etree.SubElement(idp, f"{{{MD}}}KeyDescriptor", use="signing")
    key_info = etree.SubElement(key_descriptor, f"{{{DS_NAMESPACE}}}KeyInfo")
    x509_data = etree.SubElement(key_info, f"{{{DS_NAMESPACE}}}X509Data")
    _text(x509_data, f"{{{DS_NAMESPACE}}}X509Certificate", signing_identity.certificate_base64)
    _text(idp, f"{{{MD}}}NameIDFormat", PERSISTENT)
    for binding in ("HTTP-Redirect", "HTTP-POST"):
        etree.SubElement(
            idp,
            f"{{{MD}}}SingleSignOnService",
            Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}",
            Location=sso_url,
        )
    return etree.tostring(descriptor, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode()


def _text(parent: etree._Element, tag: str, text: str, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attrib=attributes)
    element.text = text
    return element


def _new_id() -> str:
    return "_" + secrets.token_hex(20)  # xs:ID must not start with a digit


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
