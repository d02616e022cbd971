"""SAML metadata: the IdP's own (published at /saml/metadata) and SPs' (read at run-time registration, or
fetched from an SP's metadata_url, see remote.py): one hardened parser for both."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from cryptography import x509
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from idp_mock.errors import InvalidOption, MetadataError
from idp_mock.saml_idp.config import (
    ENTITY_ID_PATTERN,
    NAME_ID_FORMATS,
    Endpoint,
    SAMLSettings,
    ServiceProvider,
    check_options,
    load_certificate,
)
from sso_common.config import URL_PATTERN
from sso_common.keys import SigningIdentity
from sso_common.saml_schemas import SCHEMAS

MAX_METADATA_BYTES = 64 * 1024
_NS = {"md": SAML.NS_MD, "ds": SAML.NS_DS}
_MD = f"{{{SAML.NS_MD}}}"


def idp_metadata(settings: SAMLSettings, identity: SigningIdentity, want_signed: bool = True) -> bytes:
    """The IdP's metadata. WantAuthnRequestsSigned is the truth for whoever reads it: the IdP requires
    signed AuthnRequests from every SP registered with a signing certificate, so the general document says
    true; an SP registered without one reads /saml/metadata?sp=ENTITY_ID, which says what applies to it
    (`want_signed`), as SAML libraries that compare the two flags (samlify) need."""
    root = etree.Element(
        _MD + "EntityDescriptor", nsmap={"md": SAML.NS_MD, "ds": SAML.NS_DS}, entityID=settings.entity_id
    )
    idp = etree.SubElement(
        root,
        _MD + "IDPSSODescriptor",
        WantAuthnRequestsSigned="true" if want_signed else "false",
        protocolSupportEnumeration=SAML.NS_SAMLP,
    )
    key = etree.SubElement(idp, _MD + "KeyDescriptor", use="signing")
    x509_data = etree.SubElement(etree.SubElement(key, f"{{{SAML.NS_DS}}}KeyInfo"), f"{{{SAML.NS_DS}}}X509Data")
    etree.SubElement(x509_data, f"{{{SAML.NS_DS}}}X509Certificate").text = identity.certificate_base64
    for binding in (SAML.BINDING_HTTP_REDIRECT, SAML.BINDING_HTTP_POST):
        etree.SubElement(idp, _MD + "SingleLogoutService", Binding=binding, Location=settings.slo_url)
    for name_id_format in NAME_ID_FORMATS.values():
        etree.SubElement(idp, _MD + "NameIDFormat").text = name_id_format
    for binding in (SAML.BINDING_HTTP_REDIRECT, SAML.BINDING_HTTP_POST):
        etree.SubElement(idp, _MD + "SingleSignOnService", Binding=binding, Location=settings.sso_url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class Validity:
    """How long metadata may be used, as it says itself (both optional): validUntil and cacheDuration."""

    valid_until: float | None  # epoch seconds
    cache_duration: float | None  # seconds


def parse_sp_metadata(
    xml: bytes, *, sign: str = "assertion", encrypt_assertion: bool = False, allow_idp_initiated: bool = False
) -> ServiceProvider:
    """A ServiceProvider from an EntityDescriptor with one SPSSODescriptor, plus the options metadata cannot
    express. Parsed like any untrusted XML: size-limited, no DTD or entities, schema-checked."""
    return _service_provider(
        _load_entity_descriptor(xml),
        sign=sign,
        encrypt_assertion=encrypt_assertion,
        allow_idp_initiated=allow_idp_initiated,
    )


def parse_sp_metadata_with_validity(xml: bytes, **options) -> tuple[ServiceProvider, Validity]:
    """parse_sp_metadata, and the metadata's own validUntil and cacheDuration (for fetched metadata)."""
    root = _load_entity_descriptor(xml)
    return _service_provider(root, **options), _validity(root)


def _load_entity_descriptor(xml: bytes) -> etree._Element:
    if len(xml) > MAX_METADATA_BYTES:
        raise MetadataError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KiB.")
    try:
        root = OneLogin_Saml2_XML.to_etree(xml)
    except etree.XMLSyntaxError:
        raise MetadataError("The metadata is not well-formed XML.") from None
    except ValueError as error:
        raise MetadataError(f"The metadata contains XML that is not allowed ({type(error).__name__}).") from None
    if root.tag != _MD + "EntityDescriptor":
        raise MetadataError("The metadata must be one md:EntityDescriptor.")
    problem = schema_problem(root)
    if problem:
        raise MetadataError(f"The metadata is not valid SAML 2.0 metadata: {problem}.")
    return root


def schema_problem(root: etree._Element) -> str | None:
    """What the SAML 2.0 metadata schema finds wrong first (line, element, problem), or None. The schema is
    python3-saml's (the same files its own check reads), compiled once per thread."""
    schema = SCHEMAS.schema("saml-schema-metadata-2.0.xsd")
    if schema.validate(root):
        return None
    error = schema.error_log.last_error if schema.error_log.last_error is not None else None
    if error is None:
        return "the schema check failed"
    message = re.sub(r"\{[^}]*\}", "", error.message)  # "Element '{urn:...:metadata}X'" -> "Element 'X'"
    message = "".join(c for c in message if c.isprintable())[:300].rstrip(". ")
    return f"line {error.line}: {message}"


