"""The portal SP is described by its published metadata (config/idp.yaml: metadata_url): only requests
signed with the certificate it publishes count as the portal's.

The attack this closes: anyone can write an unsigned LogoutRequest with the portal's entity ID as Issuer
and a user's persistent NameID (uuid5 of the username, computable by anyone) and send the user's browser
to it (a link, an image), signing them out of the IdP; or start sign-ins "as the portal".

Each IdP here runs the repository's config with PORTAL_URL set to a `MetadataSite`, which publishes a
test SP's metadata where the portal publishes its own. The real portal is in test_portal_e2e.py and
test_login_e2e.py (tests/broker), which sign in and out through SAML with the broker's own signatures.
"""

from __future__ import annotations

import time

import pytest
import requests
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from idp_mock.directory import load_directory
from idp_mock.errors import MetadataError, MetadataUnavailable
from idp_mock.saml_idp import remote
from idp_mock.saml_idp.config import Endpoint, ServiceProvider
from idp_mock.settings import DEFAULT_CONFIG_DIR
from tests.support.idp_client import is_login_page, submit_login
from tests.support.saml_sp import (
    MetadataSite,
    authn_request_xml,
    deflate_base64,
    http_post_binding,
    logout_request_xml,
    new_sp_identity,
    portal_sp,
    post_form,
    sign_in_through,
    signed_redirect_query,
)
from tests.support.servers import start_idp

DIRECTORY = load_directory(DEFAULT_CONFIG_DIR / "directory.yaml")
BOB = DIRECTORY.find("bob").subject  # the persistent NameID the portal receives for bob


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return tmp_path_factory.mktemp("portal-keys")


@pytest.fixture(scope="module")
def portal_site(tmp_path_factory):
    """start(status, delay) -> (site, idp): a metadata site and an IdP whose config's portal is that site."""
    started = []

    def start(status: int = 200, delay: float = 0.0):
        site = MetadataSite().start()
        site.status, site.delay = status, delay
        started.append(site)
        idp = start_idp(
            tmp_path_factory.mktemp("idp"), env={"PORTAL_URL": site.url, "IDP_MAX_FAILURES_PER_ADDRESS": "100000"}
        )
        started.append(idp)
        return site, idp

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture(scope="module")
def site_and_idp(portal_site):
    return portal_site()


@pytest.fixture(scope="module")
def portal(site_and_idp, keys):
    """The portal, signing with the key whose certificate the site publishes."""
    site, idp = site_and_idp
    sp = portal_sp(idp.url, site.url, new_sp_identity(keys))
    site.publish(sp.metadata())
    return sp


def idp_session(idp_url: str, username: str = "bob") -> requests.Session:
    """A browser signed in at the IdP (at its own login page, no SP involved)."""
    http = requests.Session()
    answer = submit_login(http, idp_url, http.get(f"{idp_url}/login"), username)
    assert answer.status_code == 303, answer.text[:500]
    assert signed_in(idp_url, http)
    return http


def signed_in(idp_url: str, http: requests.Session) -> bool:
    return "You are signed in as" in http.get(f"{idp_url}/").text


def send(http: requests.Session, url: str, binding: str, xml: bytes) -> requests.Response:
    """An unsigned message as a top-level navigation (Redirect) or an auto-posting form (POST)."""
    if binding == "redirect":
        return http.get(url, params={"SAMLRequest": deflate_base64(xml)}, allow_redirects=False)
    return http_post_binding(http, url, "SAMLRequest", xml)


def assert_refused(answer: requests.Response, phrase: str, status: int = 400) -> None:
    assert answer.status_code == status, answer.text[:1000]
    assert answer.headers["Content-Type"].startswith("text/html")
    assert phrase in answer.text
    assert "SAMLResponse" not in answer.text and "Location" not in answer.headers


def goes_to_login(answer: requests.Response) -> bool:
    return is_login_page(answer)  # the request was accepted: the login form answers it


