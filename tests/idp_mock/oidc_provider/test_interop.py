"""Interoperability: a relying party written without authlib (PyJWT + requests only), that knows nothing
but the issuer URL, signs in through the IdP and checks everything an RP must check."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests

from tests.support.idp_client import answer_consent, is_consent_page, submit_login

REDIRECT_URI = "https://interop-rp.example.test/cb"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _browser_until(http: requests.Session, url: str, prefix: str) -> requests.Response:
    """Follow redirects like a browser, stopping at the first one that points at `prefix`."""
    answer = http.get(url, allow_redirects=False)
    while answer.is_redirect and not answer.headers["Location"].startswith(prefix):
        answer = http.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)
    return answer


def test_independent_relying_party_signs_in_verifies_and_refreshes(idp):
    issuer = idp.url
    meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == issuer

    registered = requests.post(
        meta["registration_endpoint"],
        timeout=10,
        json={
            "client_name": "Interop RP",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
        headers={"Authorization": "Bearer demo-registration-token"},
    ).json()
    client_id, client_secret = registered["client_id"], registered["client_secret"]

    verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url = (
        meta["authorization_endpoint"]
        + "?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid profile groups",
                "state": state,
                "nonce": nonce,
                "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
                "code_challenge_method": "S256",
            }
        )
    )
    browser = requests.Session()
    login_page = _browser_until(browser, url, REDIRECT_URI)
    callback = submit_login(browser, issuer, login_page, "alice")  # the sign-in's POST answers the request itself
    assert is_consent_page(callback)  # a client that registered itself: alice is asked first
    callback = answer_consent(browser, issuer, callback)
    query = parse_qs(urlsplit(callback.headers["Location"]).query)
    assert query["state"] == [state]

    tokens = requests.post(
        meta["token_endpoint"],
        auth=(client_id, client_secret),
        timeout=10,
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    ).json()

    signing_key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"])
    claims = jwt.decode(
        tokens["id_token"],
        signing_key.key,
        algorithms=meta["id_token_signing_alg_values_supported"],
        audience=client_id,
        issuer=issuer,
        leeway=60,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "nonce", "at_hash"]},
    )
    assert claims["nonce"] == nonce
    assert claims["at_hash"] == _b64url(hashlib.sha256(tokens["access_token"].encode()).digest()[:16])
    assert claims["preferred_username"] == "alice" and "aws-admins" in claims["groups"]

    info = requests.get(
        meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    ).json()
    assert info["sub"] == claims["sub"] and info["groups"] == claims["groups"]

    refreshed = requests.post(
        meta["token_endpoint"],
        auth=(client_id, client_secret),
        timeout=10,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    ).json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    again = requests.post(
        meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {refreshed['access_token']}"}, timeout=10
    ).json()
    assert again["sub"] == claims["sub"]
