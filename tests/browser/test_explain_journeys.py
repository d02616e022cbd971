"""The "How did I get here?" explanation in the browser: after an OIDC and a SAML sign-in, on a credentials
panel, and after refusals (an answer for no sign-in the portal started, MFA required for grace, no assignment
for dave). Each
journey opens the explanation, finds each step and the checks in it, checks the page like every other one
(axe-core, 375 px), validates the JSON against its schema, and searches the page and the JSON for every
secret of that sign-in: the password, the TOTP code, the authorization code, tokens, the signature values,
the credentials' secret key and session token."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import botocore.session
import jsonschema
from botocore.utils import InstanceMetadataFetcher
from lxml import etree
from playwright.sync_api import Page, expect

from tests.browser.journey import (
    OIDC,
    PORTAL_TITLE,
    SAML,
    check_page,
    expect_accounts_page,
    exports,
    get_credentials,
    role_panel,
    shoot,
    sign_in,
    start_sign_in,
    type_credentials,
)
from tests.support.idp_client import DEMO_PASSWORD, ERIN_TOTP_SECRET, fresh_totp

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "broker" / "static" / "explanation.schema.json").read_text())
TITLE = "How did I get here?" + PORTAL_TITLE
STEPS = (
    "1. The upstream answer",
    "2. The Identity",
    "3. The entitlement decision",
    "4. The way to AWS",
    "5. The workload path",
)
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
DS = "{http://www.w3.org/2000/09/xmldsig#}"
# A credentials form for a role whose button is disabled, sent as a person could send it by hand.
SUBMIT_BY_HAND = """([token, account, permissionSet]) => {
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/credentials";
  for (const [name, value] of [["csrf_token", token], ["account_id", account], ["permission_set", permissionSet]]) {
    const input = document.createElement("input");
    input.type = "hidden"; input.name = name; input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
}"""


def open_explanation(page: Page, link_name: str = "How did I get here?") -> dict:
    """Follow the page's link to the explanation; check the page and each step; the JSON, schema-checked."""
    page.get_by_role("link", name=link_name).first.click()
    expect(page.get_by_role("heading", name="How did I get here?", level=1)).to_be_visible()
    check_page(page, TITLE)
    for step in STEPS:
        expect(page.get_by_role("heading", name=step, level=2)).to_be_visible()
    json_url = page.get_by_role("link", name="The same as JSON").get_attribute("href")
    answer = page.request.get(urlsplit(page.url)._replace(path=json_url, fragment="").geturl())
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/json")
    document = answer.json()
    jsonschema.validate(document, SCHEMA)
    return document


def check_row(page: Page, name: str, outcome: str):
    """The row of a check, which must show `outcome`."""
    row = page.locator("tr.check", has=page.get_by_role("rowheader", name=name, exact=True)).first
    expect(row.locator(".outcome")).to_have_text(outcome)
    return row


def assert_no_secret(page: Page, document: dict, secrets: dict[str, str]) -> None:
    """Neither the page (all of it, closed documents included) nor the JSON holds any of `secrets`."""
    page.locator("details.document").evaluate_all("all => all.forEach(d => d.open = true)")
    text = page.content() + "\n" + page.locator("body").inner_text() + "\n" + json.dumps(document)
    for what, secret in secrets.items():
        assert secret, what
        if secret.isdigit():  # a 6-digit code: as a number of its own, not inside a longer one
            assert not re.search(rf"(?<![0-9]){secret}(?![0-9])", text), f"the {what} is on the page"
        else:
            assert secret not in text, f"the {what} is on the page"
    assert not JWT.search(text), "a token (JWT) is on the page"


def scroll_to(page: Page, selector: str) -> None:
    """`selector` at the top of the window (for the screenshots the README shows)."""
    page.locator(selector).first.evaluate("element => element.scrollIntoView()")


def signature_values(saml_response: str) -> list[str]:
    root = etree.fromstring(base64.b64decode(saml_response))
    return ["".join((value.text or "").split()) for value in root.iter(f"{DS}SignatureValue")]


def test_an_oidc_sign_in_with_totp_and_its_credentials_explained(page, urls):
    portal = urls["PORTAL_URL"]
    codes = []
    page.on(
        "request",
        lambda r: codes.extend(parse_qs(urlsplit(r.url).query).get("code", [])) if "/callback" in r.url else None,
    )
    start_sign_in(page, portal, OIDC)
    type_credentials(page, "erin")
    expect(page.get_by_role("heading", name="Verification code")).to_be_visible()
    totp = fresh_totp("{0.scheme}://{0.netloc}".format(urlsplit(page.url)), ERIN_TOTP_SECRET)
    page.keyboard.type(totp)
    page.keyboard.press("Enter")
    expect_accounts_page(page, portal)
    assert codes, "no authorization code came back"

    document = open_explanation(page)
    assert document["outcome"] == "signed in" and document["protocol"] == "oidc"
    # Step 1: the ID token's checks, as joserfc and the connector reached them.
    for name in ("signature and algorithm", "essential claims present", "iss", "aud", "exp", "iat", "nonce"):
        check_row(page, name, "passed")
    check_row(page, "nbf", "skipped")
    expect(check_row(page, "exp", "passed")).to_contain_text("allowed skew (60 s)")
    page.get_by_text("ID token (decoded)").click()
    expect(page.locator("pre", has_text='"preferred_username": "erin"')).to_be_visible()
    # Step 2: where each field came from; the second factor recognised.
    expect(page.locator("#identity")).to_contain_text("claim 'email'")
    check_row(page, "second factor", "passed")
    # Step 3: SecurityAudit requires MFA, and she used it.
    decisions = page.locator("#entitlements tbody tr", has_text="SecurityAudit")
    expect(decisions.first.locator(".outcome")).to_have_text("granted")
    page.get_by_text("ID token (decoded)").click()  # closed again: the checks fill the picture
    scroll_to(page, "#s1-upstream-title")
    shoot(page, "portal-explain")

    # The instance's SDK takes its role's credentials as boto3 does (IMDSv2: a token first).
    sdk = botocore.session.Session().user_agent()  # as botocore's instance metadata provider sends it
    imds = InstanceMetadataFetcher(timeout=5, num_attempts=1, base_url=urls["INSTANCE_METADATA_URL"], user_agent=sdk)
    assert imds.retrieve_iam_role_credentials()["role_name"] == "EmployeeWebAppRole"
    page.goto(portal + "/")
    get_credentials(page, "SecurityAudit", "example-production")
    values = exports(page)
    panel = role_panel(page, "SecurityAudit", "example-production")
    panel.get_by_role("link", name=re.compile("^How did I get here")).click()
    check_page(page, TITLE)
    way = page.locator("#way-to-aws")
    expect(
        way.get_by_role("heading", name=re.compile(r"^Request 1: SecurityAudit in example-production - issued"))
    ).to_be_visible()
    expect(way).to_contain_text("RoleSessionName")
    expect(way).to_contain_text("erin@example.com")
    expect(way).to_contain_text("SourceIdentity")
    expect(way).to_contain_text("assumed-role/AWSReservedSSO_SecurityAudit_")
    expect(way).to_contain_text("Trust policy (who may assume the role)")
    expect(way).to_contain_text("withheld")
    scroll_to(page, "#way-to-aws")
    shoot(page, "portal-explain-aws")
    expect(page.locator("#workload-path")).to_contain_text("EmployeeWebAppRole")
    document = page.request.get(page.url.split("#")[0] + ".json").json()
    jsonschema.validate(document, SCHEMA)
    [issuance] = document["issuances"]
    assert [s["key"] for s in issuance["sections"]] == ["entitlement", "assertion", "request", "answer", "policies"]
    assert issuance["request_body"] is None and issuance["request_body_withheld"]  # a bearer credential still
    workload = document["workload"]
    assert any(c["outcome"] == "passed" and "ec2.amazonaws.com" in c["name"] for c in workload["checks"])
    assert any(f["label"].startswith("credentials 1") for f in workload["facts"])  # the rotation history
    sdk_tokens = [f["value"] for f in workload["facts"] if f["label"] == "metadata token" and "Botocore" in f["source"]]
    assert any(re.search(r"TTL 21600 s, .* fetched the role's credentials [1-9]", value) for value in sdk_tokens)
    assert_no_secret(
        page,
        document,
        {
            "password": DEMO_PASSWORD,
            "TOTP code": totp,
            "authorization code": codes[0],
            "secret access key": values["AWS_SECRET_ACCESS_KEY"],
            "session token": values["AWS_SESSION_TOKEN"],
        },
    )


def test_a_saml_sign_in_explained(page, urls):
    posted = []
    page.on("request", lambda r: posted.append(r.post_data) if r.url.endswith("/acs") and r.method == "POST" else None)
    sign_in(page, urls, "alice", SAML)
    [body] = posted
    fields = parse_qs(body)
    values = signature_values(fields["SAMLResponse"][0])
    assert values and all(values)

    document = open_explanation(page)
    assert document["protocol"] == "saml" and document["owner"]["email"] == "alice@example.com"
    for name in (
        "readable SAML Response (base64, XML)",
        "status Success",
        "signed elements and their references",
        "Audience",
        "Issuer",
        "SubjectConfirmation: bearer, Recipient, NotOnOrAfter",
        "signature valid",
        "InResponseTo answers this sign-in (required)",
        "Conditions with the configured clock skew",
        "assertion not seen before (replay cache)",
    ):
        check_row(page, name, "passed")
    check_row(page, "finished in the browser that started it (binding cookie)", "passed")
    page.locator("#upstream-answer").get_by_text("SAML Response", exact=True).click()
    response = page.locator("#upstream-answer pre", has_text="SIGNED:")
    expect(response).to_contain_text("[signature value withheld]")
    expect(page.locator("#identity")).to_contain_text("attribute 'email'")
    scroll_to(page, "#s1-upstream-title")
    shoot(page, "portal-explain-saml")
    assert_no_secret(
        page,
        document,
        {"password": DEMO_PASSWORD, **{f"signature value {i}": v for i, v in enumerate(values, 1)}},
    )


def test_a_refused_answer_links_to_its_explanation_for_this_browser_only(page, new_context, urls):
    portal = urls["PORTAL_URL"]
    page.goto(f"{portal}/login/example-corp-oidc/callback?state=made-up&code=x")
    check_page(page, "Sign-in failed" + PORTAL_TITLE)
    document = open_explanation(page)
    assert document["outcome"] == "refused" and document["owner"] is None
    status = page.get_by_role("status").filter(has=page.get_by_role("heading", name="The sign-in was refused"))
    expect(status).to_contain_text("It stopped at a sign-in this portal started (state)")
    check_row(page, "a sign-in this portal started (state)", "failed")
    check_row(page, "finished in the browser that started it (binding cookie)", "not reached")
    expect(page.locator("#entitlements")).to_contain_text("Not reached")
    shoot(page, "portal-explain-refused")
    address = page.url
    other = new_context()
    try:  # another browser, without the refused one's cookie: the same 404 as for an unknown address
        stranger = other.new_page()
        assert stranger.goto(address).status == 404
        check_page(stranger, "Not found" + PORTAL_TITLE)
    finally:
        other.close()


def test_grace_sees_why_mfa_is_required(page, urls):
    portal = urls["PORTAL_URL"]
    sign_in(page, urls, "grace")
    page.get_by_role("link", name="How did I get here? (SecurityAudit in example-sandbox)").click()
    check_page(page, TITLE)
    refused = page.locator("#entitlements tbody tr", has_text="SecurityAudit")
    expect(refused).to_have_count(2)
    expect(refused.first.locator(".outcome")).to_have_text("refused")
    expect(refused.first).to_contain_text("requires multi-factor authentication")
    # recognised or not: this upstream does not require a second factor
    expect(check_row(page, "second factor", "passed")).to_contain_text("recognised: no")
    scroll_to(page, "#entitlements")
    shoot(page, "portal-explain-mfa")

    # Asking anyway (the button is disabled: a form sent by hand) is refused, and that page links here too.
    page.goto(portal + "/")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    page.evaluate(SUBMIT_BY_HAND, [token, "111111111111", "SecurityAudit"])
    check_page(page, "Access denied" + PORTAL_TITLE)
    document = open_explanation(page)
    [issuance] = document["issuances"]
    assert issuance["outcome"] == "refused" and "multi-factor" in issuance["reason"]
    mfa = next(c for c in issuance["sections"][0]["checks"] if c["name"] == "multi-factor authentication")
    assert mfa["outcome"] == "failed"
    check_row(page, "multi-factor authentication", "failed")
    check_row(page, "an assignment gives you this role", "passed")


def test_dave_sees_that_no_assignment_names_his_group(page, urls):
    sign_in(page, urls, "dave")
    notice = page.get_by_role("status").filter(has=page.get_by_role("heading", name="You have no AWS access"))
    notice.get_by_role("link", name="How did I get here?").click()
    check_page(page, TITLE)
    rows = page.locator("#entitlements tbody tr")
    expect(rows.first).to_be_visible()
    assert set(rows.locator(".outcome").all_inner_texts()) == {"not yours"}
    expect(rows.first).to_contain_text("you are not in the group")
    expect(page.locator("#identity")).to_contain_text("contractors")
    expect(page.locator("#way-to-aws")).to_contain_text("No credentials asked for yet")
    scroll_to(page, "#entitlements")
    shoot(page, "portal-explain-no-access")


def test_a_tampered_saml_answer_is_explained_on_the_page_that_refused_it(page, urls):
    """The SAML answer arrives as a cross-site POST: the refusal page's cookie still lets this browser read
    what python3-saml found (a signature that no longer verifies), and nothing after it was reached."""

    def tamper(route):
        fields = parse_qs(route.request.post_data)
        root = etree.fromstring(base64.b64decode(fields["SAMLResponse"][0]))
        for value in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}AttributeValue"):
            if value.text == "finance":
                value.text = "aws-admins"  # carol, an administrator: under the IdP's genuine signature
        fields["SAMLResponse"] = [base64.b64encode(etree.tostring(root)).decode()]
        route.continue_(post_data=urlencode({name: values[0] for name, values in fields.items()}))

    page.route(re.compile(r".*/login/example-corp-saml/acs$"), tamper)
    start_sign_in(page, urls["PORTAL_URL"], SAML)
    type_credentials(page, "carol")
    check_page(page, "Sign-in failed" + PORTAL_TITLE)
    document = open_explanation(page)
    upstream = next(section for section in document["sections"] if section["key"] == "upstream")
    outcomes = {check["name"]: check["outcome"] for check in upstream["checks"]}
    assert (
        outcomes["signature valid"] == "failed"
        and outcomes["assertion not seen before (replay cache)"] == "not reached"
    )
    check_row(page, "signature valid", "failed")
    check_row(page, "Issuer", "passed")
