"""The portal's pages in process (STS stood in for): the accounts page and its credentials panel, the
sign-in choice, stale tabs, the audit trail's filters and export, and the device approval page. Every
bad input gets a clear 4xx page; credentials only ever in the body of a no-store POST answer."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from urllib.parse import urlencode

import pytest

from broker.core import audit
from broker.core.audit import RequestOrigin
from broker_login.forms import read_page
from sso_common.store import AuditQuery
from sso_common.store.memory import MemoryAuditLog
from tests.support.identity_center import device_tokens, register, sign_in, start

SANDBOX, PRODUCTION = "111111111111", "222222222222"


def text(answer) -> str:
    return answer.get_data(as_text=True)


def csrf(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text(client.get("/"))).group(1)


def issue(client, account_id: str, permission_set: str, token: str | None = None):
    fields = {"account_id": account_id, "permission_set": permission_set}
    return client.post("/credentials", data={"csrf_token": token or csrf(client), **fields})


@pytest.fixture
def emulator(app):
    """Run the test with the portal's view of the AWS emulator's address set to `url` (None: real AWS)."""
    state = app.extensions["broker"]
    kept = state.settings

    def use(url: str | None) -> None:
        state.settings = dataclasses.replace(kept, aws_endpoint_url_for_clients=url)

    yield use
    state.settings = kept


# --- the accounts page ------------------------------------------------------------------------------


def test_the_accounts_page_says_who_you_are_and_lists_accounts_with_their_emails(app, client, person):
    sign_in(app, client, person("alice", groups=("aws-admins", "engineering")))
    page = text(client.get("/"))
    who = page[page.index('aria-labelledby="whoami-title"') : page.index("</section>")]
    assert "alice@example.com" in who and "aws-admins" in who and "engineering" in who
    assert "without a second factor" in who
    assert "aws-sandbox@example.com" in page and "aws-production@example.com" in page
    assert page.count('<details class="account" open>') == 2  # few accounts: expanded
    assert 'role="search"' in page and 'href="/admin/audit"' in page


@pytest.mark.parametrize(
    "query, shown",
    [
        ("prod", ["example-production"]),
        ("PRODUCTION", ["example-production"]),
        ("111111111111", ["example-sandbox"]),
        ("aws-sandbox@", ["example-sandbox"]),
        ("administrator", ["example-production", "example-sandbox"]),  # a role name
        ("nothing-like-it", []),
        ("<script>" * 50, []),
    ],
)
def test_the_filter_works_without_javascript(app, client, person, query, shown):
    sign_in(app, client, person("alice", groups=("aws-admins",)))
    answer = client.get("/?" + urlencode({"filter": query}))
    assert answer.status_code == 200
    page = text(answer)
    listed = re.findall(
        r'<li data-filter-text="[^"]*"( hidden)?>\s*<details[^>]*>\s*<summary>\s*<h2[^>]*>([^<]+)</h2>', page
    )
    assert [name for hidden, name in listed if not hidden] == shown
    assert len(listed) == 2  # the others are on the page, hidden: clearing the filter shows them
    assert ("data-filter-empty hidden>" in page) == bool(shown)
    assert "<script><script>" not in page


def test_roles_that_need_mfa_are_disabled_with_the_reason_and_still_refused(app, client, person):
    sign_in(app, client, person("grace", groups=("security",)))
    page = text(client.get("/"))
    assert page.count('<button type="button" disabled') == 2
    assert "Requires MFA." in page and "requires multi-factor authentication" in page
    assert 'data-issue="panel-' not in page  # no form to ask with
    refused = issue(client, SANDBOX, "SecurityAudit")
    assert refused.status_code == 403 and "AWS_SECRET_ACCESS_KEY" not in text(refused)


# --- the credentials panel ---------------------------------------------------------------------------


def test_credentials_come_in_their_panel_of_the_accounts_page_marked_no_store(app, client, person, emulator):
    emulator("http://aws.example.test:8002")
    sign_in(app, client, person("bob"))
    answer = issue(client, SANDBOX, "EmployeeDirectoryDeveloper")
    page = text(answer)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert "<title>AWS accounts - AWS access portal</title>" in page
    assert '<details class="keys" id="keys-111111111111-EmployeeDirectoryDeveloper" open>' in page
    assert page.count("fake-session-token") >= 4  # three shells' Option 1, Option 2, Option 3
    for shell in ("macOS and Linux", "Windows (cmd)", "PowerShell"):
        assert f'data-tab-label="{shell}"' in page
    for line in (
        "export AWS_ENDPOINT_URL=&#34;http://aws.example.test:8002&#34;",
        "set AWS_ENDPOINT_URL=http://aws.example.test:8002",
        "$Env:AWS_ENDPOINT_URL=&#34;http://aws.example.test:8002&#34;",
        "[111111111111_EmployeeDirectoryDeveloper]",
        "services = aws-emulator",
        "[services aws-emulator]",
        "  endpoint_url = http://aws.example.test:8002",
    ):
        assert line in page, line
    assert not re.search(r"^endpoint_url", page, re.MULTILINE)  # never a global endpoint
    assert "http://localhost/start" in page and "broker-login configure" in page and "us-east-1" in page
    # The other roles' panels are there, closed, with their forms.
    assert '<details class="keys" id="keys-222222222222-EmployeeDirectoryReadOnly">' in page


def test_the_script_gets_the_panel_alone_as_the_page_has_it(app, client, person, emulator):
    """portal.js asks with X-Portal-Fragment: panel and puts the answer in place of the role's panel; the page
    around it is not rendered. Refusals still answer the error page the script reads its words from."""
    emulator("http://aws.example.test:8002")
    sign_in(app, client, person("bob"))
    page = text(issue(client, SANDBOX, "EmployeeDirectoryDeveloper"))
    fields = {"csrf_token": csrf(client), "account_id": SANDBOX, "permission_set": "EmployeeDirectoryDeveloper"}
    answer = client.post("/credentials", data=fields, headers={"X-Portal-Fragment": "panel"})
    panel = text(answer).strip()
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert "X-Portal-Fragment" in answer.headers["Vary"]
    opening = '<div class="keys-body" id="panel-111111111111-EmployeeDirectoryDeveloper" data-panel>'
    assert panel.startswith(opening) and panel.endswith("</div>") and opening in page
    assert "<title>" not in panel and "EmployeeDirectoryReadOnly" not in panel  # no page, no other role
    assert "data-credentials" in panel and panel.count("fake-session-token") >= 4
    assert 'data-issue="panel-111111111111-EmployeeDirectoryDeveloper"' in panel  # "Get new credentials"
    assert "broker-login configure" in panel and "us-east-1" in panel  # the command line, as on the page
    denied = client.post(
        "/credentials", data={**fields, "account_id": PRODUCTION}, headers={"X-Portal-Fragment": "panel"}
    )
    assert denied.status_code == 403 and "<main" in text(denied) and "fake-session-token" not in text(denied)


def test_against_real_aws_the_credentials_carry_no_endpoint(app, client, person, emulator):
    emulator(None)
    sign_in(app, client, person("bob"))
    page = text(issue(client, SANDBOX, "EmployeeDirectoryDeveloper"))
    assert "fake-session-token" in page
    assert "AWS_ENDPOINT_URL" not in page and "endpoint_url" not in page and "services" not in page


def test_the_credentials_address_never_answers_method_not_allowed(app, client, person):
    signed_out = client.get("/credentials")
    assert signed_out.status_code == 303 and signed_out.headers["Location"] == "/"
    sign_in(app, client, person("bob"))
    opened = client.get("/credentials", follow_redirects=True)
    assert opened.status_code == 200 and "AWS accounts" in text(opened) and "fake-session-token" not in text(opened)


@pytest.mark.parametrize("path", ["/start", "/start/"])
def test_the_start_url_is_the_portal(client, path):
    answer = client.get(path)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


def test_credentials_are_asked_for_by_a_csrf_protected_post_only(app, client, person):
    sign_in(app, client, person("bob"))
    forms = [f for f in read_page(text(client.get("/"))).forms if f.action == "/credentials"]
    assert forms and all(f.method == "post" and f.inputs.get("csrf_token") for f in forms)
    refused = client.post("/credentials", data={"account_id": SANDBOX, "permission_set": "EmployeeDirectoryDeveloper"})
    assert refused.status_code == 400 and "fake-session-token" not in text(refused)


# --- stale tabs ---------------------------------------------------------------------------------------


def test_a_stale_tab_is_told_the_session_ended(app, client, person):
    sign_in(app, client, person("bob"))
    token = csrf(client)
    client.delete_cookie("portal_session")  # signed out in another tab, or expired
    for answer in (issue(client, SANDBOX, "EmployeeDirectoryDeveloper", token), client.post("/logout", data={})):
        page = text(answer)
        assert answer.status_code == 401 and "<title>Session ended - AWS access portal</title>" in page
        assert "Your session has ended. Sign in again." in page and 'href="/login">Sign in again</a>' in page
        assert "fake-session-token" not in page


# --- the sign-in choice -------------------------------------------------------------------------------


def choices(client) -> list[str]:
    return re.findall(r'href="/login/([a-z-]+)"', text(client.get("/login")))


def test_each_sign_in_choice_is_explained_and_the_last_one_used_comes_first(client):
    page = text(client.get("/login"))
    assert "OpenID Connect: the usual choice" in page and "SAML 2.0 single sign-on" in page
    assert choices(client) == ["example-corp-oidc", "example-corp-saml"] and "Used last time" not in page
    client.set_cookie("portal_last_upstream", "example-corp-saml")
    assert choices(client) == ["example-corp-saml", "example-corp-oidc"]
    assert text(client.get("/login")).count("Used last time.") == 1
    client.set_cookie("portal_last_upstream", "made-up<script>")
    assert choices(client) == ["example-corp-oidc", "example-corp-saml"]


# --- the audit trail ---------------------------------------------------------------------------------


class Captured:
    """An audit log that only keeps what it is given, to be written later with chosen times."""

    def __init__(self):
        self.events: list[dict] = []

    def append(self, event: dict) -> None:
        self.events.append(event)


@pytest.fixture
def fresh_audit(app):
    """The test's own, empty audit trail."""
    state = app.extensions["broker"]
    kept = state.audit, state.issuance.audit
    state.audit = state.issuance.audit = MemoryAuditLog()
    yield state.audit
    state.audit, state.issuance.audit = kept


