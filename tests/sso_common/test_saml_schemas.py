"""python3-saml's schema validation with the schema compiled once per thread (sso_common.saml_schemas)."""

from __future__ import annotations

import threading

from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from sso_common import saml_schemas

PROTOCOL = "saml-schema-protocol-2.0.xsd"
VALID = (
    b'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
    b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1" Version="2.0" '
    b'IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://sp.example.test</saml:Issuer></samlp:AuthnRequest>'
)
INVALID = VALID.replace(b' Version="2.0"', b"")  # Version is required


def test_each_schema_is_compiled_once_per_thread_and_still_validates():
    compiled: list[object] = []

    def counting(document):
        compiled.append(document.docinfo.URL)
        return etree.XMLSchema(document)

    saml_schemas.install()
    previous = OneLogin_Saml2_XML._schema_class
    OneLogin_Saml2_XML._schema_class = saml_schemas.CompiledSchemas(counting)
    try:
        for _ in range(3):
            assert isinstance(OneLogin_Saml2_XML.validate_xml(VALID, PROTOCOL), etree._Element)
            assert OneLogin_Saml2_XML.validate_xml(INVALID, PROTOCOL) == "invalid_xml"
        assert len(compiled) == 1 and compiled[0].endswith(PROTOCOL)
        other = threading.Thread(target=lambda: OneLogin_Saml2_XML.validate_xml(VALID, PROTOCOL))
        other.start()
        other.join()
        assert len(compiled) == 2  # another thread compiles its own (a schema keeps its last error log)
    finally:
        OneLogin_Saml2_XML._schema_class = previous


def test_install_is_idempotent():
    saml_schemas.install()
    first = OneLogin_Saml2_XML._schema_class
    saml_schemas.install()
    assert OneLogin_Saml2_XML._schema_class is first and isinstance(first, saml_schemas.CompiledSchemas)
