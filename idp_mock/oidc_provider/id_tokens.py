"""Signing an ID token, honestly or, for the faults a client is set up with (idp_mock.faults), wrongly: out of
its validity, for another audience, with a key nobody published or with an algorithm relying parties refuse."""

from __future__ import annotations

import base64
import hashlib
import json
import threading

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from idp_mock.faults import SHIFT_SECONDS, Fault
from idp_mock.oidc_provider.keys import ALGORITHM, SigningKeys

WRONG_AUDIENCE = "https://wrong-audience.example.test"
_unknown: dict[str, RSAKey] = {}
_lock = threading.Lock()


def _unknown_key() -> RSAKey:
    """A key of this process that no JWKS ever lists (made once: RSA key generation is slow)."""
    with _lock:
        if "key" not in _unknown:
            _unknown["key"] = RSAKey.generate_key(2048, {"kid": "unpublished"})
        return _unknown["key"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def sign_id_token(
    claims: dict, faults: dict[str, Fault], keys: SigningKeys, client_id: str, now: int, lifetime: int
) -> str:
    """The ID token for `claims` (already complete), with the faults applied."""
    claims = dict(claims)
    if "expired" in faults:
        claims.update(iat=now - lifetime - SHIFT_SECONDS, exp=now - SHIFT_SECONDS)
    if "not_yet_valid" in faults:
        claims.update(iat=now + SHIFT_SECONDS, nbf=now + SHIFT_SECONDS, exp=now + SHIFT_SECONDS + lifetime)
    if "wrong_audience" in faults:
        claims["aud"] = faults["wrong_audience"].audience or WRONG_AUDIENCE
    header = {"alg": ALGORITHM, "kid": keys.active_kid}
    refused = faults.get("refused_algorithm")
    if refused is not None and refused.alg == "none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    if refused is not None and refused.alg == "HS256":
        secret = OctKey.import_key(hashlib.sha256(f"refused-algorithm:{client_id}".encode()).digest())
        return jwt.encode({"alg": "HS256", "kid": keys.active_kid}, claims, secret, algorithms=["HS256"])
    if refused is not None:  # RS512: the IdP's real key, with an algorithm it does not advertise
        real = keys.private_keys.get_by_kid(keys.active_kid).as_dict(private=True)
        key = RSAKey.import_key({name: value for name, value in real.items() if name != "alg"})
        return jwt.encode({**header, "alg": refused.alg}, claims, key, algorithms=[refused.alg])
    if "unknown_key" in faults:
        key = _unknown_key()
        return jwt.encode({**header, "kid": key.kid}, claims, key, algorithms=[header["alg"]])
    return jwt.encode(header, claims, keys.private_keys, algorithms=[header["alg"]])
