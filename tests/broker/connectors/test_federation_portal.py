"""Two upstreams at the real portal app (in process, Flask's test client; STS stood in for): Example Corp
and a partner IdP, each trusted only for its own domain and groups. The impersonation and collision
cases, a changed subject, dropped groups, unusable claims and a slow IdP: each refusal a clear page and an
audit record, never a 500 and never a session.

The upstreams are FakeOIDCProviders whose keys the test holds, so it can sign whatever an IdP might say."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from broker.app import create_app
from broker.settings import load_settings
from devstack.processes import free_port
from sso_common.keys import load_or_create_signing_identity
from sso_common.store import AuditQuery, PeopleQuery
from tests.support.forge import FakeOIDCProvider, idp_metadata
from tests.support.identity_center import FakeIssuer

REPO = Path(__file__).resolve().parents[3]
CORP_GROUPS = ["engineering", "aws-admins", "finance", "contractors", "security"]
SANDBOX = "111111111111"


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


def write_config(directory: Path, corp_url: str, partner_url: str, **partner_options) -> Path:
    access = yaml.safe_load((REPO / "config" / "access.yaml").read_text())
    access["assignments"].append(
        {"group": "partner-developers", "account": "example-sandbox", "permission_set": "EmployeeDirectoryReadOnly"}
    )
    (directory / "access.yaml").write_text(yaml.safe_dump(access))
    saml_keys = load_or_create_signing_identity(directory / "idp-keys", "idp", "idp")
    (directory / "corp-idp.xml").write_text(
        idp_metadata("https://idp.example.test", "https://idp.example.test/sso", saml_keys)
    )
    common = {"client_id": "portal", "client_secret": "s3cret+/=", "token_endpoint_auth_method": "client_secret_post"}
    broker = {
        "portal_url": "http://localhost",
        "access": "access.yaml",
        "aws_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "stores": {"state": "memory://", "directory": "memory://", "audit": "memory://"},
        "upstreams": [
            {
                "id": "corp",
                "display_name": "Example Corp",
                "type": "oidc",
                "directory": "example-corp",
                "issuer": corp_url,
                **common,
                "allowed_email_domains": ["example.com"],
                "groups": {"keep": CORP_GROUPS},
                "timeout_seconds": 1,
            },
            {
                "id": "corp-saml",
                "display_name": "Example Corp (SAML)",
                "type": "saml",
                "directory": "example-corp",
                "metadata_file": "corp-idp.xml",
                "allowed_email_domains": ["example.com"],
                "groups": {"keep": CORP_GROUPS},
            },
            {
                "id": "partner",
                "display_name": "Partner Inc.",
                "type": "oidc",
                "issuer": partner_url,
                **common,
                "allowed_email_domains": ["partner.example"],
                "groups": {"prefix": "partner-"},
                **partner_options,
            },
        ],
    }
    (directory / "broker.yaml").write_text(yaml.safe_dump(broker))
    return directory / "broker.yaml"


@pytest.fixture
def portal(tmp_path, monkeypatch, corp, partner):
    for fake in (corp, partner):
        fake.token_answers.clear()
        fake.trickle = None
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    app = create_app(load_settings(write_config(tmp_path, corp.url, partner.url), instance_dir=tmp_path / "instance"))
    app.extensions["broker"].issuance.issuer = FakeIssuer()
    return app


def sign_in(app, fake, upstream: str, **claims):
    """One sign-in through `upstream`, whose IdP answers with an ID token holding `claims`: (client, answer)."""
    client = app.test_client()
    started = client.get(f"/login/{upstream}")
    assert started.status_code == 303, started.get_data(as_text=True)
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    fake.answer_token(fake.sign(fake.claims(query["nonce"][0], aud="portal", **claims)))
    return client, client.get(f"/login/{upstream}/callback", query_string={"code": "c", "state": query["state"][0]})


def events(app, **query) -> list[dict]:
    return app.extensions["broker"].audit.query(AuditQuery(**query))


def refused(app, answer, status: int, text: str) -> dict:
    page = answer.get_data(as_text=True)
    assert answer.status_code == status and text in page, page[:2000]
    assert "portal_session=" not in answer.headers.get("Set-Cookie", "")
    [record] = events(app, event_type="sign_in", outcome="failure")
    return record


def credentials(client, permission_set: str, account: str = SANDBOX):
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post(
        "/credentials", data={"csrf_token": csrf, "account_id": account, "permission_set": permission_set}
    )


def test_a_partner_asserting_a_corp_admin_is_refused(portal, partner):
    _, answer = sign_in(portal, partner, "partner", email="alice@example.com", groups=["aws-admins"])
    record = refused(portal, answer, 400, "may not vouch for alice@example.com")
    assert record["upstream"] == "partner" and "partner.example" in record["reason"]


def test_a_partners_groups_are_its_own_and_never_become_corp_groups(portal, partner):
    client, answer = sign_in(
        portal, partner, "partner", sub="p-1", email="mallory@partner.example", groups=["aws-admins", "developers"]
    )
    assert answer.status_code == 303
    person = portal.extensions["broker"].people.directory.get("partner", "p-1")
    assert person.groups == {"partner-aws-admins", "partner-developers"}
    assert credentials(client, "AdministratorAccess").status_code == 403
    granted = credentials(client, "EmployeeDirectoryReadOnly")  # what partner-developers is assigned
    assert granted.status_code == 200, granted.get_data(as_text=True)[:1000]


def test_the_same_local_part_at_two_upstreams_is_two_people_in_aws(portal, corp, partner):
    corp_bob, _ = sign_in(portal, corp, "corp", sub="c-bob", email="bob@example.com", groups=["engineering"])
    partner_bob, _ = sign_in(
        portal, partner, "partner", sub="p-bob", email="bob@partner.example", groups=["developers"]
    )
    assert credentials(corp_bob, "EmployeeDirectoryDeveloper").status_code == 200
    assert credentials(partner_bob, "EmployeeDirectoryReadOnly").status_code == 200
    names = {e["source_identity"] for e in events(portal, event_type="credentials", outcome="success")}
    assert names == {"bob@example.com", "bob@partner.example"}  # both were `bob` before


def test_a_changed_subject_for_the_same_address_is_refused_and_audited(portal, corp):
    assert sign_in(portal, corp, "corp", sub="alice-1")[1].status_code == 303
    _, answer = sign_in(portal, corp, "corp", sub="alice-2")
    record = refused(portal, answer, 403, "never merges two accounts")
    assert record["subject"] == "alice-2" and record["email"] == "alice@example.com"
    directory = portal.extensions["broker"].people.directory
    assert [p.subject for p in directory.find(PeopleQuery(upstream="corp"))] == ["alice-1"]


def test_groups_outside_the_mapping_are_dropped_visibly(portal, corp):
    assert sign_in(portal, corp, "corp", groups=["engineering", "lunch-club"])[1].status_code == 303
    [record] = events(portal, event_type="groups_dropped")
    assert record["dropped_groups"] == ["lunch-club"] and record["email"] == "alice@example.com"
    assert record["groups"] == ["engineering"]


@pytest.mark.parametrize(
    "claims, text",
    [
        ({"sub": "alice\u0000"}, "subject identifier with control or invisible characters"),
        ({"email": "alice\n@example.com"}, "email address with control"),
        ({"groups": ["engineering", 42]}, "group name that is not text"),
        ({"email_verified": False}, "not verified"),
    ],
)
def test_unusable_claims_are_a_page_and_an_audit_record_never_a_500(portal, corp, claims, text):
    record = refused(portal, sign_in(portal, corp, "corp", **claims)[1], 400, text)
    assert record["upstream"] == "corp" and text in record["reason"]


@pytest.mark.parametrize("repeated", ["code", "state", "iss"])
def test_a_callback_naming_a_parameter_twice_is_refused_and_spends_its_transaction(portal, corp, repeated):
    """RFC 6749 3.1: the second code was ignored and the person signed in with the first."""
    client = portal.test_client()
    query = parse_qs(urlsplit(client.get("/login/corp").headers["Location"]).query)
    corp.answer_token(corp.sign(corp.claims(query["nonce"][0], aud="portal")))
    answer = {"code": "c", "state": query["state"][0], "iss": corp.url}
    twice = [*answer.items(), (repeated, "another")]
    record = refused(portal, client.get("/login/corp/callback", query_string=twice), 400, f"names {repeated} more")
    assert record["upstream"] == "corp"
    again = client.get("/login/corp/callback", query_string=answer)  # the answer alone, now: already used
    assert again.status_code == 400 and "portal_session=" not in again.headers.get("Set-Cookie", "")


def test_a_repeated_parameter_of_no_meaning_is_ignored_and_never_echoed(portal, corp):
    """A client ignores what the protocol does not define; its name is the sender's text, never shown."""
    client = portal.test_client()
    query = parse_qs(urlsplit(client.get("/login/corp").headers["Location"]).query)
    corp.answer_token(corp.sign(corp.claims(query["nonce"][0], aud="portal")))
    odd = "x\u202e" * 500
    answer = [("code", "c"), ("state", query["state"][0]), (odd, "1"), (odd, "2")]
    assert client.get("/login/corp/callback", query_string=answer).status_code == 303
    assert odd not in str(events(portal))


def test_a_trickling_idp_is_a_504_page_and_an_audit_record(portal, corp):
    corp.trickle = 0.05  # timeout_seconds: 1 for this upstream
    try:
        record = refused(portal, sign_in(portal, corp, "corp")[1], 504, "did not answer in time")
    finally:
        corp.trickle = None
    assert "token endpoint" in record["reason"]


def test_sp_metadata_per_upstream_and_the_client_jwks(portal):
    client = portal.test_client()
    combined = client.get("/saml/metadata").get_data(as_text=True)
    assert 'Location="http://localhost/login/corp-saml/acs"' in combined
    one = client.get("/saml/metadata/corp-saml")
    assert one.status_code == 200 and one.mimetype == "application/samlmetadata+xml"
    assert client.get("/saml/metadata/corp").status_code == 404  # an OIDC upstream has none
    jwks = client.get("/oidc/jwks.json")
    key = jwks.get_json()["keys"][0]
    assert key["kid"] == portal.extensions["broker"].oidc_client_key.kid and "d" not in key
    assert "max-age" in jwks.headers["Cache-Control"]
