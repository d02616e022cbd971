"""`broker-login`: sign in to the SSO login broker from a terminal and get short-lived AWS credentials.

  broker-login [--account-id ID | --account-name NAME] [--role ROLE] [--format FORMAT [NAME]]
      sign in (device flow) and print credentials: exports (default), json, credential-process,
      or `profile NAME` to write them to ~/.aws/credentials
  broker-login configure [--use-credential-process] [--profile-prefix PREFIX]
      write ~/.aws/config profiles for every role you have, as `aws configure sso` does
  broker-login credential-process --account-id ID --role ROLE
      for `credential_process =` in ~/.aws/config: cached credentials, renewed when under 15 minutes
  broker-login logout
      revoke the token at the portal and forget the cached token and credentials

The portal comes from --portal-url, $BROKER_URL, or the sso_start_url of the sso-session. With
--non-interactive, the sign-in is done without a browser using BROKER_LOGIN_USERNAME,
BROKER_LOGIN_PASSWORD and BROKER_LOGIN_TOTP_SECRET or BROKER_LOGIN_TOTP (or standard input).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from broker_login import files, formats
from broker_login.headless import LoginSecrets, headless_sign_in
from broker_login.portal import Credentials, LoginError, NotSignedIn, Portal, Token
from broker_login.terminal import Console

T = TypeVar("T")

DEFAULT_SESSION = "broker"
DEFAULT_REGION = "us-east-1"
DEFAULT_IDP = "example-corp-oidc"
FORMATS = ("exports", "json", "credential-process", "profile")


def _now() -> datetime:
    return datetime.now(UTC)


def _graphical_session() -> bool:
    """Whether opening a browser can work. Without a display, `webbrowser` would start a text-mode
    browser (lynx, w3m) in this very terminal, and the sign-in would wait behind it."""
    return (
        sys.platform in ("darwin", "win32")
        or bool(os.environ.get("BROWSER"))
        or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    )


class SignIn:
    """A usable access token for one portal and sso-session: cached, refreshed, or from a new sign-in."""

    def __init__(
        self,
        portal: Portal,
        session_name: str,
        console: Console,
        *,
        non_interactive: bool,
        idp: str,
        open_browser: bool,
    ):
        self.portal, self.session_name, self.console = portal, session_name, console
        self.non_interactive, self.idp, self.open_browser = non_interactive, idp, open_browser

    def token(self) -> Token:
        with files.token_lock(self.session_name):
            return self._token()

    def _token(self) -> Token:
        cached = files.load_token(self.session_name, self.portal.url)
        if cached:
            token, registration = cached
            if files.fresh(token.expires_at, _now()):
                return token
            if token.refresh_token and registration and registration.expires_at > _now():
                try:
                    return self._keep(self.portal.refresh(registration, token.refresh_token), registration)
                except LoginError:
                    pass  # revoked or past the end of the sign-in: sign in again
        return self.sign_in()

    def sign_in(self) -> Token:
        if not self.non_interactive and not self.console.reaches_the_person:
            raise LoginError(
                f"not signed in to {self.portal.url} and no terminal to sign in on: run "
                f"`broker-login --session-name {self.session_name}` first"
            )
        registration = self._registration()
        if self.non_interactive:
            secrets = LoginSecrets.from_environment()
            self.console.say(f"Signing in to {self.portal.url} as {secrets.username} through {self.idp}.")
            return self._keep(headless_sign_in(self.portal, registration, self.idp, secrets), registration)
        authorization = self.portal.start_device_authorization(registration)
        self._show(authorization)
        token = self.portal.wait_for_token(registration, authorization, on_wait=lambda: self.console.say(".", end=""))
        self.console.say(" signed in.")
        return self._keep(token, registration)

    def _show(self, authorization: dict) -> None:
        self.console.say(
            f"To sign in, open {authorization['verificationUri']}\n"
            f"and enter the code {authorization['userCode']}\n"
            f"(or open {authorization['verificationUriComplete']})"
        )
        if self.open_browser and _graphical_session() and webbrowser.open(authorization["verificationUriComplete"]):
            self.console.say("A browser window was opened for you.")
        self.console.say("Waiting for approval", end="")

    def _registration(self):
        path = files.registration_path(self.portal.url, self.portal.region)
        registration = files.load_registration(path)
        if registration is None or not files.fresh(registration.expires_at, _now(), timedelta(days=1)):
            registration = self.portal.register()
            files.save_registration(path, registration)
        return registration

    def _keep(self, token: Token, registration) -> Token:
        files.save_token(self.session_name, self.portal.url, self.portal.region, token, registration)
        return token

    def call(self, action: Callable[[Token], T]) -> T:
        """`action` with a token; once more after a new sign-in if the portal no longer knows the token."""
        try:
            return action(self.token())
        except NotSignedIn:
            files.forget_token(self.session_name)
            return action(self.sign_in())


# --- commands -----------------------------------------------------------------------------------


def _pick_role(sign_in: SignIn, args, console: Console) -> tuple[str, str, str]:
    """(account ID, account name, role) from the options, asking on the terminal where they leave a choice."""
    portal = sign_in.portal
    account_id, account_name = args.account_id, args.account_name
    if account_id and args.role:
        return account_id, account_id, args.role
    accounts = sign_in.call(portal.accounts)
    if account_id or account_name:
        accounts = [a for a in accounts if account_id in (None, a[0]) and account_name in (None, a[1])]
        if not accounts:
            raise LoginError(f"you have no role in account {account_id or account_name}")
    account_id, account_name = console.choose("account", accounts, lambda a: f"{a[1]} ({a[0]})")
    roles = sign_in.call(lambda token: portal.roles(token, account_id))
    if args.role:
        if args.role not in roles:
            raise LoginError(f"you have no role {args.role} in {account_name} (yours: {', '.join(roles)})")
        return account_id, account_name, args.role
    return account_id, account_name, console.choose("role", roles)


def _print_credentials(sign_in: SignIn, args, console: Console) -> int:
    account_id, account_name, role = _pick_role(sign_in, args, console)
    credentials = sign_in.call(lambda token: sign_in.portal.credentials(token, account_id, role))
    kind = args.format[0]
    if kind == "profile":
        files.update_ini(files.credentials_file(), {args.format[1]: formats.credentials_section(credentials)})
        console.say(
            f"Credentials for {role} in {account_name} are in profile {args.format[1]} "
            f"until {credentials.expiration:%H:%M} UTC."
        )
    elif kind == "json":
        sys.stdout.write(formats.as_json(credentials, account_id, role))
    elif kind == "credential-process":
        sys.stdout.write(formats.credential_process(credentials))
    else:
        sys.stdout.write(formats.exports(credentials))
    return 0


def _credential_process(sign_in: SignIn, args, console: Console) -> int:
    path = files.credentials_path(sign_in.portal.url, sign_in.session_name, args.account_id, args.role)
    credentials: Credentials | None = files.load_credentials(path)
    if credentials is None or not files.fresh(credentials.expiration, _now()):
        credentials = sign_in.call(lambda token: sign_in.portal.credentials(token, args.account_id, args.role))
        files.save_credentials(path, credentials)
    sys.stdout.write(formats.credential_process(credentials))
    return 0


def _roles_of(portal: Portal, account_id: str, token: Token) -> list[str]:
    return portal.roles(token, account_id)


def _configure(sign_in: SignIn, args, console: Console) -> int:
    portal = sign_in.portal
    accounts = sign_in.call(portal.accounts)
    assignments = [
        (account_id, name, role)
        for account_id, name in accounts
        for role in sign_in.call(functools.partial(_roles_of, portal, account_id))
    ]
    if args.use_credential_process:
        sections = {
            f"profile {formats.profile_name(name, role, args.profile_prefix)}": formats.credential_process_profile(
                [
                    sys.executable,
                    "-m",
                    "broker_login",
                    "credential-process",
                    "--portal-url",
                    portal.url,
                    "--session-name",
                    sign_in.session_name,
                    "--region",
                    portal.region,
                    "--account-id",
                    account_id,
                    "--role",
                    role,
                ],
                portal.region,
            )
            for account_id, name, role in assignments
        }
    else:
        sections = formats.sso_config_sections(
            sign_in.session_name, portal.url, portal.region, assignments, args.profile_prefix
        )
    files.update_ini(files.config_file(), sections)
    profiles = [name.removeprefix("profile ") for name in sections if name.startswith("profile ")]
    console.say(
        f"Wrote {files.config_file()}: "
        + (", ".join(profiles) if profiles else "no profiles (you have no AWS access through this portal)")
    )
    return 0


def _logout(sign_in: SignIn, args, console: Console) -> int:
    cached = files.load_token(sign_in.session_name, sign_in.portal.url)
    if cached:
        try:
            sign_in.portal.logout(cached[0])
        except NotSignedIn:
            pass  # already ended at the portal
    files.forget_token(sign_in.session_name)
    shutil.rmtree(files.credentials_dir(sign_in.portal.url, sign_in.session_name), ignore_errors=True)
    console.say("Signed out.")
    return 0


# --- command line -------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    """Options every command takes. SUPPRESS keeps a subcommand's defaults from hiding values given
    before the subcommand's name."""
    common = argparse.ArgumentParser(add_help=False)
    hide = argparse.SUPPRESS
    common.add_argument(
        "--portal-url",
        default=hide,
        help="the access portal (default: $BROKER_URL, or the sso_start_url of the sso-session in ~/.aws/config)",
    )
    common.add_argument("--region", default=hide, help=f"sso_region (default {DEFAULT_REGION})")
    common.add_argument("--session-name", default=hide, help=f"sso-session name (default {DEFAULT_SESSION})")
    common.add_argument("--idp", default=hide, help=f"identity provider for --non-interactive (default {DEFAULT_IDP})")
    common.add_argument("--no-browser", action="store_true", default=hide, help="do not open a browser")
    common.add_argument(
        "--non-interactive",
        action="store_true",
        default=hide,
        help="sign in without a browser, with secrets from the environment or standard input",
    )
    return common


