"""What a store raises when its engine cannot answer, and how store URLs are shown without their secrets.

`StoreUnavailable` is part of every contract: a backend whose engine is another process (Redis,
PostgreSQL) raises it instead of its client library's errors when the engine cannot be reached, is
restarting, or does not answer in time. It is retryable by nature: the web layer answers it with a 503
page (or AWS's ServiceUnavailableException on the sso API) and a Retry-After, never a 500. Its message
names the store and the kind of failure, never a password: URLs go through `redact_url`, and text from a
client library through `scrub`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SECRET_PARAMETERS = frozenset({"password", "passwd", "sslpassword", "token", "secret"})
REDACTED = "***"
RETRY_AFTER_SECONDS = 5  # what a 503 answer tells clients; a Redis restart is over in about a second


class StoreUnavailable(Exception):
    """The engine behind a store is unreachable, restarting or too slow: nothing was done, try again.

    `store` names the contract ("the state store", "the audit trail"...). `public_message`, when given, is
    what the person sees instead of the generic text (the message itself is for logs)."""

    def __init__(self, store: str, problem: str, *, public_message: str | None = None):
        super().__init__(f"{store} is unavailable: {problem}")
        self.store, self.problem, self.public_message = store, problem, public_message


def redact_url(url: str) -> str:
    """`url` with its password (user info and secret query parameters) replaced by ***; anything that does
    not parse as a URL is replaced whole (it may be a connection string with a password in it)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{hostport}" if has_password else f"{user}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(name, REDACTED if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs],
                safe="*",
            )
        if (netloc, query) == (parts.netloc, parts.query):
            return url  # nothing secret (urlunsplit would also rewrite sqlite:/// as sqlite:/)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "[a store URL that does not parse]"


def url_secrets(url: str) -> list[str]:
    """The secret parts of `url` (its password, raw and decoded, and secret query values), longest first."""
    secrets: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.update({parts.password, unquote(parts.password), quote(unquote(parts.password), safe="")})
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name.lower() in SECRET_PARAMETERS and value:
                secrets.add(value)
    except ValueError:
        pass
    return sorted((s for s in secrets if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (a client library's error message) with the URL and any secret of it replaced."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, REDACTED)
    return text
