"""python3-saml's XML Schema validation of SAML messages, with each schema compiled once per thread.

`OneLogin_Saml2_XML.validate_xml` (python3-saml 1.16) validates every Response, AuthnRequest and LogoutRequest
against the SAML protocol XSD, compiling the schema anew each time: `_schema_class(etree.parse(file))`, about
1.4 ms of CPU per message, most of what checking a message's shape costs. `install()` gives that hook a factory
that keeps the compiled schema of each XSD file for the thread (an lxml XMLSchema keeps the error log of its
last validation, so it is not shared between threads). The schema files, the validation and its outcome are
python3-saml's own, unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML


class CompiledSchemas:
    """Called like `etree.XMLSchema(document)`: the thread's schema compiled from the same file, made on first use."""

    def __init__(self, compile_schema: Callable[[Any], Any] = etree.XMLSchema):
        self.compile_schema = compile_schema
        self._local = threading.local()

    def __call__(self, document: Any) -> Any:
        url = document.docinfo.URL if hasattr(document, "docinfo") else None
        if not url:
            return self.compile_schema(document)
        compiled = self._local.__dict__.setdefault("schemas", {})
        schema = compiled.get(url)
        if schema is None:
            schema = compiled[url] = self.compile_schema(document)
        return schema


def install() -> None:
    """Once per process (idempotent): python3-saml's validation compiles each schema once per thread."""
    current = OneLogin_Saml2_XML._schema_class
    if not isinstance(current, CompiledSchemas):
        OneLogin_Saml2_XML._schema_class = CompiledSchemas(current)
