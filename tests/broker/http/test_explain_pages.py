"""The "How did I get here?" explanation at the real portal app (in process, Flask's test client; STS stood
in for), with an OpenID Provider whose tokens the test makes, so every secret of a sign-in is known and searched
for: the
page and its JSON (checked against its schema) show each step and no secret. Who may read a story: the
person, admins, and for a refusal the browser that was refused; the audit trail links each sign-in to it;
`GET /token/explain` gives a command-line sign-in its story."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest

from broker.app import create_app
from broker.settings import load_settings
from sso_common.store import AuditQuery
from tests.broker.connectors.test_federation_portal import write_config
from tests.support.forge import FakeOIDCProvider
from tests.support.identity_center import FakeIssuer, decide, poll, register, start

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "broker" / "static" / "explanation.schema.json").read_text())
SANDBOX = "111111111111"
CODE = "authorization-code-of-the-identity-provider-7Kq2"
ACCESS_TOKEN = "access-token-of-the-identity-provider-Zp4w"
REFRESH_TOKEN = "refresh-token-of-the-identity-provider-Yb9v"


@pytest.fixture(scope="module")
def corp():
    fake = FakeOIDCProvider("portal")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def partner():
    fake = FakeOIDCProvider("portal")
    yield fake
    fake.stop()


@pytest.fixture
def portal(tmp_path, monkeypatch, corp, partner):
    for fake in (corp, partner):
        fake.token_answers.clear()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    app = create_app(load_settings(write_config(tmp_path, corp.url, partner.url), instance_dir=tmp_path / "instance"))
    app.extensions["broker"].issuance.issuer = FakeIssuer()
    return app


def sign_in(app, fake, upstream: str = "corp", **claims):
    """One sign-in whose every secret the test knows: (client, answer, the ID token)."""
    client = app.test_client()
    started = client.get(f"/login/{upstream}")
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    id_token = fake.sign(fake.claims(query["nonce"][0], aud="portal", **claims))
    fake.answer_token(id_token, access_token=ACCESS_TOKEN, refresh_token=REFRESH_TOKEN)
    answer = client.get(f"/login/{upstream}/callback", query_string={"code": CODE, "state": query["state"][0]})
    return client, answer, id_token


def story(client) -> tuple[str, dict]:
    """The signed-in person's story: (its page, its JSON), the JSON checked against the schema."""
    address = client.get("/explain").headers["Location"]
    page = client.get(address)
    assert page.status_code == 200, page.get_data(as_text=True)[:1000]
    document = client.get(address + ".json").get_json()
    jsonschema.validate(document, SCHEMA)
    return page.get_data(as_text=True), document


def credentials(client, permission_set: str, account: str = SANDBOX):
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post(
        "/credentials", data={"csrf_token": csrf, "account_id": account, "permission_set": permission_set}
    )


def test_the_story_tells_each_step_and_no_secret_of_the_sign_in(portal, corp):
    client, answer, id_token = sign_in(portal, corp, groups=["engineering", "lunch-club"])
    assert answer.status_code == 303
    issued = credentials(client, "EmployeeDirectoryDeveloper")
    assert issued.status_code == 200
    assert 'href="/explain/' in issued.get_data(as_text=True)  # the panel links to it
    assert credentials(client, "AdministratorAccess").status_code == 403
    page, document = story(client)
    for step in ("1. The upstream answer", "2. The Identity", "3. The entitlement decision", "4. The way to AWS"):
        assert step in page
    upstream = next(s for s in document["sections"] if s["key"] == "upstream")
    assert {c["name"]: c["outcome"] for c in upstream["checks"]}["nonce"] == "passed"
    assert {g["upstream_group"]: g["broker_group"] for g in document["groups"]}["lunch-club"] is None
    assert [(i["permission_set"], i["outcome"]) for i in document["issuances"]] == [
        ("EmployeeDirectoryDeveloper", "issued"),
        ("AdministratorAccess", "refused"),
    ]
    shown = page + json.dumps(document)
    for secret in (CODE, ACCESS_TOKEN, REFRESH_TOKEN, id_token, id_token.split(".")[2], "fake-secret"):
        assert secret not in shown
    assert "fake-session-token" not in shown  # FakeIssuer's: no STS exchange here, so nothing of it at all
    assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.", shown)


