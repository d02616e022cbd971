"""python3-saml's XML Schema validation of SAML messages, with each schema read and compiled once per thread.

`OneLogin_Saml2_XML.validate_xml` (python3-saml 1.16) validates every Response, AuthnRequest and LogoutRequest
against the SAML protocol XSD, reading the XSD file and compiling the schema anew each time: about 1.4 ms of
CPU per message for the compilation, most of what checking a message's shape costs, and 0.12 ms more for
parsing the file. `install()` puts in its place `validate_xml` below: python3-saml's function line for line (the
same schema files, validation and answers: the element, "unloaded_xml" or "invalid_xml"), but the schema comes
from `SCHEMAS`, which keeps each file's compiled schema for the thread (an lxml XMLSchema keeps the error log of
its last validation, so it is not shared between threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onelogin.saml2.xml_utils
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

SCHEMA_FOLDER = Path(onelogin.saml2.xml_utils.__file__).parent / "schemas"  # where python3-saml reads them
_SMALLEST_SCHEMA = b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="a"/></xs:schema>'


def set_up_schema_types() -> None:
    """libxml2 (2.14 here) sets up its built-in XML Schema types when the process compiles its first schema, and
    without a lock: threads compiling their first schemas at the same moment broke them for good, and every schema
    compiled in the process afterwards failed ("the given type is not a built-in type"). A server worker whose
    first SAML messages came together answered each one 500 from then on (in about one fresh process in 2 to 12
    when 8-16 threads raced). Called at import, so in one thread before the servers fork their workers."""
    etree.XMLSchema(etree.XML(_SMALLEST_SCHEMA))


set_up_schema_types()


class CompiledSchemas:
    """Each thread's compiled schema of each XSD file, read and compiled on first use."""

    def __init__(self, compile_schema: Callable[[Any], Any] = etree.XMLSchema):
        self.compile_schema = compile_schema
        self._local = threading.local()

    def schema(self, name: str) -> Any:
        compiled = self._local.__dict__.setdefault("schemas", {})
        schema = compiled.get(name)
        if schema is None:
            schema = compiled[name] = self.compile_schema(etree.parse(str(SCHEMA_FOLDER / name)))
        return schema


SCHEMAS = CompiledSchemas()


def validate_xml(xml: Any, schema: str, debug: bool = False) -> Any:
    """python3-saml 1.16's `OneLogin_Saml2_XML.validate_xml`, but for where the compiled schema comes from (and
    for its `debug` printing to standard output, which the apps never turn on)."""
    assert isinstance(schema, str)
    try:
        xml = OneLogin_Saml2_XML.to_etree(xml)
    except Exception:  # noqa: BLE001 - as python3-saml: anything unreadable is "unloaded_xml"
        return "unloaded_xml"
    if not SCHEMAS.schema(schema).validate(xml):
        return "invalid_xml"
    return xml


def install() -> None:
    """Once per process (idempotent): python3-saml validates with `validate_xml` above."""
    OneLogin_Saml2_XML.validate_xml = staticmethod(validate_xml)
