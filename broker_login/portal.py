"""The broker's Identity Center compatible API as the CLI uses it: through botocore's own sso and
sso-oidc clients, so the CLI speaks exactly what unmodified AWS tools speak; plus the portal's own
`/.well-known/sso-portal` document (region, AWS emulator) and `/token/whoAmI`.

Every answer is checked (broker_login/validate.py) before the CLI uses it: the portal is a server
on the network, and what it says ends up in files that decide what AWS tools run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from broker_login import validate

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = ["sso:account:access"]
CLIENT_NAME = "broker-login"
POLL_STATES = frozenset(
    {"AuthorizationPendingException", "SlowDownException", "AccessDeniedException", "ExpiredTokenException"}
)


class LoginError(Exception):
    """Why no token or credentials could be had; the message is for the person at the terminal."""


class NotSignedIn(LoginError):
    """The access token is unknown, expired or revoked: sign in again."""


def portal_base_url(url: str) -> str:
    """The portal's base URL from what a person typed: `/start`, a trailing slash and the fragment
    that IAM Identity Center start URLs carry (`.../start/#`, `.../start#/`) are dropped. LoginError for
    anything that is not an http(s) URL with a host, with a hint for the usual slip (no scheme)."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f": write it with http:// or https://, e.g. http://{text}" if "://" not in text else ""
        raise LoginError(f"{validate.shown(url)} is not an http(s) URL{hint}")
    if parts.query:
        raise LoginError(
            f"{validate.shown(url)} has a query; give the portal's address, e.g. {parts.scheme}://{parts.netloc}"
        )
    path = parts.path.rstrip("/").removesuffix("/start").rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if not validate.ENDPOINT_URL.fullmatch(base):  # it is written into ~/.aws/config
        raise LoginError(
            f"{validate.shown(url)} is not a portal address this client accepts (see broker_login/validate.py)"
        )
    return base


@dataclass(frozen=True)
class PortalInfo:
    """The portal's `/.well-known/sso-portal` document, checked."""

    region: str  # where the accounts are: the `region` of the profiles the CLI writes
    aws_endpoint_url: str | None  # the AWS emulator as this machine reaches it; None for real AWS
    services: tuple[str, ...]  # botocore client names the emulator answers for


@dataclass(frozen=True)
class Person:
    """Who an access token belongs to (`/token/whoAmI`), to explain a refusal."""

    username: str
    email: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Registration:
    client_id: str
    client_secret: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error_code(error) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _login_error(error, url: str) -> LoginError:
    """The portal's refusal in its own words (AWS's error name and message, made one safe line). An
    answer without an AWS error name (a bare HTTP status, an HTML page) means the address is not the
    portal's: the IdP's, say, which answers the sso API's paths with 404."""
    code, message = _error_code(error), error.response.get("Error", {}).get("Message", "")
    if not code.isalpha():
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", code)
        if isinstance(status, int) and status >= 500:
            return LoginError(f"the portal at {url} failed (HTTP {status}); try again in a minute")
        return LoginError(f"{url} does not answer as an AWS access portal (HTTP {status}); {WRONG_ADDRESS}")
    return (NotSignedIn if code == "UnauthorizedException" else LoginError)(
        f"{validate.one_line(code, 64)}: {validate.one_line(message)}"
    )


WRONG_ADDRESS = "is it the identity provider's address instead of the portal's?"


