"""How the broker authenticates itself at an OpenID Provider's token endpoint (RFC 6749 2.3, OIDC Core 9).

- `client_secret_basic`: HTTP Basic with the client ID and secret each form-urlencoded first, as RFC 6749
  2.3.1 requires (authlib 1.9 leaves that out, so a secret holding `+`, `/`, `=` or `%` fails with
  invalid_client at a conformant OP; this module encodes them itself);
- `client_secret_post`: the ID and secret in the form body;
- `private_key_jwt`: a short-lived JWT (RFC 7523) signed with the broker's own key, whose public half the
  portal publishes at `/oidc/jwks.json` for the OP to fetch (or to be pasted into it). The key is made on
  first start in the instance folder (`keys/oidc-client.key`, mode 0600) and kept.

Which one an upstream uses is its `token_endpoint_auth_method`, or else the first the OP's discovery
lists in `token_endpoint_auth_methods_supported` that the broker can do (with a secret configured:
client_secret_basic, client_secret_post, private_key_jwt; without: private_key_jwt).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from joserfc import jwt
from joserfc.jwk import RSAKey

from sso_common.keys import load_or_create_rsa_key

METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60  # seconds
CLIENT_KEY_FILE = Path("keys") / "oidc-client.key"


def basic_authorization(client_id: str, client_secret: str) -> str:
    """The Authorization header value of client_secret_basic (RFC 6749 2.3.1: form-urlencode, then Basic)."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def choose_method(configured: str | None, has_secret: bool, supported: object) -> str | None:
    """The method to use: the configured one, or the first the OP supports that the broker can do; None
    when there is none. An OP that does not list its methods supports client_secret_basic (the default
    of OIDC Discovery)."""
    if configured:
        return configured
    offered = [m for m in supported if isinstance(m, str)] if isinstance(supported, list) else ["client_secret_basic"]
    ours = METHODS if has_secret else ("private_key_jwt",)
    return next((method for method in ours if method in offered), None)


@dataclass(frozen=True)
class ClientKey:
    """The broker's key for private_key_jwt: an RSA key with its RFC 7638 thumbprint as key ID."""

    key: RSAKey

    @property
    def kid(self) -> str:
        return self.key.thumbprint()

    def public_jwks(self) -> dict:
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def assertion(self, client_id: str, audience: str, now: float | None = None) -> str:
        """A client assertion for one token request: iss and sub the client ID, aud the token endpoint."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        return jwt.encode({"alg": "RS256", "kid": self.kid, "typ": "JWT"}, claims, self.key, algorithms=["RS256"])


def load_or_create_client_key(instance_dir: Path) -> ClientKey:
    return ClientKey(RSAKey.import_key(load_or_create_rsa_key(instance_dir / CLIENT_KEY_FILE)))