@pytest.fixture
def trail(app, client, person, fresh_audit):
    """An admin signed in, and a trail with one event of each kind, a minute apart from 2026-01-01 09:00 UTC."""
    base = 1767258000.0  # 2026-01-01T09:00:00Z
    browser, cli = RequestOrigin("192.0.2.1", "Firefox", "portal"), RequestOrigin("192.0.2.2", "aws-cli", "sso-api")
    bob, captured = person("bob"), Captured()
    audit.sign_in(captured, browser, "example-corp-oidc", None, "This sign-in answer is unknown.")
    audit.sign_in(captured, browser, "example-corp-oidc", bob)
    audit.cli_sign_in(captured, cli, "example-corp-oidc", bob, "aws-cli", "device code")
    audit.issuance(captured, cli, bob, SANDBOX, "EmployeeDirectoryDeveloper", reason="No access")
    for minute, event in enumerate(captured.events):
        fresh_audit.append({**event, "time": base + 60 * minute})
    sign_in(app, client, person("alice", groups=("aws-admins",)))
    return base


def shown_rows(client, **filters) -> list[str]:
    answer = client.get("/admin/audit?" + urlencode(filters))
    assert answer.status_code == 200, text(answer)[:500]
    return re.findall(r'<td data-label="Event">([^<]+)</td>', text(answer))