# --- the attack: requests that merely claim to come from the portal -----------------------------------


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unsigned_logout_request_claiming_to_be_the_portal_is_refused_and_keeps_the_session(portal, binding):
    http = idp_session(portal.idp_url)
    forged = logout_request_xml(portal.entity_id, f"{portal.idp_url}/saml/slo", BOB)
    assert_refused(send(http, f"{portal.idp_url}/saml/slo", binding, forged), "must sign its requests")
    assert signed_in(portal.idp_url, http)


def test_logout_request_signed_with_another_key_claiming_to_be_the_portal_is_refused(portal, tmp_path):
    http = idp_session(portal.idp_url)
    forged = logout_request_xml(portal.entity_id, f"{portal.idp_url}/saml/slo", BOB)
    query = signed_redirect_query(new_sp_identity(tmp_path), "SAMLRequest", forged)
    assert_refused(http.get(f"{portal.idp_url}/saml/slo?{query}", allow_redirects=False), "signature is not valid")
    assert signed_in(portal.idp_url, http)


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unsigned_authn_request_claiming_to_be_the_portal_is_refused(portal, binding):
    forged = authn_request_xml(portal.entity_id, f"{portal.idp_url}/saml/sso")
    assert_refused(send(requests.Session(), f"{portal.idp_url}/saml/sso", binding, forged), "must sign its requests")
    # Signed in or not, the answer is the same refusal, never a Response.
    assert_refused(
        send(idp_session(portal.idp_url), f"{portal.idp_url}/saml/sso", binding, forged), "must sign its requests"
    )


# --- the portal itself: its signed requests are accepted ------------------------------------------------


def test_the_portals_signed_requests_are_accepted(portal):
    http = requests.Session()
    url, request_id = portal.login_url(relay_state="/accounts")
    auth = portal.accept(
        post_form(sign_in_through(http, portal.idp_url, http.get(url, allow_redirects=False), "bob")), request_id
    )
    assert auth.get_nameid() == BOB and auth.get_attributes()["email"] == ["bob@example.com"]
    xml, request_id = portal.authn_request_xml()  # HTTP-POST binding, enveloped signature
    answer = http_post_binding(http, f"{portal.idp_url}/saml/sso", "SAMLRequest", xml)
    assert portal.accept(post_form(answer), request_id).get_nameid() == BOB
    # Its signed LogoutRequest ends the IdP session, answered with a signed LogoutResponse.
    url, request_id = portal.logout_url(auth.get_nameid(), auth.get_session_index())
    answer = http.get(url, allow_redirects=False)
    assert answer.status_code == 303
    portal.accept_logout_response(answer.headers["Location"], request_id)
    assert not signed_in(portal.idp_url, http)


def test_the_portals_metadata_is_fetched_once_then_cached(portal, site_and_idp):
    site, _ = site_and_idp
    assert goes_to_login(requests.get(portal.login_url()[0], allow_redirects=False))
    fetched = site.hits
    assert fetched >= 1
    for _ in range(3):
        assert goes_to_login(requests.get(portal.login_url()[0], allow_redirects=False))
    assert site.hits == fetched


# --- metadata that cannot be had: a clear 503, never an unverified acceptance ----------------------------


def test_the_idp_starts_without_the_portal_and_answers_503_until_its_metadata_can_be_fetched(portal_site, keys):
    site, idp = portal_site(status=503)  # the portal is down: the IdP started anyway
    portal = portal_sp(idp.url, site.url, new_sp_identity(keys))
    site.publish(portal.metadata())
    assert_refused(
        requests.get(portal.login_url()[0], allow_redirects=False), "cannot verify requests from", status=503
    )
    http = idp_session(idp.url)
    forged = logout_request_xml(portal.entity_id, f"{idp.url}/saml/slo", BOB)
    assert_refused(send(http, f"{idp.url}/saml/slo", "redirect", forged), "cannot verify requests from", status=503)
    assert signed_in(idp.url, http)
    site.status = 200  # the portal is back: within seconds its signed requests are accepted
    deadline = time.monotonic() + remote.RETRY_AFTER_FAILURE + 5
    while not goes_to_login(answer := requests.get(portal.login_url()[0], allow_redirects=False)):
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text[:500]
        time.sleep(0.1)  # the IdP tries again RETRY_AFTER_FAILURE s after the failed fetch (a constant)
    assert_refused(send(http, f"{idp.url}/saml/slo", "redirect", forged), "must sign its requests")
    assert signed_in(idp.url, http)


