"""Faults on demand (idp_mock/faults.py) at the IdP's side: the switches in idp.yaml, and what a thin ID
token holds. tests/broker/connectors/test_idp_faults.py shows each fault refused by the broker."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from broker_login.pytest_plugin import IdPFaults
from idp_mock.settings import load_settings
from sso_common.config import ConfigError
from tests.support.oidc_rp import register_client, sign_in_for_tokens, userinfo
from tests.support.servers import REPO, start_idp

TOKEN = "faults-admin-token-for-tests"


def settings_with(tmp_path, faults_yaml: str):
    text = (
        (REPO / "config" / "idp.yaml")
        .read_text()
        .replace("faults:\n  admin_token: ${IDP_FAULTS_ADMIN_TOKEN:-}\n", faults_yaml)
    )
    (tmp_path / "idp.yaml").write_text(text)
    (tmp_path / "directory.yaml").write_text((REPO / "config" / "directory.yaml").read_text())
    return load_settings(tmp_path / "idp.yaml", tmp_path / "instance")


def test_faults_in_the_config_apply_to_every_answer(tmp_path):
    settings = settings_with(
        tmp_path,
        "faults:\n  oidc_clients:\n    app: [{kind: thin_id_token}, {kind: delay, seconds: 0.5}]\n"
        "  saml_service_providers:\n    'https://sp.example/metadata': [{kind: error, status: Requester}]\n",
    )
    assert [fault.kind for fault in settings.faults.configured["oidc:app"]] == ["thin_id_token", "delay"]
    assert settings.faults.configured["saml:https://sp.example/metadata"][0].status == "Requester"
    assert settings.faults.admin_token == ""  # no token: no admin API


@pytest.mark.parametrize(
    "faults_yaml, key, problem",
    [
        ("faults:\n  oidc_clients:\n    app: [{kind: explode}]\n", "faults.oidc_clients.app[0].kind", "unknown fault"),
        (
            "faults:\n  oidc_clients:\n    app: [{kind: expired, count: 2}]\n",
            "faults.oidc_clients.app[0].count",
            "no count",
        ),
        (
            "faults:\n  oidc_clients:\n    app: [{kind: error, error: nope}]\n",
            "faults.oidc_clients.app[0].error",
            "unknown OIDC error",
        ),
        (
            "faults:\n  saml_service_providers:\n    sp: [{kind: thin_id_token}]\n",
            "faults.saml_service_providers.sp[0].kind",
            "OIDC",
        ),
        ("faults:\n  admin_token: short\n", "faults.admin_token", "at least 16"),
    ],
)
def test_a_bad_fault_in_the_config_is_named(tmp_path, faults_yaml, key, problem):
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, faults_yaml)
    assert caught.value.key == key and problem in caught.value.problem


@pytest.fixture(scope="module")
def faulty_idp(tmp_path_factory):
    service = start_idp(tmp_path_factory.mktemp("faulty-idp"), env={"IDP_FAULTS_ADMIN_TOKEN": TOKEN})
    yield service
    service.stop()


def claims_of(id_token: str) -> dict:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_thin_id_token_leaves_the_profile_to_userinfo(faulty_idp):
    client = register_client(faulty_idp.url)
    IdPFaults(faulty_idp.url, TOKEN).oidc(client.client_id, "thin_id_token")
    tokens = sign_in_for_tokens(requests.Session(), faulty_idp.url, client, "bob")
    claims = claims_of(tokens["id_token"])
    assert claims["sub"] and claims["aud"] == client.client_id and "at_hash" in claims
    assert not {"email", "name", "groups", "preferred_username", "department"} & set(claims)
    profile = userinfo(faulty_idp.url, tokens["access_token"]).json()
    assert profile["email"] == "bob@example.com" and profile["groups"] == ["engineering"]


def test_a_missing_claim_is_missing_at_userinfo_too_and_the_fault_counts_down(faulty_idp):
    client = register_client(faulty_idp.url)
    IdPFaults(faulty_idp.url, TOKEN).oidc(client.client_id, "missing", count=1, name="groups")
    http = requests.Session()
    first = sign_in_for_tokens(http, faulty_idp.url, client, "alice")
    assert "groups" not in claims_of(first["id_token"])
    assert "groups" not in userinfo(faulty_idp.url, first["access_token"]).json()
    second = sign_in_for_tokens(http, faulty_idp.url, client, "alice")
    assert claims_of(second["id_token"])["groups"] == ["engineering", "aws-admins"]
