"""The `upstreams:` list: the repository's config builds, and every mistake stops start-up with a
ConfigError that names the file and the key."""

from __future__ import annotations

import copy
import time

import pytest

from broker.connectors.oidc import OIDCConnector
from broker.connectors.registry import build_connectors
from broker.connectors.saml import SAMLConnector
from broker.errors import LoginFailed
from sso_common.config import ConfigError, Node, load_yaml
from sso_common.keys import load_or_create_signing_identity
from sso_common.store.memory import MemoryStateStore
from tests.support.forge import idp_metadata
from tests.support.servers import REPO

PORTAL = "https://portal.example.test"
OIDC = {
    "id": "corp-oidc",
    "display_name": "Corp (OIDC)",
    "type": "oidc",
    "issuer": "https://idp.example.test",
    "client_id": "access-portal",
    "client_secret": "s3cret",
}
SAML = {
    "id": "corp-saml",
    "display_name": "Corp (SAML)",
    "type": "saml",
    "metadata_url": "https://idp.example.test/saml/metadata",
}


def build(upstreams, tmp_path, source=None, **options):
    node = Node(str(source or tmp_path / "broker.yaml"), "upstreams", upstreams)
    return build_connectors(
        node, portal_url=PORTAL, instance_dir=tmp_path / "instance", store=MemoryStateStore(), clock_skew=60, **options
    )


def refused(upstreams, tmp_path, key: str, problem: str):
    with pytest.raises(ConfigError) as error:
        build(upstreams, tmp_path)
    assert error.value.source == str(tmp_path / "broker.yaml")
    assert error.value.key == key and problem in error.value.problem, str(error.value)


def with_(entry: dict, **changes) -> dict:
    entry = copy.deepcopy(entry)
    entry.update(changes)
    return entry


def test_the_repository_config_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("BROKER_OIDC_CLIENT_SECRET", "the-secret-of-this-deployment")  # https: no demo value
    root = load_yaml(REPO / "config" / "broker.yaml")
    connectors = build_connectors(
        root.child("upstreams"), portal_url=PORTAL, instance_dir=tmp_path, store=MemoryStateStore(), clock_skew=60
    )
    assert list(connectors) == ["example-corp-oidc", "example-corp-saml"]
    oidc, saml = connectors.values()
    assert isinstance(oidc, OIDCConnector) and oidc.protocol == "oidc" and oidc.display_name == "Example Corp (OIDC)"
    assert oidc.redirect_uri == f"{PORTAL}/login/example-corp-oidc/callback"
    assert oidc.scope == "openid email profile groups" and oidc.mapping.username == "preferred_username"
    assert isinstance(saml, SAMLConnector) and saml.protocol == "saml"
    assert saml.acs_url == f"{PORTAL}/login/example-corp-saml/acs"
    assert saml.mapping.display_name == "displayName" and saml.mapping.username is None


def test_defaults_and_custom_mappings(tmp_path):
    connectors = build(
        [
            OIDC,
            with_(SAML, attributes={"username": "uid", "groups": "memberOf"}, mfa_authn_contexts=["urn:example:mfa"]),
        ],
        tmp_path,
    )
    oidc, saml = connectors["corp-oidc"], connectors["corp-saml"]
    assert oidc.scope == "openid email profile groups" and oidc.mapping.display_name == "name"
    assert saml.mapping.username == "uid" and saml.mapping.groups == "memberOf" and saml.mapping.email == "email"
    assert saml.mfa_contexts == {"urn:example:mfa"}


def test_the_sp_key_is_created_once_and_kept(tmp_path):
    first = build([SAML], tmp_path)["corp-saml"].sp_metadata_xml()
    again = build([SAML], tmp_path)["corp-saml"].sp_metadata_xml()
    certificate = load_or_create_signing_identity(tmp_path / "instance" / "saml-sp", "sp", "x").certificate_base64
    assert certificate in first and certificate in again


