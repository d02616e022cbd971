"""The IdP's state-store records: each comes back equal from the JSON the store keeps, in the same shape
as before they were typed (records written by a running IdP stay readable after an upgrade)."""

from __future__ import annotations

import json

import pytest

from idp_mock.login import PendingMFA
from idp_mock.oidc_provider.models import (
    IssuedAccessToken,
    IssuedCode,
    OIDCClient,
    OIDCGrant,
    PendingOIDCRequest,
    RefreshToken,
)
from idp_mock.saml_idp.views import PendingSAMLRequest
from idp_mock.session import OIDCParticipant, SAMLParticipant, SessionRecord

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

RECORDS = [
    (
        PendingSAMLRequest(
            "https://sp.example/metadata", "https://sp.example/acs", "_r1", "home", PERSISTENT, True, False, "ab12"
        ),
        {
            "sp": "https://sp.example/metadata",
            "acs_url": "https://sp.example/acs",
            "request_id": "_r1",
            "relay_state": "home",
            "name_id_format": PERSISTENT,
            "force": True,
            "passive": False,
            "stale": "ab12",
        },
    ),
    (
        PendingSAMLRequest(
            "urn:amazon:webservices", "https://signin.aws/saml", None, None, PERSISTENT, False, False, None
        ),
        {
            "sp": "urn:amazon:webservices",
            "acs_url": "https://signin.aws/saml",
            "request_id": None,
            "relay_state": None,
            "name_id_format": PERSISTENT,
            "force": False,
            "passive": False,
            "stale": None,
        },
    ),
    (
        PendingOIDCRequest({"client_id": "portal", "prompt": "login"}, 1_800_000_000, True),
        {"params": {"client_id": "portal", "prompt": "login"}, "requested_at": 1_800_000_000, "force": True},
    ),
    (
        SessionRecord(
            "erin",
            1_800_000_000,
            ("pwd", "otp", "mfa"),
            (OIDCParticipant("portal"), SAMLParticipant("https://sp.example/metadata", "s-1", PERSISTENT, "_s1")),
        ),
        {
            "username": "erin",
            "auth_time": 1_800_000_000,
            "amr": ["pwd", "otp", "mfa"],
            "participants": [
                {"protocol": "oidc", "client_id": "portal"},
                {
                    "protocol": "saml",
                    "sp": "https://sp.example/metadata",
                    "name_id": "s-1",
                    "name_id_format": PERSISTENT,
                    "session_index": "_s1",
                },
            ],
        },
    ),
    (
        PendingMFA("erin", "/oidc/authorize/continue/h"),
        {"username": "erin", "continue_to": "/oidc/authorize/continue/h"},
    ),
    (
        OIDCGrant("portal", "bob", "openid email", 1_800_000_000, ("pwd",), "urn:acr", 1_800_028_800.5),
        {
            "client_id": "portal",
            "username": "bob",
            "scope": "openid email",
            "auth_time": 1_800_000_000,
            "amr": ["pwd"],
            "acr": "urn:acr",
            "expires_at": 1_800_028_800.5,
            "person": None,
            "withheld": [],
            "sid": None,
            "code": None,
        },
    ),
    (
        OIDCGrant(
            "portal",
            "bob",
            "openid",
            1_800_000_000,
            ("pwd",),
            "urn:acr",
            1_800_028_800.5,
            code=IssuedCode("g1", "portal", "https://portal.example/cb", "n", "c" * 43, "S256", 1_800_000_060.5),
        ),  # fmt: skip
        {
            "client_id": "portal",
            "username": "bob",
            "scope": "openid",
            "auth_time": 1_800_000_000,
            "amr": ["pwd"],
            "acr": "urn:acr",
            "expires_at": 1_800_028_800.5,
            "person": None,
            "withheld": [],
            "sid": None,
            "code": {
                "grant_id": "g1",
                "client_id": "portal",
                "redirect_uri": "https://portal.example/cb",
                "nonce": "n",
                "code_challenge": "c" * 43,
                "code_challenge_method": "S256",
                "expires_at": 1_800_000_060.5,
            },
        },
    ),
    (
        IssuedCode("g1", "portal", "https://portal.example/cb", None, "c" * 43, "S256"),
        {
            "grant_id": "g1",
            "client_id": "portal",
            "redirect_uri": "https://portal.example/cb",
            "nonce": None,
            "code_challenge": "c" * 43,
            "code_challenge_method": "S256",
            "expires_at": 0.0,
        },
    ),
    (
        IssuedAccessToken("g1", "portal", "bob", "openid", 1_800_000_000.25, 1_800_000_900.25),
        {
            "grant_id": "g1",
            "client_id": "portal",
            "username": "bob",
            "scope": "openid",
            "issued_at": 1_800_000_000.25,
            "expires_at": 1_800_000_900.25,
        },
    ),
    (RefreshToken("g1", "portal", "openid"), {"grant_id": "g1", "client_id": "portal", "scope": "openid"}),
    (
        OIDCClient("c1", "App", ("https://app.example/cb",), (), "none", ("authorization_code",)),
        {
            "client_id": "c1",
            "name": "App",
            "redirect_uris": ["https://app.example/cb"],
            "post_logout_redirect_uris": [],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "secret_hash": None,
            "backchannel_logout_uri": None,
        },
    ),
]


@pytest.mark.parametrize(("record", "stored"), RECORDS, ids=lambda value: type(value).__name__)
def test_a_record_is_stored_as_before_and_comes_back_equal(record, stored):
    assert record.to_record() == stored
    assert type(record).from_record(json.loads(json.dumps(record.to_record()))) == record