@contextmanager
def _portal_errors(url: str) -> Iterator[None]:
    """botocore's exceptions, and answers that fail the checks, as LoginError, without the request (and
    its tokens) in the chain."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        raise _login_error(error, url) from None
    except BotoCoreError as error:
        raise LoginError(f"the portal at {url} cannot be reached ({type(error).__name__})") from None
    except validate.Untrusted as refusal:
        raise LoginError(f"the portal at {url} sent {refusal}, which is not allowed; nothing was written") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LoginError(f"the portal at {url} sent an answer this client does not understand") from None


class Portal:
    def __init__(self, url: str, region: str):
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config

        if not validate.REGION.fullmatch(region):
            raise LoginError(f"region {validate.shown(region)} is not an AWS region's name, e.g. us-east-1")
        self.url, self.region = portal_base_url(url), region
        self._info: PortalInfo | None = None
        # A bare botocore session: the person's AWS_PROFILE or ~/.aws/config must not matter here.
        session = botocore.session.Session()
        session.set_config_variable("profile", None)
        config = Config(
            signature_version=UNSIGNED,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
        )
        self.oidc = session.create_client("sso-oidc", region_name=region, endpoint_url=self.url, config=config)
        self.sso = session.create_client("sso", region_name=region, endpoint_url=self.url, config=config)

    def _call(self, operation: Callable, parse: Callable = lambda answer: answer, **kwargs):
        """`operation`'s answer through `parse`, both inside the portal's error handling: a malformed
        or refused answer is a LoginError like any other."""
        with _portal_errors(self.url):
            return parse(operation(**kwargs))

    def describe(self) -> PortalInfo:
        """The portal's `/.well-known/sso-portal` document (fetched once). LoginError when the address
        does not serve one: it is not a portal of this broker."""
        if self._info is None:
            with _portal_errors(self.url):
                self._info = _portal_info(self._get("/.well-known/sso-portal"))
        return self._info

    def whoami(self, token: Token) -> Person:
        with _portal_errors(self.url):
            answer = self._get("/token/whoAmI", {"x-amz-sso_bearer_token": token.access_token})
            return Person(
                validate.one_line(answer["username"], 128),
                validate.one_line(answer["email"], 256),
                tuple(validate.one_line(group, 128) for group in answer["groups"]),
            )

    def _get(self, path: str, headers: dict | None = None) -> dict:
        """A JSON document of the portal's own (not part of AWS's API), over plain HTTP."""
        import requests

        try:
            response = requests.get(self.url + path, headers=headers, timeout=10, allow_redirects=False)
        except requests.RequestException as error:
            raise LoginError(f"the portal at {self.url} cannot be reached ({type(error).__name__})") from None
        if response.status_code == 401:
            raise NotSignedIn("UnauthorizedException: the sign-in has ended")
        if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith("application/json"):
            raise LoginError(
                f"{self.url} does not answer as an AWS access portal of the SSO login broker "
                f"(HTTP {response.status_code} for {path}); {WRONG_ADDRESS}"
            )
        answer = response.json()
        if not isinstance(answer, dict):
            raise ValueError("not a JSON object")
        return answer

    def register(self) -> Registration:
        return self._call(
            self.oidc.register_client,
            lambda answer: Registration(
                _string(answer["clientId"]),
                _string(answer["clientSecret"]),
                datetime.fromtimestamp(answer["clientSecretExpiresAt"], UTC),
            ),
            clientName=CLIENT_NAME,
            clientType="public",
            scopes=SCOPES,
            grantTypes=[DEVICE_GRANT, "refresh_token"],
        )

    def start_device_authorization(self, registration: Registration) -> dict:
        """The device authorization, its addresses and code checked: they are shown on the terminal
        and opened in the browser."""
        return self._call(
            self.oidc.start_device_authorization,
            _device_authorization,
            clientId=registration.client_id,
            clientSecret=registration.client_secret,
            startUrl=self.url,
        )

    def wait_for_token(
        self,
        registration: Registration,
        authorization: dict,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[], None] = lambda: None,
    ) -> Token:
        """Poll CreateToken as RFC 8628 says: `interval` seconds apart, 5 s more after each SlowDown,
        until approval, denial or expiry. The first poll goes at once: the request may be approved already."""
        interval = authorization.get("interval") or 5
        deadline = time.monotonic() + authorization["expiresIn"]
        while True:
            outcome = self._poll(registration, authorization["deviceCode"])
            if isinstance(outcome, Token):
                return outcome
            if outcome == "AccessDeniedException":
                raise LoginError("the sign-in request was denied in the browser")
            if outcome == "ExpiredTokenException" or time.monotonic() + interval > deadline:
                raise LoginError("the sign-in request expired before it was approved; run the command again")
            if outcome == "SlowDownException":
                interval += 5
            else:
                on_wait()
            sleep(interval)

    def _poll(self, registration: Registration, device_code: str) -> Token | str:
        """The token, or the name of the state the request is still in."""
        from botocore.exceptions import ClientError

        with _portal_errors(self.url):
            try:
                return _token(
                    self.oidc.create_token(
                        clientId=registration.client_id,
                        clientSecret=registration.client_secret,
                        grantType=DEVICE_GRANT,
                        deviceCode=device_code,
                    )
                )
            except ClientError as error:
                if _error_code(error) in POLL_STATES:
                    return _error_code(error)
                raise

    def refresh(self, registration: Registration, refresh_token: str) -> Token:
        return self._call(
            self.oidc.create_token,
            _token,
            clientId=registration.client_id,
            clientSecret=registration.client_secret,
            grantType="refresh_token",
            refreshToken=refresh_token,
        )

    def accounts(self, token: Token) -> list[tuple[str, str]]:
        """(account ID, account name) of every account the person has a role in, each checked."""
        pages = self.sso.get_paginator("list_accounts").paginate(accessToken=token.access_token)
        with _portal_errors(self.url):
            return [
                (validate.account_id(a["accountId"]), validate.account_name(a["accountName"]))
                for page in pages
                for a in page["accountList"]
            ]

    def roles(self, token: Token, account_id: str) -> list[str]:
        pages = self.sso.get_paginator("list_account_roles").paginate(
            accessToken=token.access_token, accountId=account_id
        )
        with _portal_errors(self.url):
            return [validate.role_name(r["roleName"]) for page in pages for r in page["roleList"]]

    def credentials(self, token: Token, account_id: str, role: str) -> Credentials:
        return self._call(
            self.sso.get_role_credentials,
            lambda answer: _credentials(answer["roleCredentials"]),
            accessToken=token.access_token,
            accountId=account_id,
            roleName=role,
        )

    def logout(self, token: Token) -> None:
        self._call(self.sso.logout, accessToken=token.access_token)


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("not a string")
    return value


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _token(answer: dict) -> Token:
    refresh = answer.get("refreshToken")
    return Token(
        _string(answer["accessToken"]),
        _utc_now() + timedelta(seconds=_integer(answer["expiresIn"])),
        _string(refresh) if refresh is not None else None,
    )


def _credentials(answer: dict) -> Credentials:
    """Role credentials; each value is checked, for it is written into ~/.aws/credentials or exports."""
    return Credentials(
        validate.check(validate.ACCESS_KEY_ID, answer["accessKeyId"], "access key ID"),
        validate.check(validate.SECRET, answer["secretAccessKey"], "secret access key"),
        validate.check(validate.SECRET, answer["sessionToken"], "session token"),
        datetime.fromtimestamp(_integer(answer["expiration"]) / 1000, UTC),
    )


def _web_url(value: object, what: str) -> str:
    """An http(s) address of printable characters only: it is shown and opened in the browser."""
    text = _string(value)
    if urlsplit(text).scheme not in ("http", "https") or validate.one_line(text, 2048) != text:
        raise validate.Untrusted(f"{what} {validate.shown(text)}")
    return text


def _device_authorization(answer: dict) -> dict:
    return {
        "deviceCode": _string(answer["deviceCode"]),
        "userCode": validate.check(validate.USER_CODE, answer["userCode"], "user code"),
        "verificationUri": _web_url(answer["verificationUri"], "verification address"),
        "verificationUriComplete": _web_url(answer["verificationUriComplete"], "verification address"),
        "expiresIn": _integer(answer["expiresIn"]),
        "interval": _integer(answer.get("interval") or 5),
    }


def _portal_info(document: dict) -> PortalInfo:
    endpoint = document.get("aws_endpoint_url")
    services = document.get("services") or []
    if not isinstance(services, list):
        raise TypeError("services is not a list")
    return PortalInfo(
        region=validate.region(document["region"]),
        aws_endpoint_url=validate.endpoint_url(endpoint) if endpoint is not None else None,
        services=tuple(validate.service_name(name) for name in services) if endpoint is not None else (),
    )