def _validity(root: etree._Element) -> Validity:
    valid_until = cache_duration = None
    try:
        if root.get("validUntil"):
            valid_until = float(OneLogin_Saml2_Utils.parse_SAML_to_time(root.get("validUntil")))
        if root.get("cacheDuration"):
            now = int(time.time())
            cache_duration = float(max(0, OneLogin_Saml2_Utils.parse_duration(root.get("cacheDuration"), now) - now))
    except Exception:  # noqa: BLE001 - python3-saml raises bare Exceptions (and isodate its own) for odd values
        raise MetadataError("The metadata's validUntil or cacheDuration cannot be read.") from None
    return Validity(valid_until, cache_duration)


def _service_provider(
    root: etree._Element, *, sign: str = "assertion", encrypt_assertion: bool = False, allow_idp_initiated: bool = False
) -> ServiceProvider:
    entity_id = root.get("entityID", "")
    if len(entity_id) > 1024 or not re.fullmatch(ENTITY_ID_PATTERN, entity_id):
        raise MetadataError("The entityID must be an http(s) URL or a URN.")
    descriptors = [
        d
        for d in root.findall("md:SPSSODescriptor", _NS)
        if SAML.NS_SAMLP in d.get("protocolSupportEnumeration", "").split()
    ]
    if len(descriptors) != 1:
        raise MetadataError("The metadata must have exactly one SAML 2.0 SPSSODescriptor.")
    descriptor = descriptors[0]

    certificates: dict[str, x509.Certificate] = {}
    for key in descriptor.findall("md:KeyDescriptor", _NS):
        text = key.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=_NS)
        if text is None:
            continue
        try:
            certificate = load_certificate(text)
        except ValueError:
            raise MetadataError("A KeyDescriptor's X509Certificate is not a valid certificate.") from None
        use = key.get("use")
        for purpose in [use] if use else ["signing", "encryption"]:
            certificates.setdefault(purpose, certificate)

    acs = []
    for element in descriptor.findall("md:AssertionConsumerService", _NS):
        if element.get("Binding") == SAML.BINDING_HTTP_POST:
            index = element.get("index")
            if index is None:  # the schema requires one: never seen after _load_entity_descriptor
                raise MetadataError("An AssertionConsumerService has no index.")
            acs.append(
                Endpoint(
                    _location(element, "Location"),
                    SAML.BINDING_HTTP_POST,
                    int(index),
                    element.get("isDefault") in ("true", "1"),
                )
            )
    if not acs:
        raise MetadataError("The metadata has no AssertionConsumerService with the HTTP-POST binding.")
    if len({endpoint.index for endpoint in acs}) != len(acs):
        raise MetadataError("Two AssertionConsumerServices share one index.")

    slo = None
    for binding in (SAML.BINDING_HTTP_REDIRECT, SAML.BINDING_HTTP_POST):
        service = descriptor.find(f"md:SingleLogoutService[@Binding='{binding}']", _NS)
        if service is not None:
            slo = Endpoint(
                _location(service, "ResponseLocation" if service.get("ResponseLocation") else "Location"), binding
            )
            break

    listed = [(element.text or "").strip() for element in descriptor.findall("md:NameIDFormat", _NS)]
    formats = tuple(f for f in listed if f in NAME_ID_FORMATS.values())
    if listed and not formats:
        raise MetadataError(f"None of the NameIDFormats is supported (use {', '.join(NAME_ID_FORMATS.values())}).")
    if descriptor.get("AuthnRequestsSigned") in ("true", "1") and "signing" not in certificates:
        raise MetadataError("AuthnRequestsSigned is true, but there is no signing certificate.")
    if descriptor.get("WantAssertionsSigned") in ("true", "1") and sign == "response":
        raise MetadataError("The metadata asks for signed assertions, but sign=response was chosen.")

    organization = root.findtext("md:Organization/md:OrganizationDisplayName", namespaces=_NS)
    sp = ServiceProvider(
        entity_id=entity_id,
        name=(organization or "").strip() or entity_id,
        acs=tuple(acs),
        certificate=certificates.get("signing"),
        encryption_certificate=certificates.get("encryption"),
        require_signed_requests="signing" in certificates,
        name_id_formats=formats or (SAML.NAMEID_PERSISTENT,),
        sign=sign,
        allow_idp_initiated=allow_idp_initiated,
        encrypt_assertion=encrypt_assertion,
        slo=slo,
    )
    try:
        check_options(sp)
    except InvalidOption as error:
        raise MetadataError(f"{error.setting} {error.problem}.") from None
    return sp


def _location(element: etree._Element, attribute: str) -> str:
    url = element.get(attribute, "")
    if not re.fullmatch(URL_PATTERN, url):
        raise MetadataError(f"{etree.QName(element).localname} {attribute} {url[:200]!r} is not an http(s) URL.")
    return url