def test_a_portal_that_does_not_answer_costs_seconds_not_minutes(portal_site, keys):
    site, idp = portal_site(delay=30)
    portal = portal_sp(idp.url, site.url, new_sp_identity(keys))
    started = time.monotonic()
    answer = requests.get(portal.login_url()[0], allow_redirects=False, timeout=20)
    assert_refused(answer, "cannot verify requests from", status=503)
    assert time.monotonic() - started < remote.FETCH_TIMEOUT[0] + remote.FETCH_DEADLINE + 2


# --- key rotation and refresh ------------------------------------------------------------------------------


def test_a_rotated_certificate_is_picked_up_after_a_failed_verification(portal_site, keys):
    site, idp = portal_site()
    old = portal_sp(idp.url, site.url, new_sp_identity(keys))
    site.publish(old.metadata())
    assert goes_to_login(requests.get(old.login_url()[0], allow_redirects=False))
    new = portal_sp(idp.url, site.url, new_sp_identity(keys))  # the portal rotates its key
    site.publish(new.metadata())
    fetched = site.hits
    assert goes_to_login(requests.get(new.login_url()[0], allow_redirects=False))  # fetched again, once
    assert site.hits == fetched + 1
    # The old key is refused now, and badly signed requests do not make the IdP fetch the metadata each
    # time (at most once per remote.MIN_FORCED_REFRESH seconds).
    for _ in range(3):
        assert_refused(requests.get(old.login_url()[0], allow_redirects=False), "signature is not valid")
    assert site.hits == fetched + 1
    http = idp_session(idp.url)
    url, request_id = new.logout_url(BOB, None)
    new.accept_logout_response(http.get(url, allow_redirects=False).headers["Location"], request_id)
    assert not signed_in(idp.url, http)


def test_the_metadata_is_fetched_again_after_its_cache_duration(portal_site, keys):
    site, idp = portal_site()
    old = portal_sp(idp.url, site.url, new_sp_identity(keys))
    new = portal_sp(idp.url, site.url, new_sp_identity(keys))
    site.publish(with_cache_duration(old.metadata(), "PT2S"))
    assert goes_to_login(requests.get(old.login_url()[0], allow_redirects=False))
    fetched_at = time.monotonic()
    site.publish(with_cache_duration(new.metadata(), "PT2S"))
    assert goes_to_login(requests.get(old.login_url()[0], allow_redirects=False))  # the cached copy, still
    # Polled rather than slept: the old key works until the 2 s are over, then the new metadata is fetched.
    while goes_to_login(answer := requests.get(old.login_url()[0], allow_redirects=False)):
        assert time.monotonic() < fetched_at + 2 + 3, "the metadata was not fetched again after its cacheDuration"
        time.sleep(0.1)
    assert_refused(answer, "signature is not valid")
    assert goes_to_login(requests.get(new.login_url()[0], allow_redirects=False))


def with_cache_duration(metadata: str, duration: str) -> str:
    assert 'cacheDuration="' in metadata
    return metadata.replace('cacheDuration="PT604800S"', f'cacheDuration="{duration}"')


# --- the cache's rules, in process (a fake fetch and clock) ---------------------------------------------------

ENTITY = "https://portal.example.test/saml/metadata"
CONFIGURED = ServiceProvider(
    entity_id=ENTITY,
    name="Portal",
    acs=(Endpoint("https://portal.example.test/acs", SAML.BINDING_HTTP_POST, 0, True),),
    metadata_url=ENTITY,
    require_signed_requests=True,
)


