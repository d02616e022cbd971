"""Pure helpers of the OAuth side: secrets, user codes, PKCE and loopback redirect URIs.

No I/O here, so each rule is unit-tested on its own (tests/broker/test_sso_codes.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

# RFC 8628 §6.1: consonants only (no words, no 0/O or 1/I to mix up), 20^8 ≈ 2.6e10 codes.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# RFC 3986's unreserved and reserved characters and '%': no controls, spaces, backslashes or non-ASCII.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]{1,2048}")
# http://HOST[:PORT][REST]; the scheme exactly as registered (lower case), the host an IP literal or name.
_LOOPBACK_URI = re.compile(r"http://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/?#\[\]]+)(?::[0-9]{0,5})?(?P<rest>[/?].*)?")


def new_secret(prefix: str) -> str:
    """An opaque bearer value; the prefix only tells people which kind they are looking at."""
    return prefix + secrets.token_urlsafe(48)


def secret_digest(secret: str) -> str:
    """What the store keeps of a client secret (random, 384 bits: a plain hash is enough)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(digest: str, presented: str | None) -> bool:
    return presented is not None and presented != "" and hmac.compare_digest(digest, secret_digest(presented))


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def display_user_code(code: str) -> str:
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def normalise_user_code(text: str | None) -> str | None:
    """What a person typed (any case, with or without the dash or spaces) as a stored code, or None."""
    if not text or len(text) > 32:
        return None
    code = re.sub(r"[\s-]", "", text).upper()
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256, unpadded (the AWS CLI trims the padding before sending the challenge)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def pkce_matches(challenge: str, verifier: str | None) -> bool:
    if not verifier or not _PKCE_VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(challenge.rstrip("="), pkce_challenge(verifier))


def _loopback_parts(uri: str) -> tuple[str, str] | None:
    """(host as written, everything after the port) of a plain-http loopback URI, or None.

    Only RFC 3986 characters are let through: urlsplit silently drops tabs and newlines, so a check
    made on what it returns would pass a URI that the redirect then carries (or chokes on) raw."""
    if not isinstance(uri, str) or not _URI_CHARACTERS.fullmatch(uri):
        return None
    match = _LOOPBACK_URI.fullmatch(uri)
    if match is None:
        return None
    try:
        parts = urlsplit(uri)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:  # a port that is not a number
        return None
    if not (
        port_ok
        and parts.hostname in LOOPBACK_HOSTS
        and not parts.fragment
        and "#" not in uri
        and parts.username is None
        and parts.password is None
    ):
        return None
    return match["host"], match["rest"] or "/"


def is_loopback_redirect_uri(uri: str) -> bool:
    """Native apps receive the code on the loopback interface (RFC 8252 §7.3): plain http to a
    loopback host, no fragment, no credentials in the URL, nothing but URI characters."""
    return _loopback_parts(uri) is not None


def redirect_uri_allowed(registered: list[str], requested: str) -> bool:
    """`requested` is, character for character, a registered loopback URI except for the port, which
    the client picks at run time (RFC 8252 §7.3; the AWS CLI registers http://127.0.0.1/oauth/callback)."""
    wanted = _loopback_parts(requested)
    return wanted is not None and any(_loopback_parts(uri) == wanted for uri in registered)