def exported(client, **filters) -> list[dict]:
    answer = client.get("/admin/audit.jsonl?" + urlencode(filters))
    assert answer.status_code == 200
    return [json.loads(line) for line in text(answer).splitlines()]


def test_the_audit_trail_filters_and_exports_the_filtered_view(client, trail):
    base = trail
    assert shown_rows(client, outcome="failure") == ["Credentials", "Sign-in"]
    assert shown_rows(client, person="bob") == ["Credentials", "Command-line sign-in", "Sign-in"]
    assert shown_rows(client, channel="sso-api", event="cli_sign_in") == ["Command-line sign-in"]
    assert shown_rows(client, since="2026-01-01T09:01", until="2026-01-01T09:02:30") == [
        "Command-line sign-in",
        "Sign-in",
    ]
    page = text(client.get("/admin/audit?outcome=failure"))
    assert "unknown (not signed in)" in page and "2026-01-01 09:00:00 UTC" in page  # to the second
    assert 'href="/admin/audit.jsonl?outcome=failure"' in page
    dated = text(client.get("/admin/audit?since=2026-01-01"))  # a date alone: kept, as the field can hold it
    assert 'name="since" type="datetime-local" value="2026-01-01T00:00:00"' in dated
    export = exported(client, outcome="failure", channel="portal")
    assert [(e["type"], e["time"]) for e in export] == [("sign_in", base)]
    assert [e["time"] for e in exported(client)] == [base + 60 * minute for minute in range(4)]  # oldest first


