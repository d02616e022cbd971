"""The `saml:` config section: the repository's file loads, and every mistake names file, key and problem."""

from __future__ import annotations

import pytest
import yaml
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML

from idp_mock.directory import load_directory
from idp_mock.saml_idp.config import parse_saml_settings
from idp_mock.settings import DEFAULT_CONFIG_DIR
from sso_common.config import ConfigError, load_yaml
from sso_common.keys import load_or_create_signing_identity

DIRECTORY = load_directory(DEFAULT_CONFIG_DIR / "directory.yaml")
ISSUER = "https://idp.example.test"
PROVIDER_111 = "arn:aws:iam::111111111111:saml-provider/ExampleCorp"


def parse(tmp_path, config: dict):
    path = tmp_path / "idp.yaml"
    path.write_text(yaml.safe_dump(config))
    return parse_saml_settings(load_yaml(path).child("saml"), ISSUER, DIRECTORY)


def sp_config(**settings) -> dict:
    app = {"entity_id": "https://app.example.test/saml", "acs": "https://app.example.test/acs", **settings}
    return {"saml": {"service_providers": {"app": {k: v for k, v in app.items() if v is not None}}}}


def with_sp(config: dict, key: str, **settings) -> dict:
    config["saml"]["service_providers"][key] = settings
    return config


def test_repository_config_has_the_portal_and_aws(monkeypatch):
    monkeypatch.delenv("PORTAL_URL", raising=False)
    monkeypatch.setenv("IDP_SAML_ADMIN_TOKEN", "an-admin-token-of-this-deployment")  # https: no demo value
    settings = parse_saml_settings(load_yaml(DEFAULT_CONFIG_DIR / "idp.yaml").child("saml"), ISSUER, DIRECTORY)
    assert settings.entity_id == f"{ISSUER}/saml/metadata" and settings.admin_token
    portal = settings.service_providers["http://localhost:8000/saml/metadata"]
    assert portal.default_acs.url == "http://localhost:8000/login/example-corp-saml/acs"
    assert portal.slo.url == "http://localhost:8000/login/example-corp-saml/slo"
    assert portal.name_id_formats[0] == SAML.NAMEID_PERSISTENT and portal.sign == "assertion"
    assert set(portal.attributes) == {"email", "displayName", "department", "groups"}
    # Its signing certificate comes from the metadata the portal publishes, and it must sign its requests.
    assert portal.metadata_url == "http://localhost:8000/saml/metadata" and portal.certificate is None
    assert portal.require_signed_requests
    aws = settings.service_providers["urn:amazon:webservices"]
    assert aws.audience_uri == "https://signin.aws.amazon.com/saml" and aws.allow_idp_initiated
    assert aws.aws.roles_for(DIRECTORY.find("bob")) == [
        f"arn:aws:iam::111111111111:role/ExampleCorpDeveloper,{PROVIDER_111}",
        "arn:aws:iam::222222222222:role/ExampleCorpReadOnly,arn:aws:iam::222222222222:saml-provider/ExampleCorp",
    ]
    assert aws.aws.roles_for(DIRECTORY.find("dave")) == []


def test_defaults_of_a_minimal_sp(tmp_path):
    sp = parse(tmp_path, sp_config()).service_providers["https://app.example.test/saml"]
    assert sp.name == "app" and sp.sign == "assertion" and not sp.allow_idp_initiated and not sp.encrypt_assertion
    assert sp.certificate is None and sp.slo is None and sp.audience_uri == sp.entity_id
    assert [(a.url, a.binding) for a in sp.acs] == [("https://app.example.test/acs", SAML.BINDING_HTTP_POST)]


def test_signed_requests_are_required_by_default_when_the_certificate_is_known(tmp_path):
    identity = load_or_create_signing_identity(tmp_path, "sp", "sp")
    by_metadata = sp_config(metadata_url="https://app.example.test/saml/metadata", acs=None)
    pinned, unpinned = sp_config(certificate=identity.certificate_pem), sp_config()
    relaxed = sp_config(certificate=identity.certificate_pem, require_signed_requests=False)
    assert [
        next(iter(parse(tmp_path, config).service_providers.values())).require_signed_requests
        for config in (by_metadata, pinned, unpinned, relaxed)
    ] == [True, True, False, False]
    sp = parse(tmp_path, by_metadata).service_providers["https://app.example.test/saml"]
    assert sp.acs == () and sp.metadata_url == "https://app.example.test/saml/metadata"  # ACS from the metadata


def test_a_certificate_and_a_metadata_url_exclude_each_other(tmp_path):
    identity = load_or_create_signing_identity(tmp_path, "sp", "sp")
    with pytest.raises(ConfigError) as error:
        parse(tmp_path, sp_config(certificate=identity.certificate_pem, metadata_url="https://app.example.test/md"))
    assert error.value.key == f"{SP}.metadata_url" and "exclude each other" in error.value.problem


@pytest.mark.parametrize("form", ["pem", "base64 der"])
def test_certificate_as_pem_or_base64_der(tmp_path, form):
    identity = load_or_create_signing_identity(tmp_path, "sp", "sp")
    text = identity.certificate_pem if form == "pem" else identity.certificate_base64
    sp = parse(tmp_path, sp_config(certificate=text, encrypt_assertion=True)).service_providers[
        "https://app.example.test/saml"
    ]
    assert sp.certificate == identity.certificate == sp.encryption_certificate


