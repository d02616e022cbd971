"""What the portal tells command-line clients about itself: /.well-known/sso-portal (no sign-in,
nothing secret, cached briefly) and /token/whoAmI (the access token's owner, for "no AWS access")."""

from __future__ import annotations

import dataclasses

from broker.http.portal_info import EMULATED_SERVICES
from tests.support.identity_center import bearer, device_tokens

REQUIRED_SERVICES = {
    "sts", "s3", "dynamodb", "iam", "ec2", "sqs", "sns", "lambda", "logs", "cloudformation", "kms", "secretsmanager",
    "ssm",
}  # fmt: skip


def test_the_portal_document_says_where_credentials_work(app, client):
    settings = app.extensions["broker"].settings
    answer = client.get("/.well-known/sso-portal")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.headers["Cache-Control"] == "public, max-age=300" and "Set-Cookie" not in answer.headers
    document = answer.get_json()
    assert document == {
        "start_url": "http://localhost/start",
        "portal_url": "http://localhost",
        "region": settings.access.region,
        "aws_endpoint_url": settings.aws_endpoint_url_for_clients,
        "services": list(EMULATED_SERVICES),
    }
    assert document["aws_endpoint_url"].startswith("http") and REQUIRED_SERVICES <= set(document["services"])


def test_against_real_aws_the_document_names_no_endpoint(app, client, monkeypatch):
    state = app.extensions["broker"]
    monkeypatch.setattr(state, "settings", dataclasses.replace(state.settings, aws_endpoint_url_for_clients=None))
    document = client.get("/.well-known/sso-portal").get_json()
    assert document["aws_endpoint_url"] is None and document["services"] == []


def test_who_am_i_names_the_tokens_owner_and_their_groups(app, client, person):
    _, tokens = device_tokens(app, client, person("carol", groups=("finance",)))
    other = app.test_client()  # no portal cookie: the token alone
    answer = other.get("/token/whoAmI", headers=bearer(tokens))
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert answer.get_json() == {
        "username": "carol",
        "email": "carol@example.com",
        "displayName": "Carol",
        "groups": ["finance"],
    }


def test_who_am_i_without_a_live_token_is_unauthorized(client):
    for headers in ({}, {"x-amz-sso_bearer_token": "bat-unknown"}):
        answer = client.get("/token/whoAmI", headers=headers)
        assert answer.status_code == 401 and answer.headers["x-amzn-ErrorType"] == "UnauthorizedException"
