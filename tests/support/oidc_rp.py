"""Drive the IdP's OpenID provider with plain HTTP, as a relying party would: register a client, run the
authorization code flow with PKCE through the real login form, call the token endpoint.

Typical use::

    client = register_client(idp.url, refresh=True)
    tokens = sign_in_for_tokens(requests.Session(), idp.url, client, "alice")
    claims = verify_id_token(idp.url, tokens["id_token"], client)
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests

from tests.support.idp_client import answer_consent, is_consent_page, submit_login

REGISTRATION_TOKEN = "demo-registration-token"
CALLBACK = "https://rp.example.test/callback"
SIGNED_OUT = "https://rp.example.test/signed-out"
DEFAULT_SCOPE = "openid profile email groups"
# Lifetimes of the `private_idp` fixture (tests/idp_mock/conftest.py), short so tests can wait them out. A
# code must still outlive the redirect to its redemption in the private IdP's other tests.
PRIVATE_CODE_LIFETIME = 2
PRIVATE_ACCESS_TOKEN_LIFETIME = 1


@dataclass(frozen=True)
class Client:
    client_id: str
    auth_method: str
    secret: str | None = field(default=None, repr=False)
    redirect_uri: str = CALLBACK
    post_logout_redirect_uri: str = SIGNED_OUT


def register_client(idp_url: str, auth_method: str = "client_secret_basic", refresh: bool = True, **metadata) -> Client:
    """A new client via Dynamic Client Registration (each test can have its own)."""
    body = {
        "client_name": f"test client ({auth_method})",
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [SIGNED_OUT],
        "token_endpoint_auth_method": auth_method,
        "grant_types": ["authorization_code", "refresh_token"] if refresh else ["authorization_code"],
        **metadata,
    }
    answer = requests.post(
        f"{idp_url}/oidc/register", json=body, headers={"Authorization": f"Bearer {REGISTRATION_TOKEN}"}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()
    return Client(data["client_id"], auth_method, data.get("client_secret"))


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Authorization:
    """One authorization request and the secrets the client keeps for it."""

    params: dict
    verifier: str | None

    @property
    def state(self):
        return self.params.get("state")

    @property
    def nonce(self):
        return self.params.get("nonce")


def authorization(client: Client, pkce: bool = True, **params) -> Authorization:
    """Parameters of an authorization request; pass a keyword as None to leave it out."""
    verifier, challenge = pkce_pair() if pkce else (None, None)
    values = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": DEFAULT_SCOPE,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
    }
    if pkce:
        values.update(code_challenge=challenge, code_challenge_method="S256")
    values.update(params)
    return Authorization({k: v for k, v in values.items() if v is not None}, verifier)


def authorize_url(idp_url: str, request: Authorization) -> str:
    return f"{idp_url}/oidc/authorize?{urlencode(request.params)}"


def follow_to_client(http: requests.Session, idp_url: str, answer: requests.Response) -> requests.Response:
    """Follow redirects while they stay on the IdP; returns the answer that leaves it (or a page)."""
    while answer.is_redirect:
        target = urljoin(answer.url or idp_url + "/", answer.headers["Location"])
        if not target.startswith(idp_url + "/"):
            break
        answer = http.get(target, allow_redirects=False)
    return answer


def redirect_params(answer: requests.Response) -> dict:
    """The query parameters of a redirect to the client (code and state, or error)."""
    assert answer.is_redirect, f"expected a redirect, got {answer.status_code}: {answer.text[:300]}"
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def is_login_page(answer: requests.Response) -> bool:
    return answer.status_code == 200 and 'action="/login"' in answer.text


def sign_in(
    http: requests.Session,
    idp_url: str,
    request: Authorization,
    username: str | None,
    totp_secret: str | None = None,
    consent: bool = True,
) -> requests.Response:
    """Start the request; if the IdP shows its login page, sign in as `username`, and if it asks consent
    (the test clients register themselves), allow (unless `consent` is False). Returns the answer that
    leaves the IdP (a redirect to the client) or the page where the flow stopped."""
    answer = follow_to_client(http, idp_url, http.get(authorize_url(idp_url, request), allow_redirects=False))
    if username is not None and is_login_page(answer):
        answer = submit_login(http, idp_url, answer, username, totp_secret=totp_secret)
        answer = follow_to_client(http, idp_url, answer)
    if consent and is_consent_page(answer):  # a dynamically registered client asks the first time
        answer = follow_to_client(http, idp_url, answer_consent(http, idp_url, answer))
    return answer


def token_request(idp_url: str, client: Client, **data) -> requests.Response:
    """POST to the token endpoint, authenticating the way the client registered."""
    auth = None
    if client.auth_method == "client_secret_basic":
        auth = (client.client_id, client.secret)
    elif client.auth_method == "client_secret_post":
        data.update(client_id=client.client_id, client_secret=client.secret)
    else:
        data.update(client_id=client.client_id)
    return requests.post(f"{idp_url}/oidc/token", data=data, auth=auth, timeout=10)


def redeem(idp_url: str, client: Client, request: Authorization, code: str) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri}
    if request.verifier:
        data["code_verifier"] = request.verifier
    return token_request(idp_url, client, **data)


def sign_in_for_code(
    http: requests.Session, idp_url: str, client: Client, username: str, totp_secret: str | None = None, **params
) -> tuple[Authorization, str]:
    request = authorization(client, **params)
    answer = redirect_params(sign_in(http, idp_url, request, username, totp_secret))
    assert "code" in answer and answer["state"] == request.state, answer
    return request, answer["code"]


def sign_in_for_tokens(
    http: requests.Session, idp_url: str, client: Client, username: str, totp_secret: str | None = None, **params
) -> dict:
    """The whole flow; the token response gets the request's nonce added as `_nonce` for checks."""
    request, code = sign_in_for_code(http, idp_url, client, username, totp_secret, **params)
    answer = redeem(idp_url, client, request, code)
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "_nonce": request.nonce}


def verify_id_token(idp_url: str, id_token: str, client: Client, nonce: str | None = None) -> dict:
    """Check an ID token as an independent RP would (PyJWT against the published JWKS)."""
    key = jwt.PyJWKClient(f"{idp_url}/oidc/jwks", cache_keys=False).get_signing_key_from_jwt(id_token)
    claims = jwt.decode(
        id_token,
        key.key,
        algorithms=["RS256"],
        audience=client.client_id,
        issuer=idp_url,
        leeway=60,
        options={"require": ["exp", "iat", "sub", "aud", "iss", "auth_time"]},
    )
    if nonce is not None:
        assert claims["nonce"] == nonce
    return claims


def userinfo(idp_url: str, access_token: str, method: str = "GET") -> requests.Response:
    return requests.request(
        method, f"{idp_url}/oidc/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