def test_several_acs_with_index_and_default(tmp_path):
    acs = [
        {"url": "https://app.example.test/acs1", "index": 1},
        {"url": "https://app.example.test/acs2", "index": 2, "default": True},
    ]
    sp = parse(tmp_path, sp_config(acs=acs)).service_providers["https://app.example.test/saml"]
    assert sp.default_acs.url == "https://app.example.test/acs2" and [a.index for a in sp.acs] == [1, 2]


DEV_ROLE = {"role": "arn:aws:iam::111111111111:role/Dev", "provider": PROVIDER_111}
SP = "saml.service_providers.app"


@pytest.mark.parametrize(
    "config, key, problem",
    [
        ({"saml": {"colour": "blue"}}, "saml.colour", "unknown key"),
        ({"saml": {"admin_token": "short"}}, "saml.admin_token", "at least 16 characters"),
        (sp_config(colour="blue"), f"{SP}.colour", "unknown key"),
        (sp_config(entity_id="not a url"), f"{SP}.entity_id", "an http(s) URL or a URN"),
        (sp_config(acs="ftp://app/acs"), f"{SP}.acs", "http(s) URL"),
        (sp_config(acs=[]), f"{SP}.acs", "at least one"),
        (
            sp_config(acs=[{"url": "https://a.test/1", "index": 1}, {"url": "https://a.test/2", "index": 1}]),
            f"{SP}.acs[1].index",
            "used twice",
        ),
        (sp_config(slo_url="javascript:alert(1)"), f"{SP}.slo_url", "http(s) URL"),
        (
            sp_config(slo_url="https://app.example.test/slo", slo_binding="soap"),
            f"{SP}.slo_binding",
            "redirect or post",
        ),
        (sp_config(sign="sometimes"), f"{SP}.sign", "must be one of assertion, response, both"),
        (sp_config(encrypt_assertion=True), f"{SP}.encrypt_assertion", "needs the SP's certificate"),
        (sp_config(certificate="bm90IGEgY2VydA=="), f"{SP}.certificate", "not a PEM or base64 DER"),
        (sp_config(metadata_url="file:///etc/passwd"), f"{SP}.metadata_url", "http(s) URL"),
        (sp_config(require_signed_requests=True), f"{SP}.require_signed_requests", "needs the SP's certificate"),
        (sp_config(require_signed_requests="yes"), f"{SP}.require_signed_requests", "true or false"),
        (sp_config(acs=None), f"{SP}.acs", "is required"),
        (sp_config(name_id_formats=["transient"]), f"{SP}.name_id_formats[0]", "unknown NameID format"),
        (sp_config(attributes=["email", "salary"]), f"{SP}.attributes[1]", "unknown attribute"),
        (sp_config(allow_idp_initiated="yes please"), f"{SP}.allow_idp_initiated", "true or false"),
        (
            with_sp(
                sp_config(), "other", entity_id="https://app.example.test/saml", acs="https://other.example.test/acs"
            ),
            "saml.service_providers.other.entity_id",
            "already used by saml.service_providers.app",
        ),
        (sp_config(aws={"roles": {"ghosts": [DEV_ROLE]}}), f"{SP}.aws.roles.ghosts", "unknown group 'ghosts'"),
        (
            sp_config(aws={"roles": {"engineering": [{"role": "arn:aws:iam::1:role/X", "provider": PROVIDER_111}]}}),
            f"{SP}.aws.roles.engineering[0].role",
            "IAM role ARN",
        ),
        (
            sp_config(aws={"roles": {"engineering": [{**DEV_ROLE, "provider": "arn:aws:iam::1:saml-provider/X"}]}}),
            f"{SP}.aws.roles.engineering[0].provider",
            "IAM SAML provider ARN",
        ),
        (
            sp_config(aws={"roles": {"engineering": [{**DEV_ROLE, "role": "arn:aws:iam::222222222222:role/Dev"}]}}),
            f"{SP}.aws.roles.engineering[0]",
            "same AWS account",
        ),
        (
            sp_config(aws={"session_duration_seconds": 60, "roles": {"engineering": [DEV_ROLE]}}),
            f"{SP}.aws.session_duration_seconds",
            "out of range",
        ),
        (
            sp_config(aws={"principal_tags": {"Team": "salary"}, "roles": {"engineering": [DEV_ROLE]}}),
            f"{SP}.aws.principal_tags.Team",
            "unknown attribute",
        ),
        (
            sp_config(aws={"principal_tags": {"bad tag!": "email"}, "roles": {"engineering": [DEV_ROLE]}}),
            f"{SP}.aws.principal_tags.bad tag!",
            "not a valid AWS tag key",
        ),
    ],
)
def test_mistakes_name_file_key_and_problem(tmp_path, config, key, problem):
    with pytest.raises(ConfigError) as error:
        parse(tmp_path, config)
    assert error.value.source == str(tmp_path / "idp.yaml")
    assert error.value.key == key
    assert problem in error.value.problem