def metadata_xml(identity, entity_id: str = ENTITY, signing: bool = True, **attributes) -> bytes:
    """SP metadata as python3-saml writes it (the portal's library)."""
    sp = {
        "entityId": entity_id,
        "assertionConsumerService": {"url": "https://portal.example.test/acs", "binding": SAML.BINDING_HTTP_POST},
        "singleLogoutService": {"url": "https://portal.example.test/slo", "binding": SAML.BINDING_HTTP_REDIRECT},
        **({"x509cert": identity.certificate_pem, "privateKey": identity.key_pem} if signing else {}),
    }
    settings = OneLogin_Saml2_Settings(
        {"strict": True, "sp": sp, "security": {"authnRequestsSigned": signing}}, sp_validation_only=True
    )
    xml = settings.get_sp_metadata()
    xml = xml if isinstance(xml, bytes) else xml.encode()
    if attributes:  # e.g. validUntil on the EntityDescriptor
        root = etree.fromstring(xml)
        for name, value in attributes.items():
            root.set(name, value)
        xml = etree.tostring(root)
    return xml


class Fake:
    """What the cache sees of the world: a clock it reads, and a metadata URL that answers or fails."""

    def __init__(self, body: bytes | None):
        self.now, self.body, self.fetches = 1000.0, body, 0

    def fetch(self, url: str) -> bytes:
        assert url == ENTITY
        self.fetches += 1
        if self.body is None:
            raise MetadataError("unreachable (ConnectionError)")
        return self.body

    def cache(self) -> remote.PublishedMetadata:
        return remote.PublishedMetadata(fetch=self.fetch, clock=lambda: self.now)


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cache-keys")
    return new_sp_identity(directory), new_sp_identity(directory)


def test_cache_merges_the_certificate_into_the_configured_sp(identities):
    fake = Fake(metadata_xml(identities[0]))
    sp = fake.cache().resolve(CONFIGURED)
    assert sp.certificate == identities[0].certificate and sp.acs == CONFIGURED.acs
    assert sp.slo.url == "https://portal.example.test/slo"  # not configured: the metadata's
    assert sp.require_signed_requests and sp.name == "Portal"


@pytest.mark.parametrize(
    "case", ["another entity ID", "no signing certificate", "expired", "DOCTYPE", "entity", "not metadata"]
)
def test_unusable_metadata_is_not_used(identities, case):
    body = {
        "another entity ID": lambda: metadata_xml(identities[0], entity_id="https://evil.example.test/saml"),
        "no signing certificate": lambda: metadata_xml(None, signing=False),
        "expired": lambda: metadata_xml(identities[0], validUntil="2020-01-01T00:00:00Z"),
        "DOCTYPE": lambda: b"<!DOCTYPE x>" + metadata_xml(identities[0]),
        "entity": lambda: (
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            + metadata_xml(identities[0]).replace(ENTITY.encode(), b"&e;", 1)
        ),
        "not metadata": lambda: b"<html>Welcome to the portal</html>",
    }[case]()
    with pytest.raises(MetadataUnavailable) as refused:
        Fake(body).cache().resolve(CONFIGURED)
    assert refused.value.status == 503


def test_a_failed_fetch_is_not_retried_at_once(identities):
    fake = Fake(None)
    cache = fake.cache()
    with pytest.raises(MetadataUnavailable):
        cache.resolve(CONFIGURED)
    fake.body = metadata_xml(identities[0])
    with pytest.raises(MetadataUnavailable):
        cache.resolve(CONFIGURED)
    assert fake.fetches == 1
    fake.now += remote.RETRY_AFTER_FAILURE
    assert cache.resolve(CONFIGURED).certificate == identities[0].certificate


def test_cached_for_the_ttl_then_fetched_again(identities):
    fake = Fake(metadata_xml(identities[0]))
    cache = fake.cache()
    cache.resolve(CONFIGURED)
    fake.body = metadata_xml(identities[1])
    fake.now += remote.METADATA_TTL - 1
    assert cache.resolve(CONFIGURED).certificate == identities[0].certificate and fake.fetches == 1
    fake.now += 1
    assert cache.resolve(CONFIGURED).certificate == identities[1].certificate and fake.fetches == 2