@pytest.mark.parametrize(
    "filters, named",
    [
        ({"outcome": "maybe"}, "Outcome"),
        ({"channel": "carrier-pigeon"}, "Channel"),
        ({"event": "DROP TABLE"}, "Event"),
        ({"since": "yesterday"}, "From"),
        ({"until": "2026-02-30"}, "Before"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "Before"),
        ({"person": "x" * 300}, "Person"),
        ({"person": "bob\x00"}, "Person"),
    ],
)
def test_bad_audit_filters_get_a_clear_400(client, trail, filters, named):
    page = client.get("/admin/audit?" + urlencode(filters))
    assert page.status_code == 400 and f"{named}: " in text(page) and 'role="alert"' in text(page)
    export = client.get("/admin/audit.jsonl?" + urlencode(filters))
    assert export.status_code == 400 and f"{named}: " in text(export)


def test_a_record_kept_with_a_lone_surrogate_is_shown_not_a_500(client, trail, fresh_audit):
    """Input is checked now (sso_common.json_input), but a trail kept from before stays readable: the page
    once failed with a 500 for every view whose newest 200 records held such a name."""
    fresh_audit.append({"type": "cli_sign_in", "outcome": "success", "client_name": "evil\ud800name", "time": trail})
    answer = client.get("/admin/audit")
    assert answer.status_code == 200 and "evil?name" in text(answer)


def test_scim_changes_name_what_changed_and_whom(client, trail, fresh_audit):
    """A group's change showed "unknown (not signed in)" as its person, and no row said what the IdP changed."""
    audit.scim_change(fresh_audit, "example-corp-oidc", "group members", group="engineering")
    audit.scim_change(fresh_audit, "example-corp-oidc", "user disabled", subject="sub-9", email="ivan@example.com")
    page = text(client.get("/admin/audit?channel=scim"))
    row = r'<td data-label="Person">([^<]+)</td>\s*<td[^>]*>[^<]*</td>\s*<td data-label="Details"[^>]*>([^<]*)'
    rows = re.findall(row, page)
    assert [(person, details.strip()) for person, details in rows] == [
        ("ivan@example.com", "user disabled by example-corp-oidc"),
        ("group engineering", "group members by example-corp-oidc"),
    ], page[-3000:]


