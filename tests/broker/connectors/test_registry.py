"""The `upstreams:` list: the repository's config builds, and every mistake stops start-up with a
ConfigError that names the file and the key."""

from __future__ import annotations

import copy
import time

import pytest

from broker.connectors.mapping import Authentication
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
CORP = {"allowed_email_domains": ["example.com"], "groups": {"keep": ["engineering", "finance"]}}
OIDC = {
    "id": "corp-oidc",
    "display_name": "Corp (OIDC)",
    "type": "oidc",
    "issuer": "https://idp.example.test",
    "client_id": "access-portal",
    "client_secret": "s3cret",
    **CORP,
}
SAML = {
    "id": "corp-saml",
    "display_name": "Corp (SAML)",
    "type": "saml",
    "metadata_url": "https://idp.example.test/saml/metadata",
    "directory": "corp-oidc",  # the same directory as OIDC's (whose directory is its id)
    **CORP,
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
    assert oidc.scope == "openid email profile groups" and oidc.mapping.username == ("preferred_username",)
    assert isinstance(saml, SAMLConnector) and saml.protocol == "saml"
    assert saml.acs_url == f"{PORTAL}/login/example-corp-saml/acs"
    assert saml.mapping.display_name == ("displayName",) and saml.mapping.username == ()
    for connector in (oidc, saml):  # one directory over two protocols, trusted for example.com only
        boundary = connector.mapping.trust
        assert boundary.directory == "example-corp" and boundary.email_domains.patterns == ("example.com",)
        assert boundary.groups.outputs == {"engineering", "aws-admins", "finance", "contractors", "security", "hr"}
        assert boundary.groups.prefix is None
    assert oidc.mapping.trust.mfa.amr == {"otp"} and saml.mapping.trust.mfa.authn_contexts
    assert oidc.http.server == saml.http.server  # one IdP server: one pool of slots for both


def test_defaults_and_custom_mappings(tmp_path):
    adfs_email = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    adfs_groups = "http://schemas.xmlsoap.org/claims/Group"
    connectors = build(
        [
            OIDC,
            with_(
                SAML,
                attributes={"username": "uid", "groups": [adfs_groups, "memberOf"], "email": adfs_email},
                mfa={"authn_contexts": ["urn:example:mfa"], "require": True},
            ),
        ],
        tmp_path,
    )
    oidc, saml = connectors["corp-oidc"], connectors["corp-saml"]
    assert oidc.scope == "openid email profile groups" and oidc.mapping.display_name == ("name",)
    assert oidc.userinfo == "auto" and oidc.token_endpoint_auth_method is None  # from discovery
    assert saml.mapping.username == ("uid",) and saml.mapping.groups == (adfs_groups, "memberOf")
    assert saml.mapping.email == (adfs_email,)
    assert saml.mapping.trust.mfa.authn_contexts == {"urn:example:mfa"} and saml.mapping.trust.mfa.require


def test_the_sp_key_is_created_once_and_kept(tmp_path):
    first = build([SAML], tmp_path)["corp-saml"].sp_metadata_xml()
    again = build([SAML], tmp_path)["corp-saml"].sp_metadata_xml()
    certificate = load_or_create_signing_identity(tmp_path / "instance" / "saml-sp", "sp", "x").certificate_base64
    assert certificate in first and certificate in again


def test_groups_outside_the_mapping_are_dropped_and_reported(tmp_path):
    connector = build([with_(OIDC, groups={"keep": ["engineering"], "map": {"Finance Team": "finance"}})], tmp_path)[
        "corp-oidc"
    ]
    identity, dropped = connector.mapping.identity(
        "sub-1",
        {"email": "a@example.com", "groups": ["engineering", "Finance Team", "chess-club"]},
        authn=Authentication(time=int(time.time())),
        issuer="https://idp.example.test",
    )
    assert identity.groups == {"engineering", "finance"} and dropped == {"chess-club"}


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
        (
            with_(
                {k: v for k, v in OIDC.items() if k != "client_secret"}, token_endpoint_auth_method="client_secret_post"
            ),
            "upstreams[0].client_secret",
            "is required with token_endpoint_auth_method client_secret_post",
        ),
        (
            with_(OIDC, token_endpoint_auth_method="tls_client_auth"),
            "upstreams[0].token_endpoint_auth_method",
            "one of",
        ),
        (with_(OIDC, userinfo="sometimes"), "upstreams[0].userinfo", "must be one of auto, always, never"),
        (with_(OIDC, timeout_seconds=0), "upstreams[0].timeout_seconds", "out of range"),
        (with_(OIDC, max_logins_in_flight=500), "upstreams[0].max_logins_in_flight", "out of range"),
        (
            {k: v for k, v in OIDC.items() if k != "allowed_email_domains"},
            "upstreams[0].allowed_email_domains",
            "is required",
        ),
        (with_(OIDC, allowed_email_domains=[]), "upstreams[0].allowed_email_domains", "at least one domain"),
        (with_(OIDC, allowed_email_domains=["example"]), "upstreams[0].allowed_email_domains[0]", "not a domain"),
        (with_(OIDC, allowed_email_domains=["*example.com"]), "upstreams[0].allowed_email_domains[0]", "not a domain"),
        (with_(OIDC, allowed_email_domains=["*.com"]), "upstreams[0].allowed_email_domains[0]", "not a domain"),
        (with_(OIDC, email_verified="no"), "upstreams[0].email_verified", "if_present, required, ignore"),
        (with_(SAML, email_verified="required"), "upstreams[0].attributes.email_verified", "must name the claim"),
        (with_(OIDC, mfa={"authn_contexts": ["x"]}), "upstreams[0].mfa.authn_contexts", "unknown key"),
        (with_(SAML, mfa={"acr": ["otp"]}), "upstreams[0].mfa.acr", "unknown key"),
        (with_(SAML, mfa={"amr": ["otp"]}), "upstreams[0].mfa.amr_attribute", "is needed with mfa.amr"),
        (with_(OIDC, mfa={"require": True}), "upstreams[0].mfa.require", "needs the values"),
        (with_(OIDC, mfa={"require": "yes"}), "upstreams[0].mfa.require", "true or false"),
        (with_(OIDC, groups={"allow": ["x"]}), "upstreams[0].groups.allow", "unknown key"),
        (with_(OIDC, groups={"map": {"a": "bad\nname"}}), "upstreams[0].groups.map.a", "not a group name"),
        (with_(OIDC, groups={"keep": ["x"], "map": {"x": "y"}}), "upstreams[0].groups.map.x", "also in groups.keep"),
        (with_(OIDC, groups={"prefix": "-bad"}), "upstreams[0].groups.prefix", "not a prefix"),
        (with_(OIDC, directory="Corp Dir"), "upstreams[0].directory", "not a directory name"),
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
    with pytest.raises(LoginFailed, match="not well-formed"):
        connector.mapping.identity(
            "sub-1", {"email": ["not-an-address"]}, authn=Authentication(time=0), issuer="https://idp.example.test"
        )


PARTNER = {
    "id": "partner",
    "display_name": "Partner",
    "type": "oidc",
    "issuer": "https://login.partner.example",
    "client_id": "portal",
    "client_secret": "p",
    "allowed_email_domains": ["partner.example"],
    "groups": {"prefix": "partner-"},
}


@pytest.mark.parametrize(
    "partner, key, problem",
    [
        (with_(PARTNER, allowed_email_domains=["example.com"]), "allowed_email_domains", "example.com overlaps"),
        (with_(PARTNER, allowed_email_domains=["EXAMPLE.com"]), "allowed_email_domains", "overlaps"),
        (with_(PARTNER, groups={"keep": ["engineering"]}), "groups", "group 'engineering' could also come"),
        (with_(PARTNER, groups={"map": {"admins": "finance"}}), "groups", "group 'finance'"),
        (with_(PARTNER, groups={"prefix": "eng"}), "groups", "group 'engineering'"),
    ],
)
def test_two_directories_never_share_an_address_or_a_group(tmp_path, partner, key, problem):
    """What a partner IdP may assert: its own domains and groups that no other directory's can become."""
    with pytest.raises(ConfigError) as error:
        build([OIDC, partner], tmp_path)
    assert error.value.key == f"upstreams[1].{key}" and problem in error.value.problem, str(error.value)


def test_prefixes_of_two_directories_must_not_nest(tmp_path):
    corp = with_(OIDC, groups={"prefix": "corp-"})
    with pytest.raises(ConfigError, match="prefix 'corp-x-'"):
        build([corp, with_(PARTNER, groups={"prefix": "corp-x-"})], tmp_path)
    assert build([corp, PARTNER], tmp_path)  # corp- and partner- are apart


def test_wildcard_domains_cover_subdomains_only(tmp_path):
    wide = with_(PARTNER, allowed_email_domains=["*.partner.example"])
    build([with_(OIDC, allowed_email_domains=["partner.example"], groups={}), wide], tmp_path)  # disjoint
    with pytest.raises(ConfigError, match="overlaps"):
        build([with_(OIDC, allowed_email_domains=["eu.partner.example"], groups={}), wide], tmp_path)


def test_one_directory_over_two_protocols_may_share_domains_and_groups(tmp_path):
    connectors = build([OIDC, SAML], tmp_path)
    assert {c.mapping.trust.directory for c in connectors.values()} == {"corp-oidc"}
    with pytest.raises(ConfigError, match="overlaps"):  # without the shared directory: refused
        build([OIDC, {k: v for k, v in SAML.items() if k != "directory"}], tmp_path)


def test_a_client_secret_file_holds_any_characters_without_yaml_quoting(tmp_path):
    secret = 'q+7/Tz=k%Lm: #not a comment\' "x" & ~'
    (tmp_path / "corp.secret").write_text(secret + "\n")
    entry = {k: v for k, v in OIDC.items() if k != "client_secret"}
    connector = build([with_(entry, client_secret_file="corp.secret")], tmp_path)["corp-oidc"]
    assert connector.client_secret == secret  # read relative to broker.yaml, the final line break dropped
    refused([with_(OIDC, client_secret_file="corp.secret")], tmp_path, "upstreams[0]", "not both")
    refused(
        [with_(entry, client_secret_file="absent.secret")], tmp_path, "upstreams[0].client_secret_file", "cannot read"
    )
    (tmp_path / "empty.secret").write_text("\n")
    refused([with_(entry, client_secret_file="empty.secret")], tmp_path, "upstreams[0].client_secret_file", "is empty")
