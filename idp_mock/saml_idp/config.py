"""The `saml:` section of config/idp.yaml: the SAML IdP's admin token and its service providers.

Everything is validated at start-up, so a typo stops the IdP with a ConfigError that names file and key
instead of producing assertions an SP (or AWS) rejects later.

How the IdP learns an SP's signing certificate, as real IdPs do: either `certificate` (pinned in the file)
or `metadata_url` (the SP's published SAML metadata, fetched at first use, cached and refreshed; see
remote.py), not both. With `metadata_url` the file stays authoritative: the entity ID, ACS and SLO
addresses, NameID formats, attributes and signing options are the file's; the metadata must name the same
entity ID and supplies the certificates, plus the ACS and SLO addresses only when the file leaves them out.
`require_signed_requests` (default: true whenever a certificate or metadata_url is given) makes unsigned
AuthnRequests a refusal; LogoutRequests must always be signed (SAML profiles 4.4.3.1), so an SP without a
certificate cannot use single logout.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from cryptography import x509
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML

from idp_mock.directory import Directory, Employee
from idp_mock.errors import InvalidOption
from sso_common.config import URL_PATTERN, Node

NAME_ID_FORMATS = {
    "persistent": SAML.NAMEID_PERSISTENT,
    "emailAddress": SAML.NAMEID_EMAIL_ADDRESS,
    "unspecified": SAML.NAMEID_UNSPECIFIED,
}


def name_id_value(employee: Employee, name_id_format: str) -> str:
    """Persistent NameIDs are the directory subject (stable, opaque); unspecified is the username."""
    return {
        SAML.NAMEID_PERSISTENT: employee.subject,
        SAML.NAMEID_EMAIL_ADDRESS: employee.email,
        SAML.NAMEID_UNSPECIFIED: employee.username,
    }[name_id_format]


# Attributes an SP may be given, by their SAML name (basic name format).
ATTRIBUTES = {
    "email": lambda e: [e.email],
    "displayName": lambda e: [e.name],
    "department": lambda e: [e.department] if e.department else [],
    "groups": lambda e: list(e.groups),
}
DEFAULT_ATTRIBUTES = tuple(ATTRIBUTES)
SIGN_CHOICES = ("assertion", "response", "both")
BINDINGS = {"redirect": SAML.BINDING_HTTP_REDIRECT, "post": SAML.BINDING_HTTP_POST}
ENTITY_ID_PATTERN = URL_PATTERN + r"|urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+"

AWS_ROLE_PATTERN = r"arn:aws:iam::(\d{12}):role/[\w+=,.@/-]{1,512}"
AWS_PROVIDER_PATTERN = r"arn:aws:iam::(\d{12}):saml-provider/[\w.-]{1,128}"
AWS_TAG_PATTERN = r"[\w.:/=+@-]{1,128}"
AWS_TAG_SOURCES = ("email", "displayName", "department")


@dataclass(frozen=True)
class Endpoint:
    url: str
    binding: str
    index: int = 0
    is_default: bool = False


@dataclass(frozen=True)
class AWSRelease:
    """What the AWS SP is told: the roles a user may take (per group), session name, duration and tags."""

    roles: dict[str, tuple[tuple[str, str], ...]]  # group -> ((role ARN, provider ARN), ...)
    session_duration: int
    principal_tags: dict[str, str]  # tag name -> attribute source

    def roles_for(self, employee: Employee) -> list[str]:
        pairs = [pair for group in employee.groups for pair in self.roles.get(group, ())]
        return [f"{role},{provider}" for role, provider in dict.fromkeys(pairs)]


@dataclass(frozen=True)
class ServiceProvider:
    entity_id: str
    name: str
    acs: tuple[Endpoint, ...]  # HTTP-POST assertion consumer services (may be empty
    # until the SP's metadata is read, see metadata_url)
    certificate: x509.Certificate | None = None  # verifies the SP's signed requests
    encryption_certificate: x509.Certificate | None = None
    name_id_formats: tuple[str, ...] = (SAML.NAMEID_PERSISTENT,)  # the first is the default
    attributes: tuple[str, ...] = DEFAULT_ATTRIBUTES
    sign: str = "assertion"
    allow_idp_initiated: bool = False
    encrypt_assertion: bool = False
    slo: Endpoint | None = None
    audience: str = ""
    aws: AWSRelease | None = None
    metadata_url: str | None = None  # certificates (and missing endpoints) come from there
    require_signed_requests: bool = False  # an unsigned AuthnRequest is refused

    @property
    def audience_uri(self) -> str:
        return self.audience or self.entity_id

    @property
    def default_acs(self) -> Endpoint:
        return next((acs for acs in self.acs if acs.is_default), self.acs[0])


@dataclass(frozen=True)
class SAMLSettings:
    entity_id: str
    sso_url: str
    slo_url: str
    admin_token: str
    service_providers: dict[str, ServiceProvider] = field(default_factory=dict)


def load_certificate(text: str) -> x509.Certificate:
    """A certificate given as PEM or as base64 DER (as SAML metadata carries it). ValueError if neither."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return x509.load_pem_x509_certificate(text.encode())
    try:
        der = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except binascii.Error:
        raise ValueError("not PEM and not base64") from None
    return x509.load_der_x509_certificate(der)