def test_the_audit_trail_is_for_admins_only(app, client, person):
    sign_in(app, client, person("bob"))
    assert client.get("/admin/audit?outcome=failure").status_code == 403
    assert client.get("/admin/audit.jsonl?outcome=maybe").status_code == 403


# --- command-line sign-ins: the approval page and its record ---------------------------------------------


def test_a_cli_sign_in_is_one_record(app, client, person, fresh_audit):
    device_tokens(app, client, person("bob"))
    new = fresh_audit.query(AuditQuery(), limit=100)
    assert [(e["type"], e["outcome"], e["channel"]) for e in new] == [("cli_sign_in", "success", "sso-api")]
    assert new[0]["client_name"] == "test-cli" and new[0]["flow"] == "device code" and new[0]["user"] == "bob"


def test_the_approval_page_says_what_it_grants_to_whom_and_when_and_where_it_was_asked(app, client, clock, person):
    session = sign_in(app, client, person("bob"))
    registration = register(client, clientName="Totally the AWS CLI").get_json()
    client_record = app.extensions["broker"].grants.client(registration["clientId"], registration["clientSecret"])
    clock.now = 1767258000.0  # 2026-01-01T09:00:00Z
    authorization = app.extensions["broker"].grants.start_device_authorization(
        registration["clientId"], client_record, "203.0.113.9"
    )
    page = text(client.get(f"/device?user_code={authorization.user_code}"))
    ends = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(session.expires))
    assert re.search(
        r"<strong>Totally the AWS CLI</strong> <span [^>]*>unverified name</span>\s+will be able to access your AWS "
        rf"accounts and roles as <strong>bob@example.com</strong>\s+until <time [^>]*>{ends} UTC</time>",
        page,
    ), page
    assert "cannot confirm it" in page
    assert re.search(
        r"Requested at <time [^>]*>2026-01-01 09:00:00 UTC</time> from <span [^>]*>203.0.113.9</span>", page
    )


@pytest.mark.parametrize("typed", ["{code}", "{lower}", "{bare}", "{bare_lower}", " {lower} ", "{spaced}"])
def test_the_code_is_accepted_with_or_without_the_dash_in_any_case(app, client, person, typed):
    sign_in(app, client, person("bob"))
    code = start(client, register(client).get_json()).get_json()["userCode"]  # XXXX-XXXX
    bare = code.replace("-", "")
    entered = typed.format(
        code=code, lower=code.lower(), bare=bare, bare_lower=bare.lower(), spaced=f"{bare[:4]} {bare[4:]}"
    )
    page = client.get("/device?" + urlencode({"user_code": entered}))
    assert page.status_code == 200 and read_page(text(page)).marker == "confirm"
    form = next(f for f in read_page(text(page)).forms if ("decision", "approve") in f.buttons)
    approved = client.post("/device", data={**form.inputs, "decision": "approve"})
    assert approved.status_code == 200 and read_page(text(approved)).heading == "Request approved"


def test_an_empty_code_is_asked_for_again(app, client, person):
    sign_in(app, client, person("bob"))
    page = client.get("/device?user_code=+")
    assert page.status_code == 400 and "Enter your code: the 8 letters your terminal shows." in text(page)
    assert 'aria-invalid="true"' in text(page)
    first = client.get("/device")
    assert first.status_code == 200 and "aria-invalid" not in text(first)


def test_too_many_unknown_codes_says_how_long_to_wait(app, client, person):
    sign_in(app, client, person("bob"))
    for _ in range(10):
        client.get("/device?user_code=BCDF-GHJK")
    answer = client.get("/device?user_code=BCDF-GHJK")
    assert answer.status_code == 429 and "Wait 15 minutes, then try again." in text(answer)
    assert answer.headers["Retry-After"] == "900"


def test_an_unknown_address_says_not_found(client):
    answer = client.get("/no-such-page")
    assert answer.status_code == 404
    assert "<title>Not found - AWS access portal</title>" in text(answer) and "Not found:" in text(answer)
