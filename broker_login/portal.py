"""The broker's Identity Center compatible API as the CLI uses it: through botocore's own sso and
sso-oidc clients, so the CLI speaks exactly what unmodified AWS tools speak."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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


def _login_error(error) -> LoginError:
    code, message = _error_code(error), error.response.get("Error", {}).get("Message", "")
    return (NotSignedIn if code == "UnauthorizedException" else LoginError)(f"{code}: {message}")


@contextmanager
def _portal_errors(url: str):
    """botocore's exceptions as LoginError, without the request (and its tokens) in the chain."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        raise _login_error(error) from None
    except BotoCoreError as error:
        raise LoginError(f"the portal at {url} cannot be reached ({type(error).__name__})") from None


class Portal:
    def __init__(self, url: str, region: str):
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.url, self.region = url.rstrip("/"), region
        session = boto3.session.Session(region_name=region)
        config = Config(
            signature_version=UNSIGNED,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
        )
        self.oidc = session.client("sso-oidc", endpoint_url=self.url, config=config)
        self.sso = session.client("sso", endpoint_url=self.url, config=config)

    def _call(self, operation: Callable, **kwargs):
        with _portal_errors(self.url):
            return operation(**kwargs)

    def register(self) -> Registration:
        answer = self._call(
            self.oidc.register_client,
            clientName=CLIENT_NAME,
            clientType="public",
            scopes=SCOPES,
            grantTypes=[DEVICE_GRANT, "refresh_token"],
        )
        return Registration(
            answer["clientId"], answer["clientSecret"], datetime.fromtimestamp(answer["clientSecretExpiresAt"], UTC)
        )

    def start_device_authorization(self, registration: Registration) -> dict:
        return self._call(
            self.oidc.start_device_authorization,
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
        return _token(
            self._call(
                self.oidc.create_token,
                clientId=registration.client_id,
                clientSecret=registration.client_secret,
                grantType="refresh_token",
                refreshToken=refresh_token,
            )
        )

    def accounts(self, token: Token) -> list[tuple[str, str]]:
        """(account ID, account name) of every account the person has a role in."""
        pages = self.sso.get_paginator("list_accounts").paginate(accessToken=token.access_token)
        return [(a["accountId"], a["accountName"]) for page in self._pages(pages) for a in page["accountList"]]

    def roles(self, token: Token, account_id: str) -> list[str]:
        pages = self.sso.get_paginator("list_account_roles").paginate(
            accessToken=token.access_token, accountId=account_id
        )
        return [r["roleName"] for page in self._pages(pages) for r in page["roleList"]]

    def _pages(self, pages):
        with _portal_errors(self.url):
            yield from pages

    def credentials(self, token: Token, account_id: str, role: str) -> Credentials:
        answer = self._call(
            self.sso.get_role_credentials, accessToken=token.access_token, accountId=account_id, roleName=role
        )["roleCredentials"]
        return Credentials(
            answer["accessKeyId"],
            answer["secretAccessKey"],
            answer["sessionToken"],
            datetime.fromtimestamp(answer["expiration"] / 1000, UTC),
        )

    def logout(self, token: Token) -> None:
        self._call(self.sso.logout, accessToken=token.access_token)


def _token(answer: dict) -> Token:
    return Token(answer["accessToken"], _utc_now() + timedelta(seconds=answer["expiresIn"]), answer.get("refreshToken"))
