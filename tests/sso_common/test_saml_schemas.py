"""python3-saml's schema validation with each schema read and compiled once per thread (sso_common.saml_schemas)."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
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


@pytest.fixture
def compiled(monkeypatch):
    """The files compiled, in order, while the test runs."""
    seen: list[str] = []

    def counting(document):
        seen.append(document.docinfo.URL)
        return etree.XMLSchema(document)

    saml_schemas.install()
    monkeypatch.setattr(saml_schemas, "SCHEMAS", saml_schemas.CompiledSchemas(counting))
    return seen


def test_each_schema_is_read_and_compiled_once_per_thread_and_still_validates(compiled):
    for _ in range(3):
        assert isinstance(OneLogin_Saml2_XML.validate_xml(VALID, PROTOCOL), etree._Element)
        assert OneLogin_Saml2_XML.validate_xml(INVALID, PROTOCOL) == "invalid_xml"
    assert len(compiled) == 1 and compiled[0].endswith(PROTOCOL)
    other = threading.Thread(target=lambda: OneLogin_Saml2_XML.validate_xml(VALID, PROTOCOL))
    other.start()
    other.join()
    assert len(compiled) == 2  # another thread compiles its own (a schema keeps its last error log)


def test_answers_are_python3_samls(compiled):
    """The same three answers python3-saml gives: the element, "invalid_xml", "unloaded_xml" (here for XML
    python3-saml's hardened parser refuses: an entity declaration)."""
    root = OneLogin_Saml2_XML.validate_xml(VALID, PROTOCOL)
    assert root.tag == "{urn:oasis:names:tc:SAML:2.0:protocol}AuthnRequest"
    assert OneLogin_Saml2_XML.validate_xml(INVALID, PROTOCOL) == "invalid_xml"
    entity = b'<!DOCTYPE x [<!ENTITY e "boom">]>' + VALID
    assert OneLogin_Saml2_XML.validate_xml(entity, PROTOCOL) == "unloaded_xml"
    assert OneLogin_Saml2_XML.validate_xml(b"<not-closed>", PROTOCOL) == "unloaded_xml"


def test_install_is_idempotent():
    saml_schemas.install()
    saml_schemas.install()
    assert OneLogin_Saml2_XML.validate_xml is saml_schemas.validate_xml


RACE = """
import threading

from lxml import etree

from sso_common.saml_schemas import SCHEMA_FOLDER

start, failed = threading.Barrier(16), []


def first_schema():
    start.wait()
    try:
        etree.XMLSchema(etree.parse(str(SCHEMA_FOLDER / "saml-schema-protocol-2.0.xsd")))
    except etree.XMLSchemaParseError as error:
        failed.append(str(error))


threads = [threading.Thread(target=first_schema) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(failed))
"""


def test_threads_compiling_a_fresh_processs_first_schemas_together_all_succeed():
    """libxml2 sets up its built-in schema types, without a lock, when a process compiles its first schema: threads
    racing there broke every later compile in the process (saml_schemas.set_up_schema_types, run at import, sets
    them up first). Each of 40 fresh processes races 16 threads. Without the set-up, some processes had all 16
    fail and this test failed 3 runs in 4 (it may miss a regression, but never fails without one)."""
    repo = Path(__file__).resolve().parents[2]

    def race(_: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", RACE], cwd=repo, capture_output=True, text=True, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(race, range(40)))
    assert [(run.returncode, run.stdout.strip()) for run in outcomes] == [(0, "0")] * 40, outcomes[0].stderr[-2000:]