def test_only_the_person_and_admins_may_read_a_story(portal, corp):
    bob, _, _ = sign_in(portal, corp, sub="sub-bob", email="bob@example.com", groups=["engineering"])
    address = bob.get("/explain").headers["Location"]
    carol, _, _ = sign_in(portal, corp, sub="sub-carol", email="carol@example.com", groups=["finance"])
    alice, _, _ = sign_in(portal, corp, sub="sub-alice", email="alice@example.com", groups=["aws-admins"])
    assert carol.get(address).status_code == 404 and carol.get(address + ".json").status_code == 404
    assert portal.test_client().get(address).status_code == 404
    assert alice.get(address).status_code == 200  # an administrator
    assert bob.get(address).status_code == 200
    assert portal.test_client().get("/explain").status_code == 404  # nothing to explain without a sign-in


def test_a_refusal_links_to_a_story_only_the_refused_browser_can_read(portal, corp, partner):
    client, answer, _ = sign_in(portal, partner, "partner", email="alice@example.com", groups=["aws-admins"])
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "How did I get here?" in page
    address = re.search(r'href="(/explain/[^"]+)"', page).group(1)
    cookie = answer.headers["Set-Cookie"]
    assert "portal_explain=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    document = client.get(address + ".json").get_json()
    jsonschema.validate(document, SCHEMA)
    identity = next(s for s in document["sections"] if s["key"] == "identity")
    outcomes = {c["name"]: c["outcome"] for c in identity["checks"]}
    assert outcomes["email domain allowed"] == "failed" and outcomes["groups"] == "not reached"
    assert document["outcome"] == "refused" and document["decisions"] == []
    assert portal.test_client().get(address).status_code == 404  # another browser
    [event] = portal.extensions["broker"].audit.query(AuditQuery(event_type="sign_in", outcome="failure"))
    assert event["explanation"] == address.rsplit("/", 1)[1]
    admin, _, _ = sign_in(portal, corp, sub="sub-admin", email="alice@example.com", groups=["aws-admins"])
    audit_page = admin.get("/admin/audit").get_data(as_text=True)
    assert f'href="{address}"' in audit_page  # the audit trail links each sign-in to its story
    assert admin.get(address).status_code == 200


def test_a_command_line_sign_in_gets_the_story_of_the_session_that_approved_it(portal, corp):
    client, _, _ = sign_in(portal, corp, sub="sub-bob", email="bob@example.com", groups=["engineering"])
    registration = register(client).get_json()
    authorization = start(client, registration).get_json()
    assert decide(client, authorization["userCode"]).status_code == 200
    token = poll(client, registration, authorization["deviceCode"]).get_json()["accessToken"]
    headers = {"x-amz-sso_bearer_token": token}
    got = client.get(
        f"/federation/credentials?account_id={SANDBOX}&role_name=EmployeeDirectoryDeveloper", headers=headers
    )
    assert got.status_code == 200
    answer = portal.test_client().get("/token/explain", headers=headers)
    assert answer.status_code == 200
    document = answer.get_json()
    jsonschema.validate(document, SCHEMA)
    assert document["owner"]["email"] == "bob@example.com"
    assert [(i["channel"], i["outcome"]) for i in document["issuances"]] == [("sso-api", "issued")]
    refused = portal.test_client().get("/token/explain", headers={"x-amz-sso_bearer_token": "bat-unknown"})
    assert refused.status_code == 401 and refused.get_json()["__type"].endswith("UnauthorizedException")


def test_the_schema_is_served_and_is_a_schema(portal):
    answer = portal.test_client().get("/explain.schema.json")
    assert answer.status_code == 200 and answer.mimetype == "application/schema+json"
    served = json.loads(answer.get_data(as_text=True))
    assert served == SCHEMA
    jsonschema.Draft202012Validator.check_schema(served)


def test_each_refusal_in_one_browser_stays_readable_there(portal):
    client = portal.test_client()
    addresses = []
    for _ in range(2):
        answer = client.get("/login/corp/callback", query_string={"state": "made-up", "code": CODE})
        assert answer.status_code == 400
        addresses.append(re.search(r'href="(/explain/[^"]+)"', answer.get_data(as_text=True)).group(1))
    assert addresses[0] != addresses[1]
    for address in addresses:
        document = client.get(address + ".json").get_json()
        jsonschema.validate(document, SCHEMA)
        [transaction] = [s for s in document["sections"] if s["key"] == "transaction"]
        assert transaction["checks"][0]["outcome"] == "failed"
        assert CODE not in json.dumps(document)
