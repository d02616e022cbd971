"""Allow-lists for everything the portal (or anything answering in its place) sends that the CLI writes
into ~/.aws/config, ~/.aws/credentials, shell exports or the terminal.

A value that ends up in an INI file could otherwise carry a newline and a section of its own, say
`[profile x]` with `credential_process = ...`, and the next AWS command would run it. So every such
value is checked against a strict allow-list before anything is written, and a refusal writes nothing:

- account ID: exactly 12 ASCII digits;
- account name: 1-50 characters of ASCII letters, digits, space and `_ . , + @ ( ) & -`, starting with
  a letter or digit, not ending in a space (AWS allows any printable ASCII: brackets, `=`, `;`, `#`,
  quotes, `/` and every control character are refused here);
- role (permission set) name: 1-64 of `[A-Za-z0-9_+=,.@-]`, IAM's character set for role names;
- region: AWS's shape, e.g. `us-east-1`, `us-gov-west-1`;
- AWS endpoint URL (and the portal's): `http(s)://host[:port][/path]`, the host a name, an IPv4 or a
  bracketed IPv6 address; no query, no fragment, no space;
- service name: 1-64 of lowercase letters, digits and `-`, starting with a letter (botocore's names);
- access key ID: 16-128 uppercase letters and digits;
- secret key and session token: 1-4096 characters of base64's alphabet plus `_ . -`.

Text shown to the person (error messages from the portal or the IdP) goes through `one_line`: control
characters, which could drive the terminal, are dropped, and it is kept to one short line.
"""

from __future__ import annotations

import re

ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.,+@()&-]{0,48}[A-Za-z0-9_.,+@()&-])?", re.ASCII)
ROLE_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}", re.ASCII)
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+){1,2}-[0-9]{1,2}", re.ASCII)
ENDPOINT_URL = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]{0,200})?",
    re.ASCII,
)
SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}", re.ASCII)
ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}", re.ASCII)
SECRET = re.compile(r"[A-Za-z0-9+/=_.-]{1,4096}", re.ASCII)
USER_CODE = re.compile(r"[A-Za-z0-9-]{1,32}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SHOWN_MAX = 300


class Untrusted(ValueError):
    """A value from the portal that is not allowed where it would be written; the message names it and
    shows it escaped (repr), so the message itself stays one harmless line."""


def shown(value: object, limit: int = 60) -> str:
    """`value` for a message: escaped, so newlines and escape sequences are shown, not obeyed."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(pattern: re.Pattern[str], value: object, what: str) -> str:
    """`value` if it is a string the allow-list accepts whole; Untrusted otherwise."""
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    raise Untrusted(f"{what} {shown(value)}")


def account_id(value: object) -> str:
    return check(ACCOUNT_ID, value, "account ID")


def account_name(value: object) -> str:
    return check(ACCOUNT_NAME, value, "account name")


def role_name(value: object) -> str:
    return check(ROLE_NAME, value, "role name")


def region(value: object) -> str:
    return check(REGION, value, "region")


def endpoint_url(value: object) -> str:
    return check(ENDPOINT_URL, value, "AWS endpoint URL")


def service_name(value: object) -> str:
    return check(SERVICE_NAME, value, "service name")


def one_line(text: object, limit: int = SHOWN_MAX) -> str:
    """Text from a server, fit to show: no control characters, whitespace runs made one space, short."""
    cleaned = " ".join(_CONTROL.sub(" ", str(text)).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."
