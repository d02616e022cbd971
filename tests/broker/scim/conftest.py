"""The portal in process with its SCIM service provider on, as the shipped config has it (a token per upstream),
on in-memory or SQLite stores."""

from __future__ import annotations

import json

import pytest

from broker.settings import load_settings
from tests.support.identity_center import FakeClock, fresh_sso_state, portal_app

OIDC_TOKEN = "demo-scim-token-example-corp-oidc"
SAML_TOKEN = "demo-scim-token-example-corp-saml"
OIDC, SAML = "example-corp-oidc", "example-corp-saml"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def scim_app(tmp_path, stores: str = "memory"):
    """The portal with the shipped upstreams' lifecycles (SCIM for both), and STS stood in for."""
    settings = load_settings(instance_dir=tmp_path / "portal")
    urls = (
        {name: "memory://" for name in ("state", "directory", "audit", "changes")}
        if stores == "memory"
        else {name: f"sqlite:///{tmp_path / (name + '.db')}" for name in ("state", "directory", "audit", "changes")}
    )
    app = portal_app(tmp_path / "portal", lifecycles=settings.lifecycles, stores=urls)
    fresh_sso_state(app, FakeClock())
    return app


@pytest.fixture(params=["memory", "sqlite"])
def app(request, tmp_path):
    return scim_app(tmp_path, request.param)


@pytest.fixture
def scim(app):
    return Scim(app.test_client())


class Scim:
    """A SCIM client by hand (raw JSON), to send what a compliant client never would."""

    def __init__(self, client, token: str = OIDC_TOKEN):
        self.client, self.token = client, token

    def headers(self, **extra):
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json", **extra}

    def get(self, path, **extra):
        return self.client.get(f"/scim/v2{path}", headers=self.headers(**extra))

    def post(self, path, body, **extra):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post(f"/scim/v2{path}", data=data, headers=self.headers(**extra))

    def put(self, path, body, **extra):
        return self.client.put(f"/scim/v2{path}", data=json.dumps(body), headers=self.headers(**extra))

    def patch(self, path, operations, **extra):
        body = {"schemas": [PATCH_SCHEMA], "Operations": operations}
        return self.client.patch(f"/scim/v2{path}", data=json.dumps(body), headers=self.headers(**extra))

    def delete(self, path, **extra):
        return self.client.delete(f"/scim/v2{path}", headers=self.headers(**extra))

    def user(self, username: str, subject: str | None = None, **fields):
        body = {
            "schemas": [USER_SCHEMA],
            "userName": f"{username}@example.com",
            "externalId": subject or f"sub-{username}",
            "name": {"givenName": username.title(), "familyName": "Example"},
            "emails": [{"value": f"{username}@example.com", "type": "work", "primary": True}],
            "active": True,
            **fields,
        }
        answer = self.post("/Users", body)
        assert answer.status_code == 201, answer.get_json()
        return answer.get_json()

    def group(self, name: str, *member_ids: str):
        body = {"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": m} for m in member_ids]}
        answer = self.post("/Groups", body)
        assert answer.status_code == 201, answer.get_json()
        return answer.get_json()


def assert_scim_error(answer, status: int, scim_type: str | None = None) -> dict:
    """An error in SCIM's format (RFC 7644 3.12): the Error schema, the status as a string, the scimType."""
    body = answer.get_json()
    assert answer.status_code == status, body
    assert answer.mimetype == "application/scim+json"
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    assert body.get("detail")
    return body
