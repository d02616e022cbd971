"""Bad tokens and responses for connector tests, made the way an attacker or a broken IdP would.

- `FakeOIDCProvider`: a tiny OIDC provider on a free 127.0.0.1 port (discovery, JWKS, token endpoint)
  whose keys the test holds, so ID tokens can be signed with any claims; it can also be made slow.
- `unsigned_token` / `hmac_token`: tokens joserfc would never produce (`alg: none`, HS256 keyed with
  the provider's public key).
- `idp_answer`: a genuine answer of the real mock IdP (a code redirect or a SAML auto-post form),
  the raw material the SAML helpers mutate.
- SAML: decode a genuine Response, mutate it, re-sign its Assertion with a key the test holds
  (`sso_common.xmlsign`, the signer the project uses), and describe that key as IdP metadata.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from lxml import etree

from sso_common.keys import SigningIdentity
from sso_common.xmlsign import DS_NAMESPACE, sign_element
from tests.support.idp_client import answer_consent, is_consent_page, submit_login
from tests.support.loopback import LoopbackServer

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS_NAMESPACE, "md": MD}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOIDCProvider:
    """Discovery, JWKS, a token and a userinfo endpoint that answer with whatever the test queued.

    `keys` is the published key set; `jwks_requests` counts JWKS fetches, `jwks_headers` are sent with
    them (Cache-Control); `extra_discovery` is merged into the discovery document; `token_requests` keeps
    the form (and Authorization header) of each token request, `userinfo_requests` the Authorization
    header of each userinfo request; `delay` makes every answer that slow, and `trickle` (seconds per
    byte) makes the token endpoint send its whole answer, headers included, one byte at a time."""

    def __init__(self, client_id: str = "access-portal"):
        self.client_id = client_id
        self.keys = KeySet(
            [
                RSAKey.generate_key(2048, {"kid": "rsa-1", "use": "sig"}),
                ECKey.generate_key("P-256", {"kid": "ec-1", "use": "sig"}),
            ]
        )
        self.token_answers: list[tuple[int, dict]] = []
        self.token_requests: list[dict] = []
        self.jwks_requests = 0
        self.jwks_headers: dict[str, str] = {}
        self.extra_discovery: dict = {}
        self.userinfo_answers: list[tuple[int, dict | str]] = []
        self.userinfo_requests: list[str | None] = []
        self.delay = 0.0
        self.trickle: float | None = None
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, document: dict | str, headers: dict | None = None) -> None:
                time.sleep(provider.delay)
                jwt_answer = isinstance(document, str)
                body = document.encode() if isinstance(document, str) else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/jwt" if jwt_answer else "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout tests)

            def _trickle(self, document: dict) -> None:
                body = json.dumps(document).encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                try:
                    for byte in head.encode() + body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(provider.trickle or 0)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client cut us off: what the tests want
                self.close_connection = True

            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif self.path == "/jwks":
                    provider.jwks_requests += 1
                    self._json(200, provider.keys.as_dict(private=False), provider.jwks_headers)
                elif self.path == "/userinfo":
                    provider.userinfo_requests.append(self.headers.get("Authorization"))
                    status, document = (
                        provider.userinfo_answers.pop(0)
                        if provider.userinfo_answers
                        else (401, {"error": "invalid_token"})
                    )
                    self._json(status, document)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                provider.token_requests.append({**form, "authorization": self.headers.get("Authorization")})
                status, document = (
                    provider.token_answers.pop(0) if provider.token_answers else (400, {"error": "invalid_grant"})
                )
                if provider.trickle is not None:
                    self._trickle(document)
                else:
                    self._json(status, document)

        self._server = LoopbackServer(Handler, poll_interval=0.05).start()
        self.url = self._server.url

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "end_session_endpoint": f"{self.url}/logout",
            **self.extra_discovery,
        }

    def claims(self, nonce: str, /, **overrides) -> dict:
        """Claims of a valid ID token for `nonce`; overrides replace them (None removes one)."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "subject-alice",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now - 5,
            "nonce": nonce,
            "email": "alice@example.com",
            "name": "Alice Anderson",
            "preferred_username": "alice",
            "groups": ["engineering", "aws-admins"],
            "department": "Engineering",
            "amr": ["pwd"],
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict, kid: str = "rsa-1", alg: str = "RS256", key=None) -> str:
        key = key or self.keys.get_by_kid(kid)
        return jwt.encode({"alg": alg, "kid": kid}, claims, key, algorithms=[alg])

    def answer_token(
        self, id_token: str | None, access_token: str = "access-token-1", status: int = 200, **extra
    ) -> None:
        """Queue the token endpoint's next answer."""
        document = {"access_token": access_token, "token_type": "Bearer", "expires_in": 300, **extra}
        if id_token is not None:
            document["id_token"] = id_token
        self.token_answers.append((status, document))

    def answer_userinfo(self, document: dict | str, status: int = 200) -> None:
        """Queue the userinfo endpoint's next answer (a str is sent as a signed JWT, application/jwt)."""
        self.userinfo_answers.append((status, document))

    def rotate(self) -> str:
        """Publish a new RSA key (the old ones stay) and return its kid."""
        kid = f"rsa-{len(self.keys.keys) + 1}"
        self.keys = KeySet([*self.keys.keys, RSAKey.generate_key(2048, {"kid": kid, "use": "sig"})])
        return kid

    def stop(self) -> None:
        self._server.close()


