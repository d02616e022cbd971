"""Bad upstream answers at the real portal: forged, tampered and replayed SAML responses at the ACS,
and bad OIDC callbacks. Each gets a clear page, an audit record, and no session."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from sso_common.keys import load_or_create_signing_identity
from sso_common.store import AuditQuery
from sso_common.store.sqlite import SQLiteAuditLog
from tests.support.forge import NS, assertion_of, decode_response, encode_response, idp_answer, resign
from tests.support.portal import follow, forms

SAML_UPSTREAM, OIDC_UPSTREAM = "example-corp-saml", "example-corp-oidc"


def audit(stack) -> SQLiteAuditLog:
    return SQLiteAuditLog(str(Path(stack.instance_dir) / "broker" / "audit.db"))


def genuine_saml_answer(stack, username="bob"):
    """A browser session that started a SAML login, and the IdP's (not yet posted) auto-post form."""
    http = requests.Session()
    start = f"{stack.addresses['PORTAL_URL']}/login/{SAML_UPSTREAM}"
    redirect = http.get(start, allow_redirects=False)
    page = idp_answer(stack.addresses["IDP_URL"], urljoin(start, redirect.headers["Location"]), username)
    http.cookies.update({c.name: c.value for c in page.cookies})
    form = next(f for f in forms(page.text) if "SAMLResponse" in f["fields"])
    return http, form


def post_to_acs(http, form, **changes):
    fields = {**form["fields"], **changes}
    return http.post(form["action"], data=fields, allow_redirects=False)


def assert_refused(stack, answer, since):
    assert 400 <= answer.status_code < 500, answer.text[:500]
    assert "Sign-in failed" in answer.text and "portal_session" not in answer.headers.get("Set-Cookie", "")
    failures = [
        e
        for e in audit(stack).query(AuditQuery(event_type="sign_in"), limit=20)
        if e["outcome"] == "failure" and e["time"] >= since
    ]
    assert failures, "no audit record for the refused sign-in"
    return failures[0]


def attacker():
    import tempfile

    return load_or_create_signing_identity(Path(tempfile.mkdtemp()), "attacker", "attacker")


def test_genuine_answer_signs_in_once_and_its_replay_is_refused(stack):
    http, form = genuine_saml_answer(stack)
    first = post_to_acs(http, form)
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/finish?ticket=")
    assert (
        "AWS accounts"
        in follow(http, http.get(urljoin(form["action"], first.headers["Location"]), allow_redirects=False)).text
    )
    since = time.time()
    assert_refused(stack, post_to_acs(http, form), since)


def test_replay_into_a_new_login_is_refused(stack):
    http, form = genuine_saml_answer(stack)
    assert post_to_acs(http, form).status_code == 303
    _, fresh = genuine_saml_answer(stack)  # a new transaction, whose RelayState the attacker reuses
    since = time.time()
    record = assert_refused(stack, post_to_acs(http, form, RelayState=fresh["fields"]["RelayState"]), since)
    assert record["upstream"] == SAML_UPSTREAM


def _unsigned(root):
    for signature in root.iter("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        signature.getparent().remove(signature)
    return root


def _more_groups(root):
    value = root.find(".//saml:Attribute[@Name='groups']/saml:AttributeValue", NS)
    value.text = "aws-admins"
    return root


def _wrong_audience(root):
    assertion_of(root).find(".//saml:Audience", NS).text = "https://evil.example/sp"
    return resign(root, attacker())


MUTATIONS = {
    "unsigned": _unsigned,
    "re-signed by another key": lambda root: resign(root, attacker()),
    "tampered attribute under the genuine signature": _more_groups,
    "wrong audience, re-signed": _wrong_audience,
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_forged_or_tampered_responses_are_refused(stack, mutation):
    http, form = genuine_saml_answer(stack)
    forged = encode_response(MUTATIONS[mutation](decode_response(form["fields"]["SAMLResponse"])))
    since = time.time()
    record = assert_refused(stack, post_to_acs(http, form, SAMLResponse=forged), since)
    assert record["upstream"] == SAML_UPSTREAM and record["reason"]


@pytest.mark.parametrize("value", ["not base64 at all!", "", "PHhtbD4=", "A" * 10])
def test_garbage_responses_are_refused(stack, value):
    http, form = genuine_saml_answer(stack)
    since = time.time()
    assert_refused(stack, post_to_acs(http, form, SAMLResponse=value), since)


def test_unknown_relay_state_is_refused(stack):
    http, form = genuine_saml_answer(stack)
    since = time.time()
    assert_refused(stack, post_to_acs(http, form, RelayState="made-up"), since)


def test_parked_login_cannot_be_finished_in_another_browser(stack):
    http, form = genuine_saml_answer(stack)
    first = post_to_acs(http, form)
    since = time.time()
    other_browser = requests.get(urljoin(form["action"], first.headers["Location"]), allow_redirects=False)
    assert_refused(stack, other_browser, since)


def oidc_callback(stack, username="bob"):
    """A browser session that started an OIDC login, and the IdP's redirect back to the portal."""
    http = requests.Session()
    start = f"{stack.addresses['PORTAL_URL']}/login/{OIDC_UPSTREAM}"
    redirect = http.get(start, allow_redirects=False)
    answer = idp_answer(stack.addresses["IDP_URL"], urljoin(start, redirect.headers["Location"]), username)
    return http, answer.headers["Location"]


def with_query(url, **changes):
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


@pytest.mark.parametrize(
    "change",
    [
        {"state": "made-up"},
        {"code": "forged-code"},
        {"error": "access_denied", "code": ""},
    ],
)
def test_bad_oidc_callbacks_are_refused(stack, change):
    http, callback = oidc_callback(stack)
    since = time.time()
    assert_refused(stack, http.get(with_query(callback, **change), allow_redirects=False), since)


def test_oidc_callback_in_another_browser_is_refused(stack):
    _, callback = oidc_callback(stack)
    since = time.time()
    assert_refused(stack, requests.get(callback, allow_redirects=False), since)


def test_oidc_callback_replay_is_refused(stack):
    http, callback = oidc_callback(stack)
    assert http.get(callback, allow_redirects=False).status_code == 303
    since = time.time()
    assert_refused(stack, http.get(callback, allow_redirects=False), since)


@pytest.mark.parametrize(
    "target", ["/%09/evil.example/x", "/%0A/evil.example", "//evil.example", "https://evil.example", "/\\evil.example"]
)
def test_next_never_leaves_the_portal(stack, target):
    """A sign-in link may name where to land afterwards, but only a path on the portal."""
    http = requests.Session()
    start = f"{stack.addresses['PORTAL_URL']}/login/{OIDC_UPSTREAM}?next={target}"
    redirect = http.get(start, allow_redirects=False)
    answer = idp_answer(stack.addresses["IDP_URL"], urljoin(start, redirect.headers["Location"]), "bob")
    landed = http.get(answer.headers["Location"], allow_redirects=False)
    assert landed.status_code == 303 and landed.headers["Location"] == "/"


def test_next_keeps_a_local_path(stack):
    http = requests.Session()
    start = f"{stack.addresses['PORTAL_URL']}/login/{OIDC_UPSTREAM}?next=/device"
    redirect = http.get(start, allow_redirects=False)
    answer = idp_answer(stack.addresses["IDP_URL"], urljoin(start, redirect.headers["Location"]), "bob")
    assert http.get(answer.headers["Location"], allow_redirects=False).headers["Location"] == "/device"