def test_the_last_good_copy_serves_while_the_metadata_is_down_but_not_forever(identities):
    fake = Fake(metadata_xml(identities[0]))
    cache = fake.cache()
    cache.resolve(CONFIGURED)
    fake.body = None
    fake.now += remote.METADATA_TTL
    assert cache.resolve(CONFIGURED).certificate == identities[0].certificate  # stale, within MAX_STALE
    fake.now += remote.MAX_STALE
    with pytest.raises(MetadataUnavailable):
        cache.resolve(CONFIGURED)


def test_a_failed_signature_fetches_again_at_most_every_few_seconds(identities):
    fake = Fake(metadata_xml(identities[0]))
    cache = fake.cache()
    used = cache.resolve(CONFIGURED)
    fake.body = metadata_xml(identities[1])
    newer = cache.refresh_after_failed_signature(CONFIGURED, used)
    assert newer.certificate == identities[1].certificate and fake.fetches == 2
    assert cache.refresh_after_failed_signature(CONFIGURED, newer) is None  # too soon: no fetch
    assert fake.fetches == 2
    fake.now += remote.MIN_FORCED_REFRESH
    assert cache.refresh_after_failed_signature(CONFIGURED, newer) is None  # fetched: nothing new
    assert fake.fetches == 3
    # A worker still holding the old copy gets the newer one without another fetch.
    assert cache.refresh_after_failed_signature(CONFIGURED, used).certificate == identities[1].certificate
    assert fake.fetches == 3


# --- the fetch itself: bounded ------------------------------------------------------------------------------


@pytest.fixture
def site():
    site = MetadataSite().start()
    yield site
    site.stop()


def test_fetch_takes_only_a_200_of_bounded_size(site, identities):
    site.publish(metadata_xml(identities[0]))
    assert remote.fetch_metadata(f"{site.url}/saml/metadata") == site.metadata
    with pytest.raises(MetadataError, match="larger than"):
        site.publish(b"<x>" + b" " * 100_000 + b"</x>")
        remote.fetch_metadata(f"{site.url}/saml/metadata")
    site.status = 302
    with pytest.raises(MetadataError, match="HTTP 302"):
        remote.fetch_metadata(f"{site.url}/saml/metadata")
    with pytest.raises(MetadataError, match="unreachable"):
        remote.fetch_metadata("http://127.0.0.1:9/saml/metadata")


# --- with the real portal -------------------------------------------------------------------------------------


def test_with_the_real_portal_a_forged_logout_is_refused_and_its_own_logout_works(stack):
    """The whole stack: the IdP reads the broker's published metadata (PORTAL_URL/saml/metadata), so the
    broker's signed AuthnRequest and LogoutRequest pass and a forged LogoutRequest for bob does not."""
    from tests.support.portal import follow, forms, signed_in_session

    portal, idp_url = stack.addresses["PORTAL_URL"], stack.addresses["IDP_URL"]
    http = signed_in_session(portal, "bob", "example-corp-saml")  # the broker's signed AuthnRequest
    assert signed_in(idp_url, http)
    forged = logout_request_xml(f"{portal}/saml/metadata", f"{idp_url}/saml/slo", BOB)
    assert_refused(send(http, f"{idp_url}/saml/slo", "redirect", forged), "must sign its requests")
    assert signed_in(idp_url, http)
    csrf = next(f["fields"]["csrf_token"] for f in forms(http.get(f"{portal}/").text) if f["action"] == "/logout")
    final = follow(http, http.post(f"{portal}/logout", data={"csrf_token": csrf}, allow_redirects=False))
    assert final.url == f"{portal}/signed-out"
    assert not signed_in(idp_url, http)  # the broker's signed LogoutRequest ended the IdP session
