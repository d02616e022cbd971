"""Files the CLI keeps: botocore's SSO token cache, its own client registration and credential caches,
and the shared ~/.aws/config and ~/.aws/credentials. Everything is written atomically, 0600.

The token cache is botocore's own format and place (~/.aws/sso/cache/sha1(session name).json), so
after `broker-login` unmodified AWS tools with an sso-session profile find the token, and refresh it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from broker_login.portal import Credentials, Registration, Token

REFRESH_MARGIN = timedelta(minutes=15)  # botocore's advisory refresh window for both tokens and credentials
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
T = TypeVar("T")


def aws_dir() -> Path:
    return Path.home() / ".aws"


def config_file() -> Path:
    return Path(os.environ.get("AWS_CONFIG_FILE") or aws_dir() / "config").expanduser()


def credentials_file() -> Path:
    return Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or aws_dir() / "credentials").expanduser()


def fresh(expires_at: datetime, now: datetime, margin: timedelta = REFRESH_MARGIN) -> bool:
    """Still worth using: more than `margin` left."""
    return expires_at - now > margin


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def write_private(path: Path, text: str) -> None:
    """Replace `path` in one step (readers never see half a file), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hashed_name(value: str) -> str:
    return hashlib.sha1(value.encode()).hexdigest() + ".json"


# --- botocore's SSO token cache ---------------------------------------------------------------


def token_cache_path(session_name: str) -> Path:
    return aws_dir() / "sso" / "cache" / _hashed_name(session_name)


def save_token(session_name: str, start_url: str, region: str, token: Token, registration: Registration) -> None:
    record = {
        "startUrl": start_url,
        "region": region,
        "accessToken": token.access_token,
        "expiresAt": _timestamp(token.expires_at),
        "clientId": registration.client_id,
        "clientSecret": registration.client_secret,
        "registrationExpiresAt": _timestamp(registration.expires_at),
    }
    if token.refresh_token:
        record["refreshToken"] = token.refresh_token
    write_private(token_cache_path(session_name), json.dumps(record, indent=2))


def load_token(session_name: str, start_url: str) -> tuple[Token, Registration | None] | None:
    """The cached token for this session and portal, with the registration cached beside it."""
    record = _read_json(token_cache_path(session_name))
    if not record or record.get("startUrl", "").rstrip("/") != start_url.rstrip("/"):
        return None
    try:
        token = Token(record["accessToken"], _parse_time(record["expiresAt"]), record.get("refreshToken"))
        registration = None
        if {"clientId", "clientSecret", "registrationExpiresAt"} <= record.keys():
            registration = Registration(
                record["clientId"], record["clientSecret"], _parse_time(record["registrationExpiresAt"])
            )
    except (KeyError, TypeError, ValueError):
        return None
    return token, registration


@contextmanager
def token_lock(session_name: str):
    """Held while a process reads, refreshes or replaces the cached token. The broker treats a refresh
    token used twice as stolen and ends the sign-in, so two processes (say two credential_process runs
    started by one `terraform apply`) must not both refresh the same one: the second waits, then finds
    the token the first one saved."""
    path = token_cache_path(session_name).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(os.open(path, os.O_CREAT | os.O_RDWR, 0o600), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def forget_token(session_name: str) -> None:
    token_cache_path(session_name).unlink(missing_ok=True)


# --- this CLI's own caches ---------------------------------------------------------------------


def _cache_dir() -> Path:
    return aws_dir() / "broker-login" / "cache"


def registration_path(start_url: str, region: str) -> Path:
    return _cache_dir() / _hashed_name(
        json.dumps({"tool": "broker-login", "startUrl": start_url, "region": region}, sort_keys=True)
    )


# The JSON names of each cached record's attributes (botocore's names for credentials).
_REGISTRATION_FIELDS = {"clientId": "client_id", "clientSecret": "client_secret", "expiresAt": "expires_at"}
_CREDENTIAL_FIELDS = {
    "AccessKeyId": "access_key_id",
    "SecretAccessKey": "secret_access_key",
    "SessionToken": "session_token",
    "Expiration": "expiration",
}


def _save(path: Path, value: object, names: dict[str, str]) -> None:
    fields = {key: getattr(value, attribute) for key, attribute in names.items()}
    record = {key: _timestamp(item) if isinstance(item, datetime) else item for key, item in fields.items()}
    write_private(path, json.dumps(record, indent=2))


def _load(path: Path, kind: type[T], names: dict[str, str], time_field: str) -> T | None:
    """The cached record, or None when it is missing, unreadable or incomplete (it is then fetched again)."""
    record = _read_json(path)
    try:
        values = {attribute: record[key] for key, attribute in names.items()} if record else None
        if values is None:
            return None
        values[time_field] = _parse_time(values[time_field])
        return kind(**values)
    except (KeyError, TypeError, ValueError):
        return None


def save_registration(path: Path, registration: Registration) -> None:
    _save(path, registration, _REGISTRATION_FIELDS)


def load_registration(path: Path) -> Registration | None:
    return _load(path, Registration, _REGISTRATION_FIELDS, "expires_at")


def credentials_dir(start_url: str, session_name: str) -> Path:
    """Cached role credentials of one sign-in; `forget_credentials` removes the folder."""
    return _cache_dir() / "credentials" / _hashed_name(f"{start_url}\x00{session_name}").removesuffix(".json")


def forget_credentials(start_url: str, session_name: str) -> None:
    """Drop the role credentials cached under a sign-in: at `logout`, and at a new sign-in, since the portal may
    have ended the last one by revoking them (AWS then denies them until they expire)."""
    shutil.rmtree(credentials_dir(start_url, session_name), ignore_errors=True)


def credentials_path(start_url: str, session_name: str, account_id: str, role: str) -> Path:
    return credentials_dir(start_url, session_name) / _hashed_name(f"{account_id}\x00{role}")


def save_credentials(path: Path, credentials: Credentials) -> None:
    _save(path, credentials, _CREDENTIAL_FIELDS)


def load_credentials(path: Path) -> Credentials | None:
    return _load(path, Credentials, _CREDENTIAL_FIELDS, "expiration")


# --- INI files shared with the AWS CLI and SDKs -------------------------------------------------


def merge_sections(text: str, sections: dict[str, list[str]]) -> str:
    """`text` with each named section's body replaced by the given lines, new sections appended.

    Everything else (other sections, comments, blank lines, ordering) is kept as it was, which
    configparser would not do. Section names are the text between the brackets, e.g. 'profile dev'.
    """
    output: list[str] = []
    written: set[str] = set()
    skipping = False
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            name = " ".join(header.group(1).split())
            skipping = name in sections
            if skipping and name in written:  # a duplicate of a section already replaced
                continue
            if skipping:
                if output and output[-1].strip():
                    output.append("")
                output += [f"[{name}]", *sections[name], ""]
                written.add(name)
                continue
        if not skipping:
            output.append(line)
    for name, body in sections.items():
        if name not in written:
            if output and output[-1].strip():
                output.append("")
            output += [f"[{name}]", *body, ""]
    while output and not output[-1].strip():
        output.pop()
    return "\n".join(output) + "\n"


def update_ini(path: Path, sections: dict[str, list[str]]) -> None:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    write_private(path, merge_sections(current, sections))


def sso_session_start_url(session_name: str) -> str | None:
    """sso_start_url of `[sso-session NAME]` in ~/.aws/config, so commands need no --portal-url after configure."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config_file(), encoding="utf-8")
    except configparser.Error:
        return None
    return parser.get(f"sso-session {session_name}", "sso_start_url", fallback=None)
