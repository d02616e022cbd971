"""broker.yaml as a whole: access.yaml is checked against the groups the upstreams' mappings can produce
(no more known_groups_file, the coupling to the mock IdP's directory.yaml), and `broker check-config` prints
what each upstream may vouch for."""

from __future__ import annotations

import copy

import pytest
import yaml

from broker.cli import main
from broker.settings import load_settings
from sso_common.config import ConfigError
from tests.support.servers import REPO

UPSTREAM = {
    "id": "corp",
    "display_name": "Corp",
    "type": "oidc",
    "issuer": "https://idp.example.test",
    "client_id": "portal",
    "client_secret": "s3cret",
    "allowed_email_domains": ["example.com"],
    "groups": {"keep": ["engineering", "aws-admins", "finance", "contractors", "security"]},
}


def write(tmp_path, upstreams=None, **top) -> str:
    (tmp_path / "access.yaml").write_text((REPO / "config" / "access.yaml").read_text())
    config = {"portal_url": "http://localhost:8000", "access": "access.yaml", "upstreams": upstreams or [UPSTREAM]}
    (tmp_path / "broker.yaml").write_text(yaml.safe_dump({**config, **top}))
    return str(tmp_path / "broker.yaml")


def test_the_repository_config_loads_without_the_idps_directory(tmp_path):
    settings = load_settings(REPO / "config" / "broker.yaml", instance_dir=tmp_path)
    assert [t.upstream for t in settings.upstream_trusts] == ["example-corp-oidc", "example-corp-saml"]
    assert "known_groups_file" not in (REPO / "config" / "broker.yaml").read_text()


def test_an_assignment_to_a_group_no_upstream_can_produce_is_refused(tmp_path):
    narrow = copy.deepcopy(UPSTREAM)
    narrow["groups"] = {"keep": ["engineering", "aws-admins", "finance", "contractors"]}  # security: assigned
    with pytest.raises(ConfigError) as refused:
        load_settings(write(tmp_path, [narrow]), instance_dir=tmp_path / "i")
    assert refused.value.source.endswith("access.yaml") and refused.value.key.startswith("assignments[")
    assert "unknown group 'security' (the upstreams' group mappings produce: aws-admins, contractors" in str(
        refused.value
    )


def test_a_prefix_makes_its_groups_assignable(tmp_path):
    path = write(
        tmp_path,
        [
            UPSTREAM,
            {
                **UPSTREAM,
                "id": "partner",
                "issuer": "https://partner.example",
                "allowed_email_domains": ["partner.example"],
                "groups": {"prefix": "partner-"},
            },
        ],
    )
    access = yaml.safe_load((tmp_path / "access.yaml").read_text())
    access["assignments"].append(
        {"group": "partner-devs", "account": "example-sandbox", "permission_set": "AdministratorAccess"}
    )
    (tmp_path / "access.yaml").write_text(yaml.safe_dump(access))
    assert load_settings(path, instance_dir=tmp_path / "i").access.assignments[-1].group == "partner-devs"


def test_the_admin_group_must_be_producible(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_settings(write(tmp_path, admin_group="cloud-admins"), instance_dir=tmp_path / "i")
    assert refused.value.key == "admin_group" and "no upstream can make anyone a member" in refused.value.problem


def test_known_groups_file_is_refused_with_what_replaced_it(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_settings(write(tmp_path, known_groups_file="directory.yaml"), instance_dir=tmp_path / "i")
    assert refused.value.key == "known_groups_file" and "groups:` mappings" in refused.value.problem


def test_check_config_prints_each_upstreams_mapping_and_boundary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BROKER_INSTANCE_DIR", str(tmp_path / "instance"))
    assert main(["--config", str(REPO / "config" / "broker.yaml"), "check-config"]) == 0
    out = capsys.readouterr().out
    for line in (
        "upstream example-corp-oidc (oidc): Example Corp (OIDC)",
        "  directory: example-corp",
        "  email domains: example.com",
        "  groups <- groups",
        "    aws-admins (kept)",
        "    any other group: dropped (audited)",
        "  mfa: second factor recognised when amr in [otp]",
        "upstream example-corp-saml (saml): Example Corp (SAML)",
        "  subject <- NameID (not transient)",
        "assignable groups: the upstreams' group mappings produce: aws-admins, contractors, engineering, finance",
    ):
        assert any(printed.startswith(line) for printed in out.splitlines()), (line, out)
    assert not (tmp_path / "instance").exists()  # check-config writes nothing


def test_check_config_names_the_file_key_and_problem(tmp_path, capsys):
    clash = {**UPSTREAM, "id": "partner", "issuer": "https://partner.example", "groups": {}}
    assert main(["--config", write(tmp_path, [UPSTREAM, clash]), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "broker.yaml: upstreams[1].allowed_email_domains: example.com overlaps example.com of upstream 'corp'" in err


@pytest.mark.parametrize(
    "content", ["<md:EntityDescriptor/>".encode("utf-16"), bytes(range(256))], ids=["utf-16", "binary"]
)
def test_saml_metadata_that_is_not_utf8_is_a_configuration_error(tmp_path, capsys, content):
    """It was a UnicodeDecodeError traceback; invalid XML already got a configuration error."""
    (tmp_path / "idp-metadata.xml").write_bytes(content)
    saml = {**UPSTREAM, "id": "adfs", "type": "saml", "metadata_file": "idp-metadata.xml"}
    for key in ("issuer", "client_id", "client_secret"):
        saml.pop(key)
    assert main(["--config", write(tmp_path, [saml]), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "upstreams[0].metadata_file" in err and "is not UTF-8 text" in err and "Traceback" not in err


def test_a_store_that_cannot_be_reached_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BROKER_INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.setenv("BROKER_DIRECTORY_URL", "postgresql://sso:wrong-password@127.0.0.1:1/sso")
    assert main(["--config", str(REPO / "config" / "broker.yaml"), "people", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("broker: ") and "unavailable" in err and len(err.splitlines()) == 1
    assert "wrong-password" not in err
