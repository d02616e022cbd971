"""Faults on demand at the mock IdP (idp_mock/faults.py), each refused by the broker's own connectors.

One IdP with its faults admin API on, configured with this module's PORTAL (whose SP metadata a
MetadataSite publishes, as the portal does). Every test sets its fault for the next answer only (count=1)
through the same client the `idp_faults` pytest fixture uses, and removes what it added.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from broker.connectors.fetch import FetchPolicy
from broker.connectors.mapping import IdentityMapping
from broker.connectors.oidc import DEFAULT_CLAIMS as OIDC_CLAIMS
from broker.connectors.oidc import OIDCConnector
from broker.errors import LoginFailed, UpstreamUnavailable
from broker_login.pytest_plugin import IdPFaults
from devstack.processes import free_port
from sso_common.keys import load_or_create_signing_identity
from tests.broker.connectors.test_saml import UPSTREAM as SAML_UPSTREAM
from tests.broker.connectors.test_saml import saml_connector
from tests.broker.connectors.trusts import trust
from tests.support.forge import idp_answer
from tests.support.saml_sp import MetadataSite, post_form
from tests.support.servers import start_idp

pytest_plugins = ["pytester"]

PORTAL = f"http://127.0.0.1:{free_port()}"
OIDC_UPSTREAM = "example-corp-oidc"
TOKEN = "faults-admin-token-for-tests"
PORTAL_CLIENT = "access-portal"
PORTAL_SP = f"{PORTAL}/saml/metadata"


def oidc_connector(issuer: str, **options) -> OIDCConnector:
    return OIDCConnector(
        id=OIDC_UPSTREAM,
        display_name="Example Corp",
        issuer=issuer,
        client_id=PORTAL_CLIENT,
        client_secret="demo-portal-oidc-secret",
        redirect_uri=f"{PORTAL}/login/{OIDC_UPSTREAM}/callback",
        scopes=["openid", "email", "profile", "groups"],
        mapping=IdentityMapping(**OIDC_CLAIMS, trust=trust(OIDC_UPSTREAM)),
        clock_skew=60,
        **options,
    )


@pytest.fixture(scope="module")
def sp_keys(tmp_path_factory):
    return load_or_create_signing_identity(tmp_path_factory.mktemp("saml-sp"), "sp", PORTAL_SP)


@pytest.fixture(scope="module")
def idp(tmp_path_factory, sp_keys):
    site = MetadataSite(int(PORTAL.rsplit(":", 1)[1])).start()
    site.publish(saml_connector(sp_keys, PORTAL, metadata_url=f"{PORTAL}/none").sp_metadata_xml())
    service = start_idp(tmp_path_factory.mktemp("idp"), env={"PORTAL_URL": PORTAL, "IDP_FAULTS_ADMIN_TOKEN": TOKEN})
    yield service
    service.stop()
    site.stop()


@pytest.fixture
def faults(idp):
    client = IdPFaults(idp.url, TOKEN)
    yield client
    for fault_id in list(client.added):
        client.remove(fault_id)


def oidc_sign_in(idp, connector: OIDCConnector, username: str = "alice"):
    """begin(), the IdP's answer (through its login form when it shows one), complete()."""
    redirect, kept = connector.begin("state-faults")
    answer = idp_answer(idp.url, redirect.url, username)
    location = urlsplit(answer.headers["Location"])
    assert location.geturl().startswith(f"{PORTAL}/login/{OIDC_UPSTREAM}/callback"), answer.headers["Location"]
    params = {name: values[0] for name, values in parse_qs(location.query).items()}
    return connector.complete(params, kept)


def oidc_refused(idp, connector: OIDCConnector) -> str:
    with pytest.raises(LoginFailed) as failure:
        oidc_sign_in(idp, connector)
    assert not isinstance(failure.value, UpstreamUnavailable)
    return failure.value.reason


def saml_sign_in(idp, sp_keys, username: str = "alice"):
    connector = saml_connector(sp_keys, PORTAL, metadata_url=f"{idp.url}/saml/metadata")
    redirect, kept = connector.begin("state-faults")
    posted = post_form(idp_answer(idp.url, redirect.url, username))
    assert posted.action == f"{PORTAL}/login/{SAML_UPSTREAM}/acs"
    return connector.complete(posted.fields, kept)


def saml_refused(idp, sp_keys) -> str:
    with pytest.raises(LoginFailed) as failure:
        saml_sign_in(idp, sp_keys)
    assert not isinstance(failure.value, UpstreamUnavailable)
    assert "<" not in failure.value.reason
    return failure.value.reason


# --- OIDC ------------------------------------------------------------------------------------------


def test_without_faults_the_sign_ins_work(idp, sp_keys):
    assert oidc_sign_in(idp, oidc_connector(idp.url)).identity.email == "alice@example.com"
    assert saml_sign_in(idp, sp_keys).identity.email == "alice@example.com"