def _role_options(parser: argparse.ArgumentParser, required: bool) -> None:
    account = parser.add_mutually_exclusive_group(required=required)
    account.add_argument("--account-id")
    if not required:
        account.add_argument("--account-name")
    parser.add_argument("--role", required=required, help="the permission set's name, e.g. EmployeeDirectoryReadOnly")


def _parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="broker-login", parents=[common], description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _role_options(parser, required=False)
    parser.add_argument(
        "--format",
        nargs="+",
        default=["exports"],
        metavar="FORMAT",
        help="exports (default), json, credential-process, or profile NAME",
    )
    parser.set_defaults(run=_print_credentials, account_name=None)
    commands = parser.add_subparsers(dest="command")
    configure = commands.add_parser("configure", parents=[common], help="write ~/.aws/config profiles")
    configure.add_argument(
        "--use-credential-process",
        action="store_true",
        help="profiles that call `broker-login credential-process` instead of sso_session ones",
    )
    configure.add_argument("--profile-prefix", default="", help="prefix for the profile names")
    configure.set_defaults(run=_configure)
    process = commands.add_parser("credential-process", parents=[common], help="for credential_process =")
    _role_options(process, required=True)
    process.set_defaults(run=_credential_process)
    commands.add_parser("logout", parents=[common], help="sign out").set_defaults(run=_logout)
    return parser


def _check_format(parser: argparse.ArgumentParser, args) -> None:
    if args.run is not _print_credentials:
        return
    kind, extra = args.format[0], args.format[1:]
    if kind not in FORMATS or (kind == "profile") != (len(extra) == 1) or len(extra) > 1:
        parser.error("--format takes exports, json, credential-process, or profile NAME")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_format(parser, args)

    def option(name: str, default=None):
        return getattr(args, name, default)

    session_name = option("session_name", DEFAULT_SESSION)
    portal_url = option("portal_url") or os.environ.get("BROKER_URL") or files.sso_session_start_url(session_name)
    if not portal_url:
        parser.error("no portal: give --portal-url, set BROKER_URL, or run configure first")
    console = Console(messages_on_tty=args.run is _credential_process)
    try:
        sign_in = SignIn(
            Portal(portal_url, option("region", DEFAULT_REGION)),
            session_name,
            console,
            non_interactive=option("non_interactive", False),
            idp=option("idp", DEFAULT_IDP),
            open_browser=not option("no_browser", False),
        )
        return args.run(sign_in, args, console)
    except LoginError as error:
        print(f"broker-login: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("broker-login: interrupted", file=sys.stderr)
        return 130