def check_options(sp: ServiceProvider) -> None:
    """Rules shared by config and run-time registration (InvalidOption)."""
    if sp.sign not in SIGN_CHOICES:
        raise InvalidOption("sign", f"must be one of {', '.join(SIGN_CHOICES)}")
    if sp.encrypt_assertion and sp.encryption_certificate is None and sp.metadata_url is None:
        raise InvalidOption("encrypt_assertion", "needs the SP's certificate")


def parse_saml_settings(node: Node, issuer: str, directory: Directory) -> SAMLSettings:
    node.only_keys("admin_token", "service_providers")
    token = node.child("admin_token", None)
    providers: dict[str, ServiceProvider] = {}
    keys: dict[str, str] = {}
    for key, sp_node in node.child("service_providers", {}).items():
        sp = _parse_sp(key, sp_node, directory)
        if sp.entity_id in providers:
            raise sp_node.child("entity_id").error(f"{sp.entity_id} is already used by {keys[sp.entity_id]}")
        providers[sp.entity_id], keys[sp.entity_id] = sp, sp_node.key
    return SAMLSettings(
        entity_id=f"{issuer}/saml/metadata",
        sso_url=f"{issuer}/saml/sso",
        slo_url=f"{issuer}/saml/slo",
        # Without a token the admin API stays closed.
        admin_token=token.secret(issuer) if token.value else "",
        service_providers=providers,
    )


def _url(node: Node) -> str:
    return node.string(URL_PATTERN, "an http(s) URL")