def test_oidc_a_slow_token_endpoint_is_unavailable_after_the_deadline(idp, faults):
    faults.oidc(PORTAL_CLIENT, "delay", count=1, seconds=1.5)
    connector = oidc_connector(idp.url, fetch=FetchPolicy(deadline=0.5))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="in time"):
        oidc_sign_in(idp, connector)
    assert time.monotonic() - started < 1.5 + 1.0


def test_oidc_an_error_at_the_authorization_endpoint_is_a_readable_refusal(idp, faults):
    faults.oidc(PORTAL_CLIENT, "error", count=1, error="access_denied", description="Denied by a test")
    reason = oidc_refused(idp, oidc_connector(idp.url))
    assert "access_denied" in reason and "Denied by a test" in reason


def test_oidc_an_error_at_the_token_endpoint_is_a_refusal(idp, faults):
    faults.oidc(PORTAL_CLIENT, "error", count=1, error="invalid_grant")
    assert "invalid_grant" in oidc_refused(idp, oidc_connector(idp.url))


@pytest.mark.parametrize(
    "kind, options, why",
    [
        ("expired", {}, "expired"),
        ("not_yet_valid", {}, "issued in the future"),
        ("wrong_audience", {}, "aud"),
        ("wrong_audience", {"audience": "another-client"}, "aud"),
        ("unknown_key", {}, "No key for kid"),
        ("refused_algorithm", {"alg": "HS256"}, "'HS256' is not allowed"),
        ("refused_algorithm", {"alg": "RS512"}, "'RS512' is not allowed"),
        ("refused_algorithm", {"alg": "none"}, "'none' is not allowed"),
        ("missing", {"name": "email"}, "sent no email address"),
        ("missing", {"name": "sub"}, "Missing claim: 'sub'"),
    ],
)
def test_oidc_bad_id_tokens_are_refused(idp, faults, kind, options, why):
    faults.oidc(PORTAL_CLIENT, kind, count=1, **options)
    reason = oidc_refused(idp, oidc_connector(idp.url))
    assert why in reason, reason
    assert oidc_sign_in(idp, oidc_connector(idp.url)).identity  # the fault was for one answer only