def test_known_groups_keep_only_those_groups(tmp_path):
    connector = build([OIDC], tmp_path, known_groups={"engineering", "finance"})["corp-oidc"]
    identity = connector.mapping.identity(
        "sub-1",
        {"email": "a@example.com", "groups": ["engineering", "chess-club"]},
        authn_methods=frozenset({"pwd"}),
        auth_time=int(time.time()),
        issuer="https://idp.example.test",
    )
    assert identity.groups == {"engineering"}


def test_a_metadata_file_is_read_relative_to_the_config_file(tmp_path):
    identity = load_or_create_signing_identity(tmp_path / "idp", "idp", "idp")
    (tmp_path / "idp-metadata.xml").write_text(
        idp_metadata("https://idp.example.test", "https://idp.example.test/sso", identity)
    )
    entry = with_(SAML, metadata_file="idp-metadata.xml")
    del entry["metadata_url"]
    redirect, kept = build([entry], tmp_path)["corp-saml"].begin("state-1")  # no network: the file is the IdP
    assert redirect.url.startswith("https://idp.example.test/sso?SAMLRequest=") and kept.request_id


@pytest.mark.parametrize(
    "entry, key, problem",
    [
        (with_(OIDC, client_secrets="x"), "upstreams[0].client_secrets", "unknown key"),
        (with_(SAML, want_assertion_signed=True), "upstreams[0].want_assertion_signed", "unknown key"),
        (with_(OIDC, claims={"groups": "groups", "role": "x"}), "upstreams[0].claims.role", "unknown key"),
        (with_(SAML, attributes={"mail": "email"}), "upstreams[0].attributes.mail", "unknown key"),
        (with_(OIDC, type="ldap"), "upstreams[0].type", "must be oidc or saml"),
        (with_(OIDC, id="Corp OIDC"), "upstreams[0].id", "not a URL-safe id"),
        (with_(OIDC, issuer="idp.example.test"), "upstreams[0].issuer", "not an http(s) URL"),
        (with_(OIDC, scopes=["email", "profile"]), "upstreams[0].scopes", "must include openid"),
        ({k: v for k, v in OIDC.items() if k != "client_secret"}, "upstreams[0].client_secret", "is required"),
        (with_(SAML, want_assertions_signed=False), "upstreams[0].want_assertions_signed", "must be true"),
        (with_(SAML, metadata_file="m.xml"), "upstreams[0]", "exactly one of metadata_url and metadata_file"),
        ({k: v for k, v in SAML.items() if k != "metadata_url"}, "upstreams[0]", "exactly one of"),
        (
            with_({k: v for k, v in SAML.items() if k != "metadata_url"}, metadata_file="missing.xml"),
            "upstreams[0].metadata_file",
            "cannot read",
        ),
    ],
)
def test_mistakes_are_refused(tmp_path, entry, key, problem):
    refused([entry], tmp_path, key, problem)


def test_metadata_file_that_is_not_idp_metadata_is_refused(tmp_path):
    (tmp_path / "broken.xml").write_text("<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'/>")
    entry = with_({k: v for k, v in SAML.items() if k != "metadata_url"}, metadata_file="broken.xml")
    refused([entry], tmp_path, "upstreams[0].metadata_file", "lacks the entity ID")


def test_ids_must_be_unique(tmp_path):
    refused([OIDC, with_(SAML, id="corp-oidc")], tmp_path, "upstreams[1].id", "used by another upstream")


def test_at_least_one_upstream(tmp_path):
    refused([], tmp_path, "upstreams", "at least one")


def test_an_identity_needs_an_email_address(tmp_path):
    connector = build([OIDC], tmp_path)["corp-oidc"]
    with pytest.raises(LoginFailed, match="no email address"):
        connector.mapping.identity(
            "sub-1",
            {"email": ["not-an-address"]},
            authn_methods=frozenset({"pwd"}),
            auth_time=0,
            issuer="https://idp.example.test",
        )