def _parse_sp(key: str, node: Node, directory: Directory) -> ServiceProvider:
    node.only_keys(
        "name",
        "entity_id",
        "audience",
        "acs",
        "certificate",
        "metadata_url",
        "require_signed_requests",
        "name_id_formats",
        "attributes",
        "sign",
        "allow_idp_initiated",
        "encrypt_assertion",
        "slo_url",
        "slo_binding",
        "aws",
    )
    certificate = None
    cert_node = node.child("certificate", None)
    if cert_node.value is not None:
        try:
            certificate = load_certificate(cert_node.string())
        except ValueError as error:
            raise cert_node.error(f"is not a PEM or base64 DER certificate ({error})") from None
    metadata_node = node.child("metadata_url", None)
    metadata_url = None if metadata_node.value is None else _url(metadata_node)
    if metadata_url is not None and certificate is not None:
        raise metadata_node.error("and certificate exclude each other: the certificate comes from the metadata")
    require_node = node.child("require_signed_requests", certificate is not None or metadata_url is not None)
    require_signed = require_node.boolean()
    if require_signed and certificate is None and metadata_url is None:
        raise require_node.error("needs the SP's certificate or metadata_url to check the signatures with")
    acs_node = node.child("acs", None)
    if acs_node.value is None and metadata_url is None:
        node.child("acs")  # "is required"
    formats_node = node.child("name_id_formats", ["persistent"])
    formats = []
    for format_node in formats_node.elements():
        if format_node.string() not in NAME_ID_FORMATS:
            raise format_node.error(f"unknown NameID format (use {', '.join(NAME_ID_FORMATS)})")
        formats.append(NAME_ID_FORMATS[format_node.value])
    if not formats:
        raise formats_node.error("must name at least one format")
    attributes = []
    for attribute_node in node.child("attributes", list(DEFAULT_ATTRIBUTES)).elements():
        if attribute_node.string() not in ATTRIBUTES:
            raise attribute_node.error(f"unknown attribute (use {', '.join(ATTRIBUTES)})")
        attributes.append(attribute_node.value)
    slo = None
    if node.child("slo_url", None).value is not None:
        binding = node.child("slo_binding", "redirect").string()
        if binding not in BINDINGS:
            raise node.child("slo_binding").error("must be redirect or post")
        slo = Endpoint(_url(node.child("slo_url")), BINDINGS[binding])
    elif node.child("slo_binding", None).value is not None:
        raise node.child("slo_binding").error("needs slo_url")
    audience_node = node.child("audience", None)
    audience = "" if audience_node.value is None else audience_node.string(ENTITY_ID_PATTERN, "an http(s) URL or a URN")
    aws_node = node.child("aws", None)
    sp = ServiceProvider(
        entity_id=node.child("entity_id").string(ENTITY_ID_PATTERN, "an http(s) URL or a URN"),
        name=node.child("name", key).string(),
        acs=_parse_acs(acs_node) if acs_node.value is not None else (),
        certificate=certificate,
        encryption_certificate=certificate,
        name_id_formats=tuple(formats),
        attributes=tuple(attributes),
        sign=node.child("sign", "assertion").string(),
        allow_idp_initiated=node.child("allow_idp_initiated", False).boolean(),
        encrypt_assertion=node.child("encrypt_assertion", False).boolean(),
        slo=slo,
        audience=audience,
        aws=_parse_aws(aws_node, directory) if aws_node.value is not None else None,
        metadata_url=metadata_url,
        require_signed_requests=require_signed,
    )
    try:
        check_options(sp)
    except InvalidOption as error:
        raise node.child(error.setting).error(error.problem) from None
    return sp


def _parse_acs(node: Node) -> tuple[Endpoint, ...]:
    """`acs: URL` or a list of {url, index, default}: responses always go by HTTP-POST."""
    if isinstance(node.value, str):
        return (Endpoint(_url(node), SAML.BINDING_HTTP_POST, 0, True),)
    endpoints: list[Endpoint] = []
    indexes: set[int] = set()
    for element in node.elements():
        element.only_keys("url", "index", "default")
        index = element.child("index", len(endpoints)).integer(0, 65535)
        if index in indexes:
            raise element.child("index").error(f"index {index} is used twice")
        indexes.add(index)
        endpoints.append(
            Endpoint(
                _url(element.child("url")), SAML.BINDING_HTTP_POST, index, element.child("default", False).boolean()
            )
        )
    if not endpoints:
        raise node.error("must name at least one assertion consumer service URL")
    if sum(endpoint.is_default for endpoint in endpoints) > 1:
        raise node.error("only one assertion consumer service may be the default")
    return tuple(endpoints)


def _parse_aws(node: Node, directory: Directory) -> AWSRelease:
    node.only_keys("session_duration_seconds", "principal_tags", "roles")
    roles = {}
    for group, group_node in node.child("roles").items():
        if group not in directory.groups:
            raise group_node.error(f"unknown group {group!r}")
        pairs = []
        for pair_node in group_node.elements():
            pair_node.only_keys("role", "provider")
            role = pair_node.child("role").string(AWS_ROLE_PATTERN, "an IAM role ARN")
            provider = pair_node.child("provider").string(AWS_PROVIDER_PATTERN, "an IAM SAML provider ARN")
            if role.split(":")[4] != provider.split(":")[4]:
                raise pair_node.error("role and provider must be in the same AWS account")
            pairs.append((role, provider))
        roles[group] = tuple(pairs)
    tags = {}
    for tag, tag_node in node.child("principal_tags", {}).items():
        Node(tag_node.source, tag_node.key, tag).string(AWS_TAG_PATTERN, "a valid AWS tag key")
        if tag_node.string() not in AWS_TAG_SOURCES:
            raise tag_node.error(f"unknown attribute (use {', '.join(AWS_TAG_SOURCES)})")
        tags[tag] = tag_node.value
    return AWSRelease(roles, node.child("session_duration_seconds", 3600).integer(900, 43200), tags)
