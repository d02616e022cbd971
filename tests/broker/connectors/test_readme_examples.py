"""The worked configurations of the README ("Plug in your own identity provider") are valid as written:
an OpenID Provider with a thin ID token and client_secret_post, a SAML IdP with ADFS-style claim names."""

from __future__ import annotations

import re

import yaml

from broker.connectors.oidc import OIDCConnector
from broker.connectors.registry import build_connectors
from broker.connectors.saml import SAMLConnector
from sso_common.config import Node
from sso_common.store.memory import MemoryStateStore
from tests.support.servers import REPO

SECTION = "## Plug in your own identity provider"


def yaml_blocks(title: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    part = section[section.index(title) :]
    part = part[: part.index("\n### ", 1)]
    return re.findall(r"```yaml\n(.*?)```", part, re.S)


def test_the_worked_oidc_and_saml_upstreams_build_as_documented(tmp_path):
    [oidc_block] = yaml_blocks("### An OpenID Provider")
    [saml_block] = yaml_blocks("### A SAML IdP with ADFS-style claims")
    upstreams = yaml.safe_load(oidc_block)["upstreams"] + yaml.safe_load(saml_block)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "acme-oidc").write_text("q+7/Tz=k%Lm:#x'\n")
    source = str(tmp_path / "broker.yaml")
    connectors = build_connectors(
        Node(source, "upstreams", upstreams),
        portal_url="https://portal.acme.example",
        instance_dir=tmp_path / "instance",
        store=MemoryStateStore(),
        clock_skew=60,
    )
    oidc, saml = connectors["acme"], connectors["acme-adfs"]
    assert isinstance(oidc, OIDCConnector) and isinstance(saml, SAMLConnector)
    assert oidc.client_secret == "q+7/Tz=k%Lm:#x'" and oidc.token_endpoint_auth_method == "client_secret_post"
    assert oidc.mapping.trust.groups.mapped == {"AWS Administrators": "aws-admins", "engineering": "engineering"}
    assert saml.mapping.groups[0] == "http://schemas.xmlsoap.org/claims/Group"
    assert saml.mapping.trust.groups.mapped["ACME\\AWS-Admins"] == "aws-admins"
    assert saml.mapping.trust.mfa.amr_attribute == "http://schemas.microsoft.com/claims/authnmethodsreferences"