def test_oidc_sign_in_as_someone_without_the_form(idp, faults):
    faults.oidc(
        PORTAL_CLIENT,
        "sign_in_as",
        count=1,
        values={"sub": "test-person-1", "email": "tess@example.com", "name": "Tess Ter", "groups": ["finance"]},
    )
    connector = oidc_connector(idp.url)
    redirect, kept = connector.begin("state-as")
    answer = requests.get(redirect.url, allow_redirects=False)  # a browser with no session at the IdP
    assert answer.is_redirect and answer.headers["Location"].startswith(f"{PORTAL}/login/{OIDC_UPSTREAM}/callback")
    params = {name: values[0] for name, values in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    identity = connector.complete(params, kept).identity
    assert identity.subject == "test-person-1" and identity.email == "tess@example.com"
    assert identity.groups == {"finance"} and identity.display_name == "Tess Ter"


def test_oidc_a_thin_id_token_leaves_the_profile_to_userinfo(idp, faults):
    """The broker asks userinfo for what a thin ID token leaves out, and gets the same person."""
    faults.oidc(PORTAL_CLIENT, "thin_id_token", count=1)
    identity = oidc_sign_in(idp, oidc_connector(idp.url), "bob").identity
    assert identity.email == "bob@example.com" and identity.groups == {"engineering"}
    faults.oidc(PORTAL_CLIENT, "thin_id_token", count=1)
    connector = oidc_connector(idp.url, userinfo="never")  # one that reads the ID token only refuses it
    assert "email" in oidc_refused(idp, connector)


# --- SAML ------------------------------------------------------------------------------------------


def test_saml_a_slow_answer_arrives_late(idp, sp_keys, faults):
    """The Response goes through the browser: a slow IdP is slow for the person, the SP sees nothing else."""
    faults.saml(PORTAL_SP, "delay", count=1, seconds=1.0)
    started = time.monotonic()
    assert saml_sign_in(idp, sp_keys).identity
    assert time.monotonic() - started >= 1.0


def test_saml_an_error_status_is_a_readable_refusal(idp, sp_keys, faults):
    faults.saml(PORTAL_SP, "error", count=1, status="Responder", substatus="AuthnFailed", description="No, sorry")
    assert "the identity provider refused the sign-in" in saml_refused(idp, sp_keys)


@pytest.mark.parametrize(
    "kind, options, why",
    [
        ("expired", {}, "the assertion has expired"),
        ("not_yet_valid", {}, "not valid yet"),
        ("wrong_audience", {}, "(audience)"),
        ("unknown_key", {}, "the signature is not valid"),
        ("refused_algorithm", {}, "deprecated algorithm"),
        ("missing", {"name": "email"}, "sent no email address"),
    ],
)
def test_saml_bad_assertions_are_refused(idp, sp_keys, faults, kind, options, why):
    faults.saml(PORTAL_SP, kind, count=1, **options)
    reason = saml_refused(idp, sp_keys)
    assert why in reason, reason
    assert saml_sign_in(idp, sp_keys).identity


def test_saml_sign_in_as_someone_without_the_form(idp, sp_keys, faults):
    faults.saml(
        PORTAL_SP,
        "sign_in_as",
        count=1,
        values={"email": "sam@example.com", "displayName": "Sam Ple", "groups": ["security", "engineering"]},
    )
    connector = saml_connector(sp_keys, PORTAL, metadata_url=f"{idp.url}/saml/metadata")
    redirect, kept = connector.begin("state-as")
    posted = post_form(requests.get(redirect.url, allow_redirects=False))  # no session, no form: the post at once
    identity = connector.complete(posted.fields, kept).identity
    assert identity.email == "sam@example.com" and identity.groups == {"security", "engineering"}
    assert identity.display_name == "Sam Ple"


# --- the admin API ---------------------------------------------------------------------------------


def test_the_admin_api_needs_its_token_and_says_what_is_wrong(idp, faults):
    answer = requests.post(f"{idp.url}/admin/faults", json={"client_id": "x", "kind": "expired"}, timeout=10)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="faults"'
    assert answer.json()["error"] == "unauthorized"
    wrong = requests.post(
        f"{idp.url}/admin/faults",
        json={"client_id": PORTAL_CLIENT, "kind": "delay", "seconds": 500},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert wrong.status_code == 400 and wrong.json()["error_description"].startswith("seconds: must be")
    fault = faults.oidc(PORTAL_CLIENT, "expired", count=2)
    listed = {entry["id"]: entry for entry in faults.listed()}
    assert listed[fault["id"]]["remaining"] == 2 and listed[fault["id"]]["kind"] == "expired"


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"client_id": "no-such-client", "kind": "expired"}, "client_id: no client"),
        ({"sp": "https://nowhere.example/sp", "kind": "expired"}, "sp: no service provider"),
        ({"client_id": PORTAL_CLIENT, "kind": "expired", "count": "2"}, "count: a whole number"),
        ({"client_id": PORTAL_CLIENT, "kind": "expired", "count": True}, "count: a whole number"),
        ({"client_id": PORTAL_CLIENT, "kind": "sign_in_as", "username": "nobody"}, "username: the directory has no"),
    ],
)
def test_a_fault_that_could_never_apply_is_refused_when_added(idp, faults, body, problem):
    """Each was 201, and the test that added it found out only when its sign-in went as if there were none."""
    answer = requests.post(
        f"{idp.url}/admin/faults", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert answer.status_code == 400 and answer.json()["error_description"].startswith(problem), answer.text
    assert faults.listed() == []


def test_a_fault_for_an_sp_whose_metadata_cannot_be_fetched_now_is_added(tmp_path):
    """Whether the SP is known is asked without fetching its published metadata (a portal not started yet)."""
    closed = f"http://127.0.0.1:{free_port()}"
    service = start_idp(tmp_path, env={"PORTAL_URL": closed, "IDP_FAULTS_ADMIN_TOKEN": TOKEN})
    try:
        added = IdPFaults(service.url, TOKEN).saml(f"{closed}/saml/metadata", "expired", count=1)
        assert added["kind"] == "expired"
    finally:
        service.stop()


def test_without_a_token_there_is_no_admin_api(tmp_path):
    service = start_idp(tmp_path)
    try:
        answer = requests.get(f"{service.url}/admin/faults", headers={"Authorization": "Bearer x"}, timeout=10)
        assert answer.status_code == 404
    finally:
        service.stop()


# --- the idp_faults fixture of the sso_broker pytest plugin ----------------------------------------

INNER = ("-p", "no:cacheprovider", "-p", "no:playwright", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def test_the_idp_faults_fixture_adds_faults_for_one_test_only(pytester, monkeypatch, idp):
    monkeypatch.setenv("IDP_FAULTS_ADMIN_TOKEN", TOKEN)
    pytester.makepyfile("""
        def test_a_fault_for_the_portal(idp_faults):
            fault = idp_faults.oidc("access-portal", "wrong_audience", count=3)
            assert [f["id"] for f in idp_faults.listed()] == [fault["id"]]
    """)
    result = pytester.runpytest("--idp-url", idp.url, *INNER)
    result.assert_outcomes(passed=1)
    assert IdPFaults(idp.url, TOKEN).listed() == []  # removed when the test ended


def test_the_idp_faults_fixture_says_what_it_needs(pytester, monkeypatch):
    monkeypatch.delenv("IDP_URL", raising=False)
    monkeypatch.delenv("IDP_FAULTS_ADMIN_TOKEN", raising=False)
    pytester.makepyfile("def test_x(idp_faults):\n    pass\n")
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*idp_faults needs the IdP's address (--idp-url or IDP_URL)*IDP_FAULTS_ADMIN_TOKEN*"])
