"""When the IdP or STS is down, slow or refuses: a clear page, an audit record, never credentials.

The portal runs in-process here (Flask's test client), pointed at endpoints the test controls.
"""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from broker.app import create_app
from broker.core.identity import LogoutHint
from broker.settings import load_settings
from devstack.processes import free_port
from sso_common.store import AuditQuery
from tests.support.forge import FakeOIDCProvider
from tests.support.loopback import LoopbackServer, Quiet

STS_ERROR = b"""<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
<Code>InvalidIdentityToken</Code><Message>The SAML assertion is not valid</Message></Error>
<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"""


class ErroringSTS:
    """Stands where AWS STS would be and refuses every request, as STS does for a bad assertion."""

    def __init__(self):
        class Handler(Quiet):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(400)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(STS_ERROR)))
                self.end_headers()
                self.wfile.write(STS_ERROR)

        self._server = LoopbackServer(Handler).start()
        self.url = self._server.url

    def stop(self):
        self._server.close()


def portal(monkeypatch, tmp_path, idp_url: str, aws_url: str):
    monkeypatch.setenv("IDP_URL", idp_url)
    monkeypatch.setenv("AWS_URL", aws_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # People are signed in directly below (no IdP provisions them over SCIM): upstreams without SCIM here.
    app = create_app(dataclasses.replace(load_settings(instance_dir=tmp_path / "broker"), lifecycles=()))
    return app, app.test_client()


def audit_events(app, event_type):
    return app.extensions["broker"].audit.query(AuditQuery(event_type=event_type))


def sign_in(app, client, person):
    session = app.extensions["broker"].sessions.create(person, "example-corp-oidc", LogoutHint())
    client.set_cookie("portal_session", session.id, domain="localhost")
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def closed_port_url():
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("upstream", ["example-corp-oidc", "example-corp-saml"])
def test_idp_down_gives_a_clear_page_and_an_audit_record(monkeypatch, tmp_path, upstream):
    app, client = portal(monkeypatch, tmp_path, closed_port_url(), closed_port_url())
    answer = client.get(f"/login/{upstream}")
    assert answer.status_code == 502
    assert "Identity provider unavailable" in answer.get_data(as_text=True)
    failures = audit_events(app, "sign_in")
    assert failures and failures[0]["outcome"] == "failure" and failures[0]["upstream"] == upstream


def test_slow_idp_is_given_up_on_quickly(monkeypatch, tmp_path):
    provider = FakeOIDCProvider()
    provider.delay = 30
    try:
        app, client = portal(monkeypatch, tmp_path, provider.url, closed_port_url())
        began = time.monotonic()
        answer = client.get("/login/example-corp-oidc")
        assert answer.status_code == 504 and time.monotonic() - began < 15  # the call's deadline (10 s): 504
        assert audit_events(app, "sign_in")[0]["outcome"] == "failure"
    finally:
        provider.delay = 0
        provider.stop()


def test_sts_down_gives_a_clear_page_an_audit_record_and_no_credentials(monkeypatch, tmp_path, person):
    app, client = portal(monkeypatch, tmp_path, closed_port_url(), closed_port_url())
    csrf = sign_in(app, client, person("bob"))
    answer = client.post(
        "/credentials",
        data={"csrf_token": csrf, "account_id": "111111111111", "permission_set": "EmployeeDirectoryDeveloper"},
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 503 and "AWS unavailable" in page and "AWS_SECRET_ACCESS_KEY" not in page
    record = audit_events(app, "credentials")[0]
    assert record["outcome"] == "failure" and record["user"] == "bob" and "unreachable" in record["reason"]


def test_sts_error_answer_gives_a_clear_page_an_audit_record_and_no_credentials(monkeypatch, tmp_path, person):
    sts = ErroringSTS()
    try:
        app, client = portal(monkeypatch, tmp_path, closed_port_url(), sts.url)
        csrf = sign_in(app, client, person("bob"))
        answer = client.post(
            "/credentials",
            data={"csrf_token": csrf, "account_id": "222222222222", "permission_set": "EmployeeDirectoryReadOnly"},
        )
        page = answer.get_data(as_text=True)
        assert answer.status_code == 502 and "AWS refused" in page and "AWS_SESSION_TOKEN" not in page
        record = audit_events(app, "credentials")[0]
        assert record["outcome"] == "failure" and "InvalidIdentityToken" in record["reason"]
        assert "<saml" not in record["reason"] and "Assertion" not in record["reason"]
    finally:
        sts.stop()


def test_refusals_are_audited_too(monkeypatch, tmp_path, person):
    app, client = portal(monkeypatch, tmp_path, closed_port_url(), closed_port_url())
    csrf = sign_in(app, client, person("dave", groups=("contractors",)))
    answer = client.post(
        "/credentials", data={"csrf_token": csrf, "account_id": "111111111111", "permission_set": "AdministratorAccess"}
    )
    assert answer.status_code == 403
    record = audit_events(app, "credentials")[0]
    assert record["outcome"] == "failure" and record["user"] == "dave" and record["account_id"] == "111111111111"


def test_a_person_aws_cannot_name_is_refused_clearly_and_audited(monkeypatch, tmp_path, person):
    """An identity without an email address (AWS sessions are named by it) is a 403 that says why, not a 500.
    Connectors never let one through; the assertion guards it anyway."""
    app, client = portal(monkeypatch, tmp_path, closed_port_url(), closed_port_url())
    csrf = sign_in(app, client, person("x", groups=("engineering",), email=""))
    answer = client.post(
        "/credentials",
        data={"csrf_token": csrf, "account_id": "111111111111", "permission_set": "EmployeeDirectoryDeveloper"},
    )
    assert answer.status_code == 403 and "no email address, which AWS sessions are named by" in answer.get_data(
        as_text=True
    )
    record = audit_events(app, "credentials")[0]
    assert record["outcome"] == "failure" and record["user"] == "x"