def unsigned_token(claims: dict, kid: str = "rsa-1") -> str:
    """An `alg: none` JWT: header and payload, empty signature."""
    header = {"alg": "none", "kid": kid}
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."


def hmac_token(claims: dict, secret: bytes, kid: str = "rsa-1") -> str:
    """An HS256 JWT keyed with `secret` (the classic attack: the IdP's public key as the HMAC secret)."""
    signing_input = (
        f"{_b64url(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{_b64url(json.dumps(claims).encode())}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def tamper_payload(token: str, **changes) -> str:
    """The same header and signature with a changed payload."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{signature}"


def idp_answer(idp_url: str, start_url: str, username: str, totp_secret: str | None = None) -> requests.Response:
    """Follow a connector's redirect into the mock IdP and sign in there, as a browser would. Returns the
    IdP's last answer: a redirect that leaves the IdP (OIDC) or a page such as the SAML auto-post form."""
    http = requests.Session()
    answer = http.get(start_url, allow_redirects=False)
    signed_in = False
    for _ in range(10):
        if answer.is_redirect:
            location = urllib.parse.urljoin(answer.url, answer.headers["Location"])
            if not location.startswith(idp_url + "/"):
                return answer
            answer = http.get(location, allow_redirects=False)
        elif not signed_in and 'name="password"' in answer.text:
            answer, signed_in = submit_login(http, idp_url, answer, username, totp_secret=totp_secret), True
        elif is_consent_page(answer):  # an SP or client that registered itself asks the person first
            answer = answer_consent(http, idp_url, answer)
        else:
            return answer
    raise AssertionError(f"the IdP kept redirecting; last answer from {answer.url}")


# -- SAML ------------------------------------------------------------------------------------------


def decode_response(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


def encode_response(root: etree._Element) -> str:
    return base64.b64encode(etree.tostring(root)).decode()


def assertion_of(root: etree._Element) -> etree._Element:
    return root.find("saml:Assertion", NS)


def resign(root: etree._Element, identity: SigningIdentity) -> etree._Element:
    """A copy of the Response whose Assertion is signed by `identity` (every old signature removed)."""
    root = etree.fromstring(etree.tostring(root))
    for signature in root.iter(f"{{{DS_NAMESPACE}}}Signature"):
        signature.getparent().remove(signature)
    assertion = assertion_of(root)
    return sign_element(root, assertion.get("ID"), identity, after=assertion.find("saml:Issuer", NS))


def idp_metadata(entity_id: str, sso_url: str, identity: SigningIdentity) -> str:
    """IdP metadata that vouches for `identity`'s certificate under `entity_id`."""
    md = f"{{{MD}}}"
    root = etree.Element(f"{md}EntityDescriptor", entityID=entity_id, nsmap={"md": MD, "ds": DS_NAMESPACE})
    descriptor = etree.SubElement(
        root, f"{md}IDPSSODescriptor", protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"
    )
    key_info = etree.SubElement(
        etree.SubElement(descriptor, f"{md}KeyDescriptor", use="signing"), f"{{{DS_NAMESPACE}}}KeyInfo"
    )
    etree.SubElement(
        etree.SubElement(key_info, f"{{{DS_NAMESPACE}}}X509Data"), f"{{{DS_NAMESPACE}}}X509Certificate"
    ).text = identity.certificate_base64
    etree.SubElement(
        descriptor,
        f"{md}SingleSignOnService",
        Location=sso_url,
        Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
    )
    return etree.tostring(root).decode()
